#!/usr/bin/env python3
"""Supervisor for the spotify-logger poller. Standard library only, so it runs even when the
package's own imports are broken.

    STARTING -> RUNNING -> EXITED -> BACKOFF -> STARTING ...
    RUNNING  -> FATAL    (child exit 78: configuration or authorization; a restart cannot help)
    any      -> STOPPING -> STOPPED (SIGTERM/SIGINT/SIGHUP; exit 0, and never a restart)

Arguments pass through to `python -m spotify_logger run`. Tunables come from the environment:
SPOTIFY_LOGGER_RESTART_DELAY (1), SPOTIFY_LOGGER_RESTART_MAX_DELAY (60),
SPOTIFY_LOGGER_HEALTHY_AFTER (60) and SPOTIFY_LOGGER_STOP_TIMEOUT (10), all in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping, Sequence

EX_OK = 0
EX_CONFIG = 78
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(frozen=True)
class Policy:
    restart_delay: float = 1.0
    max_delay: float = 60.0
    healthy_after: float = 60.0
    stop_timeout: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Policy":
        def number(name: str, default: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if not value > 0:
                raise SystemExit(_fatal_config(f"{name}={raw!r} is invalid: expected a positive number of seconds"))
            return value

        return cls(
            restart_delay=number("SPOTIFY_LOGGER_RESTART_DELAY", 1.0),
            max_delay=number("SPOTIFY_LOGGER_RESTART_MAX_DELAY", 60.0),
            healthy_after=number("SPOTIFY_LOGGER_HEALTHY_AFTER", 60.0),
            stop_timeout=number("SPOTIFY_LOGGER_STOP_TIMEOUT", 10.0),
        )


def log(event: str, **fields: object) -> None:
    line = {"event": event, "logger": "run.py", "level": fields.pop("level", "info"),
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **fields}
    print(json.dumps(line), file=sys.stderr, flush=True)


def _fatal_config(message: str) -> int:
    log("supervisor_config_invalid", level="error", error=message)
    return EX_CONFIG


def notify(message: str) -> None:
    """sd_notify, so the watchdog is fed while we wait out a restart delay on purpose."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError:
        pass


class Supervisor:
    def __init__(self, command: Sequence[str], policy: Policy) -> None:
        self.command = list(command)
        self.policy = policy
        self.stop = threading.Event()
        self.signals: list[int] = []
        self.child: subprocess.Popen[bytes] | None = None

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)
        self.stop.set()

    def run(self) -> int:
        for signum in FORWARDED:
            signal.signal(signum, self._on_signal)
        delay = self.policy.restart_delay
        while not self.stop.is_set():
            # STARTING -> RUNNING
            started = time.monotonic()
            # A session of its own: a terminal's Ctrl-C reaches only us, and we forward it once.
            self.child = subprocess.Popen(self.command, start_new_session=True)
            log("child_started", pid=self.child.pid)
            code = self._wait_child()
            ran = time.monotonic() - started
            if self.stop.is_set():
                break
            # RUNNING -> EXITED
            if code >= 0:
                log("child_exited", level="warning" if code else "info", exit_code=code, ran_s=round(ran, 2))
            else:
                log("child_exited", level="warning", signal=signal.Signals(-code).name, ran_s=round(ran, 2))
            if code == EX_CONFIG:
                # EXITED -> FATAL: configuration or authorization; restarting would only spin.
                log("child_fatal", level="error", exit_code=code, action="not restarting: fix the setting or run `spotify-logger auth`")
                return EX_CONFIG
            if code == EX_OK:
                log("supervisor_stopped", reason="child exited cleanly")
                return EX_OK
            if ran >= self.policy.healthy_after:
                delay = self.policy.restart_delay  # it ran healthily: this is a new failure, not a loop
            # EXITED -> BACKOFF
            log("restart_scheduled", delay_s=delay)
            if self._sleep(delay):
                break
            delay = min(delay * 2, self.policy.max_delay)
            # BACKOFF -> STARTING
        return self._stopped()

    def _wait_child(self) -> int:
        assert self.child is not None
        forwarded = 0
        deadline: float | None = None
        while True:
            try:
                return self.child.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
            # RUNNING -> STOPPING: hand each signal on once; a second one makes the child exit at once.
            while forwarded < len(self.signals):
                self._send(self.signals[forwarded])
                forwarded += 1
                deadline = deadline or time.monotonic() + self.policy.stop_timeout
            if deadline is not None and time.monotonic() > deadline:
                log("child_killed", level="warning", pid=self.child.pid, after_s=self.policy.stop_timeout)
                self._send(signal.SIGKILL)
                return self.child.wait()

    def _send(self, signum: int) -> None:
        assert self.child is not None
        try:
            self.child.send_signal(signum)
            log("signal_forwarded", signal=signal.Signals(signum).name, pid=self.child.pid)
        except ProcessLookupError:
            pass

    def _sleep(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            notify("WATCHDOG=1")
            if self.stop.wait(min(left, 10.0)):
                return True
        return False

    def _stopped(self) -> int:
        # STOPPING -> STOPPED
        if self.child is not None and self.child.poll() is None:
            self._wait_child()
        log("supervisor_stopped", reason="signal")
        return EX_OK


def main(argv: Sequence[str]) -> int:
    try:
        policy = Policy.from_env(os.environ)
    except SystemExit as exc:
        return int(exc.code or EX_CONFIG)
    command = [sys.executable, "-m", "spotify_logger", "run", *argv]
    return Supervisor(command, policy).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
