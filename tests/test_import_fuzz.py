"""`import` fed generated export files (issue 17): valid and broken JSON, wrong types, huge and
negative numbers, odd unicode, BOMs and other encodings, zips with nested zips and damaged
members, all through the real CLI entry against a real redis-server.

Whatever it is fed: the exit code is 0 or 65, `check` passes afterwards, what was stored before
is still there (a play the poller or backfill recorded may only gain the fields a confirmation
adds, and only those it lacked; an imported play is never rewritten), the counters grew by
exactly the counted plays added, and importing the same files again changes nothing.
FUZZ_EXAMPLES=2000 (with pytest --timeout 0) runs more examples than CI's 60.
"""

from __future__ import annotations

import io
import os
import json
import zipfile
from pathlib import Path
from typing import Any, Callable

from hypothesis import HealthCheck, event, given, settings, strategies as st

from spotify_logger import keys
from spotify_logger.batch import Batch, PlayWrite
from spotify_logger.cli import main
from spotify_logger.importer import run_import
from spotify_logger.importer.records import CLOCK_SKEW_MS, EXTRA_FIELDS, MALFORMED, NO_ITEM, Skip, parse
from spotify_logger.store import Store

from conftest import redis_dump
from helpers import A, B, EP, add_play, ext, iso, write_json

T0 = 1_717_236_000_000  # 2024-06-01T10:00:00Z
MIN, H, DAY = 60_000, 3_600_000, 86_400_000
LOCAL = "spotify:local:Me+%26+You:Demos:Tape+Hiss:215"
CONFIRMATION_FIELDS = frozenset({*EXTRA_FIELDS, "import_ts"})
NAMES = ("Streaming_History_Audio_2024_0.json", "Streaming_History_Audio_2024_1.json", "endsong_3.json",
         "StreamingHistory_music_0.json", "StreamingHistory0.json")


# --- what is stored before -----------------------------------------------------------------

def seed(client: Any, folder: Path) -> None:
    """Polled plays, a backfilled one, an import that confirmed one of them and added others."""
    client.flushdb()
    add_play(client, T0, 180_000, A, name="Song A")
    add_play(client, T0 + 10 * MIN, 200_000, B, name="Song B")
    add_play(client, T0 + 30 * MIN, 20 * MIN, EP, name="Ep 1", artists=(), kind="episode", show="The Show")
    played_at = T0 + 2 * H
    Store(client).apply(Batch.not_a_poll([PlayWrite(played_at - 180_000, {
        "started_at": played_at - 180_000, "ended_at": played_at, "ms_played": 180_000, "duration_ms": 180_000,
        "type": "track", "uri": B, "name": "Song B", "artists": '["Artist"]', "counted": "1", "playing": "0",
        "source": "recently_played", "confirmed_at": played_at}, B, ("Artist",), counted=True, create_only=True)]))
    write_json(folder / "seed" / "endsong_0.json", [
        ext(T0 + 181_000, 179_000), ext(T0 + H, 150_000, uri=LOCAL, name="Tape Hiss"),
        ext(T0 + 3 * H, 200_000), ext(T0 + 3 * H + 5 * MIN, 5_000, uri=B, name="Song B"),
    ])
    write_json(folder / "seed" / "StreamingHistory_music_0.json",
               [{"endTime": iso(T0 + 4 * H)[:16].replace("T", " "), "artistName": "Artist", "trackName": "Song C",
                 "msPlayed": 240_000}])
    run_import(client, [folder / "seed"], min_play_ms=30_000)


# --- generated export files ----------------------------------------------------------------

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
any_json = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=6), inner, max_size=3), max_leaves=8)
odd_text = st.text(st.characters(blacklist_categories=()), max_size=12)  # lone surrogates, NUL, RTL ...
good_ms = st.one_of(st.sampled_from([0, 1, 4_999, 5_000, 29_999, 30_000, 178_999, 179_000, 180_000, 199_999,
                                     200_000, 20 * MIN, DAY, 200_000.0]), st.integers(min_value=0, max_value=3 * H))
bad_ms = st.one_of(st.sampled_from([DAY + 1, -1, 10**30, 1.0e308, 2.5, "200000", True]), any_json)
# End times near those of the stored plays, so records confirm, duplicate and graze them.
SEEDED_ENDS = (T0 + 180_000, T0 + 10 * MIN + 200_000, T0 + 50 * MIN, T0 + H, T0 + 2 * H, T0 + 3 * H,
               T0 + 3 * H + 5 * MIN, T0 + 4 * H)
ends = st.one_of(st.builds(lambda end, jitter: end + jitter, st.sampled_from(SEEDED_ENDS), st.integers(-3_000, 3_000)),
                 st.integers(min_value=T0 - H, max_value=T0 + 5 * H))


@st.composite
def good_stamp(draw: st.DrawFn) -> str:
    end = draw(ends)
    return draw(st.sampled_from([iso(end), iso(end).replace("Z", f".{end % 1000:03d}Z"),
                                 iso(end)[:16].replace("T", " "), iso(end - 2 * H).replace("Z", "-02:00")]))


odd_text = st.text(st.characters(blacklist_categories=()), max_size=12)  # lone surrogates, NUL, RTL ...
bad_stamp = st.one_of(st.sampled_from(["2099-01-01T00:00:00Z", "1999-01-01T00:00:00Z", "2024-13-45T99:00:00Z",
                                       iso(T0 + 400 * DAY), "", 0, T0, "2024-06-01T10:00:00Z\x00",
                                       "2024-06-01T10:00:00\ud800Z", "99999-01-01T00:00:00Z"]), odd_text, any_json)
good_uri = st.sampled_from([A, B, LOCAL, "spotify:track:6rqhFgbbKwnb9MLmUQDhG6"])
bad_uri = st.one_of(st.sampled_from(["spotify:track:x", "spotify:track:" + "a" * 21 + "\n",
                                     "spotify:track:" + "\x00" * 22,
                                     "https://open.spotify.com/track/" + "a" * 22, "spotify:local:a\nb",
                                     "spotify:episode:", 7, ["x"]]), odd_text)
good_name = st.sampled_from(["Song A", "Song B", "Song C", "Ep 1", "The Show", "Artist", "Ärtist ☃", None])
bad_name = st.one_of(st.sampled_from(["", "  "]), odd_text, any_json)


def maybe_bad(draw: st.DrawFn, good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
    """Mostly a value a real export holds, sometimes a broken one."""
    return draw(bad) if draw(st.integers(0, 5)) == 0 else draw(good)


@st.composite
def extended_record(draw: st.DrawFn) -> dict[str, Any]:
    record = ext(T0, 180_000, uri=None)
    record.update(ts=maybe_bad(draw, good_stamp(), bad_stamp), ms_played=maybe_bad(draw, good_ms, bad_ms),
                  master_metadata_track_name=maybe_bad(draw, good_name, bad_name),
                  master_metadata_album_artist_name=maybe_bad(draw, good_name, bad_name))
    kind = draw(st.sampled_from(["track", "track", "track", "episode", "chapter", "names only"]))
    if kind == "track":
        record["spotify_track_uri"] = maybe_bad(draw, good_uri, bad_uri)
    elif kind == "episode":
        record.update(spotify_episode_uri=maybe_bad(draw, st.just(EP), bad_uri), episode_name="Ep 1",
                      episode_show_name=maybe_bad(draw, good_name, bad_name), master_metadata_track_name=None)
    elif kind == "chapter":
        record.update(audiobook_chapter_uri=maybe_bad(draw, st.just("spotify:episode:c1"), bad_uri),
                      audiobook_chapter_title=maybe_bad(draw, good_name, bad_name), audiobook_title="Book")
    for extra in draw(st.lists(st.sampled_from(EXTRA_FIELDS), max_size=2)):
        record[extra] = draw(st.booleans() | st.sampled_from(["fwdbtn", "ios"]) | any_json | odd_text)
    return record


@st.composite
def account_record(draw: st.DrawFn) -> dict[str, Any]:
    return {"endTime": maybe_bad(draw, good_stamp(), bad_stamp), "msPlayed": maybe_bad(draw, good_ms, bad_ms),
            "trackName": maybe_bad(draw, good_name, bad_name), "artistName": maybe_bad(draw, good_name, bad_name)}


records = st.lists(st.one_of(extended_record(), extended_record(), account_record(), any_json), max_size=12)


@st.composite
def file_bytes(draw: st.DrawFn) -> bytes:
    """One history file's bytes: mostly JSON arrays of records, in several encodings, or broken."""
    kind = draw(st.sampled_from(["utf8", "utf8", "utf8", "utf8", "bom", "utf16", "latin1", "ascii", "truncated",
                                 "not_a_list", "nested", "huge_number", "garbage", "empty"]))
    content = draw(records)
    if kind == "not_a_list":
        return json.dumps(draw(any_json)).encode()
    if kind == "nested":
        return b"[" * 100_000
    if kind == "huge_number":
        return b'[{"ts": "2024-06-01T10:00:00Z", "ms_played": ' + b"9" * 5_000 + b"}]"
    if kind == "garbage":
        return draw(st.binary(max_size=64))
    if kind == "empty":
        return b""
    text = json.dumps(content, ensure_ascii=kind == "ascii")
    if kind == "truncated":
        return text[:draw(st.integers(0, max(len(text) - 1, 0)))].encode("utf-8", "surrogatepass")
    encoding = {"utf8": "utf-8", "bom": "utf-8-sig", "utf16": "utf-16", "latin1": "latin-1", "ascii": "ascii"}[kind]
    return text.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace")


def _damaged(data: bytes, where: int) -> bytes:
    raw = bytearray(data)
    for i in range(where % max(len(raw), 1), min(where % max(len(raw), 1) + 8, len(raw))):
        raw[i] ^= 0xA5
    return bytes(raw)


@st.composite
def zip_bytes(draw: st.DrawFn) -> bytes:
    """An export .zip: history members (some nested in folders), other members, a nested zip,
    maybe a damaged byte range (a member's data, a header or the central directory)."""
    buffer = io.BytesIO()
    method = draw(st.sampled_from([zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]))
    with zipfile.ZipFile(buffer, "w", compression=method) as zf:
        for name in draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True)):
            zf.writestr(f"Spotify Extended Streaming History/{name}", draw(file_bytes()))
        if draw(st.booleans()):
            inner = io.BytesIO()
            with zipfile.ZipFile(inner, "w") as nested:
                nested.writestr(NAMES[0], json.dumps([ext(T0 + 5 * H, 1_000)]))
            zf.writestr("nested.zip", inner.getvalue())
            zf.writestr("Streaming_History_Audio_nested.json", inner.getvalue())  # a zip named like history
        zf.writestr("ReadMeFirst.pdf", b"%PDF-1.4")
    data = buffer.getvalue()
    return _damaged(data, draw(st.integers(0, 10**6))) if draw(st.booleans()) else data


@st.composite
def export(draw: st.DrawFn) -> dict[str, bytes]:
    files = draw(st.dictionaries(st.sampled_from(NAMES), file_bytes(), max_size=3))
    if draw(st.booleans()) or not files:
        files["my_spotify_data.zip"] = draw(zip_bytes())
    return files


# --- the test ------------------------------------------------------------------------------

def _cli(url: str, state: Path) -> Callable[..., tuple[int, str, str]]:
    def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
        code = main(list(argv), env={"REDIS_URL": url, "SPOTIFY_LOGGER_STATE_DIR": str(state),
                                     "SPOTIFY_LOGGER_LOG_FORMAT": "json"})
        out, err = capsys.readouterr()
        return code, out, err
    return run


def _counters(dump: dict[str, Any], name: str) -> dict[str, float]:
    return dict(dump.get(name, []))


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(files=export(), dry_run=st.sampled_from([False, False, False, True]))
def test_whatever_import_is_fed_it_exits_0_or_65_and_loses_nothing(
        files: dict[str, bytes], dry_run: bool, tmp_path: Path, redis_server: Any, real_redis: Any,
        capsys: Any) -> None:
    folder = tmp_path / "export"
    for old in folder.glob("*"):
        old.unlink()
    folder.mkdir(exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    seed(real_redis, tmp_path)
    before = redis_dump(real_redis)
    cli = _cli(redis_server.url, tmp_path / "state")
    argv = ["import", *(["--dry-run"] if dry_run else []), *sorted(str(p) for p in folder.iterdir())]

    code, out, err = cli(capsys, *argv)
    assert code in (0, 65), (code, out, err)
    assert "Traceback" not in err and "internal error" not in err
    after = redis_dump(real_redis)
    added = sum(1 for k in after if k not in before)
    event(f"exit {code}, " + ("plays added" if added else "nothing added") + (", a dry run" if dry_run else ""))
    event("a stored play confirmed" if any(after[k] != v for k, v in before.items() if keys.is_play_key(k))
          else "no stored play confirmed")
    if dry_run:
        assert after == before
    _assert_only_grew(before, after)
    assert cli(capsys, "check")[0] == 0

    again_code, _, _ = cli(capsys, *argv)
    assert again_code == code
    assert redis_dump(real_redis) == after, "importing the same files again changed the store"


def _assert_only_grew(before: dict[str, Any], after: dict[str, Any]) -> None:
    play = keys.PLAY_PREFIX
    old_plays = {k: v for k, v in before.items() if keys.is_play_key(k)}
    new_plays = {k: v for k, v in after.items() if keys.is_play_key(k) and k not in before}
    for key, fields in old_plays.items():
        now = after[key]
        assert {f: now.get(f) for f in fields} == fields, f"{key}: a stored field changed"
        gained = set(now) - set(fields)
        if fields.get("source") == "import":
            assert not gained, f"{key}: an imported play was rewritten"
        assert gained <= CONFIRMATION_FIELDS, f"{key} gained {gained}"
    others = {k for k in before if not keys.is_play_key(k)} - {keys.INDEX, keys.TRACK_COUNTS, keys.ARTIST_COUNTS}
    assert {k: after.get(k) for k in others} == {k: before[k] for k in others}
    index_before, index_after = set(dict(before[keys.INDEX])), set(dict(after[keys.INDEX]))
    assert index_after == index_before | {k[len(play):] for k in new_plays}
    assert {v["source"] for v in new_plays.values()} <= {"import"}
    tracks, artists = _counters(before, keys.TRACK_COUNTS), _counters(before, keys.ARTIST_COUNTS)
    for fields in new_plays.values():
        if fields["counted"] == "1":
            tracks[fields["uri"]] = tracks.get(fields["uri"], 0) + 1
            for artist in json.loads(fields.get("artists", "[]")):
                artists[artist] = artists.get(artist, 0) + 1
    assert _counters(after, keys.TRACK_COUNTS) == tracks
    assert _counters(after, keys.ARTIST_COUNTS) == artists


FIELDS = ("ts", "ms_played", "endTime", "msPlayed", "spotify_track_uri", "spotify_episode_uri", "audiobook_chapter_uri",
          "master_metadata_track_name", "master_metadata_album_artist_name", "master_metadata_album_album_name",
          "episode_name", "episode_show_name", "audiobook_chapter_title", "audiobook_title", "trackName",
          "artistName", "episodeName", "podcastName", *EXTRA_FIELDS)


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.dictionaries(st.sampled_from(FIELDS), st.one_of(any_json, odd_text, good_stamp(), good_uri,
                                                                      good_ms)), extended_record(), account_record(),
                     any_json))
def test_a_record_is_a_play_redis_can_store_or_a_skip_never_an_exception(raw: Any) -> None:
    result = parse(raw, now_ms=T0 + 5 * H)
    if isinstance(result, Skip):
        assert result.reason in (MALFORMED, NO_ITEM) and result.detail
        return
    fields = result.fields(counted=True, started_at=result.started_at)
    for value in fields.values():
        str(value).encode("utf-8")  # a lone surrogate would fail here, in redis-py, as exit 70
    assert 0 <= result.ms_played <= DAY and result.ended_at <= T0 + 5 * H + CLOCK_SKEW_MS
    assert result.uri.startswith(("spotify:track:", "spotify:episode:", "spotify:chapter:", "spotify:local:",
                                  "spotify:import:")) and "\n" not in result.uri and "\x00" not in result.uri
