"""The request budget (budget.py): never overspent, shared by processes, kept across restarts and
Redis outages, and learned from Spotify's QUOTA_EXCEEDED."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import structlog
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from conftest import ROOT
from simdata import FakeClock
from spotify_logger.budget import RequestBudget
from spotify_logger.config import Settings
from spotify_logger.cooldown import Cooldown
from spotify_logger.errors import BudgetExhausted, QuotaExceeded, RateLimited
from spotify_logger.store import connect

WINDOW = 100.0
BASE = Settings(client_id="app-1", request_budget=5, request_budget_window_s=WINDOW)


def budget(client: Any, state_dir: Path, clock: FakeClock, **overrides: Any) -> RequestBudget:
    return RequestBudget(dataclasses.replace(BASE, **overrides), client, state_dir, clock)


def spend_all(b: RequestBudget, endpoint: str = "GET /me/player") -> int:
    spent = 0
    while True:
        try:
            b.spend(endpoint)
        except BudgetExhausted:
            return spent
        spent += 1


def overspent(times: list[float], limit: int, window: float) -> list[float]:
    """Instants at which more than `limit` accepted calls fall inside one rolling window."""
    return [t for t in times if sum(1 for u in times if t - window < u <= t) > limit]


# --- never overspent -------------------------------------------------------------------------

BUCKET = WINDOW / 240
# Time since the last step: anything, and the edges where a rolling count goes wrong (a call
# leaving the window a hair early, at a bucket's boundary).
GAP = st.one_of(st.floats(min_value=0.0, max_value=WINDOW / 3, allow_nan=False),
                st.sampled_from([0.0, BUCKET / 2, BUCKET, WINDOW - BUCKET / 2, WINDOW - 0.01, WINDOW]))
STEP = st.tuples(
    GAP,
    st.integers(0, 1),                                                 # which process acts
    st.sampled_from(["spend", "spend", "spend", "reserve", "redis", "restart"]),
)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.integers(1, 8), steps=st.lists(STEP, min_size=1, max_size=60))
def test_never_overspent_over_generated_timelines(tmp_path_factory: Any, limit: int, steps: list[Any]) -> None:
    # Two processes share one Redis and one state dir; Redis comes and goes; processes restart.
    server = fakeredis.FakeServer()
    state = tmp_path_factory.mktemp("state")
    clock = FakeClock()

    def make() -> RequestBudget:
        return budget(fakeredis.FakeRedis(server=server, decode_responses=True), state, clock, request_budget=limit)

    procs = [make(), make()]
    accepted: list[float] = []
    for gap, who, action in steps:
        clock.advance(gap)
        if action == "redis":
            server.connected = not server.connected
            continue
        if action == "restart":
            procs[who] = make()
            continue
        try:
            procs[who].spend("GET /me/player", reserve=1 if action == "reserve" else 0)
        except BudgetExhausted as exc:
            assert exc.until > clock.now
            continue
        accepted.append(clock.now)
    assert overspent(accepted, limit, WINDOW) == []


def test_the_window_rolls_and_says_when_the_next_call_fits(fake_redis: Any, tmp_path: Path) -> None:
    clock = FakeClock()
    b = budget(fake_redis, tmp_path, clock)
    for _ in range(5):
        b.spend("GET /me/player")
        clock.advance(10)
    with structlog.testing.capture_logs() as events:
        for _ in range(3):  # the poller tries again: one event for the whole stretch
            with pytest.raises(BudgetExhausted) as info:
                b.spend("GET /me/player")
    assert [(e["event"], e["log_level"], e["used"], e["limit"]) for e in events] == \
        [("budget_exhausted", "warning", 5, 5)]
    # The first call (at T0) leaves the window a full window later, to the bucket (window/240).
    assert WINDOW <= info.value.until - (clock.now - 50) <= WINDOW + WINDOW / 240 + 1e-6
    assert "5 of 5 calls" in str(info.value) and "the next call fits at" in str(info.value)
    assert isinstance(info.value, RateLimited)  # the poll loop defers it like a cooldown
    clock.now = info.value.until
    b.spend("GET /me/player")
    view = b.view()
    assert (view.used, view.calls_left, view.limit) == (5, 0, 5)
    # The poller's cheap reading, from its last call's answer, ages with the clock.
    assert (b.last_view().used, b.last_view().source) == (5, "memory")
    clock.advance(15)
    assert b.last_view().used == b.view().used == 4


def test_reserve_holds_calls_back(fake_redis: Any, tmp_path: Path) -> None:
    clock = FakeClock()
    b = budget(fake_redis, tmp_path, clock)
    for _ in range(3):
        b.spend("GET /me/player", reserve=2)
    with pytest.raises(BudgetExhausted, match="2 held in reserve"):
        b.spend("GET /me/player", reserve=2)
    b.spend("GET /me/player/recently-played")  # what the reserve is for
    assert b.view().calls_left == 1


def test_view_counts_by_endpoint_and_token_refreshes_apart(fake_redis: Any, tmp_path: Path) -> None:
    clock = FakeClock()
    b = budget(fake_redis, tmp_path, clock, request_budget=100)
    for _ in range(3):
        b.spend("GET /me/player")
    b.spend("GET /me/player/recently-played")
    b.note()  # a token refresh: not in the Web API quota
    clock.advance(7200)  # an older hour still in the last 24 h of by_endpoint, out of the window
    b.spend("GET /me/player")
    view = b.view()
    assert view.by_endpoint == {"GET /me/player": 4, "GET /me/player/recently-played": 1}
    assert view.token_refreshes == 1
    assert view.used == 1 and view.last_hour == 1 and view.projected_per_day == 24
    assert "client" not in json.dumps(view.as_dict())
    assert all(BASE.client_id not in k for k in fake_redis.keys("*")), "the key holds a hash of the client id"


def test_require_says_how_many_calls_are_needed_and_when_they_fit(fake_redis: Any, tmp_path: Path) -> None:
    clock = FakeClock()
    b = budget(fake_redis, tmp_path, clock)
    b.require(5, "backfill")
    spend_all(b)
    with pytest.raises(BudgetExhausted) as info:
        b.require(2, "backfill")
    assert "backfill: 2 calls needed, 0 left" in str(info.value) and "they fit at" in str(info.value)
    assert info.value.exit_code == 75
    with pytest.raises(BudgetExhausted, match="never fit"):
        b.require(6, "playlist")


# --- shared by processes -----------------------------------------------------------------------

SPENDER = """
import sys, dataclasses
from pathlib import Path
from spotify_logger.budget import RequestBudget
from spotify_logger.config import Settings
from spotify_logger.errors import BudgetExhausted
from spotify_logger.store import connect
settings = Settings(client_id="app-1", request_budget=int(sys.argv[2]), request_budget_window_s=3600.0)
budget = RequestBudget(settings, connect(sys.argv[1]), Path(sys.argv[3]))
sys.stdin.readline()  # start together
spent = 0
while True:
    try:
        budget.spend("GET /me/player")
    except BudgetExhausted:
        break
    spent += 1
print(spent)
"""


def test_two_processes_share_one_budget_and_never_both_take_the_last_call(redis_server: Any, tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", SPENDER, redis_server.url, "300", str(tmp_path / f"s{i}")],
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    spent = [int(p.communicate(timeout=60)[0].split()[-1]) for p in procs]  # the last line: logs go first
    assert sum(spent) == 300 and min(spent) > 0, spent


def test_every_account_of_the_app_shares_the_count_and_other_apps_do_not(real_redis: Any, tmp_path: Path) -> None:
    clock = FakeClock()
    first = budget(real_redis, tmp_path / "a", clock)
    second = budget(connect_like(real_redis), tmp_path / "b", clock)  # another account, same client id
    other_app = budget(real_redis, tmp_path / "c", clock, client_id="app-2")
    assert spend_all(first) == 5
    assert spend_all(second) == 0
    assert spend_all(other_app) == 5


def connect_like(client: Any) -> Any:
    kwargs = client.connection_pool.connection_kwargs
    return connect(f"redis://{kwargs['host']}:{kwargs['port']}/0")


# --- restarts, outages, learning ---------------------------------------------------------------

def test_the_budget_and_the_learned_limit_survive_a_restart(redis_server: Any, tmp_path: Path) -> None:
    clock = FakeClock()
    b = budget(redis_server.client(), tmp_path, clock, request_budget=50)
    for _ in range(8):
        b.spend("GET /me/player")
    with structlog.testing.capture_logs() as events:
        assert b.learn() == 7  # Spotify refused the 8th: its quota is 7
    assert [e["event"] for e in events] == ["budget_learned"]

    redis_server.stop(save=True)
    redis_server.start()
    again = budget(redis_server.client(), tmp_path, clock, request_budget=50)
    view = again.view()
    assert (view.used, view.limit, view.learned_limit, view.configured_limit) == (8, 7, 7, 50)
    with pytest.raises(BudgetExhausted):
        again.spend("GET /me/player")

    # Redis lost everything (no persistence): the state dir still knows the learned limit.
    redis_server.client().flushall()
    fresh = budget(redis_server.client(), tmp_path, clock, request_budget=50)
    fresh.spend("GET /me/player")
    assert fresh.view().learned_limit == 7


def test_learning_never_goes_below_a_tenth_of_the_budget(fake_redis: Any, tmp_path: Path) -> None:
    b = budget(fake_redis, tmp_path, FakeClock(), request_budget=1000)
    b.spend("GET /me/player")
    assert b.learn() == 100  # a count lost with Redis's data must not starve the logger
    assert b.learn() is None  # nothing lower to learn


def test_calls_counted_in_the_state_dir_while_redis_is_down_are_merged_back_once(tmp_path: Path) -> None:
    server = fakeredis.FakeServer()
    clock = FakeClock()
    b = budget(fakeredis.FakeRedis(server=server, decode_responses=True), tmp_path, clock, request_budget=10)
    b.spend("GET /me/player")
    server.connected = False
    with structlog.testing.capture_logs() as events:
        for _ in range(3):
            b.spend("GET /me/player")
    assert [e["event"] for e in events] == ["budget_offline"]
    assert b.view().source == "state_dir" and b.view().used == 4

    # Another process of the same state dir starts during the outage: it knows all 4.
    restarted = budget(fakeredis.FakeRedis(server=server, decode_responses=True), tmp_path, clock, request_budget=10)
    assert spend_all(restarted) == 6
    assert restarted.view().used == 10
    saved = (tmp_path / "budget.json").read_text()

    server.connected = True
    clock.advance(1)
    redis = fakeredis.FakeRedis(server=server, decode_responses=True)
    with pytest.raises(BudgetExhausted):
        budget(redis, tmp_path, clock, request_budget=10).spend("GET /me/player")  # merges first
    assert budget(redis, tmp_path, clock, request_budget=10).view().used == 10
    # A crash after the merge but before the file recorded it: the same merge again adds nothing.
    (tmp_path / "budget.json").write_text(saved)
    with pytest.raises(BudgetExhausted):
        budget(redis, tmp_path, clock, request_budget=10).spend("GET /me/player")
    view = budget(redis, tmp_path, clock, request_budget=10).view()
    assert (view.source, view.used) == ("redis", 10)
    assert view.by_endpoint == {"GET /me/player": 10}


def test_a_cooldown_another_process_met_stops_this_one_without_a_call(fake_redis: Any, tmp_path: Path) -> None:
    clock = FakeClock()
    theirs = Cooldown.in_state_dir(tmp_path / "them", redis_client=fake_redis, clock=clock, client_id="app-1")
    theirs.start(600, reason="quota_exceeded")
    mine = Cooldown.in_state_dir(tmp_path / "me", redis_client=fake_redis, clock=clock, client_id="app-1")
    b = RequestBudget(BASE, fake_redis, tmp_path / "me", clock, cooldown=mine)
    with pytest.raises(QuotaExceeded) as info:
        b.spend("GET /me/player")
    assert info.value.until == pytest.approx(clock.now + 600)
    assert (mine.until, mine.reason) == (pytest.approx(clock.now + 600), "quota_exceeded")
    assert b.view().used == 0, "a refused call is not counted"
    clock.advance(600)
    b.spend("GET /me/player")


def test_a_real_redis_outage_is_counted_in_the_state_dir_and_merged_back(redis_server: Any, tmp_path: Path) -> None:
    clock = FakeClock()
    b = budget(connect(redis_server.url), tmp_path, clock, request_budget=100)
    for _ in range(2):
        b.spend("GET /me/player")
    redis_server.stop(save=True)
    for _ in range(3):
        b.spend("GET /me/player")  # Redis refuses the connection: counted in the state dir
    assert b.view().source == "state_dir" and b.view().used == 5
    redis_server.start()
    b.spend("GET /me/player/recently-played")
    view = budget(redis_server.client(), tmp_path / "elsewhere", clock, request_budget=100).view()
    assert (view.source, view.used) == ("redis", 6)
    assert view.by_endpoint == {"GET /me/player": 5, "GET /me/player/recently-played": 1}
