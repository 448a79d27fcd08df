"""A throwaway redis-server on a free loopback port, for the demo, tests and benchmarks."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

from .errors import StoreUnavailable
from .store import no_backoff_retry


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_path() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    """start() / stop() / start() keeps the data: stop is SHUTDOWN SAVE, start loads dump.rdb."""

    def __init__(self, directory: Path, *, port: int | None = None, binary: str | None = None) -> None:
        self.binary = binary or redis_server_path()
        if self.binary is None:
            raise StoreUnavailable("redis-server is not installed (Debian: apt-get install redis-server)")
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> "redis.Redis[str]":
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, retry=no_backoff_retry())

    def start(self, timeout: float = 10.0) -> "RedisServer":
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StoreUnavailable(f"redis-server exited at start with code {self.process.returncode}")
            try:
                if self.client().ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise StoreUnavailable("redis-server did not answer within its start-up timeout")

    def stop(self, *, save: bool = True) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.client().shutdown(save=save, nosave=not save)
        except redis.RedisError:
            pass  # the connection drops as the server exits; that is the success case
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop(save=False)
