"""`spotify-logger stats`: top lists, counts, hours, weekdays, days and streaks on a real redis-server."""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from spotify_logger import stats
from spotify_logger.errors import BadInput
from spotify_logger.periods import LocalTime, parse_when, period
from spotify_logger.playlist import is_spotify_track

from conftest import assert_counter_invariant
from helpers import DAY, EP, MIN, MON, A, B, C, H, add_play, run_cli


def stats_json(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> Any:
    code, out, err = run_cli(capsys, url, "stats", *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def week(real_redis: Any) -> Any:
    """A week of plays: A three times (one too short to count), B twice, an episode, C last week."""
    add_play(real_redis, MON + 8 * H, 200_000, A, artists=("Artist", "Guest"))
    add_play(real_redis, MON + 8 * H + 200_000, 10_000, A)               # a skip: time, no count
    add_play(real_redis, MON + DAY + 9 * H, 200_000, A)
    add_play(real_redis, MON + DAY + 20 * H, 180_000, B, artists=("Other",), album="Second")
    add_play(real_redis, MON + 2 * DAY + 21 * H, 180_000, B, artists=("Other",), album="Second")
    add_play(real_redis, MON + 4 * DAY + 7 * H, 40 * MIN, EP, name="Episode", artists=(), album=None,
             kind="episode", show="The Show")
    add_play(real_redis, MON - 7 * DAY, 180_000, C)
    add_play(real_redis, MON - 7 * DAY + 180_000, 180_000, C)
    add_play(real_redis, MON - 7 * DAY + 360_000, 180_000, C)
    assert_counter_invariant(real_redis)
    return real_redis


def test_top_tracks_of_a_period_count_counted_plays_and_sum_time(week: Any, redis_server: Any,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = stats_json(capsys, redis_server.url, "top", "tracks", "--since", "2024-06-03", "--until", "2024-06-09",
                      "--tz", "UTC")
    rows = [(r["key"], r["plays"], r["ms_played"]) for r in data["rows"]]
    assert rows == [(A, 2, 410_000), (B, 2, 360_000), (EP, 1, 40 * MIN)]
    assert data["rows"][2]["artists"] == ["The Show"]
    code, out, _ = run_cli(capsys, redis_server.url, "stats", "top", "tracks", "--since", "2024-06-03", "--until",
                           "2024-06-09", "--tz", "UTC", "--limit", "2")
    assert code == 0 and "Song A - Artist, Guest" in out and "Song B - Other" in out and "Episode" not in out
    assert "6m 50s" in out


def test_all_time_top_comes_from_the_counters_with_names(week: Any, redis_server: Any,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = stats_json(capsys, redis_server.url, "top", "tracks")
    assert [(r["key"], r["name"], r["plays"], r["ms_played"]) for r in data["rows"]] == [
        (C, "Song C", 3, None), (A, "Song A", 2, None), (B, "Song B", 2, None), (EP, "Episode", 1, None)]
    scanned = stats_json(capsys, redis_server.url, "top", "tracks", "--since", "2000-01-01")
    assert [(r["key"], r["plays"]) for r in scanned["rows"]] == [(r["key"], r["plays"]) for r in data["rows"]]
    artists = stats_json(capsys, redis_server.url, "top", "artists")
    assert [(r["name"], r["plays"]) for r in artists["rows"]] == [("Artist", 5), ("Other", 2), ("Guest", 1)]


def test_top_artists_and_albums_of_a_period(week: Any, redis_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    artists = stats_json(capsys, redis_server.url, "top", "artists", "--since", "2024-06-03", "--tz", "UTC")
    assert [(r["name"], r["plays"]) for r in artists["rows"]] == [("Artist", 2), ("Other", 2), ("Guest", 1)]
    albums = stats_json(capsys, redis_server.url, "top", "albums", "--since", "2024-06-03", "--tz", "UTC")
    assert [(r["name"], r["artists"], r["plays"]) for r in albums["rows"]] == [
        ("Album", ["Artist"], 2), ("Second", ["Other"], 2)]


def test_hours_window_in_a_time_zone(week: Any, redis_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # 20:00 and 21:00 UTC are 16:00 and 17:00 in New York (EDT); 08:00/09:00 UTC are 04:00/05:00.
    data = stats_json(capsys, redis_server.url, "top", "tracks", "--since", "2024-06-01", "--hours", "15-18",
                      "--tz", "America/New_York")
    assert [(r["key"], r["plays"]) for r in data["rows"]] == [(B, 2)]
    since, until = MON, MON + 7 * DAY
    assert stats.top_tracks(week, since, until, hours=(7, 10), tz="UTC", keep=is_spotify_track) == [(A, "Song A", 2)]
    assert stats.top_tracks(week, since, until, hours=(7, 10), tz="UTC") == [
        (A, "Song A", 2), (EP, "Episode", 1)]
    assert stats.top_tracks(week, since, until, hours=(22, 8), tz="UTC", keep=is_spotify_track) == []
    assert stats.top_tracks(week, since, until, hours=(20, 2), tz="UTC", limit=1) == [(B, "Song B", 2)]


def test_count_by_name_or_uri_with_first_and_last_play(week: Any, redis_server: Any,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = stats_json(capsys, redis_server.url, "count", "song a")
    [row] = data["rows"]
    assert (row["uri"], row["plays"], row["ms_played"]) == (A, 2, 410_000)
    assert (row["first_at"], row["last_at"]) == (MON + 8 * H, MON + DAY + 9 * H)
    assert [r["uri"] for r in stats_json(capsys, redis_server.url, "count", "other - song")["rows"]] == [B]
    assert stats_json(capsys, redis_server.url, "count", C)["rows"][0]["plays"] == 3
    code, out, _ = run_cli(capsys, redis_server.url, "stats", "count", "song", "--tz", "UTC")
    assert code == 0 and "2024-06-03 08:00  2024-06-04 09:00  Song A" in out and "total" in out
    assert "no plays match" in run_cli(capsys, redis_server.url, "stats", "count", "nothing like it")[1]


def test_hours_weekdays_and_days_use_listening_time(week: Any, redis_server: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--since", "2024-06-03", "--until", "2024-06-09", "--tz", "UTC")
    hours = stats_json(capsys, redis_server.url, "hours", *args)["ms_played"]
    assert hours[8] == 210_000 and hours[9] == 200_000 and hours[20] == hours[21] == 180_000
    assert hours[7] == 40 * MIN and sum(hours) == 410_000 + 360_000 + 40 * MIN
    weekdays = stats_json(capsys, redis_server.url, "weekdays", *args)["ms_played"]
    assert weekdays == {"Mon": 210_000, "Tue": 380_000, "Wed": 180_000, "Thu": 0, "Fri": 40 * MIN, "Sat": 0, "Sun": 0}
    days = stats_json(capsys, redis_server.url, "days", *args)["minutes"]
    assert days == {"2024-06-03": 3.5, "2024-06-04": 6.3, "2024-06-05": 3.0, "2024-06-06": 0.0, "2024-06-07": 40.0}
    code, out, _ = run_cli(capsys, redis_server.url, "stats", "days", *args)
    assert code == 0 and "2024-06-06 Thu     0 min" in out


def test_a_play_is_spread_over_the_hours_and_days_it_lasted(real_redis: Any) -> None:
    add_play(real_redis, MON + 23 * H + 50 * MIN, 30 * MIN)
    by_hour, by_weekday, by_day = stats.listening_time(real_redis, None, None, LocalTime("UTC"))
    assert by_hour[23] == 10 * MIN and by_hour[0] == 20 * MIN
    assert by_weekday[0] == 10 * MIN and by_weekday[1] == 20 * MIN and len(by_day) == 2
    # Kolkata is UTC+5:30: the play starts at 05:20 local.
    by_hour, _, _ = stats.listening_time(real_redis, None, None, LocalTime("Asia/Kolkata"))
    assert by_hour[5] == 30 * MIN


def test_streaks(real_redis: Any, redis_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    for day in (0, 1, 2, 3, 6, 7, 9):
        add_play(real_redis, MON + day * DAY + 12 * H, 180_000)
    add_play(real_redis, MON + 10 * DAY + 12 * H, 10_000)  # not counted: no streak day
    longest, current = stats.streaks(real_redis, None, None, LocalTime("UTC"), now_ms=MON + 10 * DAY + 13 * H)
    assert (longest.days, longest.first, longest.last) == (4, "2024-06-03", "2024-06-06")
    assert (current.days, current.first, current.last) == (1, "2024-06-12", "2024-06-12")
    _, current = stats.streaks(real_redis, None, None, LocalTime("UTC"), now_ms=MON + 11 * DAY + 13 * H)
    assert current.days == 0
    now = int(time.time() * 1000)
    for back in (1, 2):
        add_play(real_redis, now - back * DAY, 180_000)
    code, out, _ = run_cli(capsys, redis_server.url, "stats", "streak", "--tz", "UTC")
    assert code == 0 and "longest streak: 4 days (2024-06-03 .. 2024-06-06)" in out
    assert "current streak: 2 days" in out or "current streak: 3 days" in out


def test_periods() -> None:
    utc, paris = LocalTime("UTC"), LocalTime("Europe/Paris")
    now = MON + 12 * H
    assert parse_when("7d", utc, now) == now - 7 * DAY and parse_when("12h", utc, now) == now - 12 * H
    assert parse_when("2w", utc, now) == now - 14 * DAY
    assert parse_when("2024-06-03", paris, now) == MON - 2 * H  # CEST midnight
    assert parse_when("2024-06-03", utc, now, end=True) == MON + DAY
    assert parse_when("today", utc, now) == MON and parse_when("yesterday", utc, now) == MON - DAY
    assert parse_when("2024-06-03T08:30", paris, now) == MON + 6 * H + 30 * MIN
    assert parse_when("2024-06-03T08:30Z", paris, now) == MON + 8 * H + 30 * MIN
    assert period(None, None, utc, now) == (None, None)
    for bad in ("soon", "7x", "2024-02-30"):
        with pytest.raises(BadInput):
            parse_when(bad, utc, now)
    with pytest.raises(BadInput):
        period("2024-06-05", "2024-06-03", utc, now)


def test_local_time_follows_daylight_saving() -> None:
    paris = LocalTime("Europe/Paris")
    for moment in (datetime(2024, 3, 31, 0, 30, tzinfo=timezone.utc), datetime(2024, 3, 31, 1, 30, tzinfo=timezone.utc),
                   datetime(2024, 10, 27, 0, 30, tzinfo=timezone.utc), datetime(2024, 10, 27, 1, 30, tzinfo=timezone.utc)):
        ms = int(moment.timestamp() * 1000)
        local = moment.astimezone(ZoneInfo("Europe/Paris"))
        assert paris.hour(ms) == local.hour
        assert paris.day(ms) == (local.date() - date(1970, 1, 1)).days


def test_without_tz_the_system_zone_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert LocalTime().hour(MON) == 5 and LocalTime().midnight(date(2024, 6, 3)) == MON - 5 * H - 30 * MIN
    finally:
        monkeypatch.undo()
        time.tzset()


def test_bad_options_are_one_line_and_exit_65(real_redis: Any, redis_server: Any,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["top", "tracks", "--since", "soon"], ["hours", "--tz", "Mars/Olympus"],
                 ["top", "tracks", "--hours", "7-7"], ["days", "--since", "2024-06-05", "--until", "2024-06-01"]):
        code, _, err = run_cli(capsys, redis_server.url, "stats", *argv)
        assert code == 65 and len(err.strip().splitlines()) == 1, (argv, err)
    assert run_cli(capsys, redis_server.url, "stats", "top", "songs")[0] == 64


def test_an_empty_store_answers_politely(real_redis: Any, redis_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["top", "tracks"], ["top", "albums"], ["hours"], ["weekdays"], ["days"], ["streak"], ["count", "x"]):
        code, out, err = run_cli(capsys, redis_server.url, "stats", *argv)
        assert code == 0 and out.strip() and not err, argv


def test_plays_are_read_page_by_page_in_order(real_redis: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from spotify_logger import keys, playscan

    monkeypatch.setattr(playscan, "PAGE", 3)
    starts = [MON + i * H for i in range(10)]
    for start in starts:
        add_play(real_redis, start, 200_000)
    real_redis.zadd(keys.INDEX, {str(MON + 30 * MIN): MON + 30 * MIN})  # a member whose hash is gone
    assert [s for s, _ in playscan.scan_plays(real_redis, ("uri",))] == starts
    assert [s for s, _ in playscan.scan_plays(real_redis, reverse=True)] == starts[::-1]
    assert [s for s, _ in playscan.scan_plays(real_redis, ("uri",), since_ms=starts[2], until_ms=starts[8])] == starts[2:8]
    assert [s for s, _ in playscan.scan_plays(real_redis, since_ms=starts[2], until_ms=starts[8], reverse=True)] == \
        starts[2:8][::-1]
    _, whole = next(playscan.scan_plays(real_redis))
    assert whole == real_redis.hgetall(keys.play_key(starts[0]))
