"""`spotify-logger check [--repair]`: the store's invariants, broken on purpose and rebuilt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from spotify_logger import check as check_module
from spotify_logger import keys
from spotify_logger.batch import Batch, PlayWrite
from spotify_logger.importer import run_import
from spotify_logger.store import Store

from conftest import assert_counter_invariant, play_hashes
from helpers import DAY, MON, A, B, add_play, ext, play_through_tracker, run_cli, write_json


def assert_artist_invariant(client: Any) -> None:
    expected: dict[str, int] = {}
    for fields in play_hashes(client).values():
        if fields.get("counted") == "1":
            for artist in json.loads(fields.get("artists") or "[]"):
                expected[artist] = expected.get(artist, 0) + 1
    assert {a: int(s) for a, s in client.zrange(keys.ARTIST_COUNTS, 0, -1, withscores=True)} == expected


@pytest.fixture
def mixed(real_redis: Any, tmp_path: Path) -> Any:
    """Polled plays (through the real tracker), plays added directly, and an import."""
    play_through_tracker(real_redis, A, MON, 180_000)
    add_play(real_redis, MON + DAY, 200_000, B, artists=("Other", "Guest"))
    add_play(real_redis, MON + DAY + 200_000, 5_000, B)
    # Back-to-back imported plays of one track: ts rounding makes them touch by a second.
    write_json(tmp_path / "export" / "endsong_0.json",
               [ext(MON + 2 * DAY, 180_000), ext(MON + 2 * DAY + 179_000, 180_000)])
    run_import(real_redis, [tmp_path / "export"], min_play_ms=30_000)
    return real_redis


def test_a_healthy_store_passes(mixed: Any, redis_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, redis_server.url, "check")
    assert code == 0 and "result:    ok" in out and "plays:     6 (4 counted)" in out
    code, out, _ = run_cli(capsys, redis_server.url, "check", "--json")
    assert code == 0 and json.loads(out)["ok"] is True


def test_broken_index_and_counters_are_reported_then_repaired(mixed: Any, redis_server: Any,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    mixed.zrem(keys.INDEX, str(MON + DAY))
    mixed.zadd(keys.INDEX, {"12345": 12345})
    mixed.zincrby(keys.TRACK_COUNTS, 3, A)
    mixed.zrem(keys.TRACK_COUNTS, B)
    mixed.zadd(keys.TRACK_COUNTS, {"spotify:track:ghost": 2})
    mixed.zincrby(keys.ARTIST_COUNTS, -1, "Other")
    code, out, _ = run_cli(capsys, redis_server.url, "check")
    assert code == 65 and "PROBLEMS FOUND" in out
    for text in (f"listening:{MON + DAY} is not in listening:index", "listening:index member 12345 has no play hash",
                 f"plays:tracks {A} is 6, its counted plays are 3", f"plays:tracks {B} is missing, its counted plays are 1",
                 "plays:tracks spotify:track:ghost is 2, its counted plays are 0",
                 "plays:artists Other is 0, its counted plays are 1"):
        assert text in out
    code, out, _ = run_cli(capsys, redis_server.url, "check", "--repair")
    assert code == 0 and "repaired: 1 plays added to the index, 1 stale index members removed" in out
    assert "result:    ok" in out
    assert_counter_invariant(mixed)
    assert_artist_invariant(mixed)
    assert mixed.zscore(keys.INDEX, str(MON + DAY)) == MON + DAY and mixed.zscore(keys.INDEX, "12345") is None


def test_repair_rebuilds_lost_counters_and_index_from_the_hashes(mixed: Any) -> None:
    expected = (mixed.zrange(keys.TRACK_COUNTS, 0, -1, withscores=True),
                mixed.zrange(keys.ARTIST_COUNTS, 0, -1, withscores=True), mixed.zrange(keys.INDEX, 0, -1))
    mixed.delete(keys.TRACK_COUNTS, keys.ARTIST_COUNTS, keys.INDEX)
    assert not check_module.check(mixed).ok
    check_module.repair(mixed)
    assert (mixed.zrange(keys.TRACK_COUNTS, 0, -1, withscores=True),
            mixed.zrange(keys.ARTIST_COUNTS, 0, -1, withscores=True), mixed.zrange(keys.INDEX, 0, -1)) == expected
    assert check_module.check(mixed).ok


def test_overlapping_plays_of_one_uri_are_reported_not_repaired(mixed: Any, redis_server: Any,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    add_play(mixed, MON + 3 * DAY, 180_000, A)
    add_play(mixed, MON + 3 * DAY + 170_000, 180_000, A)   # starts 10 s before the first ends
    add_play(mixed, MON + 3 * DAY + 175_000, 180_000, B)   # another uri may overlap (a different device)
    code, out, _ = run_cli(capsys, redis_server.url, "check")
    assert code == 65
    assert f"{A}: listening:{MON + 3 * DAY} and listening:{MON + 3 * DAY + 170_000} overlap by 10.0 s" in out
    assert "overlaps:  1 problem(s)" in out
    assert run_cli(capsys, redis_server.url, "check", "--repair")[0] == 65


def test_repair_starts_over_when_the_poller_writes_meanwhile(mixed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real_check, calls = check_module.check, []

    def check_while_polling(client: Any, client_id: str | None = None) -> Any:
        report = real_check(client, client_id)
        calls.append(1)
        if len(calls) == 1:  # the poller counts a new play between the scan and the write
            add_play(client, MON + 5 * DAY, 200_000, B)
        return report

    mixed.zincrby(keys.TRACK_COUNTS, 7, A)
    monkeypatch.setattr(check_module, "check", check_while_polling)
    check_module.repair(mixed)
    assert len(calls) == 2
    monkeypatch.undo()
    assert check_module.check(mixed).ok
    assert_counter_invariant(mixed)


def test_repair_gives_up_cleanly_when_writes_never_stop(mixed: Any, redis_server: Any, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    real_check, start = check_module.check, [MON + 6 * DAY]

    def always_polling(client: Any, client_id: str | None = None) -> Any:
        report = real_check(client, client_id)
        start[0] += 300_000
        add_play(client, start[0], 200_000, B)
        return report

    monkeypatch.setattr(check_module, "check", always_polling)
    code, _, err = run_cli(capsys, redis_server.url, "check", "--repair")
    assert code == 75 and "stop it" in err
    monkeypatch.undo()
    assert_counter_invariant(mixed)


def test_a_backfilled_play_whose_played_at_fell_early_is_not_an_overlap(mixed: Any, redis_server: Any,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Backfill stores [played_at - duration, played_at]; Spotify's played_at may sit near the start
    of the listen, so the estimate can reach back over the previous play of the same track."""
    start = MON + 3 * DAY
    add_play(mixed, start, 180_000, A)
    backfilled = {"started_at": start + 5_000, "ended_at": start + 185_000, "duration_ms": 180_000, "uri": A,
                  "artists": json.dumps(["Artist"]), "counted": "1", "source": "recently_played",
                  "confirmed_at": start + 185_000}
    Store(mixed).apply(Batch(polled_at=0, keep_current=True, writes=(
        PlayWrite(start + 5_000, backfilled, A, ("Artist",), counted=True, create_only=True),)))
    code, out, _ = run_cli(capsys, redis_server.url, "check")
    assert code == 0, out
