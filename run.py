#!/usr/bin/env python3
"""Supervisor for the spotify-logger poller. Standard library only, so it runs even when the
package's own imports are broken.

    STARTING -> RUNNING -> EXITED -> BACKOFF -> STARTING ...
    RUNNING  -> FATAL    (child exit 64, 65 or 78: usage, input, configuration or authorization;
                          a restart cannot help; or exit 75 with the lease held elsewhere)
    any      -> STOPPING -> STOPPED (SIGTERM/SIGINT/SIGHUP; exit 0, and never a restart)

Arguments pass through to `python -m spotify_logger run`. Tunables come from the environment:
SPOTIFY_LOGGER_RESTART_DELAY (1), SPOTIFY_LOGGER_RESTART_MAX_DELAY (60),
SPOTIFY_LOGGER_HEALTHY_AFTER (60) and SPOTIFY_LOGGER_STOP_TIMEOUT (10), all in seconds, and
each within its range in TUNABLES (exit 78 outside it).

Under systemd (systemd/spotify-logger.service) the child sends READY=1 and feeds the watchdog;
run.py feeds it only while it waits out a restart delay, and says STOPPING=1 when told to stop.

One poller per state dir: before it starts anything run.py takes the state dir's lock (an flock
on poller.lock, held until it exits) and hands the locked descriptor to each child
(`run --lock-fd N`). A second run.py on the same state dir exits 75 at once, with one line naming
the holder, and starts no child. The child's own refusal, when another machine's poller holds
the Redis lease, is exit 75 plus the file poller.refused: final, while any other 75 is retried.
See spotify_logger/instancelock.py, whose file names these must match.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence

EX_OK = 0
EX_SOFTWARE = 70
EX_USAGE = 64
EX_DATAERR = 65
EX_TEMPFAIL = 75
EX_CONFIG = 78
# Exit codes no restart can fix (sysexits.h, as spotify_logger.errors uses them).
FATAL_EXITS = (EX_USAGE, EX_DATAERR, EX_CONFIG)
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# How often systemd's watchdog is fed while we wait out a restart delay on purpose (far below
# any sensible WatchdogSec), and how often the child is polled where pidfds are missing.
WATCHDOG_EVERY_S = 5.0
TICK_S = 0.1
LOCK_FILE = "poller.lock"
REFUSED_FILE = "poller.refused"


@dataclass(frozen=True)
class Policy:
    restart_delay: float = 1.0
    max_delay: float = 60.0
    healthy_after: float = 60.0
    stop_timeout: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Policy":
        """Raises ValueError, one line naming the variable and its range, for a value outside it."""
        return cls(**{attr: _seconds(env, name, default, hi) for name, attr, default, hi in TUNABLES})


# Variable, Policy field, default, upper bound in seconds. Every tunable is at least MIN_S (tests
# compress time) and finite: STOP_TIMEOUT=inf used to end in an OverflowError on SIGTERM.
MIN_S = 0.01
TUNABLES = (
    ("SPOTIFY_LOGGER_RESTART_DELAY", "restart_delay", 1.0, 3_600.0),
    ("SPOTIFY_LOGGER_RESTART_MAX_DELAY", "max_delay", 60.0, 86_400.0),
    ("SPOTIFY_LOGGER_HEALTHY_AFTER", "healthy_after", 60.0, 86_400.0),
    ("SPOTIFY_LOGGER_STOP_TIMEOUT", "stop_timeout", 10.0, 300.0),
)


def _seconds(env: Mapping[str, str], name: str, default: float, hi: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not MIN_S <= value <= hi:  # nan fails this too
        raise ValueError(f"{name}={raw!r} is invalid: expected a number of seconds from {MIN_S:g} to {hi:g}")
    return value


def log(event: str, **fields: object) -> None:
    line = {"event": event, "logger": "run.py", "level": fields.pop("level", "info"),
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **fields}
    # One write per line: the child shares this stderr, and print() under `python -u` would
    # write the text and its newline separately, letting the child's lines cut into ours.
    sys.stderr.write(json.dumps(line) + "\n")
    sys.stderr.flush()


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


class InstanceLocked(Exception):
    """Another poller holds the state dir's lock."""


def state_dir(env: Mapping[str, str]) -> Path:
    """The state dir as Settings finds it (spotify_logger/config.py, which run.py cannot import)."""
    raw = env.get("SPOTIFY_LOGGER_STATE_DIR", "").strip()
    if raw:
        return Path(raw).expanduser()
    systemd_dir = env.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd_dir:
        return Path(systemd_dir)
    return Path(env.get("HOME") or str(Path.home())) / ".local" / "state" / "spotify-logger"


def take_lock(directory: Path) -> int | None:
    """The state dir's lock, held until we exit, or InstanceLocked naming its holder. None when it
    cannot be taken for another reason (an unwritable dir): the child then tries, and says why."""
    path = directory / LOCK_FILE
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        log("instance_lock_unavailable", level="warning", path=str(path), error=exc.strerror or type(exc).__name__)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if isinstance(exc, BlockingIOError):
            raise InstanceLocked(f"another poller ({_holder(path)}) is recording into this state dir "
                                 f"({directory})") from None
        log("instance_lock_unavailable", level="warning", path=str(path), error=exc.strerror or type(exc).__name__)
        return None
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode() + b"\n"
    try:
        # Over the old record, then cut to length: a reader's first line is always a whole record.
        os.pwrite(fd, record, 0)
        os.ftruncate(fd, len(record))
    except OSError:
        pass  # a full disk: still locked, the refusal just cannot name us
    return fd


def _holder(path: Path) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            record = json.loads(fh.readline())
        return f"pid {record['pid']} on {record['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"


class Supervisor:
    def __init__(self, command: Sequence[str], policy: Policy, *, lock_fd: int | None = None,
                 refused: Path | None = None) -> None:
        self.command = list(command)
        self.policy = policy
        self.lock_fd = lock_fd
        self.refused = refused  # the child's "this exit 75 is final" file
        # Appended to by the signal handler and only read elsewhere. Not a threading.Event: the
        # handler runs in this very thread, and Event.set() would deadlock if it interrupted an
        # Event.wait() that held the event's internal lock.
        self.signals: list[int] = []
        self.child: subprocess.Popen[bytes] | None = None
        self._wakeup = -1  # set by _install, before anything waits
        self._said_stopping = False

    @property
    def stopping(self) -> bool:
        return bool(self.signals)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    def _install(self) -> None:
        for signum in FORWARDED:
            signal.signal(signum, self._on_signal)
        # Each signal also writes a byte here, so a select() below wakes at once: run.py sleeps
        # between events instead of polling (a Pi runs this for years).
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self._wakeup = read_end

    def _pause(self, timeout: float | None, pidfd: int | None = None) -> None:
        """Sleep until the timeout, a signal, or (given its pidfd) the child's exit."""
        fds = [self._wakeup] if pidfd is None else [self._wakeup, pidfd]
        ready, _, _ = select.select(fds, [], [], timeout)
        if self._wakeup in ready:
            try:
                os.read(self._wakeup, 512)
            except BlockingIOError:
                pass

    def run(self) -> int:
        self._install()
        delay = self.policy.restart_delay
        while not self.stopping:
            # STARTING -> RUNNING
            started = time.monotonic()
            code = self._start_and_wait()
            ran = time.monotonic() - started
            # RUNNING -> EXITED
            failed = code != EX_OK and not self.stopping
            if code >= 0:
                log("child_exited", level="warning" if failed else "info", exit_code=code, ran_s=round(ran, 2))
            else:
                log("child_exited", level="warning" if failed else "info", signal=_signal_name(-code),
                    ran_s=round(ran, 2))
            if self.stopping:
                break  # we asked it to stop: whatever it exited with, it is never restarted
            if code in FATAL_EXITS:
                # EXITED -> FATAL: usage, configuration or authorization; restarting would only spin.
                log("child_fatal", level="error", exit_code=code,
                    action="not restarting: fix the arguments or setting, or run `spotify-logger auth`")
                return code
            reason = self._refusal() if code == EX_TEMPFAIL else None
            if reason is not None:
                # Unlike any other exit 75: another machine's poller holds the lease.
                log("child_fatal", level="error", exit_code=code, error=reason,
                    action="not restarting: another poller is recording; stop it first")
                return code
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

    def _refusal(self) -> str | None:
        if self.refused is None:
            return None
        try:
            reason = self.refused.read_text(encoding="utf-8", errors="replace").strip()
            self.refused.unlink()
        except OSError:
            return None
        return reason or "refused"

    def _start_and_wait(self) -> int:
        if self.refused is not None:
            try:
                self.refused.unlink()  # only this run's child may say its exit is final
            except OSError:
                pass
        try:
            # A session of its own: a terminal's Ctrl-C reaches only us, and we forward it once.
            self.child = subprocess.Popen(self.command, start_new_session=True,
                                          pass_fds=() if self.lock_fd is None else (self.lock_fd,))
        except OSError as exc:
            # The interpreter vanished (a half-finished upgrade?): back off like any crash.
            self.child = None
            log("child_start_failed", level="error", error=f"{type(exc).__name__}: {exc.strerror or exc}")
            return EX_SOFTWARE
        log("child_started", pid=self.child.pid)
        return self._wait_child()

    def _wait_child(self) -> int:
        assert self.child is not None
        pidfd = _pidfd(self.child.pid)
        try:
            return self._supervise(self.child, pidfd)
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _supervise(self, child: "subprocess.Popen[bytes]", pidfd: int | None) -> int:
        forwarded = 0
        deadline: float | None = None
        while True:
            code = child.poll()
            if code is not None:
                return code
            # RUNNING -> STOPPING: hand each signal on once; a second one makes the child exit at once.
            if self.signals:
                self._say_stopping()
            while forwarded < len(self.signals):
                self._send(self.signals[forwarded])
                forwarded += 1
                deadline = deadline or time.monotonic() + self.policy.stop_timeout
            if deadline is not None and time.monotonic() > deadline:
                log("child_killed", level="warning", pid=child.pid, after_s=self.policy.stop_timeout)
                self._send(signal.SIGKILL)
                return child.wait()
            if deadline is not None:
                self._pause(max(0.0, deadline - time.monotonic()), pidfd)
            else:
                self._pause(None if pidfd is not None else TICK_S, pidfd)

    def _send(self, signum: int) -> None:
        assert self.child is not None
        try:
            self.child.send_signal(signum)
            log("signal_forwarded", signal=_signal_name(signum), pid=self.child.pid)
        except ProcessLookupError:
            pass

    def _sleep(self, seconds: float) -> bool:
        """Wait out a restart delay; True when a signal asked us to stop meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self.stopping:
            # A deliberate wait is progress: without this a long backoff would trip WatchdogSec.
            notify("WATCHDOG=1")
            self._pause(min(left, WATCHDOG_EVERY_S))
        return self.stopping

    def _say_stopping(self) -> None:
        if not self._said_stopping:
            self._said_stopping = True
            notify("STOPPING=1")

    def _stopped(self) -> int:
        # STOPPING -> STOPPED. The child has exited by now (run() only gets here after it did,
        # or from a backoff, where there is none); systemd may not have heard STOPPING=1 yet.
        self._say_stopping()
        log("supervisor_stopped", reason="signal",
            signal=_signal_name(self.signals[0]) if self.signals else None)
        return EX_OK


def _pidfd(pid: int) -> int | None:
    """A descriptor that select() sees readable when the child exits (Linux 5.3+, Python 3.9+)."""
    try:
        return os.pidfd_open(pid)  # type: ignore[attr-defined,no-any-return]
    except (AttributeError, OSError):
        return None  # older kernel: poll every TICK_S instead


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def main(argv: Sequence[str]) -> int:
    try:
        policy = Policy.from_env(os.environ)
    except ValueError as exc:
        log("supervisor_config_invalid", level="error", error=str(exc))
        return EX_CONFIG
    directory = state_dir(os.environ)
    try:
        lock_fd = take_lock(directory)
    except InstanceLocked as exc:
        # The one line a second copy prints; exit 75, yet never restarted (README, "Exit codes").
        log("instance_locked", level="error", error=str(exc), exit_code=EX_TEMPFAIL)
        return EX_TEMPFAIL
    handed = ["--lock-fd", str(lock_fd)] if lock_fd is not None else []
    command = [sys.executable, "-m", "spotify_logger", "run", *handed, *argv]
    return Supervisor(command, policy, lock_fd=lock_fd, refused=directory / REFUSED_FILE).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
