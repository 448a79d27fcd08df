"""When to poll next. Each rule is a small function of what the last poll saw and of the budget.

Spotify's development-mode quota (about a thousand calls a day for the whole app) is what the
schedule spends, so every call has to buy recall:
- while something plays: one poll right after a change (skipping through tracks is common) and
  one near the item's expected end. Between them the gap is capped by MAX_POLL_INTERVAL while
  the budget has room, and by the budget's pace when it has less: the calls left, minus the
  reserve, spread over a window. No poll waits past the expected end: the cap only adds polls
  before it in long items (an episode), and a tight budget stretches it as far as that end.
- idle or paused: back off step by step up to IDLE_MAX_INTERVAL (or the pace, if longer).
- the poller never spends the reserve: those calls are the recently-played passes' (see
  `reserve_for`), and with only the reserve left polling waits until the window frees a call.

Accuracy does not depend on polling often: a play ends where the next one began (the tracker
works that out from the next item's progress), so a late poll costs accuracy only when two or
more items start between polls. What a long gap can hide is a whole play; recently-played
(backfill.ReconcileHook) is called for exactly those stretches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

from .extract import Snapshot

# Aim a little past the expected end so that the next poll sees the next item, not the tail
# of this one. A fraction of the interval (1 s at the default 5 s) keeps the rule the same
# when every duration is scaled down, as in tests and the bench scripts.
END_SLACK_FRACTION = 0.2
# 2 ** 16 intervals is far past any sensible max_interval: stop doubling there.
_MAX_DOUBLINGS = 16
FEED_SIZE = 50        # recently-played holds the last 50 plays (backfill.FEED_SIZE)
CALLS_PER_PASS = 2    # a pass over a full feed reads one page, then learns from a second that it is all


class BudgetView(Protocol):
    """What the schedule reads of the request budget (budget.BudgetView has these and more)."""

    @property
    def limit(self) -> int: ...
    @property
    def calls_left(self) -> int: ...
    @property
    def window_s(self) -> float: ...
    @property
    def next_free_in_s(self) -> float: ...


BudgetGauge = Callable[[], BudgetView]


def reserve_for(view: BudgetView, shortest_play_s: float) -> int:
    """Calls the poller leaves to recently-played, so that no stretch holds more than 50 plays
    nobody read.

    The feed keeps the last FEED_SIZE plays, so a stretch with no poll holds more than it can
    list only after FEED_SIZE plays of at least `shortest_play_s` (the feed lists nothing
    shorter than 30 s, the default MIN_PLAY_MS): FEED_SIZE * shortest_play_s = 25 minutes at
    the defaults. A pass every such stretch, for a whole window, is
        ceil(window_s / (FEED_SIZE * shortest_play_s)) * CALLS_PER_PASS
    calls: ceil(86400 / 1500) * 2 = 116 of the default 1000 a day. A rolling window frees a
    call at most `window_s` after it was spent, so with those calls held back recently-played
    can always run often enough, even when everything else was spent at once. Never more than
    half the limit, so that a small budget still polls.
    """
    shortest = max(shortest_play_s, 0.001)  # MIN_PLAY_MS may be 0
    passes = math.ceil(view.window_s / (FEED_SIZE * shortest))
    return max(0, min(passes * CALLS_PER_PASS, view.limit // 2))


@dataclass
class Schedule:
    interval: float        # the minimum, and the pace right after a change
    max_interval: float    # the longest gap while playing (and after failures) while the budget has room
    idle_max_interval: Optional[float] = None  # the longest gap idle or paused; None: max_interval
    budget: Optional[BudgetGauge] = None       # None: no budget (tests, and the schedule before one)
    shortest_play_s: float = 30.0              # the shortest play the reserve must cover (MIN_PLAY_MS)
    _quiet_polls: int = 0
    _failures: int = 0
    _seen: Optional[BudgetView] = None  # the view defer_s() read before this poll: one read a poll

    def __post_init__(self) -> None:
        if self.idle_max_interval is None:
            self.idle_max_interval = self.max_interval
        if not 0 < self.interval <= min(self.max_interval, self.idle_max_interval):
            raise ValueError("Schedule needs 0 < interval <= max_interval and idle_max_interval")

    def after_poll(self, snap: Snapshot, changed: bool) -> float:
        """Seconds until the next poll, given what this poll saw and whether the play changed."""
        self._failures = 0
        pace = self.pace()
        if snap.recordable and snap.is_playing:
            self._quiet_polls = 0
            # Right after a change, look again soon: skipping through tracks is common.
            return self.interval if changed else self._near_end(snap, max(self.max_interval, pace))
        # Idle, paused, an ad or a private session: back off step by step. A change restarts the
        # backoff only while something plays (an ad, a private session: someone is there); a
        # play that closed after END_GRACE with nothing playing is no reason to look sooner.
        self._quiet_polls = 0 if changed and snap.is_playing else self._quiet_polls + 1
        return self._backoff(self._quiet_polls, max(self._idle_max, pace))

    def after_failure(self) -> float:
        self._failures += 1
        return self._backoff(self._failures, max(self.max_interval, self.pace()))

    def defer_s(self) -> float:
        """0 when a poll may go now; otherwise how long to wait because only the reserve is left
        (until the window frees a call, or at least one interval)."""
        view = self._seen = self._view()
        if view is None or view.calls_left > reserve_for(view, self.shortest_play_s):
            return 0.0
        return max(self.interval, view.next_free_in_s)

    def reserve(self) -> int:
        """The reserve as of the view defer_s() read: what the poll's own spend must leave over
        (the budget checks it atomically, should another process have spent meanwhile)."""
        view = self._seen
        return 0 if view is None else reserve_for(view, self.shortest_play_s)

    def pace(self) -> float:
        """The gap at which the calls left, minus the reserve, would last a whole window: a spent
        call counts until `window_s` after it, so that is the time they must cover. 0 without a
        budget. Never longer than the stretch the feed can cover (FEED_SIZE shortest plays), so a
        nearly spent budget still looks in that often; with only the reserve left, defer_s()
        holds polling back instead."""
        view, self._seen = self._seen or self._view(), None
        if view is None:
            return 0.0
        spendable = view.calls_left - reserve_for(view, self.shortest_play_s)
        longest = FEED_SIZE * max(self.shortest_play_s, 0.001)
        return min(view.window_s / spendable, longest) if spendable > 0 else longest

    @property
    def _idle_max(self) -> float:
        assert self.idle_max_interval is not None  # set by __post_init__
        return self.idle_max_interval

    def _view(self) -> BudgetView | None:
        return None if self.budget is None else self.budget()

    def _near_end(self, snap: Snapshot, cap: float) -> float:
        if snap.duration_ms is None or snap.progress_ms is None:
            # No expected end to aim at: the longest gap, which still sees a skip soon enough.
            return self._bounded(cap, cap)
        remaining = max(0, snap.duration_ms - snap.progress_ms) / 1000
        return self._bounded(remaining + self.interval * END_SLACK_FRACTION, cap)

    def _backoff(self, step: int, cap: float) -> float:
        return self._bounded(self.interval * (2 ** min(step, _MAX_DOUBLINGS)), cap)

    def _bounded(self, delay: float, cap: float) -> float:
        return min(max(delay, self.interval), cap)
