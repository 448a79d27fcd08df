"""Spotify's 2026 request quota: the simulator's quota and burst limit, and what the logger does
at QUOTA_EXCEEDED, through the simulator over loopback at compressed time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import structlog
from conftest import ROOT, env_for, poller_cmd, wait_until
from helpers import make_client, run_cli
from spotify_logger.cli import main
from simdata import FakeClock, api_session

from spotify_logger import keys
from spotify_logger.api import endpoint_name
from spotify_logger.budget import RequestBudget
from spotify_logger.commands.status import render
from spotify_logger.config import Settings
from spotify_logger.cooldown import Cooldown
from spotify_logger.health import gather
from spotify_logger.store import Store
from spotify_logger.tokenstore import Tokens, TokenStore
from spotify_logger.errors import BudgetExhausted, ConfigError, QuotaExceeded, RateLimited
from spotify_logger.redisproc import free_port
from spotify_logger.simulator import Play, Script, SpotifySimulator, track
from spotify_logger.simulator.quota import QUOTA_BODY, QuotaRule

LONG = track("Long", 3_600_000)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
def make(clock: FakeClock, request: Any) -> Any:
    def factory(**kwargs: Any) -> SpotifySimulator:
        sim = SpotifySimulator(Script((Play(LONG, 3_600_000),)), clock=clock, **kwargs).start()
        request.addfinalizer(sim.stop)
        return sim
    return factory


def cli(capsys: pytest.CaptureFixture[str], settings: Any, *argv: str) -> tuple[int, str, str]:
    """`spotify-logger ARGV` in-process with these settings: (exit code, stdout, stderr)."""
    code = main(list(argv), env=env_for(settings))
    out, err = capsys.readouterr()
    return code, out, err


# --- the simulator -----------------------------------------------------------------------------

def test_the_quota_refuses_with_quota_exceeded_until_the_window_frees_a_call(make: Any, clock: FakeClock) -> None:
    sim = make(quota="3/100")
    session, url = api_session(sim), sim.api_url + "/me/player"
    for _ in range(3):
        clock.advance(10)
        assert session.get(url).status_code == 200
    refused = session.get(url)
    assert refused.status_code == 429 and refused.json() == QUOTA_BODY
    assert refused.json() == {"error": {"status": 429, "message": "Too many requests", "reason": "QUOTA_EXCEEDED"}}
    assert refused.headers["Retry-After"] == "80"  # the first call (70 s ago... at +10) leaves at +110
    clock.advance(80)
    assert session.get(url).status_code == 200
    assert sim.requests_during_retry_after == []


def test_calls_during_the_retry_after_are_counted_and_extend_the_penalty(make: Any, clock: FakeClock) -> None:
    sim = make(quota="2/100")
    session, url = api_session(sim), sim.api_url + "/me/player"
    session.get(url)
    clock.advance(10)
    session.get(url)
    assert session.get(url).headers["Retry-After"] == "90"
    clock.advance(50)
    impatient = session.get(url)  # told to wait 90 s, came back after 50
    assert impatient.status_code == 429 and impatient.headers["Retry-After"] == "50"
    clock.advance(40)  # the first Retry-After has passed, not the one the impatient call got
    again = session.get(url)
    assert again.status_code == 429 and again.headers["Retry-After"] == "60"  # and it grew again
    assert [r.t - clock.now for r in sim.requests_during_retry_after] == [pytest.approx(-40), 0]
    assert sim.requests[-1].during_retry_after and sim.requests[-1].fault == "quota"
    clock.advance(60)
    assert session.get(url).status_code == 200


def test_the_burst_limit_is_a_plain_429_over_a_rolling_30_s(make: Any, clock: FakeClock) -> None:
    sim = make(burst=2)
    session, url = api_session(sim), sim.api_url + "/me/player"
    assert [session.get(url).status_code for _ in range(2)] == [200, 200]
    clock.advance(10)
    refused = session.get(url)
    assert refused.status_code == 429 and "reason" not in refused.json()["error"]
    assert refused.headers["Retry-After"] == "20"
    clock.advance(20)
    assert session.get(url).status_code == 200


def test_quota_rules_parse_and_scale_with_compressed_time() -> None:
    assert QuotaRule.parse("1000/86400") == QuotaRule(1000, 86400.0)
    assert QuotaRule.parse("500/86400").scaled(60) == QuotaRule(500, 1440.0)
    for bad in ("1000", "x/86400", "0/10", "10/0"):
        with pytest.raises(ValueError):
            QuotaRule.parse(bad)


def test_simulate_refuses_a_bad_quota(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "redis://127.0.0.1:1/0", "simulate", "--quota", "lots")
    assert code == 64 and "LIMIT/SECONDS" in err


# --- the logger at QUOTA_EXCEEDED --------------------------------------------------------------

def test_quota_exceeded_no_call_inside_the_window_then_recovery(sim_factory: Any, settings_for: Any, fake_redis: Any,
                                                                clock: FakeClock, tmp_path: Path) -> None:
    sim = sim_factory(Script((Play(LONG, 3_600_000),)), quota="4/600", clock=clock)
    settings = settings_for(sim, request_budget=20, request_budget_window_s=600.0)

    def process(state_dir: Path) -> Any:
        cooldown = Cooldown.in_state_dir(state_dir, redis_client=fake_redis, clock=clock, client_id=settings.client_id)
        budget = RequestBudget(settings, fake_redis, state_dir, clock, cooldown=cooldown)
        return make_client(settings, cooldown, budget=budget), budget

    poller, budget = process(settings.state_dir)
    first = clock.now
    with structlog.testing.capture_logs() as events:
        for _ in range(4):
            assert poller.player() is not None
            clock.advance(10)
        with pytest.raises(QuotaExceeded) as info:
            poller.player()
        until = info.value.until
        assert until == pytest.approx(first + 600, abs=1.5)  # the first call leaves the window
        # Nothing goes out until then, from this process or another of the app.
        other, _ = process(tmp_path / "other-state")
        while clock.now + 50 < until:
            clock.advance(50)
            for client in (poller, other):
                with pytest.raises(RateLimited):
                    client.player()
    assert [e["event"] for e in events if e["event"] in ("quota_exceeded", "budget_learned")] == \
        ["quota_exceeded", "budget_learned"]
    assert next(e for e in events if e["event"] == "budget_learned")["limit"] == 4
    assert len(sim.requests_to("/v1/")) == 5
    assert sim.requests_during_retry_after == []
    stored = json.loads(fake_redis.get(keys.cooldown_key(settings.client_id)))
    assert stored["reason"] == "quota_exceeded" and stored["until"] == pytest.approx(until)

    # Recovery: the budget, now at the learned 4 (the refused call counted too), says when.
    clock.now = until + 0.01
    sent = len(sim.requests_to("/v1/"))
    try:
        poller.player()
    except BudgetExhausted as exc:
        assert len(sim.requests_to("/v1/")) == sent, "a call the budget refused is never sent"
        assert exc.until - until < 20  # the second call leaves the window
        clock.now = exc.until
        assert poller.player() is not None
    assert budget.view().limit == 4 and budget.view().learned_limit == 4
    assert sim.requests_during_retry_after == []


def test_the_daemon_waits_out_quota_exceeded_and_a_command_meanwhile_exits_75(
        sim_factory: Any, settings_for: Any, redis_server: Any, spawn: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # Compressed time: 3 calls per 8 s is the app's quota; the daemon polls about every second.
    sim = sim_factory(Script((Play(LONG, 3_600_000),)), quota="3/8")
    settings = settings_for(sim, redis_server.url, request_budget=1000)
    proc = spawn(poller_cmd(), env_for(settings))
    met = proc.wait_for("quota_exceeded", timeout=20)[0]
    assert "deadline" in met
    refused = next(r for r in sim.requests if r.status == 429)

    code, _, err = cli(capsys, settings, "backfill")  # another process of the app, meanwhile
    assert code == 75 and "quota" in err
    wait_until(lambda: [r for r in sim.requests_to("/v1/me/player") if r.t > refused.t and r.status == 200],
               "polling to resume after the quota's deadline", timeout=20)
    assert sim.requests_during_retry_after == []
    assert [r for r in sim.requests_to("/v1/") if refused.t < r.t < refused.t + 1.0] == []
    assert proc.terminate(timeout=5) == 0
    assert len([e for e in proc.events("quota_exceeded") if e["deadline"] == met["deadline"]]) == 1
    # Every send went through the budget, and the token refresh was counted apart.
    view = RequestBudget(settings, redis_server.client(), settings.state_dir).view()
    assert view.by_endpoint["GET /me/player"] == len([r for r in sim.requests if r.path == "/v1/me/player"])
    assert sum(view.by_endpoint.values()) == len(sim.requests_to("/v1/"))
    assert view.token_refreshes == len(sim.requests_to("/api/token")) >= 1


def test_endpoints_are_named_without_their_ids() -> None:
    assert endpoint_name("GET", "/me/player") == "GET /me/player"
    assert endpoint_name("PUT", "/playlists/3cEYpjA9oz9GiPac4AsH4n/items") == "PUT /playlists/{id}/items"
    assert endpoint_name("GET", "/playlists/3cEYpjA9oz9GiPac4AsH4n") == "GET /playlists/{id}"


def test_a_command_the_budget_cannot_afford_exits_75_saying_when_it_fits(
        sim_factory: Any, settings_for: Any, redis_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    sim = sim_factory(Script((Play(LONG, 3_600_000),)))
    settings = settings_for(sim, redis_server.url, request_budget=3, request_budget_window_s=3600.0)
    budget = RequestBudget(settings, redis_server.client(), settings.state_dir)
    for _ in range(3):
        budget.spend("GET /me/player")
    code, _, err = cli(capsys, settings, "backfill")
    assert code == 75
    assert "backfill: 2 calls needed, 0 left" in err and "they fit at" in err
    assert sim.requests_to("/v1/") == []


def test_backfill_needs_a_whole_pass_and_playlist_its_worst_case_beside_the_pollers_reserve(
        sim_factory: Any, settings_for: Any, redis_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from spotify_logger.schedule import reserve_for

    sim = sim_factory(Script((Play(LONG, 3_600_000),)))
    settings = settings_for(sim, redis_server.url, request_budget=100, request_budget_window_s=3600.0)
    budget = RequestBudget(settings, redis_server.client(), settings.state_dir)
    reserve = reserve_for(budget.view(), settings.min_play_ms / 1000)
    assert 0 < reserve < 96
    for _ in range(100 - 1):  # one call left: not a whole recently-played pass (two pages)
        budget.spend("GET /me/player")
    code, _, err = cli(capsys, settings, "backfill")
    assert code == 75 and "backfill: 2 calls needed, 1 left" in err
    # Playlist, with room for its worst case but not beside the poller's reserve: refused, unsent.
    fresh = settings_for(sim, redis_server.url, request_budget=100, request_budget_window_s=3600.0,
                         client_id="another-app")
    other = RequestBudget(fresh, redis_server.client(), fresh.state_dir)
    for _ in range(100 - reserve - 3):
        other.spend("GET /me/player")
    from test_playlist import store_plays
    store_plays(redis_server.client(), [(LONG, 1, 10, True)])
    code, _, err = cli(capsys, fresh, "playlist", "--name", "Top")
    assert code == 75 and "playlist: 4 calls needed" in err and "they fit at" in err, err
    assert [r for r in sim.requests_to("/v1/") if "playlist" in r.path] == []


def test_status_shows_the_budget_the_pace_the_endpoints_and_the_cooldown_reason(
        real_redis: Any, tmp_path: Path, clock: FakeClock) -> None:
    settings = Settings(client_id="app-1", state_dir=tmp_path, request_budget=100)
    budget = RequestBudget(settings, real_redis, tmp_path, clock)
    for _ in range(6):
        budget.spend("GET /me/player")
    budget.spend("GET /me/player/recently-played")
    budget.note()
    Cooldown.in_state_dir(tmp_path, redis_client=real_redis, clock=clock, client_id="app-1").start(
        3000, reason="quota_exceeded")
    Store(real_redis).redis.hset(keys.STATUS, "last_poll_at", int(clock.now * 1000))

    health = gather(settings, now=clock.now, store=Store(real_redis))
    assert health.budget is not None
    assert {k: health.budget[k] for k in ("used", "limit", "calls_left", "projected_per_day", "token_refreshes")} == \
        {"used": 7, "limit": 100, "calls_left": 93, "projected_per_day": 168, "token_refreshes": 1}
    assert health.budget["by_endpoint"] == {"GET /me/player": 6, "GET /me/player/recently-played": 1}
    assert health.cooldown_reason == "quota_exceeded" and not health.healthy
    assert any("QUOTA_EXCEEDED" in p for p in health.problems)
    text = render(health, clock.now)
    assert "budget:        7 of 100 calls in the last 24 h, 93 left" in text
    assert "about 168 a day at that pace" in text and "token refreshes" in text
    assert "cooldown 3000s left (quota_exceeded)" in text
    assert json.loads(json.dumps(health.as_dict()))["budget"]["window_s"] == 86400.0


def test_a_spent_budget_alone_is_healthy(real_redis: Any, tmp_path: Path, clock: FakeClock) -> None:
    settings = Settings(client_id="app-1", state_dir=tmp_path, request_budget=2, max_poll_interval=30.0)
    TokenStore(settings.token_file).save(Tokens(refresh_token="r", authorized_at=clock.now))
    budget = RequestBudget(settings, real_redis, tmp_path, clock)
    budget.spend("GET /me/player")
    budget.spend("GET /me/player")
    Store(real_redis).redis.hset(keys.STATUS, "last_poll_at", int(clock.now * 1000))
    clock.advance(3600)  # no poll for an hour: the poller waits for the budget, as it should
    health = gather(settings, now=clock.now, store=Store(real_redis))
    assert health.budget is not None and health.budget["calls_left"] == 0
    assert health.problems == [] and health.healthy


@pytest.mark.parametrize("how", ["flag", "script"])
def test_simulate_applies_the_quota_from_the_flag_or_the_script(tmp_path: Path, how: str) -> None:
    port = free_port()
    args = [sys.executable, "-m", "spotify_logger", "simulate", "--port", str(port)]
    if how == "flag":
        args += ["--quota", "2/3600"]
    else:
        script = tmp_path / "script.json"
        script.write_text(json.dumps({"segments": [{"play": {"name": "Long", "duration_ms": 3_600_000}}],
                                      "quota": "2/3600"}))
        args += ["--script", str(script)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HOME": str(tmp_path)})
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(5)]
        assert "request quota: 2 calls per rolling 3600 s" in lines[4]
        refresh = lines[3].split("--refresh-token ")[1].strip()
        token = requests.post(f"http://127.0.0.1:{port}/api/token", timeout=5,
                              data={"grant_type": "refresh_token", "refresh_token": refresh,
                                    "client_id": "sim-client"}).json()["access_token"]
        got = [requests.get(f"http://127.0.0.1:{port}/v1/me/player", timeout=5,
                            headers={"Authorization": f"Bearer {token}"}) for _ in range(3)]
        assert [r.status_code for r in got] == [200, 200, 429]
        assert got[2].json() == QUOTA_BODY and 3590 <= int(got[2].headers["Retry-After"]) <= 3600
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0


@pytest.mark.parametrize("env, message", [
    ({"SPOTIFY_LOGGER_REQUEST_BUDGET": "0"}, "from 1 to 100000 calls"),
    ({"SPOTIFY_LOGGER_REQUEST_BUDGET": "lots"}, "whole number"),
    ({"SPOTIFY_LOGGER_REQUEST_BUDGET_WINDOW": "5"}, "from 10 to 604800 seconds"),
    ({"SPOTIFY_LOGGER_REQUEST_BUDGET_WINDOW": "700000"}, "from 10 to 604800 seconds"),
    ({"SPOTIFY_LOGGER_REQUEST_BUDGET_WINDOW": "1e-7"}, "from 10 to 604800 seconds"),
])
def test_budget_settings_are_validated(env: dict[str, str], message: str) -> None:
    """One range per setting, the table's: the converter said "0.001 to 2.592e+06", then a
    second check "10 to 604800"."""
    with pytest.raises(ConfigError, match=message) as info:
        Settings.from_env(env)
    assert "0.001" not in str(info.value) and "2.592e" not in str(info.value), info.value


def test_a_short_budget_window_only_against_the_simulator() -> None:
    loopback = {"SPOTIFY_API_URL": "http://127.0.0.1:1/v1", "SPOTIFY_LOGGER_REQUEST_BUDGET_WINDOW": "2"}
    assert Settings.from_env(loopback).request_budget_window_s == 2.0
    with pytest.raises(ConfigError, match="REQUEST_BUDGET_WINDOW"):   # 240 buckets of a few ms: no
        Settings.from_env({**loopback, "SPOTIFY_LOGGER_REQUEST_BUDGET_WINDOW": "0.5"})


def test_budget_settings_round_trip_to_a_child_process() -> None:
    settings = Settings.from_env({"SPOTIFY_LOGGER_REQUEST_BUDGET": "300", "SPOTIFY_LOGGER_REQUEST_BUDGET_WINDOW": "3600"})
    assert (settings.request_budget, settings.request_budget_window_s) == (300, 3600.0)
    assert Settings.from_env(settings.to_env()) == settings
    assert (Settings().request_budget, Settings().request_budget_window_s) == (1000, 86400.0)


def test_a_reserve_keeps_calls_for_recently_played(sim_factory: Any, settings_for: Any, fake_redis: Any,
                                                   clock: FakeClock) -> None:
    sim = sim_factory(Script((Play(LONG, 3_600_000),)), clock=clock)
    settings = settings_for(sim, request_budget=3, request_budget_window_s=600.0)
    budget = RequestBudget(settings, fake_redis, settings.state_dir, clock)
    client = make_client(settings, budget=budget)
    assert client.player(reserve=1) is not None
    assert client.player(reserve=1) is not None
    with pytest.raises(BudgetExhausted, match="1 held in reserve"):
        client.player(reserve=1)
    assert len(sim.requests_to("/v1/")) == 2, "a refused call is never sent"
    assert client.recently_played() is not None  # what the reserve was kept for
    assert budget.view().calls_left == 0
