"""One poller per state dir and keyspace: the state dir's flock and the Redis lease, with real
run.py and poller processes, a real redis-server and the simulator (issue 17, item 2)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import Proc, assert_counter_invariant, env_for, play_hashes, poller_cmd, run_py_cmd, wait_until
from test_supervisor import load_run_py

from spotify_logger import instancelock, keys
from spotify_logger.config import Settings
from spotify_logger.redisproc import RedisServer
from spotify_logger.simulator import Play, Script, track
from spotify_logger.spool import Spool

pytestmark = pytest.mark.slow

SONG = track("Heard once", 60_000, ("A",))
LONG = Script((Play(SONG, 60_000),))
HOST = socket.gethostname()
FOREIGN = json.dumps({"id": "f" * 32, "pid": 4242, "host": "elsewhere", "state_dir": "/srv/other"})


def supervised(spawn: Callable[..., Proc], settings: Settings) -> Proc:
    return spawn(run_py_cmd(), env_for(settings, SPOTIFY_LOGGER_RESTART_DELAY="0.2"))


def poller(spawn: Callable[..., Proc], settings: Settings) -> Proc:
    return spawn(poller_cmd(), env_for(settings))


def quick_lease(settings: Settings) -> Settings:
    """Settings whose lease TTL is the floor (5 s): short polls and timeouts."""
    return dataclasses.replace(settings, max_poll_interval=0.5, idle_max_interval=0.5, connect_timeout=0.5,
                               read_timeout=0.5)


def counted_once(client: Any) -> None:
    wait_until(lambda: any(p.get("counted") == "1" for p in play_hashes(client).values()), "the play counted")


def assert_heard_once(client: Any) -> None:
    plays = play_hashes(client)
    assert len(plays) == 1, plays
    assert client.zscore(keys.TRACK_COUNTS, SONG.uri) == 1
    assert_counter_invariant(client)


def only_line(proc: Proc) -> dict[str, Any]:
    assert len(proc.lines) == 1, proc.lines
    return json.loads(proc.lines[0])


def lease(client: Any) -> dict[str, Any]:
    raw = client.get(keys.LEASE)
    return json.loads(raw) if raw else {}


# --- the same state dir: the flock ---------------------------------------------------------------

def test_a_second_run_py_on_the_same_state_dir_exits_75_at_once_naming_the_first(
        sim_factory, settings_for, redis_server: RedisServer, spawn) -> None:
    sim = sim_factory(LONG)
    settings = settings_for(sim, redis_server.url)
    first = supervised(spawn, settings)
    first.wait_for("play_started")

    second = supervised(spawn, settings)
    assert second.wait(timeout=5) == 75
    refusal = only_line(second)  # no child started, nothing else said
    assert refusal["event"] == "instance_locked"
    assert f"another poller (pid {first.popen.pid} on {HOST}) is recording into this state dir" in refusal["error"]

    client = redis_server.client()
    counted_once(client)
    assert first.popen.poll() is None and len(first.events("child_started")) == 1
    assert first.terminate() == 0
    assert_heard_once(client)


def test_a_poller_started_by_hand_beside_run_py_is_refused_with_one_line(
        sim_factory, settings_for, redis_server: RedisServer, spawn) -> None:
    sim = sim_factory(LONG)
    settings = settings_for(sim, redis_server.url)
    first = supervised(spawn, settings)
    first.wait_for("play_started")
    spool_before = Spool.in_state_dir(settings.state_dir).size()

    second = poller(spawn, settings)
    assert second.wait(timeout=10) == 75
    refusal = only_line(second)
    assert refusal["event"] == "startup_failed" and refusal["exit_code"] == 75
    assert f"(pid {first.popen.pid} on {HOST})" in refusal["error"]
    assert Spool.in_state_dir(settings.state_dir).size() == spool_before
    assert not (settings.state_dir / instancelock.REFUSED_FILE).exists()  # the holder's run.py is unaffected

    counted_once(redis_server.client())
    assert first.terminate() == 0
    assert len(first.events("child_started")) == 1
    assert_heard_once(redis_server.client())


# --- one Redis, two state dirs ("two machines"): the lease ----------------------------------------

def test_a_second_state_dir_on_the_same_redis_is_refused_by_the_lease_and_not_restarted(
        sim_factory, settings_for, redis_server: RedisServer, spawn, tmp_path: Path) -> None:
    sim = sim_factory(LONG)
    first = supervised(spawn, settings_for(sim, redis_server.url))
    first.wait_for("play_started")
    child = int(first.events("child_started")[0]["pid"])

    other = settings_for(sim, redis_server.url, state_dir=tmp_path / "elsewhere")
    second = supervised(spawn, other)
    assert second.wait(timeout=10) == 75
    [refusal] = second.events("child_fatal")
    assert f"another poller (pid {child} on {HOST}, state dir " in refusal["error"]
    assert refusal["error"].endswith("is recording into this Redis")
    assert second.events("startup_failed")[0]["exit_code"] == 75
    assert len(second.events("child_started")) == 1 and not second.events("restart_scheduled")
    assert not (other.state_dir / instancelock.REFUSED_FILE).exists()  # run.py took it in

    client = redis_server.client()
    counted_once(client)
    assert first.terminate() == 0
    assert_heard_once(client)


def test_the_lease_is_renewed_and_outlives_a_sigkill_until_its_ttl(
        sim_factory, settings_for, redis_server: RedisServer, spawn, tmp_path: Path) -> None:
    sim = sim_factory(LONG)
    client = redis_server.client()
    first = poller(spawn, quick_lease(settings_for(sim, redis_server.url)))
    first.wait_for("play_started")
    assert first.events("poller_started")[0]["lease_ttl_s"] == 5.0
    assert lease(client)["pid"] == first.popen.pid
    time.sleep(2.5)
    assert client.pttl(keys.LEASE) > 3_500, "each poll renews the lease"

    first.popen.send_signal(signal.SIGKILL)
    first.wait()
    other = quick_lease(settings_for(sim, redis_server.url, state_dir=tmp_path / "elsewhere"))
    refused = poller(spawn, other)
    assert refused.wait(timeout=10) == 75
    assert f"(pid {first.popen.pid} on {HOST}, " in only_line(refused)["error"]

    wait_until(lambda: not client.exists(keys.LEASE), "the dead poller's lease to expire", timeout=6)
    taker = poller(spawn, other)
    taker.wait_for("poller_started")
    wait_until(lambda: lease(client).get("pid") == taker.popen.pid, "the lease taken over")
    assert taker.terminate() == 0


def test_after_a_sigkill_the_same_state_dir_takes_its_lease_back_at_once(
        sim_factory, settings_for, redis_server: RedisServer, spawn) -> None:
    sim = sim_factory(LONG)
    settings = settings_for(sim, redis_server.url)
    client = redis_server.client()
    first = poller(spawn, settings)
    first.wait_for("play_started")
    first.popen.send_signal(signal.SIGKILL)
    first.wait()
    assert lease(client)["pid"] == first.popen.pid  # still there, for its TTL

    again = poller(spawn, settings)
    again.wait_for("poller_started", timeout=5)
    assert lease(client)["pid"] == again.popen.pid
    counted_once(client)
    assert again.terminate() == 0
    assert_heard_once(client)


def test_a_clean_stop_releases_the_lease_so_another_poller_starts_at_once(
        sim_factory, settings_for, redis_server: RedisServer, spawn, tmp_path: Path) -> None:
    sim = sim_factory(LONG)
    client = redis_server.client()
    first = supervised(spawn, settings_for(sim, redis_server.url))
    first.wait_for("play_started")
    assert client.exists(keys.LEASE)
    assert first.terminate() == 0
    assert not client.exists(keys.LEASE)

    second = supervised(spawn, settings_for(sim, redis_server.url, state_dir=tmp_path / "elsewhere"))
    second.wait_for("poller_started", timeout=5)
    assert not second.events("child_fatal")
    assert second.terminate() == 0


def test_a_lease_taken_while_redis_was_away_stops_the_poller_before_it_writes(
        sim_factory, settings_for, redis_server: RedisServer, spawn, tmp_path: Path) -> None:
    sim = sim_factory(LONG)
    settings = settings_for(sim, redis_server.url)
    proc = supervised(spawn, settings)
    proc.wait_for("play_started")
    redis_server.stop(save=True)
    proc.wait_for("store_unavailable")
    time.sleep(1.0)  # the renewal fails like the write: the poller spools and carries on
    assert proc.popen.poll() is None and len(proc.events("child_started")) == 1
    assert Spool.in_state_dir(settings.state_dir).pending()

    # Meanwhile another machine's poller took the lease: put it into the saved data, out of sight.
    with RedisServer(redis_server.directory) as meanwhile:
        meanwhile.client().set(keys.LEASE, FOREIGN, px=60_000)
        meanwhile.client().shutdown(save=True)
    redis_server.start()
    client = redis_server.client()
    before = client.hgetall(keys.STATUS), client.zrange(keys.INDEX, 0, -1)

    assert proc.wait(timeout=10) == 75
    [fatal] = proc.events("child_fatal")
    assert "another poller (pid 4242 on elsewhere, state dir /srv/other)" in fatal["error"]
    assert len(proc.events("child_started")) == 1 and not proc.events("restart_scheduled")
    assert client.get(keys.LEASE) == FOREIGN  # neither renewed nor released: not ours
    assert (client.hgetall(keys.STATUS), client.zrange(keys.INDEX, 0, -1)) == before  # nothing written
    assert Spool.in_state_dir(settings.state_dir).pending()  # the spool is not replayed into it


# --- the pieces, in-process -----------------------------------------------------------------------

def test_run_py_and_the_package_agree_on_the_lock_files() -> None:
    run_py = load_run_py()
    assert (run_py.LOCK_FILE, run_py.REFUSED_FILE) == (instancelock.LOCK_FILE, instancelock.REFUSED_FILE)
    assert run_py.state_dir({"SPOTIFY_LOGGER_STATE_DIR": "/x/y"}) == Settings.from_env(
        {"SPOTIFY_LOGGER_STATE_DIR": "/x/y"}, isatty=False).state_dir
    for env in ({"STATE_DIRECTORY": "/var/lib/spotify-logger:/other"}, {"HOME": "/home/pi"}):
        assert run_py.state_dir(env) == Settings.from_env(env, isatty=False).state_dir


def test_the_lock_is_one_per_state_dir_and_names_its_holder(tmp_path: Path) -> None:
    held = instancelock.InstanceLock.take(tmp_path / "state")
    with pytest.raises(instancelock.InstanceLocked) as refused:
        instancelock.InstanceLock.take(tmp_path / "state")  # another open file: refused, even here
    assert str(refused.value) == (f"another poller (pid {os.getpid()} on {HOST}) is recording into this "
                                  f"state dir ({tmp_path / 'state'})")
    assert refused.value.exit_code == 75
    assert instancelock.InstanceLock.take(tmp_path / "other")  # another state dir is free
    # The inherited descriptor is the same open file: granted; one of another file is ignored.
    assert instancelock.InstanceLock.take(tmp_path / "state", inherited_fd=held.fd).fd == held.fd
    with pytest.raises(instancelock.InstanceLocked):
        instancelock.InstanceLock.take(tmp_path / "state", inherited_fd=os.open(os.devnull, os.O_RDONLY))
    assert held.instance_id() == held.instance_id() != instancelock.InstanceLock.take(tmp_path / "b").instance_id()


def test_an_unwritable_state_dir_is_a_setting_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(instancelock.ConfigError, match="cannot lock the state dir"):
        instancelock.InstanceLock.take(blocker / "state")


# --- status names the poller -----------------------------------------------------------------------

def test_status_names_the_lock_holder_and_the_lease_while_a_poller_runs_and_neither_after(
        sim_factory, settings_for, redis_server: RedisServer, spawn) -> None:
    from spotify_logger import health

    sim = sim_factory(LONG)
    settings = settings_for(sim, redis_server.url)
    first = supervised(spawn, settings)
    first.wait_for("play_started")
    running = health.gather(settings)
    assert running.poller_lock == f"pid {first.popen.pid} on {HOST}"  # run.py took the lock
    assert running.poller_lease is not None and str(settings.state_dir.resolve()) in running.poller_lease
    assert running.poller_lease_ttl_s is not None and running.poller_lease_ttl_s > 0

    assert first.terminate() == 0
    stopped = health.gather(settings)
    assert stopped.poller_lock is None and stopped.poller_lease is None  # released on a clean stop
