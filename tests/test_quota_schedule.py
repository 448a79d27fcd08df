"""The schedule against the request quota, through the simulator over loopback at compressed time:
an idle day costs no recently-played calls after the start-up pass; after a cooldown long enough
to hide a play, recently-played is read before polling resumes; with only the reserve left the
poller waits, and the reserve goes to recently-played."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable, Iterator

import pytest

from spotify_logger import keys
from spotify_logger.config import Settings
from spotify_logger.daemon import Parts
from spotify_logger.loop import Poller
from spotify_logger.redisproc import RedisServer
from spotify_logger.schedule import reserve_for
from spotify_logger.simulator import Play, Script, SpotifySimulator, track

from conftest import play_hashes, wait_until

PLAYER, RECENT = "/v1/me/player", "/v1/me/player/recently-played"
DAY_S = 86_400


def polls(sim: SpotifySimulator, since: float = 0.0) -> list[float]:
    return [r.t for r in sim.requests if r.path == PLAYER and r.t >= since]


def passes(sim: SpotifySimulator, since: float = 0.0) -> list[float]:
    return [r.t for r in sim.requests if r.path == RECENT and r.t >= since]


def scaled_defaults(settings: Settings, scale: float) -> Settings:
    """The default time settings, every one divided by `scale`."""
    d = Settings()
    return dataclasses.replace(settings, poll_interval=d.poll_interval / scale,
                               max_poll_interval=d.max_poll_interval / scale,
                               idle_max_interval=d.idle_max_interval / scale,
                               min_play_ms=round(d.min_play_ms / scale), end_grace_s=d.end_grace_s / scale,
                               reconcile_interval_s=d.reconcile_interval_s / scale,
                               request_budget_window_s=d.request_budget_window_s / scale)


class Running:
    def __init__(self, poller: Poller) -> None:
        self.poller = poller
        self.thread = threading.Thread(target=poller.run, daemon=True)

    def __enter__(self) -> Poller:
        self.thread.start()
        return self.poller

    def __exit__(self, *exc: object) -> None:
        self.poller.stop.set()
        self.thread.join(5)


@pytest.fixture
def build(redis_server: RedisServer) -> Iterator[Callable[..., Poller]]:
    def make(settings: Settings, **kwargs: object) -> Poller:
        parts = Parts.build(settings, threading.Event())
        return parts.poller(hooks=[parts.reconcile_hook()], **kwargs)  # type: ignore[arg-type]

    yield make


def test_an_idle_day_costs_no_recently_played_calls_after_the_start_up_pass(
        sim_factory: Callable[..., SpotifySimulator], redis_server: RedisServer,
        settings_for: Callable[..., Settings], build: Callable[..., Poller]) -> None:
    scale = 8_640.0  # a day in 10 s
    sim = sim_factory()
    settings = scaled_defaults(settings_for(sim, redis_server.url), scale)
    with Running(build(settings)):
        wait_until(lambda: passes(sim), "the start-up pass", timeout=10)
        started = time.time()
        time.sleep(DAY_S / scale)
    assert len(passes(sim)) == 1
    # Idle polls back off to IDLE_MAX_INTERVAL: 144 a day (a little fewer, as each poll takes a
    # few ms of the 69 ms between them at this scale), and a few on the way there.
    assert 130 <= len(polls(sim, started)) <= 144 + 10, len(polls(sim, started))


def test_after_a_long_cooldown_recently_played_is_read_before_polling_resumes(
        sim_factory: Callable[..., SpotifySimulator], redis_server: RedisServer,
        settings_for: Callable[..., Settings], build: Callable[..., Poller]) -> None:
    song = track("Song", 60_000, ("A",))
    sim = sim_factory(Script((Play(song, 60_000),)))
    settings = settings_for(sim, redis_server.url)  # MIN_PLAY_MS 2 s
    with Running(build(settings)):
        wait_until(lambda: len(polls(sim)) >= 3, "polling", timeout=10)
        sim.rate_limit_for(3.0)  # longer than MIN_PLAY_MS: a whole play could hide in it
        limited = time.time()
        wait_until(lambda: [t for t in polls(sim, limited + 3.0)], "polling to resume", timeout=10)
    after = [r for r in sim.requests if r.t >= limited + 3.0 and r.path.startswith("/v1/me/player")]
    assert after[0].path == RECENT and after[0].status == 200, after[:3]
    assert not sim.violations
    # The start-up pass, then the one before resuming: the gap is not read a second time.
    assert len(passes(sim)) == 2


def test_a_burst_limit_of_a_few_seconds_costs_no_pass(
        sim_factory: Callable[..., SpotifySimulator], redis_server: RedisServer,
        settings_for: Callable[..., Settings], build: Callable[..., Poller]) -> None:
    sim = sim_factory(Script((Play(track("Song", 60_000, ("A",)), 60_000),)))
    settings = settings_for(sim, redis_server.url, min_play_ms=5_000)
    with Running(build(settings)):
        wait_until(lambda: len(polls(sim)) >= 3, "polling", timeout=10)
        sim.rate_limit_for(1.0)
        limited = time.time()
        wait_until(lambda: polls(sim, limited + 1.0), "polling to resume", timeout=10)
    assert len(passes(sim)) == 1  # the start-up pass only


@dataclasses.dataclass
class FakeBudget:
    calls_left: int
    limit: int = 1000
    window_s: float = 60.0
    next_free_in_s: float = 0.1

    def __call__(self) -> "FakeBudget":
        return self


def test_with_only_the_reserve_left_the_poller_waits_and_the_reserve_reads_recently_played(
        sim_factory: Callable[..., SpotifySimulator], redis_server: RedisServer,
        settings_for: Callable[..., Settings], build: Callable[..., Poller]) -> None:
    song = track("Song", 300, ("A",))
    sim = sim_factory(Script((Play(song, 300),) * 100), recent_min_ms=50)
    # MIN_PLAY_MS 0.05 s: 50 plays fill the feed in 2.5 s, so a reserve pass every 2.5 s.
    settings = settings_for(sim, redis_server.url, min_play_ms=50)
    budget = FakeBudget(calls_left=1000)
    with Running(build(settings, budget=budget)):
        wait_until(lambda: len(polls(sim)) >= 3, "polling", timeout=10)
        budget.calls_left = reserve_for(budget, 0.05)  # ceil(60 / (50 * 0.05)) * 2 = 48
        spent = time.time()
        time.sleep(6.0)
        deferred_polls = polls(sim, spent + 0.5)  # a poll already on its way may land
        deferred_passes = passes(sim, spent + 0.5)
        budget.calls_left = 1000
        resumed = time.time()
        wait_until(lambda: polls(sim, resumed), "polling to resume", timeout=10)
    assert deferred_polls == []
    assert 2 <= len(deferred_passes) <= 3, deferred_passes   # one per 2.5 s of plays the feed can hold
    plays = play_hashes(redis_server.client())
    assert any(p.get("source") == keys.SOURCE_FEED for p in plays.values())


def test_after_quota_exceeded_recently_played_is_read_first_and_nothing_is_sent_before(
        sim_factory: Callable[..., SpotifySimulator], redis_server: RedisServer,
        settings_for: Callable[..., Settings], build: Callable[..., Poller]) -> None:
    song = track("Song", 60_000, ("A",))
    # 3 calls per rolling 4 s: the poller (a poll every 0.2-1 s) meets QUOTA_EXCEEDED soon.
    sim = sim_factory(Script((Play(song, 60_000),)), quota="3/4")
    settings = settings_for(sim, redis_server.url)  # MIN_PLAY_MS 2 s: a 4 s lock-out could hide a play
    with Running(build(settings)):
        refused = wait_until(lambda: [r for r in sim.requests if r.fault == "quota"], "QUOTA_EXCEEDED", timeout=20)
        wait_until(lambda: [r for r in sim.requests if r.t > refused[0].t and r.status == 200],
                   "polling to resume", timeout=20)
    after = [r for r in sim.requests if r.t > refused[0].t and r.path.startswith("/v1/")]
    assert after[0].path == RECENT and after[0].status == 200, after[:3]
    assert not sim.requests_during_retry_after
