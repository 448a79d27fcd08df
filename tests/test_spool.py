"""The outage spool and the write path around it: fsync'd JSON lines, in-order idempotent
replay, damage that is skipped instead of crashing, and `status` showing what waits."""

from __future__ import annotations

import itertools
import json
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import structlog

from conftest import assert_counter_invariant, env_for, redis_dump
from helpers import FakePlayer
from spotify_logger import cli, health
from spotify_logger.batch import Batch
from spotify_logger.commands.status import render
from spotify_logger.config import Settings
from spotify_logger.errors import StoreUnavailable
from spotify_logger.extract import Snapshot
from spotify_logger.loop import PollEvent, Poller
from spotify_logger.schedule import Schedule
from spotify_logger.simulator import track
from spotify_logger.spool import Spool
from spotify_logger.store import Applied, Store, StoreError
from spotify_logger.tracker import OpenPlay, PlayTracker
from spotify_logger.writer import Writer

T0 = 1_700_000_000_000


def snap(uri: str, progress_ms: int, *, duration_ms: int = 6_000, playing: bool = True) -> Snapshot:
    return Snapshot(kind="track", uri=uri, id=uri.rsplit(":", 1)[-1], name=uri[-1], artists=("Artist " + uri[-1],),
                    duration_ms=duration_ms, progress_ms=progress_ms, is_playing=playing)


def session() -> list[Batch]:
    """A played for 5 s (counted at 2 s), then B for 3 s: one batch per 1 s poll."""
    tracker = PlayTracker(min_play_ms=2_000, end_grace_ms=2_000)
    batches = [tracker.observe(snap("spotify:track:A", i * 1000), T0 + i * 1000) for i in range(6)]
    batches += [tracker.observe(snap("spotify:track:B", i * 1000), T0 + 6_000 + i * 1000) for i in range(4)]
    return batches


def applied_once(batches: list[Batch]) -> Any:
    """A fresh Redis that got every batch exactly once, in order: what a replay must equal."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    store = Store(client)
    for batch in batches:
        store.apply(batch)
    return client


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "state" / "spool.jsonl")


def fill(spool: Spool, batches: list[Batch]) -> None:
    for batch in batches:
        spool.append(batch)


def test_append_is_one_private_json_line_per_batch_in_order(spool: Spool) -> None:
    batches = session()
    fill(spool, batches)
    lines = spool.path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == len(batches) + 1
    assert [json.loads(line)["polled_at"] for line in lines[:-1]] == [b.polled_at for b in batches]
    assert list(spool.batches()) == batches
    assert stat.S_IMODE(spool.path.stat().st_mode) == 0o600


def test_torn_last_line_is_skipped_with_a_warning(spool: Spool, fake_redis: Any) -> None:
    batches = session()
    fill(spool, batches)
    whole = batches[-1].to_json().encode()
    with open(spool.path, "ab") as fh:  # a power cut in the middle of an append
        fh.write(whole[: len(whole) // 2])

    with structlog.testing.capture_logs() as logs:
        replayed = spool.replay(Store(fake_redis).apply)

    assert replayed == len(batches)
    assert [e for e in logs if e["event"] == "spool_line_skipped"] == [
        {"event": "spool_line_skipped", "log_level": "warning", "line": len(batches) + 1, "torn": True,
         "length": len(whole) // 2, "path": str(spool.path)}
    ]
    assert spool.size() == 0
    assert fake_redis.zscore("plays:tracks", "spotify:track:A") == 1


def test_an_append_after_a_torn_line_is_not_glued_to_it(spool: Spool) -> None:
    first, second = session()[:2]
    spool.append(first)
    with open(spool.path, "ab") as fh:
        fh.write(b'{"polled_at": 17')  # torn
    spool.append(second)
    with structlog.testing.capture_logs() as logs:
        assert list(spool.batches()) == [first, second]
    assert [(e["line"], e["torn"]) for e in logs] == [(2, False)]  # damage in the middle now


def test_damaged_middle_line_does_not_stop_later_lines(spool: Spool, fake_redis: Any) -> None:
    batches = session()
    fill(spool, batches[:3])
    with open(spool.path, "ab") as fh:
        fh.write(b"\x00\xff not json\n")
    fill(spool, batches[3:])
    with structlog.testing.capture_logs() as logs:
        assert spool.replay(Store(fake_redis).apply) == len(batches)
    assert [(e["line"], e["torn"]) for e in logs] == [(4, False)]


def test_replay_is_idempotent(spool: Spool, fake_redis: Any) -> None:
    batches = session()
    fill(spool, batches)
    store = Store(fake_redis)
    spool.replay(store.apply)
    once = redis_dump(fake_redis)
    assert once["plays:tracks"] == [("spotify:track:A", 1.0), ("spotify:track:B", 1.0)]

    fill(spool, batches)  # the same batches again, as after a crash before the truncate
    spool.replay(store.apply)
    assert redis_dump(fake_redis) == once


def test_crash_during_replay_loses_nothing_and_counts_nothing_twice(spool: Spool, fake_redis: Any,
                                                                    tmp_path: Path) -> None:
    batches = session()
    fill(spool, batches)
    size = spool.size()
    store = Store(fake_redis)
    applied: list[Batch] = []

    def crash_halfway(batch: Batch) -> None:
        if len(applied) == len(batches) // 2:
            raise RuntimeError("power cut")
        store.apply(batch)
        applied.append(batch)

    with pytest.raises(RuntimeError):
        spool.replay(crash_halfway)
    assert spool.size() == size, "nothing may be dropped before every line landed"
    assert fake_redis.zscore("plays:tracks", "spotify:track:A") == 1  # half of it is in Redis

    spool.replay(store.apply)  # the restarted poller replays from the top

    assert redis_dump(fake_redis) == redis_dump(applied_once(batches))
    assert spool.size() == 0


class FlakyStore(Store):
    """The real store, with an outage switch and a record of what reached Redis."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.down = False
        self.reject: set[int] = set()
        self.landed: list[int] = []

    def apply_batch(self, batch: Batch) -> Applied:
        if self.down:
            raise StoreUnavailable("Redis is unreachable: ConnectionError")
        if batch.polled_at in self.reject:
            raise StoreError("Redis error: ERR Error running script: bad argument")
        self.landed.append(batch.polled_at)
        return super().apply_batch(batch)


def test_writer_spools_while_redis_is_down_and_replays_in_order(spool: Spool, fake_redis: Any) -> None:
    batches = session()
    store = FlakyStore(fake_redis)
    writer = Writer(store, spool)
    assert writer.write(batches[0]) is True
    store.down = True
    assert [writer.write(b) for b in batches[1:7]] == [False] * 6
    assert len(list(spool.batches())) == 6
    store.down = False

    assert writer.write(batches[7]) is True
    for batch in batches[8:]:
        writer.write(batch)

    # The spooled batches went first, in order, and only then the live one.
    assert store.landed == [b.polled_at for b in batches]
    assert spool.size() == 0
    assert redis_dump(fake_redis) == redis_dump(applied_once(batches))


def test_a_batch_redis_rejects_for_good_does_not_block_the_spool(spool: Spool, fake_redis: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("spotify_logger.spool.PROGRESS_EVERY", 2)
    batches = session()
    fill(spool, batches)
    store = FlakyStore(fake_redis)
    store.reject = {batches[2].polled_at}
    progress: list[int] = []
    writer = Writer(store, spool)
    writer.on_progress = lambda: progress.append(1)
    with structlog.testing.capture_logs() as logs:
        assert writer.flush() is True
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["spool_batch_rejected"]
    assert len(store.landed) == len(batches) - 1
    assert spool.size() == 0
    assert len(progress) == len(batches) // 2  # a long replay feeds the watchdog as it goes


@pytest.mark.parametrize("landed_before_outage", [0, 7], ids=["play-began-in-outage", "play-began-before"])
def test_spooled_open_play_matches_what_replay_would_leave_in_redis(spool: Spool, fake_redis: Any,
                                                                    landed_before_outage: int) -> None:
    # What a poller restarted during an outage continues, instead of starting a duplicate play.
    batches = session()
    store = Store(fake_redis)
    for batch in batches[:landed_before_outage]:
        store.apply(batch)
    fill(spool, batches[landed_before_outage:])  # the rest waits in the spool, only what changed

    found = spool.open_play()
    assert found is not None
    from_spool = OpenPlay.from_hash(*found)
    spool.replay(store.apply)
    loaded = store.load_current()
    assert loaded is not None
    from_redis = OpenPlay.from_hash(*loaded)
    assert from_spool is not None and from_redis is not None
    names = ["started_at", "last_seen_at", "progress_ms", "ms_played", "counted", "uri"]
    if not landed_before_outage:
        names += ["playing", "duration_ms"]  # fields that did not change are only in Redis
    for name in names:
        assert getattr(from_spool, name) == getattr(from_redis, name), name


def test_no_spooled_open_play_when_the_last_batch_closed_it(spool: Spool) -> None:
    tracker = PlayTracker(min_play_ms=2_000, end_grace_ms=1_000)
    fill(spool, [tracker.observe(snap("spotify:track:A", 0), T0), tracker.observe(Snapshot(), T0 + 5_000)])
    assert spool.open_play() is None
    assert Spool(spool.path.with_name("missing.jsonl")).open_play() is None


def test_status_shows_the_spool_size(spool: Spool, fake_redis: Any, tmp_path: Path) -> None:
    settings = Settings(client_id="x", state_dir=spool.path.parent)
    fill(spool, session()[:2])
    h = health.gather(settings, store=Store(fake_redis))
    assert h.spool_bytes == spool.size() > 0
    assert f"spool:         {spool.size()} bytes waiting for Redis" in render(h, 0.0)
    assert os.path.getsize(spool.path) == h.spool_bytes


def test_a_poller_restarted_during_an_outage_continues_the_spooled_play(sim_factory, settings_for,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from spotify_logger import daemon
    from spotify_logger.redisproc import free_port

    monkeypatch.setattr(daemon, "STARTUP_REDIS_WAIT_S", 0.1)
    settings = settings_for(sim_factory(), f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    batches = session()
    fill(Spool(settings.state_dir / "spool.jsonl"), batches)
    parts = daemon.Parts.build(settings)
    with structlog.testing.capture_logs() as logs:
        restored = daemon._restore(parts, parts.stop)
    assert restored is not None
    assert (restored.uri, restored.started_at, restored.counted) == ("spotify:track:B", batches[-1].current, True)
    assert [e["action"] for e in logs if e["event"] == "store_unavailable_at_start"] == [
        "continuing the open play saved in the state dir"]


def test_poll_hooks_wait_until_the_spool_is_replayed(spool: Spool, fake_redis: Any) -> None:
    # A reconciliation pass while plays wait in the spool would add them a second time.
    player = FakePlayer({"is_playing": True, "progress_ms": 1_000, "currently_playing_type": "track",
                         "item": {"type": "track", "uri": "spotify:track:A", "id": "A", "name": "A",
                                  "duration_ms": 6_000, "artists": [{"name": "X", "id": "x"}]}})
    calls: list[tuple[float, float | None]] = []

    class Hook:
        def __call__(self, event: PollEvent) -> None:
            calls.append((event.polled_at, event.previous_poll_at))

        def before_resume(self, now: float) -> None:
            calls.append((now, -1.0))

        def while_deferred(self, now: float) -> None:
            calls.append((now, -2.0))

    clock = itertools.count(1_700_000_000.0)
    store = FlakyStore(fake_redis)
    poller = Poller(player, PlayTracker(min_play_ms=2_000, end_grace_ms=2_000), Writer(store, spool),  # type: ignore[arg-type]
                    Schedule(1.0, 1.0), stop=threading.Event(), clock=lambda: float(next(clock)),
                    after_poll=[Hook()])
    poller.poll_once()
    assert len(calls) == 1 and calls[0][1] is None
    first = calls[0][0]
    store.down = True
    poller.poll_once()
    store.down = False
    fill(spool, session()[:1])       # Redis is back, but a play still waits in the spool...
    assert len(calls) == 1
    poller.poll_once()               # ...until this poll's write replays it first
    assert spool.size() == 0
    assert len(calls) == 2 and calls[1][1] == first and calls[1][0] > first


def test_backfill_and_import_refuse_while_plays_wait_in_the_spool(sim_factory, settings_for, redis_server,
                                                                  real_redis: Any, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    sim = sim_factory()
    settings = settings_for(sim, redis_server.url)
    song = track("Song", 6_000)
    start = int(time.time() * 1000) - 600_000
    # The poller heard the song during an outage: the play waits in the spool, not in Redis.
    tracker = PlayTracker(min_play_ms=2_000, end_grace_ms=2_000)
    spooled = Spool.in_state_dir(settings.state_dir)
    for ms in range(0, 6_001, 1_000):
        spooled.append(tracker.observe(snap(song.uri, ms), start + ms))
    spooled.append(tracker.observe(snap("spotify:track:B", 0), start + 6_500))
    sim.add_history(song, start + 6_200)                 # ...and Spotify's feed lists it too
    export = tmp_path / "Streaming_History_Audio_2024.json"
    export.write_text(json.dumps([]))
    env = env_for(settings)

    for argv in (["backfill"], ["import", str(export)]):
        assert cli.main(argv, env=env) == 75
        err = capsys.readouterr().err.strip()
        assert err == (f"spotify-logger: {spooled.size()} bytes of plays are waiting in the spool for Redis; run "
                       "this again once `spotify-logger status` shows the spool empty")
    assert sim.requests == [] and real_redis.dbsize() == 0
    assert cli.main(["import", "--dry-run", str(export)], env=env) == 0   # writes nothing: allowed
    capsys.readouterr()

    Writer(Store(real_redis), spooled).flush()           # the poller replays its spool
    assert cli.main(["backfill"], env=env) == 0
    assert "0 plays added, 1 confirmed" in capsys.readouterr().out
    assert real_redis.zscore("plays:tracks", song.uri) == 1
    assert_counter_invariant(real_redis)
