"""When to poll next. Each rule is a small function of what the last poll saw.

Spending fewer calls matters: Spotify counts them per app over a rolling 30 s window, and a
penalty can last hours. So a playing track is polled near its expected end (capped so that a
skip is seen soon), and an idle or paused player is polled less and less often.
"""

from __future__ import annotations

from dataclasses import dataclass

from .extract import Snapshot

# Aim a little past the expected end so that the next poll sees the next item, not the tail.
END_SLACK_S = 1.0


@dataclass
class Schedule:
    interval: float        # the minimum, and the pace right after a change
    max_interval: float    # the longest gap, playing or idle
    _quiet_polls: int = 0
    _failures: int = 0

    def after_poll(self, snap: Snapshot, changed: bool) -> float:
        self._failures = 0
        if snap.recordable and snap.is_playing:
            self._quiet_polls = 0
            return self.interval if changed else self._near_end(snap)
        # Idle, paused, an ad or a private session: back off step by step.
        self._quiet_polls = 0 if changed else self._quiet_polls + 1
        return self._backoff(self._quiet_polls)

    def after_failure(self) -> float:
        self._failures += 1
        return self._backoff(self._failures)

    def _near_end(self, snap: Snapshot) -> float:
        if snap.duration_ms is None or snap.progress_ms is None:
            return self.interval
        remaining = (snap.duration_ms - snap.progress_ms) / 1000 + END_SLACK_S
        return min(max(remaining, self.interval), self.max_interval)

    def _backoff(self, step: int) -> float:
        return min(self.interval * (2 ** min(step, 16)), self.max_interval)
