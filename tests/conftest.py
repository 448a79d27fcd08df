"""Shared fixtures: real things first (simulator over loopback, real redis-server), fakeredis for
fast unit tests, and helpers to run the poller in-process or as real processes."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import fakeredis
import pytest
import structlog

from spotify_logger.config import Settings
from spotify_logger.keys import BUDGET_PREFIX
from spotify_logger.redisproc import RedisServer, redis_server_path
from spotify_logger.simulator import Script, SpotifySimulator
from spotify_logger.tokenstore import Tokens, TokenStore

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI") == "true"


def _reference_data() -> Path:
    """The shared/ folder of reference data (Spotify's spec and recorded bodies) sits beside the
    repository. A clone made elsewhere (`git clone . /tmp/x`) finds it beside the repository it
    was cloned from; SPOTIFY_WEB_API_REFERENCE names it outright."""
    if os.environ.get("SPOTIFY_WEB_API_REFERENCE"):
        return Path(os.environ["SPOTIFY_WEB_API_REFERENCE"])
    beside = [ROOT.parent]
    try:
        origin = subprocess.run(["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"],
                                capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and Path(origin).is_dir():  # a local clone: its origin is a path
        beside.append(Path(origin).resolve().parent)
    candidates = [place / "shared" / "spotify-web-api" for place in beside]
    return next((c for c in candidates if c.is_dir()), candidates[0])


SHARED = _reference_data()


def shared_file(name: str) -> Path:
    """A file of the reference data in ../shared: missing fails under CI, else skips."""
    path = SHARED / name
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing: CI must run beside shared/ (or set SPOTIFY_WEB_API_REFERENCE)")
        pytest.skip(f"{path} is missing (shared/ not beside the checkout or its origin)")
    return path


def recorded(name: str) -> Any:
    """A real response body recorded from the Spotify API (../shared)."""
    return json.loads(shared_file(f"responses/{name}").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """A test that runs cli.main() configures structlog onto its own captured stderr; the next
    test must not inherit a logger bound to a closed stream."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def fake_redis() -> Any:
    """A fresh fakeredis server per test: no state leaks between tests."""
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


@pytest.fixture(scope="session")
def _redis_binary() -> str:
    path = redis_server_path()
    if path is None:
        if IN_CI:
            pytest.fail("redis-server is missing, and CI=true: a skipped integration test is a defect")
        pytest.skip("redis-server is not installed")
    return path


@pytest.fixture
def redis_server(tmp_path: Path, _redis_binary: str) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, its data in tmp_path, stopped afterwards."""
    server = RedisServer(tmp_path / "redis", binary=_redis_binary).start()
    try:
        yield server
    finally:
        server.stop(save=False)


@pytest.fixture
def real_redis(redis_server: RedisServer) -> Any:
    return redis_server.client()


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., SpotifySimulator]]:
    started: list[SpotifySimulator] = []

    def make(script: Script | None = None, **kwargs: Any) -> SpotifySimulator:
        sim = SpotifySimulator(script, **kwargs).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., Settings]:
    """Settings pointed at a simulator, fast enough for tests, with a token file in place."""

    def make(sim: SpotifySimulator, redis_url: str = "redis://127.0.0.1:1/0", *, token: bool = True,
             **overrides: Any) -> Settings:
        base = Settings(
            client_id=sim.client_id, client_secret=sim.client_secret, api_url=sim.api_url,
            accounts_url=sim.accounts_url, redis_url=redis_url, state_dir=tmp_path / "state",
            poll_interval=0.2, max_poll_interval=1.0, idle_max_interval=1.0, min_play_ms=2_000, end_grace_s=2.0,
            connect_timeout=1.0, read_timeout=1.0, log_format="json",
            # Time is compressed, so is the budget's window: a day's pace would stretch every gap.
            request_budget_window_s=10.0,
        )
        settings = dataclasses.replace(base, **overrides)
        if token:
            TokenStore(settings.token_file).save(Tokens(refresh_token=sim.current_refresh_token,
                                                        authorized_at=time.time()))
        return settings

    return make


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes `python -m spotify_logger` (or run.py) use these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "REDIS_URL", "NOTIFY_SOCKET"))}
    env.update(settings.to_env(), SPOTIFY_LOGGER_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


class Proc:
    """A real child process whose stderr (JSON log lines) is collected as it runs."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.lines.append(line.rstrip("\n"))

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                out.append(event)
        return out

    def wait_for(self, name: str, *, count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name)
            if len(found) >= count:
                return found
            if self.popen.poll() is not None and len(self.events(name)) < count:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {count} x {name!r} within {timeout}s; log tail:\n" + "\n".join(self.lines[-30:]))

    def wait(self, timeout: float = 15.0) -> int:
        code = self.popen.wait(timeout=timeout)
        self._reader.join(2)
        return code

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, as systemd stops a service; the exit code once it has stopped."""
        self.popen.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def start(args: list[str], env: dict[str, str]) -> Proc:
        proc = Proc(args, env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll `predicate` until it returns something truthy, and return that; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def poller_cmd() -> list[str]:
    return [sys.executable, "-m", "spotify_logger", "run"]


def run_py_cmd() -> list[str]:
    return [sys.executable, str(ROOT / "run.py")]


def play_hashes(client: Any) -> dict[int, dict[str, str]]:
    """Every stored play, by started_at."""
    out = {}
    for member in client.zrange("listening:index", 0, -1):
        out[int(member)] = client.hgetall(f"listening:{member}")
    return out


def assert_counter_invariant(client: Any) -> None:
    """plays:tracks[uri] equals the number of play hashes with that uri and counted=1."""
    expected: dict[str, int] = {}
    for fields in play_hashes(client).values():
        if fields.get("counted") == "1":
            expected[fields["uri"]] = expected.get(fields["uri"], 0) + 1
    actual = {uri: int(score) for uri, score in client.zrange("plays:tracks", 0, -1, withscores=True)}
    assert actual == expected


def redis_dump(client: Any) -> dict[str, Any]:
    """Everything in Redis, comparable across runs (for "a second pass changes nothing"); the
    request budget's accounting is left out: a second pass makes calls too."""
    out: dict[str, Any] = {}
    for key in sorted(client.keys("*")):
        if key.startswith(BUDGET_PREFIX):
            continue
        kind = client.type(key)
        if kind == "hash":
            out[key] = client.hgetall(key)
        elif kind == "zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        else:
            out[key] = client.get(key)
    return out
