"""The player state as a pure function of (script, elapsed time): compiled once, never ticked.

All times here are milliseconds elapsed since the timeline started.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .script import Idle, Play, Resume, Script, Seek

Mode = Literal["playing", "paused", "idle"]


@dataclass(frozen=True)
class Span:
    """A stretch of one script iteration during which nothing changes but progress."""

    start: int
    end: int
    mode: Mode
    run: int | None  # index into Timeline.runs; None while idle
    progress: int  # at `start`
    changed_at: int  # when the state the span shows last changed (the API's `timestamp`)


@dataclass(frozen=True)
class Run:
    """One play: a Play segment plus the Pause/Resume/Seek segments that continue it."""

    play: Play
    start: int
    end: int  # when the item was replaced, the player went idle or the script ended


@dataclass(frozen=True)
class PlayerState:
    play: Play
    playing: bool
    progress_ms: int
    changed_at: int


@dataclass(frozen=True)
class EndedPlay:
    play: Play
    ended_at: int
    listened_ms: int


class Timeline:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.spans: list[Span] = []
        self.runs: list[Run] = []
        self._compile()
        self.length = self.spans[-1].end if self.spans else 0
        self._starts = [s.start for s in self.spans]
        self._listened = [self._listened_before(i, self.length) for i in range(len(self.runs))]

    def _compile(self) -> None:
        pos, progress, seeked = 0, 0, False
        run: int | None = None
        run_starts: list[tuple[Play, int]] = []
        for seg in self.script.segments:
            if isinstance(seg, Play):
                run_starts.append((seg, pos))
                run = len(run_starts) - 1
                progress = min(seg.start_ms, seg.item.duration_ms)
                self._add(pos, seg.ms, "playing", run, progress, changed=True)
                progress = min(progress + seg.ms, seg.item.duration_ms)
            elif isinstance(seg, Seek):
                assert run is not None  # Script validation guarantees a loaded item
                progress = min(seg.to_ms, run_starts[run][0].item.duration_ms)
                seeked = True
            elif isinstance(seg, Idle):
                run = None
                self._add(pos, seg.ms, "idle", None, 0, changed=True)
            else:
                assert run is not None
                mode: Mode = "playing" if isinstance(seg, Resume) else "paused"
                self._add(pos, seg.ms, mode, run, progress, changed=seeked)
                if isinstance(seg, Resume):
                    duration = run_starts[run][0].item.duration_ms
                    progress = min(progress + seg.ms, duration)
            if not isinstance(seg, Seek):
                seeked = seeked and seg.ms == 0  # a zero-length segment leaves the seek pending
                pos += seg.ms
        ends = [start for _, start in run_starts[1:]] + [pos]
        for index, (play, start) in enumerate(run_starts):
            # A run ends at the next Play or at the first Idle after it, whichever comes first.
            idle_after = [s.start for s in self.spans if s.mode == "idle" and s.start >= start]
            end = min([ends[index]] + idle_after)
            self.runs.append(Run(play, start, end))

    def _add(self, start: int, ms: int, mode: Mode, run: int | None, progress: int,
             changed: bool) -> None:
        if ms <= 0:
            return
        prev = self.spans[-1] if self.spans else None
        changed_at = start
        if prev and not changed and prev.mode == mode and prev.run == run and prev.end == start:
            # Pause after Pause or Resume while playing: same state, so the timestamp stays.
            changed_at = prev.changed_at
        self.spans.append(Span(start, start + ms, mode, run, progress, changed_at))

    def _listened_before(self, run: int, offset: int) -> int:
        """Milliseconds of the item actually heard in `run` before `offset` of an iteration."""
        duration = self.runs[run].play.item.duration_ms
        heard = 0
        for span in self.spans:
            if span.run != run or span.mode != "playing" or span.start >= offset:
                continue
            heard += min(span.progress + min(span.end, offset) - span.start, duration) \
                - span.progress
        return heard

    def _locate(self, elapsed: int, *, clamp: bool = False) -> tuple[int, int] | None:
        """(iteration, offset) for an elapsed time, or None outside the timeline; with `clamp`,
        past the end of a script that does not loop is the end of its only iteration."""
        if elapsed < 0 or self.length == 0:
            return None
        iteration, offset = divmod(elapsed, self.length)
        if iteration and not self.script.loop:
            return (0, self.length) if clamp else None
        return iteration, offset

    def state_at(self, elapsed: int) -> PlayerState | None:
        """What /me/player shows; None means nothing is loaded (the API's 204)."""
        where = self._locate(elapsed)
        if where is None:
            return None
        iteration, offset = where
        span = self.spans[bisect.bisect_right(self._starts, offset) - 1]
        if span.run is None:
            return None
        play = self.runs[span.run].play
        progress = span.progress
        if span.mode == "playing":
            progress = min(progress + offset - span.start, play.item.duration_ms)
        base = iteration * self.length
        return PlayerState(play, span.mode == "playing", progress, base + span.changed_at)

    def ended_plays(self, elapsed: int, keep: Callable[[EndedPlay], bool], limit: int,
                    cut: bool = False) -> list[EndedPlay]:
        """Plays that ended by `elapsed`, newest first, at most `limit` that `keep` accepts.

        With `cut`, a play still going on counts as ended at `elapsed` (used when the
        timeline is replaced, since the item then changes).
        """
        found: list[EndedPlay] = []
        where = self._locate(elapsed, clamp=True)
        if where is None:
            return found
        iteration, offset = where
        cut = cut and offset < self.length  # at the end of the script nothing is still going on
        full = [EndedPlay(r.play, r.end, self._listened[i]) for i, r in enumerate(self.runs)]
        # Older iterations repeat `full`; when none of it is kept they would add nothing.
        older = iteration if any(keep(p) for p in full) else 0
        for index in range(len(self.runs) - 1, -1, -1):
            run = self.runs[index]
            if run.end <= offset:
                ended = full[index]
            elif cut and run.start < offset:
                ended = EndedPlay(run.play, offset, self._listened_before(index, offset))
            else:
                continue
            ended = EndedPlay(ended.play, ended.ended_at + iteration * self.length,
                              ended.listened_ms)
            if keep(ended):
                found.append(ended)
        for back in range(older - 1, -1, -1):
            if len(found) >= limit:
                break
            base = back * self.length
            found.extend(EndedPlay(p.play, p.ended_at + base, p.listened_ms)
                         for p in reversed(full) if keep(p))
        found.sort(key=lambda p: p.ended_at, reverse=True)
        return found[:limit]
