"""Smart polling rules: Schedule.after_poll / after_failure as pure functions of what a poll saw."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from spotify_logger.extract import Snapshot
from spotify_logger.schedule import Schedule, reserve_for


def playing(progress_ms: int, duration_ms: int | None = 200_000, *, kind: str = "track",
            is_playing: bool = True, private: bool = False) -> Snapshot:
    return Snapshot(kind=kind, uri=f"spotify:{kind}:abc", progress_ms=progress_ms, duration_ms=duration_ms,
                    is_playing=is_playing, private_session=private)


IDLE = Snapshot()


@pytest.fixture
def schedule() -> Schedule:
    return Schedule(interval=5.0, max_interval=30.0)


@pytest.mark.parametrize("snap, changed, delay", [
    (playing(1_000), True, 5.0),                # a change: the normal interval
    # 12 s left: the next poll lands a fifth of an interval past the end.
    (playing(188_000), False, pytest.approx(13.0)),
    # The gap while playing is capped, so that skips are seen soon...
    (playing(10_000), False, 30.0),
    (playing(0, 3_600_000, kind="episode"), False, 30.0),  # ...even in a one-hour episode.
    # The near-end poll never comes sooner than the interval...
    (playing(199_900), False, 5.0),
    # ...and a progress past the duration (a body that drifted) is "at the end", not a negative delay.
    (playing(205_000), False, 5.0),
    (playing(10_000, None), False, 30.0),       # an unknown duration while playing: the longest gap
], ids=["change", "near-end", "capped", "capped-episode", "not-sooner", "past-the-end", "unknown-duration"])
def test_one_poll_while_playing(schedule: Schedule, snap: Snapshot, changed: bool, delay: float) -> None:
    assert schedule.after_poll(snap, changed=changed) == delay


def test_idle_backs_off_step_by_step_up_to_the_max(schedule: Schedule) -> None:
    delays = [schedule.after_poll(IDLE, changed=False) for _ in range(6)]
    assert delays == [10.0, 20.0, 30.0, 30.0, 30.0, 30.0]


def test_the_poll_that_sees_playback_stop_starts_the_backoff_at_the_interval(schedule: Schedule) -> None:
    schedule.after_poll(playing(1_000), changed=False)
    assert schedule.after_poll(IDLE, changed=False) == 10.0  # the play stays open for END_GRACE
    assert schedule.after_poll(IDLE, changed=False) == 20.0


def test_a_play_closing_after_end_grace_does_not_restart_the_backoff() -> None:
    schedule = Schedule(5.0, 30.0, 600.0)
    schedule.after_poll(playing(1_000), changed=False)
    assert [schedule.after_poll(IDLE, changed=False) for _ in range(5)][-1] == 160.0
    assert schedule.after_poll(IDLE, changed=True) == 320.0   # END_GRACE passed: the play closed
    ad = Snapshot(kind="ad", is_playing=True, progress_ms=3_000)
    assert schedule.after_poll(ad, changed=True) == 5.0       # an ad ended the play: someone is there


def test_paused_backs_off_and_resuming_goes_back_to_near_end(schedule: Schedule) -> None:
    paused = playing(60_000, is_playing=False)
    assert [schedule.after_poll(paused, changed=False) for _ in range(4)] == [10.0, 20.0, 30.0, 30.0]
    assert schedule.after_poll(playing(195_000), changed=False) == pytest.approx(6.0)
    # The backoff starts over after playback, instead of resuming at its old step.
    assert schedule.after_poll(paused, changed=False) == 10.0


@pytest.mark.parametrize("snap", [
    Snapshot(kind="ad", is_playing=True, progress_ms=3_000),
    playing(5_000, private=True),
    Snapshot(kind="unknown", is_playing=True, progress_ms=0),
])
def test_what_is_never_recorded_is_polled_like_idle(schedule: Schedule, snap: Snapshot) -> None:
    assert [schedule.after_poll(snap, changed=False) for _ in range(3)] == [10.0, 20.0, 30.0]


def test_failures_back_off_and_a_success_resets_them(schedule: Schedule) -> None:
    assert [schedule.after_failure() for _ in range(4)] == [10.0, 20.0, 30.0, 30.0]
    schedule.after_poll(playing(1_000), changed=True)
    assert schedule.after_failure() == 10.0


def test_every_delay_stays_within_the_bounds() -> None:
    schedule = Schedule(interval=0.2, max_interval=1.0)
    snaps = [playing(p, d) for p in (0, 500, 199_999, 300_000) for d in (None, 1, 200_000)] + [IDLE]
    for _ in range(40):
        for snap in snaps:
            for changed in (True, False):
                assert 0.2 <= schedule.after_poll(snap, changed) <= 1.0
        assert 0.2 <= schedule.after_failure() <= 1.0


def test_the_slack_scales_with_the_interval() -> None:
    # Every duration divided by 60 (as bench/api_budget.py runs it) gives every delay divided by 60.
    full, scaled = Schedule(5.0, 30.0), Schedule(5.0 / 60, 0.5)
    assert scaled.after_poll(playing(188_000 // 60, 200_000 // 60), False) == pytest.approx(
        full.after_poll(playing(188_000, 200_000), False) / 60, rel=0.01)


@pytest.mark.parametrize("interval, max_interval", [(0.0, 1.0), (2.0, 1.0), (-1.0, 5.0)])
def test_inconsistent_bounds_are_refused(interval: float, max_interval: float) -> None:
    with pytest.raises(ValueError):
        Schedule(interval, max_interval)


# --- idle backoff and the budget's pace ---------------------------------------------------

@dataclass
class FakeBudget:
    """A budget view as budget.RequestBudget.view() gives it, set by hand."""

    calls_left: int = 1000
    limit: int = 1000
    window_s: float = 86_400.0
    next_free_in_s: float = 0.0

    def __call__(self) -> "FakeBudget":
        return self


def with_budget(budget: FakeBudget) -> Schedule:
    # The defaults: POLL_INTERVAL 5, MAX_POLL_INTERVAL 300, IDLE_MAX_INTERVAL 600, MIN_PLAY_MS 30 s.
    return Schedule(5.0, 300.0, 600.0, budget=budget, shortest_play_s=30.0)


def test_idle_backs_off_to_its_own_maximum_while_playing_keeps_its_cap() -> None:
    schedule = Schedule(5.0, 30.0, 600.0)
    assert [schedule.after_poll(IDLE, changed=False) for _ in range(9)] == [
        10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0, 600.0, 600.0]
    assert schedule.after_poll(playing(10_000), changed=False) == 30.0


def test_the_reserve_covers_a_pass_per_feed_of_shortest_plays_for_a_whole_window() -> None:
    # 50 plays of 30 s fill the feed in 25 minutes: 58 passes a day, two calls each.
    assert reserve_for(FakeBudget(), 30.0) == 116
    assert reserve_for(FakeBudget(window_s=86_400 / 60), 0.5) == 116     # the same, scaled by 60
    assert reserve_for(FakeBudget(limit=100), 30.0) == 50                # never more than half


def test_a_fresh_budget_leaves_the_caps_as_configured() -> None:
    schedule = with_budget(FakeBudget())
    assert schedule.pace() == pytest.approx(86_400 / (1000 - 116))        # about 98 s: below both caps
    assert schedule.after_poll(playing(0, 3_600_000, kind="episode"), False) == 300.0
    assert schedule.after_poll(playing(10_000), False) == pytest.approx(191.0)  # the expected end (+1 s)
    assert schedule.defer_s() == 0.0


def test_a_tight_budget_stretches_the_cap_up_to_the_expected_end() -> None:
    budget = FakeBudget(calls_left=116 + 100)                            # 100 calls to spend in a day
    schedule = with_budget(budget)
    assert schedule.pace() == pytest.approx(864.0)
    # A 45-minute episode is polled every 864 s instead of every 300 s...
    assert schedule.after_poll(playing(0, 2_700_000, kind="episode"), False) == pytest.approx(864.0)
    # ...but a track is still polled near its end, and right after a change.
    assert schedule.after_poll(playing(10_000), False) == pytest.approx(191.0)
    assert schedule.after_poll(playing(1_000), True) == 5.0
    # Idle polls stretch too.
    assert [schedule.after_poll(IDLE, False) for _ in range(9)][-1] == pytest.approx(864.0)


def test_a_nearly_spent_budget_still_looks_in_once_per_feed_of_shortest_plays() -> None:
    schedule = with_budget(FakeBudget(calls_left=117))
    assert schedule.pace() == 1500.0
    assert schedule.after_poll(playing(0, 2_700_000, kind="episode"), False) == 1500.0


def test_the_poller_never_spends_the_reserve() -> None:
    budget = FakeBudget(calls_left=117, next_free_in_s=42.0)
    schedule = with_budget(budget)
    assert schedule.defer_s() == 0.0
    budget.calls_left = 116
    assert schedule.defer_s() == 42.0                                    # until the window frees a call
    budget.next_free_in_s = 0.0
    assert schedule.defer_s() == 5.0                                     # never a busy loop


def test_the_slack_and_the_pace_scale_with_every_duration() -> None:
    full = with_budget(FakeBudget(calls_left=300))
    scaled = Schedule(5.0 / 60, 5.0, 10.0, budget=FakeBudget(calls_left=300, window_s=1440.0), shortest_play_s=0.5)
    assert scaled.pace() == pytest.approx(full.pace() / 60)
    episode = playing(0, 2_700_000, kind="episode")
    assert scaled.after_poll(playing(0, 2_700_000 // 60, kind="episode"), False) == pytest.approx(
        full.after_poll(episode, False) / 60)
