"""Fault tests with real processes: run.py, the poller it starts, a real redis-server that the
test stops and starts, and the simulator over loopback. After each fault, every counted play
of the scripted session is in Redis exactly once.

Tracks are a few seconds long (min_play_ms is 2 s) so the whole file stays quick.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime
from typing import Any, Callable

import pytest
import redis
import structlog
from conftest import Proc, assert_counter_invariant, env_for, pid_gone, play_hashes, run_py_cmd, wait_until
from helpers import make_client

from spotify_logger import keys
from spotify_logger.config import Settings
from spotify_logger.cooldown import Cooldown
from spotify_logger.errors import RateLimited
from spotify_logger.redisproc import RedisServer, free_port
from spotify_logger.store import connect
from spotify_logger.simulator import Fault, Idle, Play, Script, SpotifySimulator, track

pytestmark = pytest.mark.slow


A, B, C = track("Fault A", 4000), track("Fault B", 5000), track("Fault C", 9000)


# --- helpers -------------------------------------------------------------------------------


def start_logger(spawn: Callable[..., Proc], sim: SpotifySimulator, settings: Settings, script: Script,
                 **env: str) -> Proc:
    """run.py with fast restarts; the script starts once the first poller is up, so its first
    poll cannot catch a track that then seems to start over."""
    proc = spawn(run_py_cmd(), env_for(settings, SPOTIFY_LOGGER_RESTART_DELAY="0.2", **env))
    proc.wait_for("poller_started")
    sim.load_script(script)
    return proc


@pytest.fixture
def logger_playing_c(sim_factory, settings_for, redis_server, spawn) -> Callable[..., Any]:
    """run.py recording C (9 s, then nothing), returned once C's play is open in Redis:
    (simulator, Redis client, run.py, the listening:current key)."""

    def start(**overrides: Any) -> tuple[SpotifySimulator, Any, Proc, str]:
        sim = sim_factory(Script())
        client = redis_server.client()
        proc = start_logger(spawn, sim, settings_for(sim, redis_server.url, **overrides),
                            Script((Play(C, 9000), Idle(60_000))))
        current = wait_until(lambda: client.get("listening:current"), "the first play in Redis")
        return sim, client, proc, current

    return start


def c_counted_once_then_stop(proc: Proc, client: "redis.Redis[str]") -> None:
    """C played to the end is one counted play, and run.py still stops cleanly within 5 s."""
    wait_until(lambda: counted(client, C.uri), "C counted")
    assert_each_counted_once(client, C)
    assert proc.terminate(timeout=5) == 0  # the bound for a clean stop


def child_pid(proc: Proc) -> int:
    return int(proc.events("child_started")[-1]["pid"])


def stamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def counted(client: "redis.Redis[str]", uri: str) -> bool:
    return any(h.get("uri") == uri and h.get("counted") == "1" for h in play_hashes(client).values())


def assert_each_counted_once(client: "redis.Redis[str]", *items: Any) -> dict[str, dict[str, str]]:
    """One play hash per scripted item, counted, and counters that agree."""
    by_uri: dict[str, list[dict[str, str]]] = {}
    for h in play_hashes(client).values():
        by_uri.setdefault(h["uri"], []).append(h)
    assert sorted(by_uri) == sorted(i.uri for i in items), by_uri
    for item in items:
        assert len(by_uri[item.uri]) == 1, f"{item.name} recorded {len(by_uri[item.uri])} times"
        assert by_uri[item.uri][0]["counted"] == "1", by_uri[item.uri]
        assert client.zscore("plays:tracks", item.uri) == 1
    assert_counter_invariant(client)
    return {uri: hashes[0] for uri, hashes in by_uri.items()}


# --- the done-when faults --------------------------------------------------------------------


def test_poller_killed_mid_play_continues_the_same_play(sim_factory, settings_for, redis_server, spawn):
    sim = sim_factory(Script())
    client = redis_server.client()
    proc = start_logger(spawn, sim, settings_for(sim, redis_server.url), Script((Play(A, 3000), Play(B, 5000), Idle(60_000))))
    current = wait_until(lambda: client.get("listening:current"), "the first play in Redis")
    first = child_pid(proc)
    time.sleep(0.8)  # mid-play: A has been heard for about a second

    os.kill(first, signal.SIGKILL)

    restarted = proc.wait_for("poller_started", count=2)[-1]
    assert child_pid(proc) != first
    assert proc.events("child_exited")[0]["signal"] == "SIGKILL"
    assert restarted["restored_play"] == int(current.split(":")[1]), "the restarted poller must continue the open play"
    wait_until(lambda: counted(client, B.uri), "B counted")
    plays = assert_each_counted_once(client, A, B)
    # The kill did not split A, and the time it was down still counted as heard.
    assert client.zrange("listening:index", 0, 0) == [current.split(":")[1]]
    assert int(plays[A.uri]["ms_played"]) >= 2_500
    assert proc.terminate(timeout=5) == 0


def test_redis_down_mid_play_spools_and_replays(sim_factory, settings_for, redis_server, spawn):
    # 20 s, as the issue says: it spans the end of A, the whole of B and the start of C, so the
    # spool holds play starts, ends and counter flips, and Redis returns mid-play (during C).
    outage_s = 20.0
    long_c = track("Fault C long", 14_000)
    sim = sim_factory(Script())
    settings = settings_for(sim, redis_server.url)
    client = redis_server.client()
    proc = start_logger(spawn, sim, settings,
                        Script((Play(A, 4000), Play(B, 5000), Play(long_c, 14_000), Idle(60_000))))
    wait_until(lambda: client.get("listening:current"), "the first play in Redis")
    time.sleep(0.5)

    redis_server.stop()  # SHUTDOWN SAVE: what Redis held survives, as with a real restart
    time.sleep(outage_s)
    assert proc.events("store_unavailable"), "the poller should have noticed the outage"
    assert settings.state_dir.joinpath("spool.jsonl").stat().st_size > 0
    redis_server.start()

    replayed = proc.wait_for("spool_replayed")[0]
    assert replayed["batches"] >= 3
    client = redis_server.client()
    wait_until(lambda: counted(client, long_c.uri), "C counted")
    assert_each_counted_once(client, A, B, long_c)
    assert settings.state_dir.joinpath("spool.jsonl").stat().st_size == 0
    assert len(proc.events("child_started")) == 1, "an outage is no reason to crash"
    assert proc.terminate(timeout=5) == 0


def test_rate_limit_then_sigkill_no_request_before_the_deadline(logger_playing_c):
    sim, client, proc, _ = logger_playing_c()

    sim.inject(Fault("rate_limit", path="/v1/me/player", retry_after=5))
    wait_until(lambda: [r for r in sim.requests if r.status == 429], "the 429")
    proc.wait_for("rate_limited")
    # The deadline is in Redis, with a TTL (it is written just after the log line).
    key = keys.cooldown_key(sim.client_id)  # the app's cooldown, shared by all its processes
    assert wait_until(lambda: max(client.ttl(key), 0), "the deadline in Redis") <= 5
    os.kill(child_pid(proc), signal.SIGKILL)

    restored = proc.wait_for("cooldown_restored")[0]
    assert restored["source"] == "redis"
    told = next(r for r in sim.requests if r.status == 429)
    wait_until(lambda: [r for r in sim.requests if r.t > told.t and r.status == 200 and r.path == "/v1/me/player"],
               "polling to resume after the deadline", timeout=10)
    early = [r for r in sim.requests if r.path.startswith("/v1/") and told.t < r.t < told.t + 5]
    assert early == [], f"requests inside the Retry-After window: {early}"
    assert sim.violations == []
    c_counted_once_then_stop(proc, client)


def test_bad_upstream_503_burst_and_slow_responses(logger_playing_c):
    sim, client, proc, _ = logger_playing_c(read_timeout=0.5)

    # One poll's four attempts meet two 503s and then two answers slower than the read timeout.
    sim.inject(Fault("status", path="/v1/me/player", status=503, count=2),
               Fault("slow", path="/v1/me/player", delay_s=1.0, count=2))
    failed = proc.wait_for("poll_failed")[0]
    # The simulator logs a slow request once it has answered, with the time it arrived.
    wait_until(lambda: len([r for r in sim.requests if r.fault == "slow"]) == 2, "both slow answers")
    wait_until(lambda: [r for r in sim.requests if r.t > max(x.t for x in sim.requests if x.fault) and r.status == 200],
               "a good poll after the faults")

    assert "timed out" in failed["error"]  # the last attempt was a slow one
    assert [r.status for r in sim.requests if r.fault == "status"] == [503, 503]
    assert len([r for r in sim.requests if r.fault == "slow"]) == 2
    assert [e["attempt"] for e in proc.events("api_retry")] == [1, 2, 3]
    assert len(proc.events("child_started")) == 1, "bad upstream answers are no reason to crash"
    c_counted_once_then_stop(proc, client)


def test_sigterm_stops_everything_within_5s_with_exit_0(logger_playing_c):
    _, client, proc, current = logger_playing_c()
    child = child_pid(proc)

    started = time.monotonic()
    code = proc.terminate(timeout=5)
    took = time.monotonic() - started

    assert code == 0
    assert took < 5
    assert pid_gone(child)
    assert [e["signal"] for e in proc.events("signal_forwarded")] == ["SIGTERM"]
    assert proc.events("poller_stopped")[-1]["exit_code"] == 0
    assert len(proc.events("child_started")) == 1
    # Stopped before it counted: one play, open, not counted, and no counter touched.
    assert list(play_hashes(client)) == [int(current.split(":")[1])]
    assert client.zcard("plays:tracks") == 0
    assert_counter_invariant(client)


def test_crash_at_start_gets_growing_backoff(sim_factory, settings_for, redis_server, spawn):
    # A damaged poll time fails the store script's comparison, for good: the real poller exits 70
    # (internal error, so run.py restarts it) right after it starts, every time. (A key of the
    # wrong type is a foreign key now: exit 78, never restarted.)
    sim = sim_factory(Script((Play(C, 9000), Idle(60_000))))
    redis_server.client().hset("spotify-logger:status", "last_poll_at", "not a number")
    env = env_for(settings_for(sim, redis_server.url), SPOTIFY_LOGGER_RESTART_DELAY="0.2",
                  SPOTIFY_LOGGER_RESTART_MAX_DELAY="0.8")
    proc = spawn(run_py_cmd(), env)

    starts = proc.wait_for("child_started", count=5, timeout=20)
    exits = proc.events("child_exited")[:4]
    assert proc.terminate(timeout=5) == 0

    assert {e.get("exit_code") for e in exits} == {70}, proc.lines
    assert [e["delay_s"] for e in proc.events("restart_scheduled")[:4]] == [0.2, 0.4, 0.8, 0.8]
    # Measured from the log: each restart waited at least its delay after the exit, and the
    # gaps grew until the cap. A tight loop would show gaps of a few milliseconds.
    gaps = [stamp(start) - stamp(exit_) for exit_, start in zip(exits, starts[1:])]
    for gap, delay in zip(gaps, [0.2, 0.4, 0.8, 0.8]):
        assert delay - 0.01 <= gap < delay + 1.0, gaps
    assert gaps[0] < gaps[1] < gaps[2], gaps


# --- rate limits across restarts -------------------------------------------------------------


def test_cooldown_kept_in_state_dir_while_redis_is_down_and_honoured_after_restart(sim_factory, settings_for, tmp_path):
    sim = sim_factory(Script((Play(C, 9000),)))
    settings = settings_for(sim)
    dead_redis = connect(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    state_file = settings.state_dir / "cooldown.json"
    sim.inject(Fault("rate_limit", path="/v1/me/player", retry_after=30))

    with pytest.raises(RateLimited):
        make_client(settings, Cooldown(state_file=state_file, redis_client=dead_redis), attempts=1).player()
    assert json.loads(state_file.read_text())["until"] == pytest.approx(time.time() + 30, abs=2)

    # A new process: the deadline comes back from the state dir, and no request goes out.
    before = len(sim.requests)
    restarted = Cooldown(state_file=state_file, redis_client=dead_redis)
    assert restarted.load() == pytest.approx(time.time() + 30, abs=2)
    with pytest.raises(RateLimited):
        make_client(settings, restarted, attempts=1).player()
    assert len(sim.requests) == before


def test_cooldown_in_redis_has_a_ttl_and_outlives_a_lost_state_dir(real_redis, tmp_path):
    now = [1_000_000.0]
    cooldown = Cooldown(state_file=tmp_path / "cooldown.json", redis_client=real_redis, clock=lambda: now[0])
    cooldown.start(42)
    assert 40 <= real_redis.ttl("spotify-logger:cooldown") <= 42
    (tmp_path / "cooldown.json").unlink()

    fresh = Cooldown(state_file=tmp_path / "cooldown.json", redis_client=real_redis, clock=lambda: now[0])
    assert fresh.load() == pytest.approx(1_000_042)
    with pytest.raises(RateLimited):
        fresh.check()
    now[0] += 42
    fresh.check()  # the deadline passed: requests may go again


def test_long_retry_after_is_a_warning_naming_the_deadline(tmp_path):
    with structlog.testing.capture_logs() as events:
        Cooldown(state_file=tmp_path / "c.json", clock=lambda: 1_700_000_000.0).start(3600)
        Cooldown(state_file=tmp_path / "d.json", clock=lambda: 1_700_000_000.0).start(30)
    long, short = events
    assert long["log_level"] == "warning" and long["event"] == "rate_limited_long"
    assert long["deadline"] == "2023-11-14T23:13:20+00:00"
    assert short["log_level"] == "info" and short["event"] == "rate_limited"


def test_restarted_poller_waits_for_a_cooldown_from_the_state_dir(sim_factory, settings_for, redis_server, spawn):
    # A 429 came while Redis was down, so only the state dir holds the deadline; Redis is back
    # when the poller restarts. It must not call Spotify before the deadline.
    sim = sim_factory(Script((Play(C, 9000),)))
    settings = settings_for(sim, redis_server.url)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + 1.5
    settings.state_dir.joinpath("cooldown.json").write_text(json.dumps({"until": deadline}))
    env = env_for(settings, SPOTIFY_LOGGER_RESTART_DELAY="0.2")
    proc = spawn(run_py_cmd(), env)
    assert proc.wait_for("cooldown_restored")[0]["source"] == "state_dir"
    wait_until(lambda: sim.requests_to("/v1/"), "a poll after the deadline", timeout=20)
    assert min(r.t for r in sim.requests_to("/v1/")) >= deadline - 0.05
    assert proc.terminate(timeout=5) == 0


def test_redis_server_restart_keeps_data(redis_server: RedisServer):
    # The outage test relies on this: SHUTDOWN SAVE, then start on the same port.
    redis_server.client().set("k", "v")
    redis_server.stop()
    redis_server.start()
    assert redis_server.client().get("k") == "v"
