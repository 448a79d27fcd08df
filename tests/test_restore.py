"""A restart while Redis is down continues the open play from the state dir: the open-play
mirror (its full state, saved when a play starts or ends and when the spool starts filling)
with the spooled writes on top. One listen stays one play, counted once, its ms_played whole."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import structlog

from conftest import assert_counter_invariant, play_hashes
from helpers import FakePlayer
from spotify_logger import daemon, openplay
from spotify_logger.batch import Batch, PlayWrite
from spotify_logger.extract import extract
from spotify_logger.loop import Poller
from spotify_logger.openplay import OpenPlayMirror
from spotify_logger.redisproc import free_port
from spotify_logger.schedule import Schedule
from spotify_logger.spool import Spool
from spotify_logger.store import Store, connect
from spotify_logger.tracker import OpenPlay, PlayTracker
from spotify_logger.writer import Writer

T = 1_700_000_000_000
A, B, C = "spotify:track:A", "spotify:track:B", "spotify:track:C"


def body(uri: str = A, progress: int = 0, playing: bool = True, duration: int = 200_000) -> dict[str, Any]:
    return {"is_playing": playing, "progress_ms": progress, "currently_playing_type": "track",
            "item": {"type": "track", "uri": uri, "id": uri.rsplit(":", 1)[-1], "name": "Song " + uri[-1],
                     "duration_ms": duration, "artists": [{"name": "Art", "id": "x"}]},
            "device": {"name": "pi", "type": "Computer", "is_private_session": False}}


class Process:
    """One poller process on a state dir: the real Poller, Writer, Spool and mirror, its clock
    and Spotify's answer set by the test."""

    def __init__(self, state_dir: Path, store: Store, *, restored: OpenPlay | None = None,
                 hooks: list[Any] | None = None) -> None:
        self.now_ms = T
        self.client = FakePlayer()
        self.mirror = OpenPlayMirror.in_state_dir(state_dir)
        self.writer = Writer(store, Spool.in_state_dir(state_dir))
        self.tracker = PlayTracker(min_play_ms=30_000, end_grace_ms=300_000, restored=restored)
        self.poller = Poller(self.client, self.tracker, self.writer, Schedule(1.0, 1.0),  # type: ignore[arg-type]
                             stop=threading.Event(), clock=lambda: self.now_ms / 1000, after_poll=hooks,
                             mirror=self.mirror)

    def poll(self, at_ms: int, answer: dict[str, Any] | None) -> None:
        self.now_ms, self.client.body = at_ms, answer
        self.poller.poll_once()

    def parts(self) -> Any:
        return SimpleNamespace(store=self.writer.store, writer=self.writer, mirror=self.mirror,
                               settings=SimpleNamespace(client_id="app-1"))  # its budget keys are checked too


@pytest.fixture
def dead() -> Store:
    return Store(connect(f"redis://127.0.0.1:{free_port()}/0"))  # nothing listens


@pytest.fixture(autouse=True)
def _short_startup_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon, "STARTUP_REDIS_WAIT_S", 0.1)


def restart(state_dir: Path, store: Store) -> tuple[Process, OpenPlay | None]:
    probe = Process(state_dir, store)
    restored = daemon._restore(probe.parts(), threading.Event())
    return Process(state_dir, store, restored=restored), restored


def test_restart_with_redis_down_and_an_empty_spool_continues_the_play(tmp_path: Path, real_redis: Any,
                                                                       dead: Store) -> None:
    # A Pi reboot where redis-server comes up after the poller gave up waiting for it.
    live = Store(real_redis)
    first = Process(tmp_path, live)
    for p in range(0, 60_001, 10_000):
        first.poll(T + p, body(A, p))
    assert real_redis.hget(f"listening:{T}", "counted") == "1"

    second, restored = restart(tmp_path, dead)
    assert restored is not None and (restored.started_at, restored.uri) == (T, A)
    second.poll(T + 75_037, body(A, 75_000))        # spooled
    second.writer.store = live                      # Redis is back
    second.poll(T + 85_012, body(A, 85_000))

    plays = play_hashes(real_redis)
    assert list(plays) == [T], "one listen, one play"
    assert real_redis.zscore("plays:tracks", A) == 1
    assert 60_000 <= int(plays[T]["ms_played"]) <= 85_012
    assert plays[T]["name"] == "Song A" and "ended_at" not in plays[T]
    assert_counter_invariant(real_redis)


def test_restart_during_an_outage_restores_the_whole_paused_play(tmp_path: Path, real_redis: Any,
                                                                 dead: Store) -> None:
    live = Store(real_redis)
    first = Process(tmp_path, live)
    for p in range(0, 100_001, 10_000):
        first.poll(T + p, body(A, p))
    first.poll(T + 110_000, body(A, 100_000, playing=False))   # paused
    first.writer.store = dead                                   # Redis goes away
    for k in range(1, 4):
        first.poll(T + 110_000 + 30_000 * k, body(A, 100_000, playing=False))
    assert first.writer.spool.pending()

    second, restored = restart(tmp_path, dead)   # restarted while Redis is still down
    assert restored is not None
    assert (restored.started_at, restored.ms_played, restored.progress_ms, restored.duration_ms) == \
        (T, 100_000, 100_000, 200_000)
    assert (restored.counted, restored.playing, restored.last_seen_at) == (True, False, T + 200_000)

    second.writer.store = live                   # Redis is back; the user resumes, then skips to B
    second.poll(T + 220_000, body(A, 101_000))
    second.poll(T + 226_000, body(B, 1_000))
    h = real_redis.hgetall(f"listening:{T}")
    assert int(h["ms_played"]) == 106_000, "100 s before, 6 s from the resume to the skip: nothing lost"
    assert h["counted"] == "1" and int(h["ended_at"]) > T + 220_000
    assert real_redis.zscore("plays:tracks", A) == 1
    assert_counter_invariant(real_redis)


def test_the_mirror_is_written_on_play_changes_and_when_the_spool_starts(tmp_path: Path, real_redis: Any,
                                                                        dead: Store,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    saved: list[int] = []
    real_write = openplay.atomic_write

    def spy(path: Path, data: bytes, **kwargs: Any) -> None:
        saved.append(json.loads(data)["started_at"])
        real_write(path, data, **kwargs)

    monkeypatch.setattr(openplay, "atomic_write", spy)
    proc = Process(tmp_path, Store(real_redis))
    for p in range(0, 40_001, 10_000):
        proc.poll(T + p, body(A, p))
    for p in range(0, 20_001, 10_000):
        proc.poll(T + 50_000 + p, body(B, p))
    assert saved == [T, T + 50_000], "one write per play, not one per poll"

    proc.poll(T + 80_000, body(C, 0))                  # C starts: a write
    proc.writer.store = dead
    for p in range(10_000, 30_001, 10_000):            # outage: one refresh as the spool starts
        proc.poll(T + 80_000 + p, body(C, p))
    assert saved == [T, T + 50_000, T + 80_000, T + 80_000]
    # The mirror (as the spool began) and the spool together are the play's whole state.
    assert proc.tracker.open is not None
    written = {k: str(v) for k, v in proc.tracker.open.written.items()}
    assert proc.mirror.load() != (T + 80_000, written)
    assert proc.writer.spool.open_play(proc.mirror.load()) == (T + 80_000, written)

    proc.writer.store = Store(real_redis)
    proc.poll(T + 500_000, None)                       # nothing plays past the grace: C ends
    assert proc.tracker.open is None and not proc.mirror.path.exists()
    assert len(saved) == 4


def batch(started_at: int, seen: int, *, current: int | None, uri: str = A, **fields: Any) -> Batch:
    return Batch(polled_at=seen, current=current,
                 writes=(PlayWrite(started_at=started_at, fields={"last_seen_at": seen, **fields}, uri=uri),))


BASE = (T, {"started_at": str(T), "last_seen_at": str(T + 50_000), "ms_played": "50000", "progress_ms": "50000",
            "duration_ms": "200000", "uri": A, "playing": "1", "counted": "1", "name": "Song A"})


def test_spooled_writes_land_on_the_mirrored_state_newer_values_winning(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    assert spool.open_play(BASE) == BASE                                  # nothing spooled yet
    spool.append(batch(T, T + 40_000, current=T, ms_played=1))            # older than the mirror: loses
    spool.append(batch(T, T + 60_000, current=T, ms_played=60_000, progress_ms=60_000))
    found = spool.open_play(BASE)
    assert found is not None and found[0] == T
    assert {k: found[1][k] for k in ("ms_played", "progress_ms", "duration_ms", "name", "last_seen_at")} == \
        {"ms_played": "60000", "progress_ms": "60000", "duration_ms": "200000", "name": "Song A",
         "last_seen_at": str(T + 60_000)}


def test_a_stale_mirror_gives_way_to_the_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    # The spool moved on to another play: the mirror's is not the open one any more.
    spool.append(batch(T + 90_000, T + 95_000, current=T + 90_000, uri=B, ms_played=5_000))
    found = spool.open_play(BASE)
    assert found is not None and found[0] == T + 90_000 and found[1]["ms_played"] == "5000"
    # The mirror's play ended in the spool, and nothing is open.
    spool.path.unlink()
    spool.append(batch(T, T + 60_000, current=None, ended_at=T + 60_000))
    assert spool.open_play(BASE) is None


def test_redis_reachable_at_start_wins_over_the_mirror(tmp_path: Path, real_redis: Any) -> None:
    live = Store(real_redis)
    proc = Process(tmp_path, live)
    proc.poll(T, body(A, 0))
    proc.poll(T + 10_000, body(A, 10_000))
    stale = {"started_at": T - 5_000, "hash": {**BASE[1], "started_at": str(T - 5_000)}}
    (tmp_path / openplay.MIRROR_NAME).write_text(json.dumps(stale))
    _, restored = restart(tmp_path, live)
    assert restored is not None and restored.started_at == T and restored.ms_played == 10_000

    live.apply(Batch(polled_at=T + 20_000, current=None))   # Redis says nothing is open
    _, restored = restart(tmp_path, live)
    assert restored is None


def test_restart_with_redis_down_and_a_damaged_mirror_restores_nothing_and_says_so(tmp_path: Path, dead: Store) -> None:
    (tmp_path / openplay.MIRROR_NAME).write_text("{not json")   # damaged: ignored, said once
    with structlog.testing.capture_logs() as logs:
        _, restored = restart(tmp_path, dead)
    assert restored is None
    events = [e["event"] for e in logs]
    assert "open_play_mirror_unreadable" in events
    assert [e["action"] for e in logs if e["event"] == "store_unavailable_at_start"] == ["polling without the open play"]


def test_a_failed_mirror_write_leaves_no_stale_mirror(tmp_path: Path, real_redis: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    proc = Process(tmp_path, Store(real_redis))
    proc.poll(T, body(A, 0))
    assert proc.mirror.load() is not None

    def disk_full(path: Path, data: bytes, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(openplay, "atomic_write", disk_full)
    with structlog.testing.capture_logs() as logs:
        proc.poll(T + 5_000, body(B, 0))            # B starts, its mirror cannot be written
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["open_play_mirror_failed"]
    assert not proc.mirror.path.exists(), "A's mirror would bring back a play that ended"
    assert real_redis.hget(f"listening:{T + 5_000}", "uri") == B   # recording goes on


def test_a_play_only_the_mirror_knows_is_written_whole(tmp_path: Path, real_redis: Any, dead: Store) -> None:
    # A crash between saving B's mirror and writing B's first batch: Redis never saw B.
    live = Store(real_redis)
    first = Process(tmp_path, live)
    first.poll(T, body(A, 0))
    other = PlayTracker(min_play_ms=30_000, end_grace_ms=300_000)
    other.observe(extract(body(B, 1_000)), T + 40_000)
    first.mirror.save(other.open)

    second, restored = restart(tmp_path, dead)
    assert restored is not None and restored.uri == B
    second.poll(T + 45_000, body(B, 6_000))
    second.writer.store = live
    second.poll(T + 50_000, body(B, 11_000))
    h = real_redis.hgetall(f"listening:{T + 39_000}")
    assert (h["uri"], h["name"], h["duration_ms"], h["started_at"]) == (B, "Song B", "200000", str(T + 39_000))
    assert_counter_invariant(real_redis)
