"""Backfill: read /me/player/recently-played and reconcile it into Redis (see reconcile.py).

The feed keeps only the last 50 plays, so the reconciler runs often enough (ReconcileHook says
when) that it rarely overflows, and records a gap when it may have. The cursor is the newest played_at seen; every pass re-reads a few hours before it
because offline devices report their plays late, with older timestamps.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import redis

from . import keys
from .api import SpotifyClient
from .batch import Batch
from .errors import ApiError, AuthError, Forbidden, SpotifyLoggerError, StoreUnavailable
from .logs import get_logger
from .loop import PollEvent
from .playscan import scan_plays
from .reconcile import MATCH_SLACK_MS, STORED_FIELDS, Outcome, RecentItem, StoredPlay, parse_item, reconcile
from .store import Store, translate_redis_errors

log = get_logger(__name__)

FEED_SIZE = 50                     # what Spotify keeps, and the most one page may hold
REREAD_WINDOW_MS = 3 * 3600 * 1000  # items this far behind the cursor are read again
MAX_PAGES = 5                      # the feed holds 50 items; `before` pages past that are empty
LOOKBACK_MS = 6 * 3600 * 1000      # how far before the oldest item a matching play may start
RETRY_S = 60.0                     # after a failed pass, try again this soon (if the interval is longer)


@dataclass(frozen=True)
class Gap:
    """A stretch whose plays the feed no longer holds: they are lost for good."""

    start: int
    end: int
    estimated_plays: int

    def member(self) -> str:
        return json.dumps({"start": self.start, "end": self.end, "estimated_plays": self.estimated_plays},
                          separators=(",", ":"))


@dataclass
class Result:
    read: int = 0          # feed items newer than the re-read floor
    confirmed: int = 0     # stored plays newly confirmed by an item
    already: int = 0       # items bound to their play by an earlier pass
    added: list[dict[str, Any]] = field(default_factory=list)  # new plays: started_at, played_at, uri, name, artists
    cursor: int | None = None
    gap: Gap | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Reconciler:
    def __init__(self, client: SpotifyClient, store: Store, *, reread_window_ms: int = REREAD_WINDOW_MS) -> None:
        self.client = client
        self.store = store
        self.reread_window_ms = reread_window_ms

    def run_once(self) -> Result:
        """One pass. Raises ApiError or StoreUnavailable; a failed pass leaves the cursor as it
        was, so the next pass reads the same items again."""
        with translate_redis_errors():
            raw_cursor = self.store.redis.get(keys.RECENT_CURSOR)
        cursor = int(raw_cursor) if raw_cursor and raw_cursor.isdigit() else None
        floor = cursor - self.reread_window_ms if cursor is not None else None
        items, exhausted = self._fetch(floor)
        result = Result(read=len(items), cursor=cursor)
        if not items:
            log.info("reconcile_done", read=0, added=0, confirmed=0, already=0, cursor=cursor)
            return result
        stored = self._stored_plays(items)
        outcome = reconcile(items, stored)
        self._apply(outcome)
        result.confirmed, result.already = len(outcome.confirm), outcome.already
        result.added = [
            {"started_at": s, "played_at": i.played_at, "uri": i.uri, "name": i.fields.get("name"),
             "artists": list(i.artists)}
            for s, i in outcome.create
        ]
        newest = max(i.played_at for i in items)
        result.cursor = newest if cursor is None else max(cursor, newest)
        if exhausted:
            result.gap = self._gap(items, cursor)
        self._save(result)
        log.info("reconcile_done", read=result.read, added=len(result.added), confirmed=result.confirmed,
                 already=result.already, cursor=result.cursor)
        return result

    def _fetch(self, floor: int | None) -> tuple[list[RecentItem], bool]:
        """Items newer than `floor`, walking `before` cursors. The flag says the walk never
        reached the floor (the feed ran out, or MAX_PAGES): older plays may be missing."""
        items: list[RecentItem] = []
        before: int | None = None
        for _ in range(MAX_PAGES):
            page = self.client.recently_played(limit=FEED_SIZE, before=before)
            raw = page.get("items") if isinstance(page, dict) else None
            raw = raw if isinstance(raw, list) else []
            parsed = [i for i in (parse_item(r) for r in raw) if i is not None]
            items.extend(i for i in parsed if floor is None or i.played_at > floor)
            if not parsed:
                break
            oldest = min(i.played_at for i in parsed)
            if floor is not None and oldest <= floor:
                return items, False
            if not page.get("next"):
                break
            before = oldest
        return items, True

    def _stored_plays(self, items: list[RecentItem]) -> list[StoredPlay]:
        since = min(i.played_at for i in items) - LOOKBACK_MS
        until = max(i.played_at for i in items) + MATCH_SLACK_MS + 1
        plays = (StoredPlay.from_hash(s, h)
                 for s, h in scan_plays(self.store.redis, STORED_FIELDS, since_ms=since, until_ms=until))
        return [p for p in plays if p is not None]

    def _apply(self, outcome: Outcome) -> None:
        writes = outcome.writes()
        if writes:
            self.store.apply(Batch.not_a_poll(writes))

    def _gap(self, items: list[RecentItem], cursor: int | None) -> Gap | None:
        """The stretch between what we knew and the oldest item, when a full feed cannot reach
        back to it. What we knew ends at the cursor or at the last stored play before the oldest
        item, whichever is later: the poller may have recorded while passes were failing."""
        if len(items) < FEED_SIZE:
            return None  # the feed is not full: it holds every play since it began
        oldest = min(items, key=lambda i: i.played_at)
        end = oldest.played_at - oldest.duration_ms
        known = max((k for k in (cursor, self._last_known_before(end)) if k is not None), default=None)
        if known is None or known >= end:
            return None
        newest = max(i.played_at for i in items)
        span = newest - oldest.played_at
        per_ms = (len(items) - 1) / span if span > 0 else 1 / max(oldest.duration_ms, 1)
        return Gap(start=known, end=end, estimated_plays=max(1, round((end - known) * per_ms)))

    def _last_known_before(self, end: int) -> int | None:
        # One play per read: the newest is almost always the answer.
        for started_at, h in scan_plays(self.store.redis, STORED_FIELDS, until_ms=end, reverse=True, page=1):
            play = StoredPlay.from_hash(started_at, h)
            if play is not None:
                return play.end
        return None

    def _save(self, result: Result) -> None:
        with translate_redis_errors():
            pipe = self.store.redis.pipeline(transaction=True)
            pipe.set(keys.RECENT_CURSOR, str(result.cursor))
            if result.gap is not None:
                # One gap per start: a later pass that sees the same hole replaces it.
                pipe.zremrangebyscore(keys.GAPS, result.gap.start, result.gap.start)
                pipe.zadd(keys.GAPS, {result.gap.member(): result.gap.start})
            pipe.execute()
        if result.gap is not None:
            log.warning("gap_recorded", start=result.gap.start, end=result.gap.end,
                        estimated_plays=result.gap.estimated_plays)


def recent_gaps(client: "redis.Redis[str]", limit: int = 10) -> list[dict[str, int]]:
    """The newest recorded gaps, oldest first, for `status`."""
    with translate_redis_errors():
        members = client.zrange(keys.GAPS, -limit, -1)
    out = []
    for member in members:
        try:
            gap = json.loads(member)
            out.append({k: int(gap[k]) for k in ("start", "end", "estimated_plays")})
        except (ValueError, KeyError, TypeError):
            continue
    return out


class ReconcileHook:
    """The poller's hooks (loop.PollHook): when recently-played is read.

    A pass costs a call or two of the request budget, so it runs only where plays may have gone
    unseen. A stretch can hide a whole play only when it is longer than the shortest countable
    play (`min_play_s`, MIN_PLAY_MS), so a pass runs:
    - at start-up, and after a gap in polling (a failure, a cooldown, the budget, a stall) that
      long;
    - when playback is first seen after a poll that saw none, that long ago;
    - when a cooldown or a deferral ends, before polling resumes (QUOTA_EXCEEDED can last
      hours: the feed first, and a gap recorded when it cannot reach back);
    - while the budget holds polling back, once per FEED_SIZE shortest plays (the reserve the
      schedule keeps is for these);
    - otherwise every `interval_s`, and only if something played since the last pass: a day
      on which nothing plays costs no recently-played calls after the start-up pass.
    It never raises into the poller, except for a lost authorization, which stops the poller
    anyway."""

    def __init__(self, reconciler: Reconciler, interval_s: float, *, min_play_s: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.reconciler = reconciler
        self.interval_s = interval_s
        self.min_play_s = min_play_s
        self.clock = clock
        self.passed_at: float | None = None  # the last pass that succeeded
        self.owed = True                     # a pass is due whatever else holds: start-up, or one that failed
        self.retry_at = 0.0                  # ...but not before this, after a failure
        self.played = False                  # something played since the last pass
        self.playing = False                 # ...and still plays: it goes on after a pass
        self.covered = False                 # a pass ran since the last poll (on resume or while deferred)
        self.polled_at: float | None = None  # the last poll seen

    def __call__(self, event: PollEvent) -> None:
        self.playing = event.playing
        self.played = self.played or event.playing
        previous = event.previous_poll_at
        long_stretch = previous is not None and event.polled_at - previous > self.min_play_s
        covered, self.covered, self.polled_at = self.covered, False, event.polled_at
        if self.owed:
            reason = "start" if self.passed_at is None else "retry"
        elif event.gap and long_stretch and not covered:
            reason = "poll_gap"
        elif event.playing and not event.was_playing and long_stretch:
            reason = "playback_seen"  # a whole play could have started and ended before this poll
        elif self.played and self.clock() >= (self.passed_at or 0.0) + self.interval_s:
            reason = "interval"
        else:
            return
        self._run(reason)

    def before_resume(self, now: float) -> None:
        if self.polled_at is None or now - self.polled_at > self.min_play_s:
            self.covered = self._run("resume") or self.covered

    def while_deferred(self, now: float) -> None:
        if self.passed_at is None or now - self.passed_at >= FEED_SIZE * self.min_play_s:
            self.covered = self._run("deferred") or self.covered

    def _run(self, reason: str) -> bool:
        now = self.clock()
        if self.owed and now < self.retry_at:
            return False
        log.debug("reconcile_started", reason=reason)
        try:
            self.reconciler.run_once()
        except AuthError:
            raise
        except (ApiError, StoreUnavailable) as exc:
            log.warning("reconcile_failed", error=str(exc), status=getattr(exc, "status", None))
            # A 403 (a token authorized without user-read-recently-played) will not pass soon.
            self._failed(now, self.interval_s if isinstance(exc, Forbidden) else min(self.interval_s, RETRY_S))
            return False
        except Exception as exc:  # noqa: BLE001 - a reconciler bug must not stop the recording
            log.error("reconcile_crashed", error=repr(exc),
                      exc_info=not isinstance(exc, SpotifyLoggerError))
            self._failed(now, self.interval_s)
            return False
        self.passed_at, self.owed, self.played = self.clock(), False, self.playing
        return True

    def _failed(self, now: float, retry_s: float) -> None:
        self.owed, self.retry_at = True, now + retry_s
