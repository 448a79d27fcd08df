"""The polling loop: API body -> Snapshot -> PlayTracker -> Writer, then sleep on the stop event."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

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


@dataclass(frozen=True)
class PollEvent:
    """What one successful poll tells the hooks."""

    polled_at: float
    previous_poll_at: Optional[float]  # the poll the hooks last ran after; None at start-up
    playing: bool                      # something recordable was playing
    was_playing: bool                  # ...at the previous poll the hooks saw
    gap: bool                          # polling was interrupted since (a failure, a cooldown, the budget, a suspend)


class PollHook(Protocol):
    """The poller's hooks (the reconciler uses them to notice what polling may have missed).

    `__call__` runs after each successful poll whose write reached Redis, with the spool empty.
    While plays wait in the spool, Redis does not show them, and a reconciliation pass would add
    them a second time: hooks wait until the spool is replayed. The same holds for
    `before_resume`, called when a cooldown or a deferral ends, before the poll that resumes;
    `while_deferred` is called instead of a poll while the budget holds polling back."""

    def __call__(self, event: PollEvent) -> None: ...

    def before_resume(self, now: float) -> None: ...

    def while_deferred(self, now: float) -> None: ...


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
        self._was_playing = False
        self._interrupted = False             # a poll failed, was refused or deferred since the last one
        self._resume_at: float | None = None  # when a cooldown ends: hooks run before the next poll
        self._deferred = False
        # Held while a batch is written, so a warm shutdown can wait for the write to finish.
        self.write_lock = threading.Lock()

    def run(self) -> None:
        while not self.stop.is_set():
            delay = self.poll_once()
            self.wait(delay)

    def wait(self, seconds: float) -> None:
        """A deliberate wait (schedule, backoff, cooldown) in slices, each one progress for the
        watchdog. Only this thread feeds it, so a hung HTTP call or write starves it, as it should."""
        deadline, due = time.monotonic() + seconds, self.clock() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.stop.wait(min(left, WATCHDOG_SLICE_S)):
                return
            self.on_progress()
        # The wall clock runs on while a machine is suspended (the monotonic one does not): woken
        # far later than planned, polling had a gap.
        if self.clock() - due > max(seconds, self.schedule.interval):
            self._interrupted = True

    def poll_once(self) -> float:
        held = self._hold_back()
        if held is not None:
            return held
        try:
            body = self.client.player(reserve=self.schedule.reserve())
        except RateLimited as exc:
            self._interrupted = True
            self._resume_at = exc.until
            # A cooldown is progress too: the watchdog must not kill a poller that waits politely.
            self.on_progress()
            # Capped, so the wall-clock deadline is looked at again (NTP may step the clock on a Pi).
            return min(max(0.05, exc.until - self.clock()), COOLDOWN_RECHECK_S)
        except Forbidden:
            raise
        except ApiError as exc:
            self._interrupted = True
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
        playing = snap.recordable and snap.is_playing
        if landed:  # True only once the spool was replayed: see PollHook
            previous, self.hooks_ran_at = self.hooks_ran_at, received_at
            event = PollEvent(received_at, previous, playing, self._was_playing, self._interrupted)
            self._interrupted, self._was_playing = False, playing
            for hook in self.after_poll:
                hook(event)
        return self.schedule.after_poll(snap, changed)

    def _hold_back(self) -> float | None:
        """Before a poll: while only the budget's reserve is left, wait instead (the hooks may
        spend the reserve); when a cooldown or a deferral has just ended, the hooks run first
        (the reconciler reads what the pause may have hidden before polling resumes)."""
        defer = self.schedule.defer_s()
        now = self.clock()
        if defer > 0:
            if not self._deferred:
                log.warning("poll_deferred", reason="budget_reserve", wait_s=round(defer, 1))
            self._deferred = self._interrupted = True
            if self.writer.flush():
                for hook in self.after_poll:
                    hook.while_deferred(now)
            self.on_progress()
            return min(defer, COOLDOWN_RECHECK_S)
        resuming = self._deferred or (self._resume_at is not None and now >= self._resume_at)
        if resuming and self.writer.flush():
            if self._deferred:
                log.info("poll_resumed", reason="budget_reserve")
            self._deferred, self._resume_at = False, None
            for hook in self.after_poll:
                hook.before_resume(now)
        return None


def _log_changes(batch: Batch, before: int | None, tracker: PlayTracker) -> bool:
    for write in batch.writes:
        if "ended_at" in write.fields:
            log.info("play_finished", uri=write.uri, started_at=write.started_at,
                     ms_played=write.fields.get("ms_played"), counted=write.counted)
    after = tracker.open
    if after is not None and after.started_at != before:
        log.info("play_started", uri=after.uri, name=after.item.get("name"), started_at=after.started_at)
    return (after.started_at if after else None) != before
