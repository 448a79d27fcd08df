"""Backfill end to end: the simulator over loopback HTTP, a real redis-server, real processes.

Time is scaled down: the issue's "poller stopped for 3 minutes" becomes 6 s of 2 s tracks,
with the simulator listing plays heard for over 1 s (recent_min_ms) instead of 30 s. Realistic durations (200 s tracks, played_at up to a minute late) use plays stored as the
poller writes them and a feed preloaded with sim.add_history at chosen played_at values.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any, Callable

import pytest

from spotify_logger import keys
from spotify_logger.backfill import FEED_SIZE, Reconciler
from spotify_logger.commands.status import render
from spotify_logger.config import Settings
from spotify_logger.daemon import Parts
from spotify_logger.health import gather
from spotify_logger.redisproc import RedisServer
from spotify_logger.simulator import Idle, Play, Script, SpotifySimulator, track
from spotify_logger.store import Store

from conftest import (ROOT, Proc, assert_counter_invariant, env_for, play_hashes, poller_cmd, redis_dump,
                      wait_until)
from helpers import write_polled_play

SHORT = 2_500   # long enough for the tracker to tell a repeat from jitter at 0.2-1 s polls
D = 200_000
SONG = track("Song", D, ("Singer",), "Record")


def uris(client: Any) -> Counter[str]:
    return Counter(h["uri"] for h in play_hashes(client).values())


def playing(sim: SpotifySimulator) -> Any:
    now = sim.playback_now()
    return None if now is None else now[0].play.item


def reconciler(sim: SpotifySimulator, settings_for: Callable[..., Settings], server: RedisServer,
               client: Any) -> Reconciler:
    parts = Parts.build(settings_for(sim, server.url), redis_client=client)
    return Reconciler(parts.client, parts.store)


def test_plays_made_while_the_poller_was_stopped_are_added_once(
        sim_factory: Callable[..., SpotifySimulator], settings_for: Callable[..., Settings],
        redis_server: RedisServer, real_redis: Any, spawn: Callable[..., Proc]) -> None:
    sim = sim_factory(recent_min_ms=1_000)
    env = env_for(settings_for(sim, redis_server.url, min_play_ms=1_000))
    short = 2_000
    seen, missed, after = track("Seen", short), [track(n, short) for n in ("A", "B", "C")], track("After", 30_000)
    first = spawn(poller_cmd(), env)
    first.wait_for("reconcile_done")                       # the start-up pass, on an empty feed
    sim.load_script(Script((Play(seen, short), *(Play(t, short) for t in missed), Play(after, 30_000))))
    first.wait_for("play_started")
    assert first.terminate() == 0                          # stopped while "Seen" plays
    wait_until(lambda: playing(sim) == after, "the last track", timeout=4 * short / 1000 + 5)
    second = spawn(poller_cmd(), env)
    done = second.wait_for("reconcile_done")[0]
    assert second.terminate() == 0
    assert done["added"] == 3 and done["confirmed"] == 1
    assert uris(real_redis) == Counter({t.uri: 1 for t in (seen, *missed, after)})
    plays = {h["uri"]: (s, h) for s, h in play_hashes(real_redis).items()}
    for item in missed:
        started_at, h = plays[item.uri]
        assert h["source"] == "recently_played" and h["counted"] == "1" and h["name"] == item.name
        assert int(h["ended_at"]) - started_at == short
        assert plays[seen.uri][0] < started_at < plays[after.uri][0]
    assert plays[seen.uri][1]["source"] == "poll" and "confirmed_at" in plays[seen.uri][1]
    assert real_redis.get(keys.CURRENT) == keys.play_key(plays[after.uri][0])
    assert_counter_invariant(real_redis)


def test_plays_the_poller_saw_are_confirmed_not_duplicated(
        sim_factory: Callable[..., SpotifySimulator], settings_for: Callable[..., Settings],
        redis_server: RedisServer, real_redis: Any) -> None:
    # One track four times back to back, its feed timestamps at the start, the middle, the end
    # and a minute after the end of each play.
    song = track("Again", SHORT)
    offsets = (-SHORT, -SHORT // 2, 0, 60_000)
    sim = sim_factory(Script((*(Play(song, SHORT, played_at_offset_ms=o) for o in offsets), Idle(60_000))),
                      recent_min_ms=1_000)
    settings = settings_for(sim, redis_server.url, min_play_ms=1_000, end_grace_s=60.0)
    parts = Parts.build(settings, redis_client=real_redis)
    poller = parts.poller()
    worker = threading.Thread(target=poller.run, daemon=True)
    worker.start()
    wait_until(lambda: len(sim.recently_played()) == 4, "all four plays ended", timeout=4 * SHORT / 1000 + 5)
    parts.stop.set()
    worker.join(5)
    assert uris(real_redis) == Counter({song.uri: 4})
    before = play_hashes(real_redis)
    result = Reconciler(parts.client, parts.store).run_once()
    assert result.added == [] and result.confirmed == 4
    after = play_hashes(real_redis)
    assert sorted(after) == sorted(before)
    played_at = sorted(e.played_at_ms for e in sim.recently_played())
    assert [int(after[s]["confirmed_at"]) for s in sorted(after)] == played_at   # in order, one each
    assert_counter_invariant(real_redis)


@pytest.mark.parametrize("offset", [0, D // 2, D, D + 60_000], ids=["start", "middle", "end", "minute-late"])
def test_realistic_back_to_back_plays_across_played_at_offsets(
        sim_factory: Callable[..., SpotifySimulator], settings_for: Callable[..., Settings],
        redis_server: RedisServer, real_redis: Any, offset: int) -> None:
    sim = sim_factory()
    base = int(time.time() * 1000) - 3_600_000
    store = Store(real_redis)
    for k in range(3):                                     # the poller saw three plays in a row...
        write_polled_play(store, SONG, base + k * D)
    for k in range(4):                                     # ...and missed a fourth one right after
        sim.add_history(SONG, base + k * D + offset)
    sim.add_history(track("Other", 150_000), base - 600_000)   # long before: not the poller's
    rec = reconciler(sim, settings_for, redis_server, real_redis)
    result = rec.run_once()
    # Three items confirm the three plays (which three depends on the offset: nearest ends win),
    # the fourth is added beside them, and the unrelated old item is added too.
    assert result.confirmed == 3
    assert sorted(a["name"] for a in result.added) == ["Other", "Song"]
    assert uris(real_redis)[SONG.uri] == 4 and len(play_hashes(real_redis)) == 5
    assert_counter_invariant(real_redis)
    before = redis_dump(real_redis)
    again = rec.run_once()
    assert redis_dump(real_redis) == before and again.added == [] and again.already == 5


def test_more_plays_than_the_feed_holds_are_recorded_as_a_gap(
        sim_factory: Callable[..., SpotifySimulator], settings_for: Callable[..., Settings],
        redis_server: RedisServer, real_redis: Any) -> None:
    sim = sim_factory()
    step = 180_000
    base = int(time.time() * 1000) - 100 * step
    sim.add_history(SONG, base)
    rec = reconciler(sim, settings_for, redis_server, real_redis)
    assert rec.run_once().gap is None                     # the cursor is now `base`
    missed = [track(f"Missed {k}", step) for k in range(80)]
    for k, item in enumerate(missed):                      # 80 plays while the poller was off
        sim.add_history(item, base + (k + 1) * step)
    result = rec.run_once()
    assert len(result.added) == FEED_SIZE
    assert {a["uri"] for a in result.added} == {t.uri for t in missed[-FEED_SIZE:]}
    gap = {"start": base, "end": base + 30 * step, "estimated_plays": 30}
    assert result.gap is not None and result.gap.member() == json.dumps(gap, separators=(",", ":"))
    assert real_redis.zrange(keys.GAPS, 0, -1, withscores=True) == [(result.gap.member(), base)]
    health = gather(settings_for(sim, redis_server.url), store=Store(real_redis))
    assert health.gaps == [gap]
    assert "about 30 plays lost" in render(health, time.time())
    assert_counter_invariant(real_redis)
    before = redis_dump(real_redis)
    rec.run_once()
    assert redis_dump(real_redis) == before


def test_the_backfill_command_prints_what_it_added_and_is_safe_to_repeat(
        sim_factory: Callable[..., SpotifySimulator], settings_for: Callable[..., Settings],
        redis_server: RedisServer, real_redis: Any) -> None:
    sim = sim_factory()
    now = int(time.time() * 1000)
    sim.add_history(track("Forgotten", 150_000, ("Band",)), now - 60_000)
    env = env_for(settings_for(sim, redis_server.url))
    cmd = [sys.executable, "-m", "spotify_logger", "backfill"]
    first = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert first.returncode == 0, first.stderr
    assert "Band - Forgotten" in first.stdout and "1 plays added" in first.stdout
    again = subprocess.run([*cmd, "--json"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["added"] == [] and report["already"] == 1 and report["cursor"] == now - 60_000
    assert uris(real_redis) == Counter({track("Forgotten", 150_000).uri: 1})
    assert_counter_invariant(real_redis)
