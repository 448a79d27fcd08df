"""Import and backfill on the same plays, in either order: each listen is stored and counted once.

Backfill owns `confirmed_at` (the played_at it binds its feed item by); an import confirms with
`import_ts`. A play backfill created sits at [played_at - duration, played_at], and played_at
may lie anywhere from the play's start to a minute late, so the importer matches such plays in
backfill's generous window, in time order, rather than by interval overlap.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from spotify_logger import keys
from spotify_logger.backfill import Reconciler
from spotify_logger.extract import extract
from spotify_logger.importer import run_import
from spotify_logger.simulator import track
from spotify_logger.store import Store
from spotify_logger.tracker import PlayTracker

from conftest import assert_counter_invariant, play_hashes
from helpers import FakeFeed, iso

T = 1_700_000_000_000
D = 200_000
SONG = track("Song", D, ("Singer",), "Record")


def export(path: Path, *records: tuple[int, int]) -> Path:
    """An extended-history file of SONG: (ts, ms_played) per record, ts rounded to the second."""
    path.write_text(json.dumps([
        {"ts": iso(end), "ms_played": ms, "spotify_track_uri": SONG.uri, "master_metadata_track_name": SONG.name,
         "master_metadata_album_artist_name": "Singer", "platform": "android", "reason_end": "trackdone"}
        for end, ms in records]))
    return path


def poll(store: Store, start: int, length: int = D) -> None:
    """SONG heard from `start` for `length` ms, seen by the real tracker every 10 s."""
    tracker = PlayTracker(min_play_ms=30_000, end_grace_ms=300_000)
    body = {"is_playing": True, "currently_playing_type": "track",
            "item": {"type": "track", "uri": SONG.uri, "id": SONG.uri.rsplit(":", 1)[-1], "name": SONG.name,
                     "duration_ms": D, "artists": [{"name": "Singer", "id": "s"}]},
            "device": {"name": "pi", "type": "Computer", "is_private_session": False}}
    for progress in range(0, length + 1, 10_000):
        store.apply(tracker.observe(extract({**body, "progress_ms": progress}), start + progress))
    store.apply(tracker.observe(extract({}), start + length + 400_000))  # stopped past the grace


def backfill(store: Store, *played_at: int) -> Any:
    return Reconciler(FakeFeed([(SONG, p) for p in played_at]), store).run_once()  # type: ignore[arg-type]


def song_plays(client: Any) -> dict[int, dict[str, str]]:
    return {s: h for s, h in play_hashes(client).items() if h["uri"] == SONG.uri}


def assert_counted(client: Any, n: int) -> None:
    assert client.zscore(keys.TRACK_COUNTS, SONG.uri) == n
    assert sum(h["counted"] == "1" for h in song_plays(client).values()) == n
    assert_counter_invariant(client)


def test_import_then_backfill_confirms_a_polled_play_once(real_redis: Any, tmp_path: Path) -> None:
    store = Store(real_redis)
    poll(store, T)
    summary = run_import(real_redis, [export(tmp_path / "endsong_0.json", (T + D, D))], min_play_ms=30_000)
    assert (summary.confirmed, summary.added) == (1, 0)
    result = backfill(store, T + D + 437)   # played_at carries milliseconds, ts does not
    assert (result.confirmed, result.added) == (1, [])
    (play,) = song_plays(real_redis).values()
    assert play["source"] == "poll" and play["import_ts"] == str(T + D) and play["confirmed_at"] == str(T + D + 437)
    assert_counted(real_redis, 1)
    assert backfill(store, T + D + 437).already == 1   # a second pass binds the same item again
    assert_counted(real_redis, 1)


@pytest.mark.parametrize("offset", [1_000, D // 2, D, D + 60_000], ids=["start", "middle", "end", "late"])
def test_backfill_then_import_confirms_the_backfilled_play(real_redis: Any, tmp_path: Path, offset: int) -> None:
    """The poller was off: the feed lists the play with played_at anywhere from near its start
    to a minute late; the export's record of it must confirm that play, not add a second."""
    store = Store(real_redis)
    assert len(backfill(store, T + offset).added) == 1
    path = export(tmp_path / "endsong_0.json", (T + D, D))
    summary = run_import(real_redis, [path], min_play_ms=30_000)
    assert (summary.confirmed, summary.added) == (1, 0)
    (play,) = song_plays(real_redis).values()
    assert play["source"] == "recently_played" and play["import_ts"] == str(T + D)
    assert play["confirmed_at"] == str(T + offset) and play["reason_end"] == "trackdone"
    assert_counted(real_redis, 1)
    assert run_import(real_redis, [path], min_play_ms=30_000).added == 0
    assert backfill(store, T + offset).added == []
    assert_counted(real_redis, 1)


@pytest.mark.parametrize("offset", [1_000, D, D + 60_000], ids=["start", "end", "late"])
def test_back_to_back_backfilled_plays_stay_two(real_redis: Any, tmp_path: Path, offset: int) -> None:
    """Near its start, each played_at lies inside the previous listen: the stored intervals are
    shifted by a whole track. Pairing in time order still gives each record its own play."""
    store = Store(real_redis)
    assert len(backfill(store, T + offset, T + D + offset).added) == 2
    summary = run_import(real_redis, [export(tmp_path / "endsong_0.json", (T + D, D), (T + 2 * D, D))],
                         min_play_ms=30_000)
    assert (summary.confirmed, summary.added) == (2, 0)
    imported = sorted(int(h["import_ts"]) for h in song_plays(real_redis).values())
    assert imported == [T + D, T + 2 * D]
    assert_counted(real_redis, 2)


def test_a_polled_play_and_a_backfilled_repeat_are_each_confirmed(real_redis: Any, tmp_path: Path) -> None:
    """The poller saw the first listen and stopped; backfill added the repeat with a played_at
    near its start, which lies right at the first listen's end. Overlap pairs the polled play
    first, so the first record cannot take the repeat."""
    store = Store(real_redis)
    poll(store, T)
    result = backfill(store, T + D + 300, T + D + 1_500)
    assert (result.confirmed, len(result.added)) == (1, 1)
    summary = run_import(real_redis, [export(tmp_path / "endsong_0.json", (T + D, D), (T + 2 * D, D))],
                         min_play_ms=30_000)
    assert (summary.confirmed, summary.added) == (2, 0)
    by_source = {h["source"]: int(h["import_ts"]) for h in song_plays(real_redis).values()}
    assert by_source == {"poll": T + D, "recently_played": T + 2 * D}
    assert_counted(real_redis, 2)


def test_a_skip_beside_a_backfilled_play_does_not_take_it(real_redis: Any, tmp_path: Path) -> None:
    """A full listen, then the track restarted and skipped after 5 s; the feed lists only the
    full listen, a minute late, so the skip's ts is the nearer one. The full listen confirms it."""
    store = Store(real_redis)
    backfill(store, T + D + 60_000)
    summary = run_import(real_redis, [export(tmp_path / "endsong_0.json", (T + D, D), (T + D + 5_000, 5_000))],
                         min_play_ms=30_000)
    assert (summary.confirmed, summary.added) == (1, 1)
    plays = song_plays(real_redis)
    assert sorted((h["source"], h["counted"]) for h in plays.values()) == [("import", "0"), ("recently_played", "1")]
    assert_counted(real_redis, 1)


def test_account_data_confirms_a_backfilled_play_by_name(real_redis: Any, tmp_path: Path) -> None:
    store = Store(real_redis)
    backfill(store, T + 1_000)
    stamp = datetime.fromtimestamp((T + D) / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
    path = tmp_path / "StreamingHistory_music_0.json"
    path.write_text(json.dumps([{"endTime": stamp, "artistName": "Singer", "trackName": SONG.name, "msPlayed": D}]))
    summary = run_import(real_redis, [path], min_play_ms=30_000)
    assert (summary.confirmed, summary.added) == (1, 0)
    assert len(play_hashes(real_redis)) == 1
    assert_counted(real_redis, 1)
