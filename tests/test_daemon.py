"""The poller process: restart mid-play continues the same play; warm and cold shutdown."""

from __future__ import annotations

import json
import signal
import time
from typing import Callable

from spotify_logger.config import Settings
from spotify_logger.redisproc import RedisServer
from spotify_logger.simulator import Fault, Play, Script, SpotifySimulator, track

from conftest import Proc, assert_counter_invariant, env_for, play_hashes, poller_cmd, wait_until

LONG = track("Long", 30_000, ("A",))


def test_restart_mid_play_continues_the_same_play(sim_factory: Callable[..., SpotifySimulator],
                                                  redis_server: RedisServer, settings_for: Callable[..., Settings],
                                                  spawn: Callable[..., Proc]) -> None:
    sim = sim_factory(Script((Play(LONG, 30_000),)))
    settings = settings_for(sim, redis_server.url, min_play_ms=4_000)
    first = spawn(poller_cmd(), env_for(settings))
    first.wait_for("play_started")
    time.sleep(1.5)
    first.popen.send_signal(signal.SIGKILL)
    first.wait()
    client = redis_server.client()
    [(key, before)] = play_hashes(client).items()
    assert before["counted"] == "0" and client.get("listening:current") == f"listening:{key}"
    # The state dir mirrors the open play, for a restart that finds Redis down.
    mirror = json.loads((settings.state_dir / "open_play.json").read_text())
    assert mirror["started_at"] == key and mirror["hash"]["uri"] == LONG.uri

    second = spawn(poller_cmd(), env_for(settings))
    wait_until(lambda: play_hashes(client)[key].get("counted") == "1", "the continued play counted", timeout=10)
    assert second.terminate() == 0
    plays = play_hashes(client)
    assert list(plays) == [key], "the restart must continue the open play, not start a second one"
    assert plays[key]["counted"] == "1" and int(plays[key]["ms_played"]) >= 4_000
    assert second.events("poller_started")[0]["restored_play"] == key
    assert not second.events("play_started")
    assert_counter_invariant(client)


def test_sigterm_exits_0_within_2s_even_during_a_slow_request(sim_factory: Callable[..., SpotifySimulator],
                                                              redis_server: RedisServer,
                                                              settings_for: Callable[..., Settings],
                                                              spawn: Callable[..., Proc]) -> None:
    sim = sim_factory(Script((Play(LONG, 30_000),)))
    settings = settings_for(sim, redis_server.url, read_timeout=20.0)
    proc = spawn(poller_cmd(), env_for(settings))
    proc.wait_for("play_started")
    sim.inject(Fault("slow", delay_s=15, count=5))
    time.sleep(1.0)                      # the poller is now stuck inside a 15 s response
    sent = time.monotonic()
    assert proc.terminate(timeout=5) == 0
    assert time.monotonic() - sent < 2.0
    assert proc.events("poller_stopped")[0]["cold"] is False


def test_second_signal_exits_at_once(sim_factory: Callable[..., SpotifySimulator], redis_server: RedisServer,
                                     settings_for: Callable[..., Settings], spawn: Callable[..., Proc]) -> None:
    sim = sim_factory(Script((Play(LONG, 30_000),)))
    proc = spawn(poller_cmd(), env_for(settings_for(sim, redis_server.url, read_timeout=20.0)))
    proc.wait_for("play_started")
    sim.inject(Fault("slow", delay_s=15, count=5))
    time.sleep(1.0)
    proc.popen.send_signal(signal.SIGINT)
    time.sleep(0.3)     # two presses of Ctrl-C; sent together, the kernel would merge them into one
    sent = time.monotonic()
    proc.popen.send_signal(signal.SIGINT)
    assert proc.wait(timeout=5) == 0
    assert time.monotonic() - sent < 0.5
    assert proc.events("poller_stopped")[0]["cold"] is True
