"""When to poll next. Each rule is a small function of what the last poll saw.

Spending fewer calls matters: Spotify counts them per app over a rolling 30 s window, and a
penalty can last hours. So a playing track is polled near its expected end (capped so that a
skip is seen soon), and an idle or paused player is polled less and less often.

Accuracy does not depend on polling often: a play ends where the next one began (the tracker
works that out from the next item's progress), so a late poll still gives the right ms_played.
What a long gap can miss is a whole play shorter than the gap; with MAX_POLL_INTERVAL no longer
than MIN_PLAY_MS, such a play is too short to count anyway (and backfill covers the rest).
"""

from __future__ import annotations

from dataclasses import dataclass

from .extract import Snapshot

# Aim a little past the expected end so that the next poll sees the next item, not the tail
# of this one. A fraction of the interval (1 s at the default 5 s) keeps the rule the same
# when every duration is scaled down, as in tests and bench/api_budget.py.
END_SLACK_FRACTION = 0.2
# 2 ** 16 intervals is far past any sensible max_interval: stop doubling there.
_MAX_DOUBLINGS = 16


@dataclass
class Schedule:
    interval: float        # the minimum, and the pace right after a change
    max_interval: float    # the longest gap, playing or idle
    _quiet_polls: int = 0
    _failures: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.interval <= self.max_interval:
            raise ValueError("Schedule needs 0 < interval <= max_interval")

    def after_poll(self, snap: Snapshot, changed: bool) -> float:
        """Seconds until the next poll, given what this poll saw and whether the play changed."""
        self._failures = 0
        if snap.recordable and snap.is_playing:
            self._quiet_polls = 0
            # Right after a change, look again soon: skipping through tracks is common.
            return self.interval if changed else self._near_end(snap)
        # Idle, paused, an ad or a private session: back off step by step.
        self._quiet_polls = 0 if changed else self._quiet_polls + 1
        return self._backoff(self._quiet_polls)

    def after_failure(self) -> float:
        self._failures += 1
        return self._backoff(self._failures)

    def _near_end(self, snap: Snapshot) -> float:
        if snap.duration_ms is None or snap.progress_ms is None:
            # No expected end to aim at: the longest gap, which still sees a skip soon enough.
            return self.max_interval
        remaining = max(0, snap.duration_ms - snap.progress_ms) / 1000
        return self._bounded(remaining + self.interval * END_SLACK_FRACTION)

    def _backoff(self, step: int) -> float:
        return self._bounded(self.interval * (2 ** min(step, _MAX_DOUBLINGS)))

    def _bounded(self, delay: float) -> float:
        return min(max(delay, self.interval), self.max_interval)
