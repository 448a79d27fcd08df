"""Someone else's data under our names. A key of another type (`SET plays:tracks x`) is a foreign
key: every command says which in one line and exits 78, the poller too (run.py does not restart
it), and `status` reports it as the problem, Redis being reachable. A hash under a play key with
none of the play fields is foreign too: `check` reports it, and repair leaves it out of the index
and the counters every time."""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest

from conftest import Proc, env_for, redis_dump, run_py_cmd
from helpers import A, MON, add_play, run_cli
from spotify_logger import keys
from spotify_logger.batch import Batch, PlayWrite
from spotify_logger.cli import main
from spotify_logger.errors import ForeignKey
from spotify_logger.redisproc import RedisServer
from spotify_logger.simulator import Idle, Play, Script, track
from spotify_logger.store import Store

FOREIGN = ["plays:tracks", "listening:index", "spotify-logger:status", "gaps"]
# The commands, and which of the keys above each one reads.
COMMANDS = [
    (["stats", "top", "tracks"], {"plays:tracks", "listening:index"}),
    (["stats", "top", "albums"], {"listening:index"}),
    (["export"], {"listening:index"}),
    (["playlist", "--dry-run"], {"listening:index"}),
    (["check"], set(FOREIGN)),
]


def one_line_naming(err: str, key: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert key in lines[0] and "not ours" in lines[0] and "Traceback" not in err, err


@pytest.mark.parametrize("key", FOREIGN)
def test_every_command_names_the_foreign_key_and_exits_78(key: str, redis_server: RedisServer,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    client = redis_server.client()
    add_play(client, MON, 60_000)
    client.delete(key)
    client.set(key, "x")
    for argv, reads in COMMANDS:
        if key not in reads:
            continue
        code, _, err = run_cli(capsys, redis_server.url, *argv)
        assert code == 78, (argv, err)
        one_line_naming(err, key)
    assert client.get(key) == "x", "a foreign key is never overwritten"


@pytest.mark.parametrize("key", FOREIGN)
def test_status_reports_the_foreign_key_with_redis_reachable(key: str, redis_server: RedisServer,
                                                             sim_factory: Callable[..., Any],
                                                             settings_for: Callable[..., Any],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    client = redis_server.client()
    Store(client).apply(Batch(polled_at=MON))
    client.delete(key)
    client.set(key, "x")
    settings = settings_for(sim_factory(), redis_server.url)
    assert main(["status"], env=env_for(settings)) == 69
    out = capsys.readouterr().out
    assert "UNREACHABLE" not in out and f"FOREIGN KEY ({key}" in out
    assert any(key in line and "not ours" in line for line in out.splitlines() if line.startswith("problem:"))
    assert main(["status", "--json"], env=env_for(settings)) == 69
    health = json.loads(capsys.readouterr().out)
    assert health["redis_reachable"] and health["foreign_keys"] == [key] and not health["healthy"]


def test_the_store_script_checks_types_before_it_writes_anything(real_redis: Any) -> None:
    # Without it, the counter bump failed after counted=1 had been written: counted forever,
    # never in plays:tracks.
    real_redis.set("plays:tracks", "x")
    fields = {"started_at": MON, "last_seen_at": MON + 60_000, "uri": A, "counted": "1"}
    with pytest.raises(ForeignKey) as caught:
        Store(real_redis).apply(Batch(polled_at=MON + 60_000, writes=(PlayWrite(MON, fields, A, counted=True),),
                                      current=MON))
    assert caught.value.key == "plays:tracks"
    assert real_redis.keys("*") == ["plays:tracks"], "nothing written"


@pytest.mark.slow
@pytest.mark.parametrize("key", ["plays:tracks", "listening:index", "gaps"])
def test_the_poller_exits_78_once_naming_the_key(key: str, redis_server: RedisServer, sim_factory: Callable[..., Any],
                                                 settings_for: Callable[..., Any], spawn: Callable[..., Proc]) -> None:
    client = redis_server.client()
    client.set(key, "x")
    sim = sim_factory(Script((Play(track("Foreign", 20_000), 20_000), Idle(60_000))))
    proc = spawn(run_py_cmd(), env_for(settings_for(sim, redis_server.url), SPOTIFY_LOGGER_RESTART_DELAY="0.2"))
    assert proc.wait(timeout=20) == 78, "\n".join(proc.lines[-20:])
    assert len(proc.events("child_started")) == 1, "no restart loop"
    failed = proc.events("startup_failed") + proc.events("poller_failed")
    assert len(failed) == 1 and key in failed[0]["error"] and failed[0]["exit_code"] == 78
    assert client.get(key) == "x"


def test_a_foreign_key_met_while_polling_spools_the_batch_and_stops(tmp_path: Any, real_redis: Any) -> None:
    from spotify_logger.spool import Spool
    from spotify_logger.writer import Writer

    writer = Writer(Store(real_redis), Spool(tmp_path / "spool.jsonl"))
    real_redis.set("listening:index", "x")
    fields = {"started_at": MON, "last_seen_at": MON, "uri": A}
    with pytest.raises(ForeignKey):
        writer.write(Batch(polled_at=MON, writes=(PlayWrite(MON, fields, A),), current=MON))
    assert [b.writes[0].fields["uri"] for b in writer.spool.batches()] == [A], "kept for after the fix"


# --- the app's budget and cooldown keys, named by its client id ---------------------------------

def budget_keys(client_id: str) -> list[str]:
    return [keys.budget_calls(client_id), keys.budget_endpoints(client_id), keys.budget_learned(client_id),
            keys.cooldown_key(client_id)]


@pytest.mark.parametrize("which", range(4), ids=["calls", "endpoints", "learned", "cooldown"])
def test_check_and_status_name_a_foreign_budget_key(which: int, redis_server: RedisServer,
                                                    sim_factory: Callable[..., Any],
                                                    settings_for: Callable[..., Any],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """backfill and the poller said "`spotify-logger check` names it", and check said ok."""
    settings = settings_for(sim_factory(), redis_server.url)
    client = redis_server.client()
    Store(client).apply(Batch(polled_at=MON))
    key = budget_keys(settings.client_id)[which]
    client.zadd(key, {"x": 1})  # a type none of them has
    assert main(["check"], env=env_for(settings)) == 78
    one_line_naming(capsys.readouterr().err, key)
    assert main(["status", "--json"], env=env_for(settings)) == 69
    health = json.loads(capsys.readouterr().out)
    assert health["redis_reachable"] and health["foreign_keys"] == [key]
    assert client.zrange(key, 0, -1) == ["x"], "a foreign key is never overwritten"


def test_a_budget_key_met_by_the_budget_script_is_named(redis_server: RedisServer, sim_factory: Callable[..., Any],
                                                        settings_for: Callable[..., Any],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    settings = settings_for(sim_factory(), redis_server.url)
    key = keys.budget_calls(settings.client_id)
    redis_server.client().set(key, "x")
    assert main(["backfill"], env=env_for(settings)) == 78
    one_line_naming(capsys.readouterr().err, key)


@pytest.mark.slow
def test_the_poller_exits_78_once_naming_a_budget_key(redis_server: RedisServer, sim_factory: Callable[..., Any],
                                                      settings_for: Callable[..., Any],
                                                      spawn: Callable[..., Proc]) -> None:
    settings = settings_for(sim_factory(Script((Idle(60_000),))), redis_server.url)
    key = keys.budget_calls(settings.client_id)
    redis_server.client().set(key, "x")
    proc = spawn(run_py_cmd(), env_for(settings, SPOTIFY_LOGGER_RESTART_DELAY="0.2"))
    assert proc.wait(timeout=20) == 78, "\n".join(proc.lines[-20:])
    assert len(proc.events("child_started")) == 1, "no restart loop"
    failed = proc.events("startup_failed") + proc.events("poller_failed")
    assert len(failed) == 1 and key in failed[0]["error"], failed


# --- a foreign hash under a play key (item 6) ---------------------------------------------------

@pytest.mark.parametrize("indexed", [False, True], ids=["not-indexed", "indexed"])
def test_repair_leaves_a_foreign_hash_out_every_time(indexed: bool, redis_server: RedisServer,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    client = redis_server.client()
    add_play(client, MON, 60_000)
    client.hset("listening:1700000000000", "foreign", "yes")
    if indexed:
        client.zadd("listening:index", {"1700000000000": 1700000000000})
    outputs, dumps = [], []
    for _ in range(3):
        code, out, _ = run_cli(capsys, redis_server.url, "check", "--repair")
        assert code == 65, out   # reported every time: repair cannot fix someone else's key
        assert "listening:1700000000000 is not a play" in out
        outputs.append(out.splitlines()[0])
        dumps.append(redis_dump(client))
    assert outputs[1] == outputs[2] and dumps[0] == dumps[1] == dumps[2], outputs
    assert "0 plays added to the index, 0 stale index members removed" in outputs[1]
    assert client.zrange("listening:index", 0, -1) == [str(MON)]
    assert client.hgetall("listening:1700000000000") == {"foreign": "yes"}
    assert client.zrange("plays:tracks", 0, -1, withscores=True) == [(A, 1.0)]
    code, out, _ = run_cli(capsys, redis_server.url, "check", "--json")
    report = json.loads(out)
    assert report["foreign"]["problems"] == 1 and report["index"]["problems"] == 0 and not report["ok"]


def test_a_play_missing_the_fields_check_reads_is_still_a_play(redis_server: RedisServer,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    client = redis_server.client()
    client.hset("listening:1700000000000", mapping={"name": "Song", "album": "Album"})   # no uri: broken, but ours
    code, out, _ = run_cli(capsys, redis_server.url, "check", "--repair")
    assert code == 65 and "has no uri" in out and "not a play" not in out
    assert client.zrange("listening:index", 0, -1) == ["1700000000000"]
