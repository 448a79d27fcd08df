"""Redis restarted EMPTY during a session (SHUTDOWN NOSAVE, no RDB): the plays it held are gone,
and a later write that only updates one of them must not leave a partial hash (no uri, counted=1,
counters bumped). The store refuses such an update and the writer restates the whole play from
what it sent (or from the open-play mirror and the spool after a poller restart), or drops it
with a warning. The counter invariant and `check` hold after every replay."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest
import structlog

from conftest import Proc, assert_counter_invariant, env_for, play_hashes, run_py_cmd, wait_until
from helpers import FakePlayer
from spotify_logger import daemon
from spotify_logger.batch import Batch, PlayWrite
from spotify_logger.check import check
from spotify_logger.loop import Poller
from spotify_logger.openplay import OpenPlayMirror
from spotify_logger.redisproc import RedisServer
from spotify_logger.schedule import Schedule
from spotify_logger.simulator import Idle, Play, Script, track
from spotify_logger.spool import Spool
from spotify_logger.store import Store, connect
from spotify_logger.tracker import OpenPlay, PlayTracker
from spotify_logger.writer import Writer

T = 1_700_000_000_000
A, B, C = "spotify:track:A", "spotify:track:B", "spotify:track:C"


def body(uri: str, progress: int) -> dict[str, Any]:
    return {"is_playing": True, "progress_ms": progress, "currently_playing_type": "track",
            "item": {"type": "track", "uri": uri, "id": uri[-1], "name": "Song " + uri[-1], "duration_ms": 200_000,
                     "artists": [{"name": "Art " + uri[-1], "id": "x"}]},
            "device": {"name": "pi", "type": "Computer", "is_private_session": False}}


# A for 90 s, B for 90 s, C for 90 s, a poll every 10 s; then nothing, and C ends.
SESSION = ([(T + s * 1000, body(A, s * 1000)) for s in range(0, 90, 10)]
           + [(T + 90_000 + s * 1000, body(B, s * 1000)) for s in range(0, 90, 10)]
           + [(T + 180_000 + s * 1000, body(C, s * 1000)) for s in range(0, 90, 10)]
           + [(T + 300_000, None)])
B_STARTS = 9


class Process:
    """One poller process on a state dir, wired as daemon.Parts wires it (the mirror is the
    writer's base), its clock and Spotify's answer set by the test."""

    def __init__(self, state_dir: Path, store: Store, *, restored: OpenPlay | None = None) -> None:
        self.now_ms = T
        self.client = FakePlayer()
        self.mirror = OpenPlayMirror.in_state_dir(state_dir)
        self.writer = Writer(store, Spool.in_state_dir(state_dir), base=self.mirror.load)
        self.tracker = PlayTracker(min_play_ms=30_000, end_grace_ms=20_000, restored=restored)
        self.poller = Poller(self.client, self.tracker, self.writer, Schedule(1.0, 1.0),  # type: ignore[arg-type]
                             stop=threading.Event(), clock=lambda: self.now_ms / 1000, mirror=self.mirror)

    def poll(self, at_ms: int, answer: dict[str, Any] | None) -> None:
        self.now_ms, self.client.body = at_ms, answer
        self.poller.poll_once()


def restarted(state_dir: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> Process:
    monkeypatch.setattr(daemon, "STARTUP_REDIS_WAIT_S", 0.1)
    probe = Process(state_dir, store)
    parts = SimpleNamespace(store=store, writer=probe.writer, mirror=probe.mirror)
    return Process(state_dir, store, restored=daemon._restore(parts, threading.Event()))  # type: ignore[arg-type]


def sound(client: Any) -> None:
    """No partial play, counters equal to the counted plays, and `check` clean."""
    for started_at, h in play_hashes(client).items():
        assert h.get("uri") and h.get("started_at") == str(started_at) and h.get("name"), (started_at, h)
    assert_counter_invariant(client)
    report = check(client)
    assert report.ok, report.render()


# poll index -> what happens just before that poll: "restart" (down and back empty between two
# polls), "down", "up" (back, empty), "new poller" (the poller restarted while Redis is down).
SCENARIOS = {
    "between-polls-mid-play": ({5: "restart"}, {A, B, C}),
    "between-polls-as-a-play-ends": ({B_STARTS: "restart"}, {A, B, C}),
    "outage-mid-play": ({5: "down", 8: "up"}, {A, B, C}),
    "outage-across-a-play-change": ({7: "down", 12: "up"}, {A, B, C}),
    "outage-then-a-poller-restart": ({5: "down", 7: "new poller", 8: "up"}, {A, B, C}),
    "poller-restart-spanning-a-play-change": ({6: "down", 10: "new poller", 12: "up"}, {A, B, C}),
    "twice": ({4: "restart", 13: "down", 15: "up"}, {B, C}),   # A ended before the second: Redis lost it
}


@pytest.mark.parametrize("events,expected", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_redis_restarted_empty_never_leaves_a_partial_play(events: dict[int, str], expected: set[str],
                                                           redis_server: RedisServer, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    client = redis_server.client()
    store = Store(connect(redis_server.url))
    proc = Process(tmp_path, store)
    up = True
    for i, (at_ms, answer) in enumerate(SESSION):
        action = events.get(i)
        if action in ("restart", "down"):
            redis_server.stop(save=False)
            up = action == "restart"
            if up:
                redis_server.start()
        elif action == "up":
            redis_server.start()
            up = True
        elif action == "new poller":
            proc = restarted(tmp_path, store, monkeypatch)
        proc.poll(at_ms, answer)
        if up:
            assert not proc.writer.spool.pending()
            sound(client)   # after every replay, and every poll
    plays = play_hashes(client)
    assert sorted(h["uri"] for h in plays.values()) == sorted(expected), plays
    for h in plays.values():
        assert h["counted"] == "1" and "ended_at" in h and h["duration_ms"] == "200000"
        assert int(h["ms_played"]) >= 70_000, h   # 80 s heard; no more than one 10 s poll lost
        assert h["artists"] == f'["Art {h["uri"][-1]}"]'
    assert client.zrange("plays:artists", 0, -1, withscores=True) == \
        sorted((f"Art {uri[-1]}", 1.0) for uri in expected)


def test_the_store_refuses_an_update_to_a_play_it_does_not_have(real_redis: Any) -> None:
    update = PlayWrite(T, {"last_seen_at": T + 60_000, "ms_played": 60_000, "counted": "1"}, A, ("Art",), counted=True)
    applied = Store(real_redis).apply_batch(Batch(polled_at=T + 60_000, writes=(update,), current=T))
    assert applied.refused == (T,) and applied.wrote == 0
    assert not real_redis.exists(f"listening:{T}") and not real_redis.exists("plays:tracks")
    whole = PlayWrite(T, {"started_at": T, "last_seen_at": T + 60_000, "uri": A}, A, counted=True)
    assert Store(real_redis).apply_batch(Batch(polled_at=T + 60_000, writes=(whole,))).refused == ()
    assert real_redis.zscore("plays:tracks", A) == 1


def test_an_update_nothing_can_restate_is_dropped_with_a_warning(real_redis: Any, tmp_path: Path) -> None:
    writer = Writer(Store(real_redis), Spool(tmp_path / "spool.jsonl"))   # a fresh process, no mirror
    update = PlayWrite(T, {"last_seen_at": T + 60_000, "ms_played": 60_000}, A, counted=True)
    with structlog.testing.capture_logs() as logs:
        assert writer.write(Batch(polled_at=T + 60_000, writes=(update,), current=T)) is True
    assert [(e["event"], e["started_at"]) for e in logs if e["log_level"] == "warning"] == [("play_write_dropped", T)]
    assert real_redis.keys("listening:1*") == [] and not real_redis.exists("plays:tracks")


@pytest.mark.slow
def test_the_poller_through_a_redis_restarted_empty_mid_play(sim_factory: Callable[..., Any],
                                                             settings_for: Callable[..., Any],
                                                             redis_server: RedisServer,
                                                             spawn: Callable[..., Proc]) -> None:
    # The reproduction: SHUTDOWN NOSAVE during a play, a wait, Redis back empty.
    long_b = track("Empty B", 12_000)
    sim = sim_factory(Script())
    settings = settings_for(sim, redis_server.url)
    client = redis_server.client()
    proc = spawn(run_py_cmd(), env_for(settings, SPOTIFY_LOGGER_RESTART_DELAY="0.2"))
    proc.wait_for("poller_started")
    sim.load_script(Script((Play(track("Empty A", 4000), 4000), Play(long_b, 12_000), Idle(60_000))))
    wait_until(lambda: any(h.get("uri") == long_b.uri for h in play_hashes(client).values()), "B in Redis")
    time.sleep(1.0)
    redis_server.stop(save=False)
    time.sleep(4.0)
    assert settings.state_dir.joinpath("spool.jsonl").stat().st_size > 0
    redis_server.start()
    client = redis_server.client()
    proc.wait_for("spool_replayed")
    wait_until(lambda: any(h.get("counted") == "1" and h.get("ended_at") for h in play_hashes(client).values()),
               "B counted and ended")
    plays = play_hashes(client)
    assert [h["uri"] for h in plays.values()] == [long_b.uri], plays   # A ended before: Redis lost it
    sound(client)
    assert client.zscore("plays:tracks", long_b.uri) == 1
    assert len(proc.events("child_started")) == 1
    assert proc.terminate(timeout=5) == 0
