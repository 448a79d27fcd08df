"""A full Redis (maxmemory reached, policy noeviction), the way a Pi's Redis fills up: the
poller spools, says store_full once with the numbers, `status` calls it a problem, and when
Redis has room again the spool replays, each play counted once. Real run.py, real redis-server,
the simulator playing."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import pytest
import structlog

from helpers import MON, A as PLAYED, B as OTHER, add_play, ext, run_cli, write_json
from conftest import Proc, assert_counter_invariant, env_for, play_hashes, run_py_cmd, wait_until
from spotify_logger.batch import Batch, PlayWrite
from spotify_logger.cli import main
from spotify_logger.redisproc import RedisServer
from spotify_logger.simulator import Idle, Play, Script, track
from spotify_logger.spool import Spool
from spotify_logger.store import Store
from spotify_logger.writer import Writer

A, B, C = track("Full A", 4000), track("Full B", 4000), track("Full C", 8000)


def fill_up(client: Any) -> None:
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)   # far below what Redis already uses: every write is refused


def counted_once(client: Any, *items: Any) -> None:
    by_uri: dict[str, list[dict[str, str]]] = {}
    for h in play_hashes(client).values():
        by_uri.setdefault(h["uri"], []).append(h)
    assert sorted(by_uri) == sorted(i.uri for i in items), by_uri
    for item in items:
        assert len(by_uri[item.uri]) == 1 and by_uri[item.uri][0]["counted"] == "1", by_uri[item.uri]
        assert client.zscore("plays:tracks", item.uri) == 1
    assert_counter_invariant(client)


@pytest.mark.slow
def test_a_full_redis_spools_says_so_once_and_replays_when_it_has_room(
        sim_factory: Callable[..., Any], settings_for: Callable[..., Any], redis_server: RedisServer,
        spawn: Callable[..., Proc], capsys: pytest.CaptureFixture[str]) -> None:
    sim = sim_factory(Script())
    settings = settings_for(sim, redis_server.url)
    client = redis_server.client()
    proc = spawn(run_py_cmd(), env_for(settings, SPOTIFY_LOGGER_RESTART_DELAY="0.2"))
    proc.wait_for("poller_started")
    sim.load_script(Script((Play(A, 4000), Play(B, 4000), Play(C, 8000), Idle(60_000))))
    wait_until(lambda: client.get("listening:current"), "A in Redis")

    fill_up(client)
    full = proc.wait_for("store_full")[0]
    assert full["maxmemory"] == 1 and full["used_memory"] > 1
    spool = settings.state_dir / "spool.jsonl"
    wait_until(lambda: spool.exists() and spool.stat().st_size, "plays in the spool")
    time.sleep(5)   # B plays through while Redis is full, and C starts

    # status: a problem (exit 69), in text and JSON, while the poller waits.
    assert main(["status"], env=env_for(settings)) == 69
    out = capsys.readouterr().out
    assert "reachable, FULL" in out and any("Redis is full" in line for line in out.splitlines()
                                            if line.startswith("problem:"))
    assert main(["status", "--json"], env=env_for(settings)) == 69
    health = json.loads(capsys.readouterr().out)
    assert health["redis_full"] and health["redis_memory"]["maxmemory"] == 1 and health["redis_reachable"]

    client.config_set("maxmemory", 0)   # room again
    assert proc.wait_for("spool_replayed")[0]["batches"] >= 3
    wait_until(lambda: any(h.get("uri") == C.uri and h.get("counted") == "1" for h in play_hashes(client).values()),
               "C counted")
    counted_once(client, A, B, C)
    assert len(proc.events("store_full")) == 1, "said once, not once a poll"
    assert len(proc.events("child_started")) == 1, "a full store is no reason to crash"
    assert proc.events("store_available")
    assert main(["check"], env=env_for(settings)) == 0, capsys.readouterr().out
    assert proc.terminate(timeout=5) == 0


def test_store_full_is_logged_once_until_a_write_lands_again(tmp_path: Any, real_redis: Any) -> None:
    writer = Writer(Store(real_redis), Spool(tmp_path / "spool.jsonl"))
    fields = {"started_at": 1, "uri": "spotify:track:x"}

    def poll(at: int) -> bool:
        return writer.write(Batch(polled_at=at, writes=(PlayWrite(1, {**fields, "last_seen_at": at}, fields["uri"]),),
                                  current=1))

    with structlog.testing.capture_logs() as logs:
        fill_up(real_redis)
        assert [poll(at) for at in (10, 20, 30)] == [False, False, False]
        real_redis.config_set("maxmemory", 0)
        assert poll(40) is True
        fill_up(real_redis)
        assert poll(50) is False
        real_redis.config_set("maxmemory", 0)
    events = [e["event"] for e in logs if e["event"].startswith("store_")]
    assert events == ["store_full", "store_available", "store_full"]
    assert real_redis.hget("listening:1", "last_seen_at") == "40"
    assert all(e["maxmemory"] == 1 and e["used_memory"] > 1 for e in logs if e["event"] == "store_full")


@pytest.mark.parametrize("argv", [["import"], ["check", "--repair"]])
def test_a_command_on_a_full_redis_says_what_to_do_not_spool(argv: list[str], redis_server: RedisServer,
                                                             tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing is spooled by these: "plays wait in the spool" was untrue."""
    client = redis_server.client()
    add_play(client, MON, 60_000)
    client.zrem("plays:tracks", PLAYED)   # something for repair to write
    if argv == ["import"]:
        argv = ["import", str(write_json(tmp_path / "Streaming_History_Audio_2024.json",
                                         [ext(MON + 10 * 60_000, 120_000, OTHER)]))]
    fill_up(client)
    code, out, err = run_cli(capsys, redis_server.url, *argv)
    assert code == 75, (out, err)
    said = out.splitlines()[0] if argv[0] == "import" else err   # import's summary, check's one line
    assert "Redis is full" in said and "raise maxmemory" in said and " again" in said, (out, err)
    if argv[0] == "check":
        assert err.count("\n") == 1 and out == "", (out, err)
    assert "spool" not in err + out, (out, err)
