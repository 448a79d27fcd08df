"""Command-line arguments that used to end in exit 70 (issue 17, item 12): each is now a usage
error (64, argparse) or bad input (65), on one line, and never a traceback."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from spotify_logger.errors import BadInput
from spotify_logger.periods import EARLIEST, LATEST, LocalTime, parse_when, period

from helpers import run_cli, run_command

NOW_MS = 1_790_000_000_000


def usage_error(code: int, err: str, option: str) -> None:
    assert code == 64 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("spotify-logger") and option in err.strip().splitlines()[-1], err


def bad_input(code: int, err: str, expected: str) -> None:
    assert code == 65 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and expected in err, err


@pytest.mark.parametrize("limit", ["999999999999999999999", "0", "-3", "1" + "0" * 5000])
def test_a_huge_or_non_positive_limit_is_a_usage_error(real_redis: Any, redis_server: Any, limit: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    usage_error(*run_cli(capsys, redis_server.url, "stats", "top", "tracks", "--limit", limit)[::2], "--limit")


@pytest.mark.parametrize("argv", [
    ["stats", "days", "--since", "0001-01-01"],
    ["stats", "days", "--since", "0001-01-01T00:00+14:00"],
    ["stats", "days", "--until", "9999-12-31", "--tz", "Pacific/Kiritimati"],
    ["stats", "streak", "--since", "99999999999d"],
    ["stats", "top", "tracks", "--since", "9999999h"],
    ["export", "--until", "9999-12-31"],
    ["playlist", "--dry-run", "--since", "0001-01-02"],
])
def test_dates_beyond_the_calendar_are_bad_input(real_redis: Any, redis_server: Any, argv: list[str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad_input(*run_cli(capsys, redis_server.url, *argv)[::2], "out of range, 1900-01-01 to 9998-12-31")


@pytest.mark.parametrize("argv", [
    ["stats", "days", "--since", "1900-01-01", "--tz", "Pacific/Kiritimati"],
    ["stats", "days", "--until", "9998-12-31", "--tz", "Etc/GMT+12"],
    ["export", "--since", "1900-01-01T00:00-12:00", "--until", "9998-12-31T23:59+14:00"],
])
def test_the_ends_of_the_range_still_work(real_redis: Any, redis_server: Any, argv: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, redis_server.url, *argv)
    assert code == 0, err


@pytest.mark.parametrize("argv,expected", [
    (["stats", "top", "tracks", "--hours", "25-3"], "--hours"),
    (["stats", "days", "--tz", "Mars/Olympus"], "not a known time zone"),
    (["stats", "days", "--tz", "../../etc/passwd"], "not a known time zone"),
    (["stats", "days", "--since", "2026-13-01"], "expected 7d"),
])
def test_other_bad_arguments_were_already_one_line(real_redis: Any, redis_server: Any, argv: list[str], expected: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad_input(*run_cli(capsys, redis_server.url, *argv)[::2], expected)


offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
whens = st.one_of(
    st.text(max_size=30),
    st.builds("{}{}".format, st.integers(0, 10**30), st.sampled_from(["h", "d", "w", " d", "y"])),
    st.dates().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat(timespec="minutes")),
    st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), st.datetimes(), offsets),
    st.sampled_from(["today", "yesterday", "0001-01-01", "9999-12-31", "1900-01-01", "9998-12-31", "-1d"]),
)


@settings(max_examples=400, deadline=None)
@given(whens, whens, st.sampled_from([None, "UTC", "Pacific/Kiritimati", "Etc/GMT+12", "Europe/Paris"]))
def test_any_since_until_is_a_period_or_bad_input(since: str, until: str, tz: str | None) -> None:
    local = LocalTime(tz)
    try:
        since_ms, until_ms = period(since, until, local, NOW_MS)
    except BadInput as exc:
        assert "\n" not in str(exc)
        return
    assert since_ms is None or isinstance(since_ms, int)
    for ms in (since_ms, until_ms):  # what stats and export then do with a bound must work
        if ms is not None:
            local.day(ms), local.hour(ms), local.stamp(ms)
    local.span(since_ms, until_ms)


def test_range_constants_match_the_message() -> None:
    with pytest.raises(BadInput, match=f"{EARLIEST.isoformat()} to {LATEST.isoformat()}"):
        parse_when("0001-01-01", LocalTime("UTC"), NOW_MS)
    assert parse_when(datetime(2026, 1, 1).date().isoformat(), LocalTime("UTC"), NOW_MS) == 1_767_225_600_000


@pytest.mark.parametrize("name", ["", "   ", "a\nb"])
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_blank_playlist_name_is_a_usage_error_before_any_request(real_redis: Any, redis_server: Any, name: str,
                                                                   dry_run: list[str],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    usage_error(*run_cli(capsys, redis_server.url, "playlist", "--name", name, *dry_run)[::2], "--name")


@pytest.mark.parametrize("port", ["99999", "-1", "80x"])
def test_simulate_refuses_an_impossible_port(tmp_path: Path, port: str) -> None:
    result = run_command(["simulate", "--port", port], tmp_path, timeout=30)
    usage_error(result.returncode, result.stderr, "--port")


def test_simulate_on_a_port_in_use_is_one_line_and_65(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_command(["simulate", "--port", str(port)], tmp_path, timeout=30)
    bad_input(result.returncode, result.stderr, f"--port {port}: cannot listen on 127.0.0.1: Address already in use")


@pytest.mark.parametrize("content,expected", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('[{"play": {"duration_ms": 1000, "artists": ' + "[" * 5000 + "]" * 5000 + "}}]", "nested too deeply"),
    ('[{"pause": 1e400}]', "infinity"),
    ('[{"idle": 5}]\n' + " " * (16 * 1024 * 1024), "larger than 16 MB"),
])
def test_simulate_with_a_hostile_script_is_one_line_and_65(tmp_path: Path, content: str, expected: str) -> None:
    script = tmp_path / "script.json"
    script.write_text(content)
    result = run_command(["simulate", "--script", str(script)], tmp_path, timeout=30)
    bad_input(result.returncode, result.stderr, expected)


@pytest.mark.parametrize("seconds", ["1e308", "inf", "nan", "0", "-1"])
def test_demo_refuses_endless_or_empty_durations(tmp_path: Path, seconds: str) -> None:
    result = run_command(["demo", "--seconds", seconds], tmp_path, timeout=30)
    usage_error(result.returncode, result.stderr, "--seconds")

