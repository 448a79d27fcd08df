"""Play tracking: turns a stream of player snapshots into plays. Pure: no I/O, no clock.

A play is one continuous listen of one item. Each observe() returns the Batch of writes that
bring the store up to date; the store makes them idempotent, so the tracker never has to know
whether an earlier batch landed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from . import keys
from .batch import Batch, PlayWrite
from .extract import RedisValue, Snapshot, redis_convert

# A progress that goes back by less than this is jitter, not the same item starting over.
_JITTER_MS = 1_000
# How far past "could have restarted since the last poll" a progress may be and still count
# as a fresh start of the same uri (repeat), given request latency.
_RESTART_SLACK_MS = 2_000


@dataclass
class OpenPlay:
    started_at: int
    last_seen_at: int
    progress_ms: int
    ms_played: int
    playing: bool
    last_playing_at: int
    counted: bool
    uri: str
    duration_ms: int | None
    item: dict[str, Any] = field(default_factory=dict)
    stopped_seen_at: int | None = None
    in_private_session: bool = False
    written: dict[str, RedisValue] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, started_at: int, h: Mapping[str, str]) -> "OpenPlay | None":
        """Rebuild the open play a previous process left in Redis, so it continues."""
        try:
            last_seen = int(h["last_seen_at"])
            duration = h.get("duration_ms")
            return cls(
                started_at=started_at, last_seen_at=last_seen,
                progress_ms=int(h.get("progress_ms", 0)), ms_played=int(h.get("ms_played", 0)),
                playing=h.get("playing") == "1", last_playing_at=last_seen,
                counted=h.get("counted") == "1", uri=h["uri"],
                duration_ms=int(duration) if duration else None,
                item={"artists": _json_list(h.get("artists"))}, written=dict(h),
            )
        except (KeyError, ValueError):
            return None


def _json_list(raw: str | None) -> list[str]:
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


class PlayTracker:
    def __init__(self, *, min_play_ms: int, end_grace_ms: int, restored: OpenPlay | None = None) -> None:
        self.min_play_ms = min_play_ms
        self.end_grace_ms = end_grace_ms
        self.open: OpenPlay | None = restored
        self._last_poll_at: int | None = restored.last_seen_at if restored else None
        self._floor = 0  # a new play may not start before the last finished play ended

    def observe(self, snap: Snapshot, now_ms: int) -> Batch:
        # Time never runs backwards here, even when the wall clock steps back (NTP): the store
        # would take the earlier timestamps for stale replays and drop them.
        if self._last_poll_at is not None:
            now_ms = max(now_ms, self._last_poll_at)
        prev_poll, self._last_poll_at = self._last_poll_at, now_ms
        writes: list[PlayWrite] = []
        if snap.recordable:
            self._observe_recordable(snap, now_ms, prev_poll, writes)
        elif self.open is not None:
            self._observe_other(snap, now_ms, writes)
        current = self.open.started_at if self.open else None
        return Batch(polled_at=now_ms, writes=tuple(writes), current=current)

    def _observe_recordable(self, snap: Snapshot, now: int, prev_poll: int | None, writes: list[PlayWrite]) -> None:
        progress = snap.progress_ms or 0
        op = self.open
        if op is not None and op.uri == snap.uri and not self._started_over(op, progress, now):
            self._advance(op, snap, now)
            writes.extend(self._write(op))
            return
        started_at = max(now - progress, self._floor)
        if op is not None:
            started_at = max(started_at, op.started_at + 1)
            # Out of a private session, the old play ended where we last saw it, not where the
            # next began: the time between was private.
            writes.extend(self._finish(op, ended_at=op.last_seen_at if op.in_private_session else started_at))
        bound = now - prev_poll if prev_poll is not None else (progress if snap.is_playing else 0)
        self.open = OpenPlay(
            started_at=started_at, last_seen_at=now, progress_ms=progress,
            ms_played=max(0, min(progress, bound)), playing=snap.is_playing, last_playing_at=now,
            counted=False, uri=snap.uri or "", duration_ms=snap.duration_ms, item=snap.item_fields(),
        )
        writes.extend(self._write(self.open))

    def _observe_other(self, snap: Snapshot, now: int, writes: list[PlayWrite]) -> None:
        """Nothing recordable is loaded: 204, an ad, a private session, an unknown item."""
        op = self.open
        assert op is not None
        if snap.private_session:
            natural_end = self._reached_end(op, by=now)
            if natural_end is not None:
                # It had time to reach its natural end before the private session began.
                writes.extend(self._finish(op, ended_at=natural_end))
                return
            # Otherwise the session may be this very item carrying on in private: a pause as far
            # as the log goes. Nothing heard in it is credited, and if the item carries on
            # afterwards, it is still one listen.
            op.playing = False
            op.in_private_session = True
        elif snap.kind is not None and snap.is_playing:
            # An ad or an unknown item plays: the play ended when it began, and not before we
            # last saw the play itself.
            ended_at = min(now, max(op.last_seen_at, now - (snap.progress_ms or 0)))
            writes.extend(self._finish(op, ended_at=ended_at))
            return
        if op.stopped_seen_at is None:
            op.stopped_seen_at = now
        if now - op.last_playing_at > self.end_grace_ms:
            writes.extend(self._finish(op, ended_at=self._natural_end(op)))

    def _started_over(self, op: OpenPlay, progress: int, now: int) -> bool:
        went_back = progress < op.progress_ms - _JITTER_MS
        could_restart = progress <= (now - op.last_seen_at) + _RESTART_SLACK_MS
        return went_back and could_restart

    def _advance(self, op: OpenPlay, snap: Snapshot, now: int) -> None:
        progress = snap.progress_ms or 0
        delta = progress - op.progress_ms
        # Bounded by wall-clock time so that a seek forward is not counted as listening. Coming
        # out of a private session, the progress made in it is not listening we may record.
        if delta > 0 and (op.playing or snap.is_playing) and not op.in_private_session:
            op.ms_played += min(delta, max(0, now - op.last_seen_at))
        op.in_private_session = False
        op.progress_ms = progress
        op.last_seen_at = now
        op.playing = snap.is_playing
        if snap.is_playing:
            op.last_playing_at = now
            op.stopped_seen_at = None
        op.item = snap.item_fields()
        op.duration_ms = snap.duration_ms or op.duration_ms

    @staticmethod
    def _reached_end(op: OpenPlay, *, by: int) -> int | None:
        """When a play last seen playing reached its natural end, if it had time to by then."""
        if not op.playing or op.duration_ms is None:
            return None
        remaining = op.duration_ms - op.progress_ms
        return op.last_seen_at + remaining if 0 <= remaining <= by - op.last_seen_at else None

    def _natural_end(self, op: OpenPlay) -> int:
        """Where a play that stopped unseen ended: at its natural end if it had time to reach it
        before we saw playback stopped, otherwise where we last saw it."""
        reached = None if op.stopped_seen_at is None else self._reached_end(op, by=op.stopped_seen_at)
        return op.last_seen_at if reached is None else reached

    def _finish(self, op: OpenPlay, *, ended_at: int) -> list[PlayWrite]:
        if op.playing:
            remaining = (op.duration_ms - op.progress_ms) if op.duration_ms is not None else ended_at
            op.ms_played += max(0, min(ended_at - op.last_seen_at, remaining))
        op.playing = False
        self.open = None
        # Keys stay unique and plays of one item never overlap, whatever the next play's progress says.
        self._floor = max(self._floor, ended_at + 1)
        return self._write(op, ended_at=ended_at)

    def _write(self, op: OpenPlay, *, ended_at: int | None = None) -> list[PlayWrite]:
        if not op.counted and op.ms_played >= self.min_play_ms:
            op.counted = True
        values = dict(op.item)
        values.update(
            started_at=op.started_at, last_seen_at=op.last_seen_at, ended_at=ended_at,
            ms_played=op.ms_played, progress_ms=op.progress_ms, duration_ms=op.duration_ms,
            uri=op.uri, playing=op.playing, counted=op.counted, source=keys.SOURCE_POLL,
        )
        full = redis_convert(values)
        changed = {k: v for k, v in full.items() if op.written.get(k) != str(v) and op.written.get(k) != v}
        if not changed:
            return []
        # last_seen_at always travels with a write: the store uses it to ignore stale replays.
        changed["last_seen_at"] = op.last_seen_at
        if ended_at is not None:
            # A play's last write says what it came to, even when a pause left ms_played as it
            # was: the play_finished log line reads it from here.
            changed["ms_played"] = op.ms_played
        op.written.update(full)
        artists = tuple(op.item.get("artists") or ())
        return [PlayWrite(started_at=op.started_at, fields=changed, uri=op.uri, artists=artists, counted=op.counted)]
