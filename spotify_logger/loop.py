"""The polling loop: API body -> Snapshot -> PlayTracker -> Writer, then sleep on the stop event."""

from __future__ import annotations

import threading
import time
from typing import Callable, Protocol

from .api import SpotifyClient
from .batch import Batch
from .errors import ApiError, Forbidden, RateLimited
from .extract import extract
from .logs import get_logger
from .openplay import OpenPlayMirror
from .schedule import Schedule
from .tracker import PlayTracker
from .writer import Writer

log = get_logger(__name__)

# Far below the unit's WatchdogSec, so long waits never starve the watchdog.
WATCHDOG_SLICE_S = 10.0
COOLDOWN_RECHECK_S = 60.0


class PollHook(Protocol):
    """Runs after each successful poll whose write reached Redis, with the spool empty (the
    reconciler uses it to notice gaps). While plays wait in the spool, Redis does not show them,
    and a reconciliation pass would add them a second time: hooks wait until the spool is
    replayed. `previous_poll_at` is the poll the hooks last ran after."""

    def __call__(self, polled_at: float, previous_poll_at: float | None) -> None: ...


class Poller:
    def __init__(self, client: SpotifyClient, tracker: PlayTracker, writer: Writer, schedule: Schedule, *,
                 stop: threading.Event, clock: Callable[[], float] = time.time,
                 on_progress: Callable[[], None] = lambda: None,
                 after_poll: list[PollHook] | None = None, mirror: OpenPlayMirror | None = None) -> None:
        self.client = client
        self.tracker = tracker
        self.writer = writer
        self.schedule = schedule
        self.stop = stop
        self.clock = clock
        self.on_progress = on_progress
        self.after_poll = after_poll or []
        self.mirror = mirror
        writer.on_progress = on_progress  # a long spool replay is progress too
        if mirror is not None:
            # The spool holds only what changed: the full state it builds on goes to disk first.
            writer.on_spool_start = lambda: mirror.save(self.tracker.open, durable=True)
        self.hooks_ran_at: float | None = None
        # Held while a batch is written, so a warm shutdown can wait for the write to finish.
        self.write_lock = threading.Lock()

    def run(self) -> None:
        while not self.stop.is_set():
            delay = self.poll_once()
            self.wait(delay)

    def wait(self, seconds: float) -> None:
        """A deliberate wait (schedule, backoff, cooldown) in slices, each one progress for the
        watchdog. Only this thread feeds it, so a hung HTTP call or write starves it, as it should."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.stop.wait(min(left, WATCHDOG_SLICE_S)):
                return
            self.on_progress()

    def poll_once(self) -> float:
        try:
            body = self.client.player()
        except RateLimited as exc:
            # A cooldown is progress too: the watchdog must not kill a poller that waits politely.
            self.on_progress()
            # Capped, so the wall-clock deadline is looked at again (NTP may step the clock on a Pi).
            return min(max(0.05, exc.until - self.clock()), COOLDOWN_RECHECK_S)
        except Forbidden:
            raise
        except ApiError as exc:
            log.warning("poll_failed", error=str(exc), status=exc.status)
            self.on_progress()
            return self.schedule.after_failure()
        received_at = self.clock()
        snap = extract(body)  # Snapshot() for a 204
        before = self.tracker.open.started_at if self.tracker.open else None
        batch = self.tracker.observe(snap, int(received_at * 1000))
        with self.write_lock:
            if self.mirror is not None:
                # Before the write: a crash in between must not leave a mirror behind Redis,
                # which a restart would continue as a second copy of the new play.
                self.mirror.follow(self.tracker.open)
            landed = self.writer.write(batch)
        changed = _log_changes(batch, before, self.tracker)
        log.debug("poll_ok", playing=snap.is_playing, kind=snap.kind, progress_ms=snap.progress_ms)
        self.on_progress()
        if landed:  # True only once the spool was replayed: see PollHook
            previous, self.hooks_ran_at = self.hooks_ran_at, received_at
            for hook in self.after_poll:
                hook(received_at, previous)
        return self.schedule.after_poll(snap, changed)


def _log_changes(batch: Batch, before: int | None, tracker: PlayTracker) -> bool:
    for write in batch.writes:
        if "ended_at" in write.fields:
            log.info("play_finished", uri=write.uri, started_at=write.started_at,
                     ms_played=write.fields.get("ms_played"), counted=write.counted)
    after = tracker.open
    if after is not None and after.started_at != before:
        log.info("play_started", uri=after.uri, name=after.item.get("name"), started_at=after.started_at)
    return (after.started_at if after else None) != before
