"""`spotify-logger import`: Spotify's history export into a real redis-server, through the CLI."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from spotify_logger import keys
from spotify_logger.batch import Batch, PlayWrite
from spotify_logger.check import check
from spotify_logger.importer import run_import
from spotify_logger.importer.progress import Progress
from spotify_logger.importer.records import MALFORMED, NO_ITEM, Record, Skip, parse, pseudo_uri
from spotify_logger.store import Store

from conftest import assert_counter_invariant, play_hashes, redis_dump
from helpers import A, B, ext, iso, play_through_tracker, run_cli, write_json

T0 = 1_717_236_000_000  # 2024-06-01T10:00:00Z
MIN = 60_000


def acct(end_ms: int, ms: int, track: str = "Song A", artist: str = "Artist") -> dict[str, Any]:
    stamp = datetime.fromtimestamp(end_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
    return {"endTime": stamp, "artistName": artist, "trackName": track, "msPlayed": ms}


# --- records -------------------------------------------------------------------------------

def test_an_extended_record_becomes_a_play_that_ended_at_ts() -> None:
    rec = parse(ext(T0, 200_000), now_ms=T0)
    assert isinstance(rec, Record)
    assert (rec.started_at, rec.ended_at, rec.uri, rec.kind) == (T0 - 200_000, T0, A, "track")
    fields = rec.fields(counted=True, started_at=rec.started_at)
    assert fields["source"] == "import" and fields["counted"] == "1" and fields["id"] == "a" * 22
    assert {k: fields[k] for k in ("platform", "reason_start", "reason_end", "shuffle", "skipped", "offline",
                                   "incognito_mode")} == {
        "platform": "android", "reason_start": "clickrow", "reason_end": "trackdone", "shuffle": "0",
        "skipped": "0", "offline": "0", "incognito_mode": "0"}
    assert json.loads(str(fields["artists"])) == ["Artist"] and "conn_country" not in fields


def test_podcasts_and_audiobooks_become_episodes() -> None:
    episode = parse(ext(T0, 5 * MIN, uri=None, spotify_episode_uri="spotify:episode:e1", episode_name="Ep 1",
                        episode_show_name="The Show"), now_ms=T0)
    chapter = parse({"ts": iso(T0), "ms_played": MIN, "audiobook_chapter_uri": "spotify:episode:c1",
                     "audiobook_chapter_title": "Chapter 1", "audiobook_title": "Book"}, now_ms=T0)
    assert isinstance(episode, Record) and isinstance(chapter, Record)
    assert (episode.kind, episode.uri, episode.name, episode.show, episode.artist) == \
        ("episode", "spotify:episode:e1", "Ep 1", "The Show", None)
    fields = episode.fields(counted=True, started_at=episode.started_at)
    assert fields["type"] == "episode" and fields["show"] == "The Show" and "artists" not in fields
    assert (chapter.kind, chapter.show) == ("episode", "Book")


def test_account_data_records_get_a_stable_pseudo_uri() -> None:
    one = parse(acct(T0, 3 * MIN), now_ms=T0)
    two = parse(acct(T0 + 10 * MIN, MIN, track=" song a ", artist="ARTIST"), now_ms=T0 + 10 * MIN)
    other = parse(acct(T0, 3 * MIN, track="Song B"), now_ms=T0)
    assert isinstance(one, Record) and isinstance(two, Record) and isinstance(other, Record)
    assert one.uri == two.uri == pseudo_uri("track", "Song A", "Artist") != other.uri
    assert one.uri.startswith("spotify:import:track:") and one.pseudo
    assert one.started_at == T0 - T0 % MIN - 3 * MIN  # endTime has minute precision


@pytest.mark.parametrize("raw", [
    [1, 2], {"ts": "yesterday", "ms_played": 1}, {"ts": iso(T0), "ms_played": -1},
    {"ts": iso(T0), "ms_played": True}, {"ts": iso(T0), "ms_played": "100"}, {"ts": iso(T0), "ms_played": 2 * 86_400_000}, {"ts": "1999-01-01T00:00:00Z", "ms_played": 1},
    {"ts": iso(T0 + 5 * 86_400_000), "ms_played": 1}, {"endTime": "2024-13-01 10:00", "msPlayed": 1}, {"foo": 1},
])
def test_malformed_records_are_named(raw: Any) -> None:
    result = parse(raw, now_ms=T0)
    assert isinstance(result, Skip) and result.reason == MALFORMED and result.detail


def test_a_record_naming_nothing_is_skipped() -> None:
    result = parse(ext(T0, MIN, uri=None, name=""), now_ms=T0)
    assert isinstance(result, Skip) and result.reason == NO_ITEM


# --- the command ---------------------------------------------------------------------------

def test_file_import_then_reimport_adds_nothing(real_redis: Any, redis_server: Any, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    records = [ext(T0 + i * 4 * MIN, 200_000 if i % 3 else 10_000, uri=A if i % 2 else B) for i in range(20)]
    path = write_json(tmp_path / "Streaming_History_Audio_2024_0.json", records)
    code, out, _ = run_cli(capsys, redis_server.url, "import", str(path))
    assert code == 0
    assert "plays added:  20 (13 counted)" in out and "date range:   2024-06-01 .. 2024-06-01 (UTC)" in out
    plays = play_hashes(real_redis)
    assert sorted(plays) == sorted(T0 + i * 4 * MIN - (200_000 if i % 3 else 10_000) for i in range(20))
    assert {p["source"] for p in plays.values()} == {"import"}
    assert real_redis.zscore(keys.ARTIST_COUNTS, "Artist") == 13
    assert_counter_invariant(real_redis)
    assert real_redis.hgetall(keys.STATUS) == {} and real_redis.get(keys.CURRENT) is None
    before = redis_dump(real_redis)
    code, out, _ = run_cli(capsys, redis_server.url, "import", str(path))
    assert code == 0 and "plays added:  0 (0 counted)" in out and "duplicates:   20" in out
    assert redis_dump(real_redis) == before


def test_folder_and_zip_inputs_give_the_same_store_as_files(tmp_path: Path, redis_server: Any, real_redis: Any,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    first = [ext(T0 + i * 5 * MIN, 3 * MIN, uri=A) for i in range(5)]
    second = [ext(T0 + 86_400_000 + i * 5 * MIN, 3 * MIN, uri=B, name="Song B") for i in range(5)]
    folder = tmp_path / "Spotify Extended Streaming History"
    write_json(folder / "Streaming_History_Audio_2024_0.json", first)
    write_json(folder / "nested" / "Streaming_History_Audio_2024_1.json", second)
    write_json(folder / "Streaming_History_Video_2024.json", [ext(T0, MIN, uri="spotify:track:video")])
    (folder / "ReadMeFirst.pdf").write_bytes(b"%PDF")
    archive = tmp_path / "my_spotify_data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in folder.rglob("*"):
            if p.is_file():
                zf.write(p, f"Spotify Extended Streaming History/{p.relative_to(folder)}")
    assert run_cli(capsys, redis_server.url, "import", str(folder))[0] == 0
    from_folder = redis_dump(real_redis)
    assert len(play_hashes(real_redis)) == 10 and "spotify:track:video" not in str(from_folder)
    real_redis.flushdb()
    code, out, _ = run_cli(capsys, redis_server.url, "import", str(archive))
    assert code == 0 and "files:        2 read" in out and "plays added:  10" in out
    assert redis_dump(real_redis) == from_folder
    real_redis.flushdb()
    files = [str(p) for p in folder.rglob("Streaming_History_Audio_*.json")]
    assert run_cli(capsys, redis_server.url, "import", *files)[0] == 0
    assert redis_dump(real_redis) == from_folder
    assert_counter_invariant(real_redis)


def test_a_dry_run_changes_nothing_and_predicts_the_real_run(tmp_path: Path, redis_server: Any, real_redis: Any,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    play_through_tracker(real_redis, A, T0, 180_000)
    write_json(tmp_path / "Streaming_History_Audio_2024_0.json",
               [ext(T0 + 180_400, 179_000), ext(T0 + 10 * MIN, 3 * MIN, uri=B, name="Song B"),
                ext(T0 + 10 * MIN, 3 * MIN, uri=B, name="Song B"),  # listed twice
                ext(T0 + 20 * MIN, MIN, incognito_mode=True), {"ts": "oops"}])
    write_json(tmp_path / "StreamingHistory_music_0.json",
               [acct(T0 + 10 * MIN, 3 * MIN, "Song B"), acct(T0 + 40 * MIN, 3 * MIN, "Song C")])
    before = redis_dump(real_redis)
    code, dry, _ = run_cli(capsys, redis_server.url, "import", "--dry-run", str(tmp_path))
    assert code == 65 and dry.startswith("dry run: nothing was written")
    assert redis_dump(real_redis) == before
    code, real, _ = run_cli(capsys, redis_server.url, "import", str(tmp_path))
    assert code == 65
    assert dry.splitlines()[1:] == [line.replace("plays added: ", "plays to add:") for line in real.splitlines()[1:]]
    assert "plays to add: 2 (2 counted)" in dry and "confirmed:    1" in dry and "duplicates:   2" in dry
    assert "skipped:      2 (incognito 1, malformed 1)" in dry
    assert_counter_invariant(real_redis)


def test_a_malformed_record_and_file_are_reported_and_the_rest_imported(tmp_path: Path, redis_server: Any,
                                                                        real_redis: Any,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    good = write_json(tmp_path / "Streaming_History_Audio_2024_0.json",
                      [ext(T0, 3 * MIN), {"ts": iso(T0 + MIN), "ms_played": "lots"}, ext(T0 + 10 * MIN, 3 * MIN)])
    broken = tmp_path / "Streaming_History_Audio_2024_1.json"
    broken.write_text('[{"ts": "2024-06-01T10:00:00Z", "ms_played"')
    code, out, err = run_cli(capsys, redis_server.url, "import", str(good), str(broken))
    assert code == 65
    assert f"{good}: record 1: ms_played 'lots' is not a whole number" in err
    assert f"{broken}: not valid JSON" in err
    assert "files:        1 read, 1 unreadable" in out and "plays added:  2 (2 counted)" in out
    assert len(play_hashes(real_redis)) == 2
    assert_counter_invariant(real_redis)


def test_a_record_overlapping_a_polled_play_confirms_it(tmp_path: Path, redis_server: Any, real_redis: Any,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    key = play_through_tracker(real_redis, A, T0, 180_000)
    counters = real_redis.zrange(keys.TRACK_COUNTS, 0, -1, withscores=True)
    path = write_json(tmp_path / "endsong_0.json", [ext(T0 + 181_000, 178_000)])
    code, out, _ = run_cli(capsys, redis_server.url, "import", str(path))
    assert code == 0 and "plays added:  0" in out and "confirmed:    1" in out
    play = real_redis.hgetall(keys.play_key(key))
    assert play["source"] == "poll" and play["import_ts"] == str(T0 + 181_000) and "confirmed_at" not in play
    assert play["reason_end"] == "trackdone" and play["shuffle"] == "0"
    assert real_redis.zrange(keys.TRACK_COUNTS, 0, -1, withscores=True) == counters
    before = redis_dump(real_redis)
    assert run_cli(capsys, redis_server.url, "import", str(path))[0] == 0
    assert redis_dump(real_redis) == before


def test_confirming_never_touches_backfills_confirmed_at(real_redis: Any, tmp_path: Path) -> None:
    key = play_through_tracker(real_redis, A, T0, 180_000)
    real_redis.hset(keys.play_key(key), "confirmed_at", str(T0 + 179_123))
    write_json(tmp_path / "endsong_0.json", [ext(T0 + 181_000, 178_000)])
    summary = run_import(real_redis, [tmp_path], min_play_ms=30_000)
    assert summary.confirmed == 1 and summary.added == 0
    play = real_redis.hgetall(keys.play_key(key))
    assert play["confirmed_at"] == str(T0 + 179_123) and play["import_ts"] == str(T0 + 181_000)


def test_import_ts_is_kept_once_set(real_redis: Any, tmp_path: Path) -> None:
    """The account data, imported after the extended history, confirms the same play by name
    with a minute-rounded time: the first, precise import_ts stays."""
    key = play_through_tracker(real_redis, A, T0, 180_000)
    write_json(tmp_path / "a" / "endsong_0.json", [ext(T0 + 181_000, 178_000)])
    write_json(tmp_path / "b" / "StreamingHistory_music_0.json", [acct(T0 + 181_000, 178_000)])
    assert run_import(real_redis, [tmp_path / "a"], min_play_ms=30_000).confirmed == 1
    assert run_import(real_redis, [tmp_path / "b"], min_play_ms=30_000).confirmed == 1
    assert real_redis.hget(keys.play_key(key), "import_ts") == str(T0 + 181_000)
    assert [p["source"] for p in play_hashes(real_redis).values()] == ["poll", "poll"]  # A, and the next track


def test_back_to_back_records_of_one_track_are_two_plays(real_redis: Any, tmp_path: Path) -> None:
    play_through_tracker(real_redis, A, T0, 180_000)
    # The second listen starts where the first ended; ts rounding makes them touch by a second.
    write_json(tmp_path / "endsong_0.json", [ext(T0 + 180_000, 180_000), ext(T0 + 359_000, 180_000)])
    summary = run_import(real_redis, [tmp_path], min_play_ms=30_000)
    assert (summary.confirmed, summary.added) == (1, 1)
    assert real_redis.zscore(keys.TRACK_COUNTS, A) == 2
    assert_counter_invariant(real_redis)


def test_a_record_grazing_the_next_play_does_not_take_it(real_redis: Any, tmp_path: Path) -> None:
    """The first record overlaps the polled play by 3 s, the second by three minutes: the second is
    the one that confirms it. 3 s is beyond the timestamps' precision (2 s), so the first is that
    play listed again, not a play of its own (which `check` would report as an overlap)."""
    key = play_through_tracker(real_redis, A, T0, 180_000)
    write_json(tmp_path / "endsong_0.json", [ext(T0 + 3_000, 180_000), ext(T0 + 181_000, 180_000)])
    summary = run_import(real_redis, [tmp_path], min_play_ms=30_000)
    assert (summary.confirmed, summary.added, summary.duplicates) == (1, 0, 1)
    assert real_redis.hget(keys.play_key(key), "import_ts") == str(T0 + 181_000)
    assert check(real_redis).ok


def test_incognito_plays_are_imported_only_when_asked(real_redis: Any, tmp_path: Path) -> None:
    write_json(tmp_path / "endsong_0.json", [ext(T0, 3 * MIN, incognito_mode=True), ext(T0 + 5 * MIN, 3 * MIN)])
    assert run_import(real_redis, [tmp_path], min_play_ms=30_000).skipped["incognito"] == 1
    assert len(play_hashes(real_redis)) == 1
    summary = run_import(real_redis, [tmp_path], min_play_ms=30_000, include_incognito=True)
    assert (summary.added, summary.duplicates) == (1, 1)
    assert real_redis.hget(keys.play_key(T0 - 3 * MIN), "incognito_mode") == "1"


def test_both_exports_of_one_play_store_it_once(real_redis: Any, tmp_path: Path) -> None:
    write_json(tmp_path / "Streaming_History_Audio_2024_0.json", [ext(T0 + 30_000, 3 * MIN)])
    write_json(tmp_path / "StreamingHistory_music_0.json", [acct(T0 + 30_000, 3 * MIN), acct(T0 + 9 * MIN, 3 * MIN)])
    summary = run_import(real_redis, [tmp_path], min_play_ms=30_000)
    assert (summary.added, summary.duplicates) == (2, 1)
    uris = sorted(p["uri"] for p in play_hashes(real_redis).values())
    assert uris[0].startswith("spotify:import:track:") and uris[1] == A


def test_skips_ending_in_the_same_second_are_all_kept(real_redis: Any, tmp_path: Path) -> None:
    write_json(tmp_path / "endsong_0.json", [ext(T0, 0, uri=A), ext(T0, 0, uri=B), ext(T0, 0, uri=A)])
    summary = run_import(real_redis, [tmp_path], min_play_ms=30_000)
    assert (summary.added, summary.duplicates) == (2, 1)
    assert sorted(play_hashes(real_redis)) == [T0, T0 + 1]
    assert run_import(real_redis, [tmp_path], min_play_ms=30_000).added == 0


def test_min_play_ms_decides_what_counts(real_redis: Any, tmp_path: Path) -> None:
    write_json(tmp_path / "endsong_0.json", [ext(T0, 29_999), ext(T0 + MIN, 30_000)])
    run_import(real_redis, [tmp_path], min_play_ms=30_000)
    assert [p["counted"] for _, p in sorted(play_hashes(real_redis).items())] == ["0", "1"]


def test_bad_paths_fail_before_anything_is_written(tmp_path: Path, redis_server: Any, real_redis: Any,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    good = write_json(tmp_path / "endsong_0.json", [ext(T0, 3 * MIN)])
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not a zip")
    for bad in (tmp_path / "missing.json", tmp_path / "empty", tmp_path / "bad.zip"):
        code, _, err = run_cli(capsys, redis_server.url, "import", str(good), str(bad))
        assert code == 65 and str(bad) in err and "Traceback" not in err
    assert redis_dump(real_redis) == {}


def test_redis_down_is_a_temporary_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_json(tmp_path / "endsong_0.json", [ext(T0, 3 * MIN)])
    code, out, _ = run_cli(capsys, "redis://127.0.0.1:1/0", "import", str(path))
    assert code == 75 and "INTERRUPTED" in out


def test_progress_is_drawn_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress(100, stream=stream)
        bar.update(50, 1234)
        bar.close()
    assert "50%" in tty.getvalue() and "1234 records" in tty.getvalue()
    assert pipe.getvalue() == ""


def test_a_write_racing_the_poller_is_counted_not_lost(real_redis: Any, tmp_path: Path) -> None:
    """create_only: when the poller takes a key between planning and writing, the import yields."""
    write_json(tmp_path / "endsong_0.json", [ext(T0, 3 * MIN, uri=B)])
    store, original = Store(real_redis), Store.apply

    def poller_first(self: Store, batch: Batch) -> int:
        if any(w.create_only for w in batch.writes):
            original(store, Batch(polled_at=T0, writes=(PlayWrite(T0 - 3 * MIN, {"uri": A, "source": "poll"}, A),),
                                  keep_current=True))
        return original(self, batch)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Store, "apply", poller_first)
        summary = run_import(real_redis, [tmp_path], min_play_ms=30_000)
    assert (summary.added, summary.duplicates) == (0, 1) and summary.problems
    assert real_redis.hget(keys.play_key(T0 - 3 * MIN), "uri") == A
