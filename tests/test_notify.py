"""sd_notify: the protocol over a real unix datagram socket, the watchdog fed only by progress,
and what run.py and the poller tell systemd, with the sender's pid from SCM_CREDENTIALS."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import uuid
from typing import Any, Iterator

import pytest
from conftest import Proc, env_for, run_py_cmd, wait_until

from spotify_logger import loop
from spotify_logger.errors import RateLimited
from spotify_logger.loop import Poller
from spotify_logger.notify import Notifier
from spotify_logger.schedule import Schedule
from spotify_logger.simulator import Play, Script, track
from spotify_logger.tracker import PlayTracker

LONG = Script((Play(track("Notified", 60_000), 60_000),))


class NotifySocket:
    """What systemd listens on: a datagram socket that learns each sender's pid."""

    def __init__(self) -> None:
        self.name = f"@spotify-logger-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[int, str]] = []
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        space = socket.CMSG_SPACE(struct.calcsize("iII"))
        while not self._closed.is_set():
            try:
                data, ancdata, _, _ = self.sock.recvmsg(4096, space)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            pid = -1
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[: struct.calcsize("iII")])[0]
            self.messages.append((pid, data.decode()))

    def sent(self, what: str, pid: int | None = None) -> list[tuple[int, str]]:
        return [(p, m) for p, m in list(self.messages) if what in m.split("\n") and (pid is None or p == pid)]

    def wait_for(self, what: str, pid: int | None = None, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.sent(what, pid):
            assert time.monotonic() < deadline, f"no {what} from {pid}: {self.messages}"
            time.sleep(0.02)

    def close(self) -> None:
        self._closed.set()
        self.sock.close()
        self._reader.join(1)


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    assert Notifier({}).send("READY=1") is False


def test_ready_watchdog_and_stopping_reach_the_socket(notify_socket: NotifySocket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.name}, min_watchdog_gap_s=60)
    notifier.ready()
    notifier.watchdog()  # within the gap after READY (which fed it too): not sent
    notifier.stopping()
    notify_socket.wait_for("STOPPING=1")
    assert [m for _, m in notify_socket.messages] == ["READY=1\nWATCHDOG=1\nSTATUS=polling", "STOPPING=1"]
    assert {pid for pid, _ in notify_socket.messages} == {os.getpid()}


def test_a_vanished_socket_is_not_an_error(tmp_path: Any) -> None:
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).send("WATCHDOG=1") is False


class FakeClient:
    """Answers like SpotifyClient.player(): with a body, a RateLimited, or by hanging."""

    def __init__(self) -> None:
        self.hang = threading.Event()
        self.release = threading.Event()
        self.rate_limited_until: float | None = None

    def player(self, *, reserve: int = 0) -> Any:
        if self.rate_limited_until is not None:
            raise RateLimited("cooldown", until=self.rate_limited_until)
        if self.hang.is_set():
            self.release.wait(10)
        return None


def make_poller(client: FakeClient, progress: list[float], stop: threading.Event) -> Poller:
    class NullWriter:
        def write(self, batch: Any) -> bool:
            return True

    return Poller(client, PlayTracker(min_play_ms=2000, end_grace_ms=2000), NullWriter(),  # type: ignore[arg-type]
                  Schedule(0.05, 0.05), stop=stop, on_progress=lambda: progress.append(time.monotonic()))


def test_long_deliberate_waits_feed_the_watchdog_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop, "WATCHDOG_SLICE_S", 0.05)
    progress: list[float] = []
    stop = threading.Event()
    poller = make_poller(FakeClient(), progress, stop)
    poller.wait(0.5)
    assert len(progress) >= 5  # one per slice; a single stop.wait(0.5) would feed it once at most
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    poller.wait(30)
    assert time.monotonic() - started < 5  # the stop event cuts a wait short


def test_a_rate_limit_cooldown_is_progress_and_rechecked(monkeypatch: pytest.MonkeyPatch) -> None:
    progress: list[float] = []
    client = FakeClient()
    client.rate_limited_until = time.time() + 7200  # a two-hour penalty
    poller = make_poller(client, progress, threading.Event())
    assert poller.poll_once() == loop.COOLDOWN_RECHECK_S
    assert len(progress) == 1


def test_a_hung_request_starves_the_watchdog() -> None:
    progress: list[float] = []
    stop = threading.Event()
    client = FakeClient()
    poller = make_poller(client, progress, stop)
    worker = threading.Thread(target=poller.run, daemon=True)
    worker.start()
    wait_until(lambda: len(progress) >= 3, "polls that make progress to feed it", timeout=5)
    client.hang.set()
    time.sleep(0.3)  # let a poll in flight, if any, finish; the next one hangs
    fed = len(progress)
    time.sleep(0.5)
    assert len(progress) == fed, "nothing may feed the watchdog while a request hangs"
    stop.set()
    client.release.set()
    worker.join(5)


@pytest.mark.slow
def test_run_py_and_the_poller_talk_to_systemd(sim_factory, settings_for, redis_server, spawn,
                                               notify_socket: NotifySocket) -> None:
    sim = sim_factory(LONG)
    proc: Proc = spawn(run_py_cmd(), env_for(settings_for(sim, redis_server.url), NOTIFY_SOCKET=notify_socket.name,
                                               ))
    proc.wait_for("poller_started")
    child = int(proc.events("child_started")[0]["pid"])
    notify_socket.wait_for("READY=1", pid=child)
    notify_socket.wait_for("WATCHDOG=1", pid=child)
    assert not notify_socket.sent("STOPPING=1")

    assert proc.terminate() == 0
    assert notify_socket.sent("STOPPING=1", pid=child)
    assert len(notify_socket.sent("STOPPING=1", pid=proc.popen.pid)) == 1  # said once, not again on the way out


@pytest.mark.slow
def test_a_crashing_poller_never_says_stopping_and_run_py_feeds_the_backoff(
        sim_factory, settings_for, redis_server, spawn, notify_socket: NotifySocket) -> None:
    sim = sim_factory(LONG)
    # A damaged poll time fails the store script's comparison: the poller exits 70 at its first write.
    redis_server.client().hset("spotify-logger:status", "last_poll_at", "not a number")
    env = env_for(settings_for(sim, redis_server.url), NOTIFY_SOCKET=notify_socket.name,
                  SPOTIFY_LOGGER_RESTART_DELAY="0.5")
    proc: Proc = spawn(run_py_cmd(), env)
    proc.wait_for("restart_scheduled")
    notify_socket.wait_for("WATCHDOG=1", pid=proc.popen.pid)  # the deliberate wait is progress
    child = int(proc.events("child_started")[0]["pid"])
    assert notify_socket.sent("READY=1", pid=child)
    # STOPPING=1 here would make systemd stop the whole service while run.py restarts the poller.
    assert not notify_socket.sent("STOPPING=1")
    assert proc.terminate() == 0
