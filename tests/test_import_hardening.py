"""`import` against what a hostile probe fed it (issue 17): near-duplicate records, a damaged zip
member, records from the future and uris Spotify never writes."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from spotify_logger import importer, keys
from spotify_logger.backfill import Reconciler
from spotify_logger.check import check
from spotify_logger.importer import run_import
from spotify_logger.importer.records import CLOCK_SKEW_MS, MALFORMED, Record, Skip, parse
from spotify_logger.simulator import track
from spotify_logger.store import Store

from conftest import assert_counter_invariant, play_hashes
from helpers import A, B, FakeFeed, ext, iso, play_through_tracker, run_cli, write_json

T0 = 1_717_236_000_000  # 2024-06-01T10:00:00Z
MIN, H = 60_000, 3_600_000


def stamped(ms: int) -> str:
    """A ts with milliseconds, as some exports (and hand-edited files) write it."""
    return iso(ms - ms % 1000).replace("Z", f".{ms % 1000:03d}Z")


def acct(end_ms: int, ms: int, track: str = "Song A") -> dict[str, Any]:
    return {"endTime": iso(end_ms)[:16].replace("T", " "), "artistName": "Artist", "trackName": track, "msPlayed": ms}


def imported(client: Any, tmp_path: Path, name: str, records: list[dict[str, Any]]) -> Any:
    folder = tmp_path / name
    write_json(folder / "endsong_0.json", records)
    return run_import(client, [folder], min_play_ms=30_000)


# --- item 4: near-duplicates are one play --------------------------------------------------

@pytest.mark.parametrize("second", [
    ext(T0, 199_999),                                  # ms_played one ms short
    {**ext(T0, 200_000), "ts": stamped(T0 + 123)},     # ts with milliseconds
    ext(T0 + 1_000, 200_000),                          # ts a second later
    ext(T0 - 1_000, 201_500),                          # both a little off
])
def test_near_duplicates_in_one_export_are_one_play(real_redis: Any, tmp_path: Path, second: dict[str, Any]) -> None:
    summary = imported(real_redis, tmp_path, "a", [ext(T0, 200_000), second])
    assert (summary.added, summary.duplicates) == (1, 1)
    assert len(play_hashes(real_redis)) == 1 and real_redis.zscore(keys.TRACK_COUNTS, A) == 1
    assert check(real_redis).ok
    assert_counter_invariant(real_redis)


def test_a_near_duplicate_in_a_later_import_adds_nothing(real_redis: Any, tmp_path: Path) -> None:
    assert imported(real_redis, tmp_path, "a", [ext(T0, 200_000)]).added == 1
    for name, record in (("b", ext(T0, 199_999)), ("c", {**ext(T0, 200_000), "ts": stamped(T0 + 123)})):
        summary = imported(real_redis, tmp_path, name, [record])
        assert (summary.added, summary.duplicates) == (0, 1)
    assert len(play_hashes(real_redis)) == 1 and real_redis.zscore(keys.TRACK_COUNTS, A) == 1
    assert check(real_redis).ok


def test_near_duplicates_of_a_polled_play_confirm_it_once(real_redis: Any, tmp_path: Path) -> None:
    key = play_through_tracker(real_redis, A, T0, 180_000)
    summary = imported(real_redis, tmp_path, "a", [ext(T0 + 181_000, 179_000), ext(T0 + 181_000, 178_999)])
    assert (summary.confirmed, summary.added, summary.duplicates) == (1, 0, 1)
    assert real_redis.hget(keys.play_key(key), "import_ts") == str(T0 + 181_000)
    assert real_redis.zscore(keys.TRACK_COUNTS, A) == 1 and check(real_redis).ok


def test_a_later_import_never_rewrites_what_a_confirmation_stored(real_redis: Any, tmp_path: Path) -> None:
    key = play_through_tracker(real_redis, A, T0, 180_000)
    assert imported(real_redis, tmp_path, "a", [ext(T0 + 181_000, 179_000)]).confirmed == 1
    before = real_redis.hgetall(keys.play_key(key))
    again = imported(real_redis, tmp_path, "b", [ext(T0 + 182_000, 178_500, reason_end="fwdbtn", platform="ios")])
    assert again.confirmed == 1 and again.added == 0
    assert real_redis.hgetall(keys.play_key(key)) == before


def test_the_other_export_adds_only_the_fields_a_play_lacks(real_redis: Any, tmp_path: Path) -> None:
    """Account data first (no extra fields), the extended history next: its fields are added,
    the first import_ts stays."""
    key = play_through_tracker(real_redis, A, T0, 180_000)
    write_json(tmp_path / "a" / "StreamingHistory_music_0.json", [acct(T0 + 181_000, 179_000)])
    assert run_import(real_redis, [tmp_path / "a"], min_play_ms=30_000).confirmed == 1
    first = real_redis.hget(keys.play_key(key), "import_ts")
    assert imported(real_redis, tmp_path, "b", [ext(T0 + 181_000, 179_000)]).confirmed == 1
    play = real_redis.hgetall(keys.play_key(key))
    assert play["import_ts"] == first and play["reason_end"] == "trackdone" and play["platform"] == "android"


def test_near_duplicate_account_records_are_one_play(real_redis: Any, tmp_path: Path) -> None:
    write_json(tmp_path / "StreamingHistory_music_0.json", [acct(T0, 200_000), acct(T0, 199_999)])
    summary = run_import(real_redis, [tmp_path], min_play_ms=30_000)
    assert (summary.added, summary.duplicates) == (1, 1) and check(real_redis).ok


def test_plays_of_two_tracks_at_once_and_back_to_back_plays_stay_apart(real_redis: Any, tmp_path: Path) -> None:
    summary = imported(real_redis, tmp_path, "a", [ext(T0, 200_000), ext(T0, 199_999, uri=B),
                                                   ext(T0 + 201_000, 200_000)])
    assert (summary.added, summary.duplicates) == (3, 0) and check(real_redis).ok


# --- item 5: a damaged zip member ----------------------------------------------------------

def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _records(*records: dict[str, Any]) -> bytes:
    return json.dumps(list(records)).encode()


def _damage(path: Path, member: str, how: str) -> None:
    """Overwrite the start of a member's compressed bytes (a bad deflate stream) or flip one of
    its last bytes (which inflates, to the wrong bytes: a CRC error)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    data = info.header_offset + 30 + name_len + extra_len
    if how == "deflate":
        raw[data:data + 4] = b"\xff\xff\xff\xff"
    else:
        raw[data + info.compress_size // 2] ^= 0x01
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["deflate", "crc"])
def test_a_damaged_member_in_the_middle_is_a_bad_file_and_the_rest_is_imported(
        tmp_path: Path, redis_server: Any, real_redis: Any, capsys: pytest.CaptureFixture[str], how: str) -> None:
    members = {
        f"Spotify Extended Streaming History/Streaming_History_Audio_2024_{n}.json":
        json.dumps([ext(T0 + n * 200 * MIN + i * 4 * MIN, 3 * MIN, uri=B if i % 2 else A) for i in range(40)]).encode()
        for n in range(3)}
    archive = _zip(tmp_path / "my_spotify_data.zip", members)
    damaged = list(members)[1]
    _damage(archive, damaged, how)
    code, out, err = run_cli(capsys, redis_server.url, "import", str(archive))
    assert code == 65 and "internal error" not in err and "Traceback" not in err
    assert f"{archive}!{damaged}: cannot read" in err
    assert "files:        2 read, 1 unreadable" in out and "plays added:  80" in out
    assert len(play_hashes(real_redis)) == 80 and check(real_redis).ok


def test_a_member_that_is_not_utf8_is_a_bad_file(tmp_path: Path, redis_server: Any, real_redis: Any,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    archive = _zip(tmp_path / "export.zip", {
        "Streaming_History_Audio_2024_0.json": json.dumps([ext(T0, 3 * MIN, name="Café")], ensure_ascii=False)
        .encode("latin-1"),
        "Streaming_History_Audio_2024_1.json": b"\xef\xbb\xbf" + json.dumps([ext(T0 + 9 * MIN, 3 * MIN)]).encode(),
    })
    code, out, err = run_cli(capsys, redis_server.url, "import", str(archive))
    assert code == 65 and "Streaming_History_Audio_2024_0.json: not UTF-8 text" in err
    assert "plays added:  1" in out  # the other member, whose UTF-8 BOM is fine


# --- item 13: records from the future, and uris Spotify never writes ----------------------

NOW = T0 + 30 * 86_400_000


@pytest.mark.parametrize("ahead, ok", [(18 * 3_600_000, False), (CLOCK_SKEW_MS + 1_000, False),
                                       (CLOCK_SKEW_MS, True), (5 * MIN, True), (0, True)])
def test_a_record_from_the_future_is_malformed_beyond_the_clock_skew(ahead: int, ok: bool) -> None:
    result = parse(ext(NOW + ahead, 3 * MIN), now_ms=NOW)
    assert isinstance(result, Record) if ok else (isinstance(result, Skip) and result.reason == MALFORMED)
    account = parse(acct(NOW + ahead, 3 * MIN), now_ms=NOW)
    assert isinstance(account, Record) if ok or ahead < CLOCK_SKEW_MS + MIN else isinstance(account, Skip)


@pytest.mark.parametrize("field, uri", [
    ("spotify_track_uri", "https://open.spotify.com/track/" + "a" * 22),
    ("spotify_track_uri", "spotify:track:" + "a" * 21),
    ("spotify_track_uri", "spotify:track:" + "a" * 22 + "\n"),
    ("spotify_track_uri", "spotify:track:" + "a" * 11 + "\x00" + "a" * 10),
    ("spotify_track_uri", "spotify:episode:" + "a" * 22),
    ("spotify_track_uri", "spotify:local:Artist:Album:Ti\x00tle:215"),
    ("spotify_track_uri", "spotify:local:Artist:Album:Title\n:215"),
    ("spotify_track_uri", 12345),
    ("spotify_track_uri", ["spotify:track:" + "a" * 22]),
    ("spotify_episode_uri", "spotify:episode:"),
    ("spotify_episode_uri", "spotify:episode:abc def"),
    ("audiobook_chapter_uri", "chapter-1"),
])
def test_a_uri_spotify_never_writes_is_malformed(field: str, uri: Any) -> None:
    raw = {**ext(T0, 3 * MIN, uri=None), field: uri}
    result = parse(raw, now_ms=T0)
    assert isinstance(result, Skip) and result.reason == MALFORMED and field in result.detail


@pytest.mark.parametrize("field, uri, kind", [
    ("spotify_track_uri", "spotify:track:6rqhFgbbKwnb9MLmUQDhG6", "track"),
    ("spotify_track_uri", "spotify:local:Me+%26+You:Demos:Tape+Hiss:9", "track"),
    ("spotify_track_uri", "spotify:local:Ärtist::Tïtle:215", "track"),
    ("spotify_episode_uri", "spotify:episode:5Xt5DXGzch68nYYamXrNxZ", "episode"),
    ("audiobook_chapter_uri", "spotify:episode:c1", "episode"),
    ("audiobook_chapter_uri", "spotify:chapter:0D5wENdkdwbqlrHoaJ9g29", "episode"),
])
def test_the_uris_spotify_writes_are_accepted(field: str, uri: str, kind: str) -> None:
    result = parse({**ext(T0, 3 * MIN, uri=None), field: uri}, now_ms=T0)
    assert isinstance(result, Record) and (result.uri, result.kind) == (uri, kind)


def test_text_that_is_not_unicode_is_malformed_not_a_crash(tmp_path: Path, redis_server: Any, real_redis: Any,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "Streaming_History_Audio_2024_0.json"
    good = json.dumps(ext(T0 + 9 * MIN, 3 * MIN))
    path.write_text("[" + json.dumps(ext(T0, 3 * MIN)).replace('"Song A"', '"Song \\ud800"') + ","
                    + json.dumps(acct(T0 + 20 * MIN, 3 * MIN)).replace('"Song A"', '"\\udfff"') + "," + good + "]")
    code, out, err = run_cli(capsys, redis_server.url, "import", str(path))
    assert code == 65 and "record 0:" in err and "record 1:" in err and "plays added:  1" in out
    assert check(real_redis).ok


def test_bad_records_are_counted_as_malformed_and_the_rest_imported(tmp_path: Path, redis_server: Any,
                                                                    real_redis: Any,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = write_json(tmp_path / "Streaming_History_Audio_2024_0.json", [
        ext(T0, 3 * MIN), ext(T0 + 10 * MIN, 3 * MIN, uri="not a uri"),
        {**ext(T0, 3 * MIN), "ts": "2099-01-01T00:00:00Z"},
    ])
    code, out, err = run_cli(capsys, redis_server.url, "import", str(path))
    assert code == 65 and "record 1: spotify_track_uri 'not a uri'" in err and "record 2: ts" in err
    assert "plays added:  1" in out and "malformed 2" in out
    assert len(play_hashes(real_redis)) == 1


def test_a_zip_whose_directory_names_an_unknown_zip_version_fails_before_anything_is_written(
        tmp_path: Path, redis_server: Any, real_redis: Any, capsys: pytest.CaptureFixture[str]) -> None:
    archive = _zip(tmp_path / "export.zip", {"Streaming_History_Audio_2024_0.json": _records(ext(T0, MIN))})
    raw = bytearray(archive.read_bytes())
    raw[raw.rfind(b"PK\x01\x02") + 6] = 139  # "version needed to extract": 13.9
    archive.write_bytes(bytes(raw))
    code, _, err = run_cli(capsys, redis_server.url, "import", str(archive))
    assert code == 65 and f"{archive}: not a readable zip file (zip file version 13.9)" in err
    assert play_hashes(real_redis) == {}


def test_an_encrypted_member_is_a_bad_file(tmp_path: Path, redis_server: Any, real_redis: Any,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    archive = _zip(tmp_path / "export.zip", {"Streaming_History_Audio_2024_0.json": _records(ext(T0, MIN)),
                                             "Streaming_History_Audio_2024_1.json": _records(ext(T0 + H, MIN))})
    raw = bytearray(archive.read_bytes())
    first = raw.find(b"PK\x01\x02")
    raw[first + 8] |= 0x01  # the directory's "encrypted" flag of the first member
    archive.write_bytes(bytes(raw))
    code, out, err = run_cli(capsys, redis_server.url, "import", str(archive))
    assert code == 65 and "Streaming_History_Audio_2024_0.json: cannot read" in err and "plays added:  1" in out


@pytest.mark.parametrize("chunk", [500, 1], ids=["one chunk", "a chunk each"])
@pytest.mark.parametrize("order", [(200_000, 199_999), (199_999, 200_000)], ids=["longer first", "shorter first"])
def test_near_duplicates_of_a_backfilled_play_confirm_it_once(real_redis: Any, tmp_path: Path, chunk: int,
                                                              order: tuple[int, int],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Backfill matches by window, not by overlap: the record that did not confirm the play is
    still that listen (it overlaps the one that did), so it is not added beside it."""
    song = track("Song", 200_000, ("Singer",), "Record")
    feed = FakeFeed([(song, T0 + 200_500)])
    assert len(Reconciler(feed, Store(real_redis)).run_once().added) == 1  # type: ignore[arg-type]
    monkeypatch.setattr(importer, "CHUNK", chunk)
    records = [ext(T0 + (ms - 199_999) * 3, ms, uri=song.uri, name="Song", artist="Singer") for ms in order]
    summary = imported(real_redis, tmp_path, "a", records)
    assert (summary.confirmed, summary.added, summary.duplicates) == (1, 0, 1)
    assert real_redis.zscore(keys.TRACK_COUNTS, song.uri) == 1 and len(play_hashes(real_redis)) == 1
    assert check(real_redis).ok


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_path_that_is_not_a_file_is_named_for_what_it_is(kind: str, real_redis: Any, redis_server: Any,
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`import /dev/zero` or a FIFO said "no such file or folder"."""
    if kind == "fifo":
        path = tmp_path / "pipe"
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
    code, _, err = run_cli(capsys, redis_server.url, "import", str(path))
    assert code == 65 and err.count("\n") == 1, err
    assert "not a regular file" in err and "no such" not in err
