"""`spotify-logger run`: wires the parts together and owns the process lifecycle.

Shutdown is warm, then cold (as in rq): the first SIGTERM/SIGINT sets the stop event, the
loop finishes the write in hand and the process exits 0 within about 2 s; a second signal
exits at once. Signal handlers only set events; the poller thread polls, and the main thread
waits for it, then for the write in hand.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Callable

import redis

from .api import SpotifyClient
from .httpsession import make_session
from .auth import Authenticator
from .backfill import ReconcileHook, Reconciler
from .budget import RequestBudget
from .config import Settings
from .cooldown import Cooldown
from .errors import EX_OK, EX_SOFTWARE, ConfigError, InvalidGrant, SpotifyLoggerError, StoreUnavailable
from .instancelock import InstanceLock
from .lease import Lease, LeasedStore, lease_ttl_s
from .logs import get_logger
from .loop import Poller, PollHook
from .notify import Notifier
from .openplay import OpenPlayMirror
from .schedule import BudgetGauge, Schedule
from .spool import Spool
from .store import Store, connect
from .tokenstore import TokenStore
from .tracker import OpenPlay, PlayTracker
from .writer import Writer

log = get_logger(__name__)

WARM_SHUTDOWN_S = 1.5
STARTUP_REDIS_WAIT_S = 10.0


@dataclass
class Parts:
    """Everything a poller needs, built from Settings; commands like backfill reuse it."""

    settings: Settings
    store: Store
    auth: Authenticator
    cooldown: Cooldown
    client: SpotifyClient
    writer: Writer
    stop: threading.Event
    mirror: OpenPlayMirror
    budget: RequestBudget

    @classmethod
    def build(cls, settings: Settings, stop: threading.Event | None = None, *,
              redis_client: "redis.Redis[str] | None" = None, lease: Lease | None = None) -> "Parts":
        """With a lease, every write renews it first (the poller's); without, writes are plain."""
        settings.require_client_id()
        stop = stop or threading.Event()
        tokens = TokenStore(settings.token_file)
        tokens.load()  # fail fast, before any network: missing, damaged or world-readable
        client = redis_client if redis_client is not None else connect(settings.redis_url)
        store = Store(client) if lease is None else LeasedStore(client, lease)
        session = make_session()
        auth = Authenticator(settings, tokens, session)
        cooldown = Cooldown.in_state_dir(settings.state_dir, redis_client=store.redis, client_id=settings.client_id)
        cooldown.load()  # a deadline from an earlier run, or from the poller, still holds
        # One budget per client id, shared through Redis by every process and account of the app.
        budget = RequestBudget(settings, store.redis, settings.state_dir, cooldown=cooldown)
        auth.budget = budget
        client = SpotifyClient(settings, auth, cooldown, session=session, stop=stop, budget=budget)
        mirror = OpenPlayMirror.in_state_dir(settings.state_dir)
        # The mirror is the base a play Redis lost is restated from (writer.py).
        writer = Writer(store, Spool.in_state_dir(settings.state_dir), base=mirror.load)
        return cls(settings, store, auth, cooldown, client, writer, stop, mirror, budget)

    def poller(self, *, restored: OpenPlay | None = None, hooks: list[PollHook] | None = None,
               on_progress: Callable[[], None] = lambda: None, budget: BudgetGauge | None = None) -> Poller:
        """The poll loop over these parts, wired as the daemon runs it (the demo and the
        benchmarks use it too, so they measure and show the real thing). It paces itself by
        the request budget, or by `budget` (a test's stand-in)."""
        s = self.settings
        budget = budget or self.budget.last_view  # no I/O: the poll's own spend brings it up to date
        tracker = PlayTracker(min_play_ms=s.min_play_ms, end_grace_ms=int(s.end_grace_s * 1000), restored=restored)
        schedule = Schedule(s.poll_interval, s.max_poll_interval, s.idle_max_interval, budget=budget,
                            shortest_play_s=s.min_play_ms / 1000)
        return Poller(self.client, tracker, self.writer, schedule,
                      stop=self.stop, on_progress=on_progress, after_poll=hooks, mirror=self.mirror)

    def reconcile_hook(self) -> ReconcileHook:
        """recently-played as the poller's safety net (backfill.ReconcileHook says when)."""
        s = self.settings
        return ReconcileHook(Reconciler(self.client, self.store), s.reconcile_interval_s,
                             min_play_s=s.min_play_ms / 1000)


class Signals:
    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.abort = threading.Event()
        self.requested = threading.Event()  # a signal, not a crash, stopped the poller

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # RUNNING -> STOPPING on the first signal, STOPPING -> ABORT on the second.
        self.requested.set()
        (self.abort if self.stop.is_set() else self.stop).set()


def run(settings: Settings, *, lock_fd: int | None = None) -> int:
    """`lock_fd` is the state dir's lock, taken by run.py (see instancelock.py)."""
    # Before anything reads the state dir or Redis: a second copy must not replay the spool,
    # restore the open play or log as if it were recording.
    lock = InstanceLock.take(settings.state_dir, inherited_fd=lock_fd)
    client = connect(settings.redis_url)
    ttl = lease_ttl_s(settings)
    lease = Lease(client, instance_id=lock.instance_id(), pid=os.getpid(), host=socket.gethostname(),
                  state_dir=str(settings.state_dir.resolve()), ttl_s=ttl)
    finished = True  # False while the poller thread may still write
    try:
        try:
            lease.hold()
        except StoreUnavailable:
            pass  # Redis is down: the first write that reaches it takes the lease (LeasedStore)
        code, finished = _run(settings, client, lease, ttl)
        return code
    finally:
        if lease.refused:
            lock.mark_refused(lease.refused)  # this exit 75 is final: see instancelock.py
        elif finished:
            lease.release()  # another poller may start at once; after a SIGKILL, after the TTL


def _run(settings: Settings, client: "redis.Redis[str]", lease: Lease, ttl: float) -> tuple[int, bool]:
    """The poller until it stops: its exit code, and whether its thread has finished."""
    notifier = Notifier()
    stop = threading.Event()
    signals = Signals(stop)
    signals.install()
    parts = Parts.build(settings, stop, redis_client=client, lease=lease)
    hooks: list[PollHook] = [parts.reconcile_hook()]
    poller = parts.poller(restored=_restore(parts, stop), hooks=hooks, on_progress=notifier.watchdog)
    tracker = poller.tracker
    outcome: list[int] = []
    worker = threading.Thread(target=_work, args=(poller, stop, outcome), name="poller", daemon=True)
    log.info("poller_started", api_url=settings.api_url, poll_interval=settings.poll_interval,
             restored_play=tracker.open.started_at if tracker.open else None, lease_ttl_s=ttl)
    worker.start()
    notifier.ready()
    # Poll with join() rather than stop.wait(): the signal handler runs in this thread and sets
    # the same event, which must never find its lock held by the code it interrupted.
    while worker.is_alive() and not stop.is_set():
        worker.join(0.25)
    if signals.requested.is_set():
        # Only on a requested stop: STOPPING=1 after a crash would make systemd treat the
        # service as stopping while run.py restarts the child.
        notifier.stopping()
    deadline = time.monotonic() + WARM_SHUTDOWN_S
    while worker.is_alive() and not signals.abort.is_set() and time.monotonic() < deadline:
        worker.join(0.05)
    if worker.is_alive() and not signals.abort.is_set():
        # Still inside an HTTP call, or a write: let a write finish, abandon a request.
        poller.write_lock.acquire(timeout=0.4)
    code = outcome[0] if outcome else EX_OK
    log.info("poller_stopped", exit_code=code, cold=signals.abort.is_set())
    return code, not worker.is_alive()


def _restore(parts: Parts, stop: threading.Event) -> OpenPlay | None:
    """Replay any spool, then pick up the play a previous process left open. Redis is the source
    of truth; only when it cannot be read does the state dir (mirror and spool) stand in."""
    deadline = time.monotonic() + STARTUP_REDIS_WAIT_S
    while not parts.store.ping():
        if time.monotonic() > deadline or stop.is_set():
            return _restore_offline(parts)
        time.sleep(0.2)  # not stop.wait(): this is the signal handler's thread (see run())
    try:
        parts.store.check_keys(parts.settings.client_id)  # a foreign key is exit 78 now, not at the first write that meets it
    except StoreUnavailable:
        return _restore_offline(parts)
    if not parts.writer.flush():
        return _restore_offline(parts)
    try:
        found = parts.store.load_current()
    except ConfigError:
        raise  # a foreign key at listening:current: exit 78, not a restart without the open play
    except SpotifyLoggerError:
        return _restore_offline(parts)
    return OpenPlay.from_hash(*found) if found else None


def _restore_offline(parts: Parts) -> OpenPlay | None:
    """The open play from the state dir: the mirror's full state, with the spooled writes since
    on top. Without it the first poll would open a second play a few ms from the stored one."""
    found = parts.writer.spool.open_play(base=parts.mirror.load())
    restored = OpenPlay.from_hash(*found) if found else None
    if restored is not None:
        # Redis may hold this play a little ahead of or behind the state dir (the mirror lags
        # between saves; a crash can come between a save and its write): the next write
        # restates the whole play, not only what changed since.
        restored.written = {}
    log.warning("store_unavailable_at_start",
                action="continuing the open play saved in the state dir" if restored else "polling without the open play",
                restored_play=restored.started_at if restored else None)
    return restored


def _work(poller: Poller, stop: threading.Event, outcome: list[int]) -> None:
    try:
        poller.run()
    except InvalidGrant as exc:
        outcome.append(exc.exit_code)  # the Authenticator already logged reauthorization_required
    except SpotifyLoggerError as exc:
        log.error("poller_failed", error=str(exc), exit_code=exc.exit_code)
        outcome.append(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the supervisor restarts us; say what happened first
        log.error("poller_crashed", error=repr(exc), exc_info=True)
        outcome.append(EX_SOFTWARE)
    finally:
        stop.set()
