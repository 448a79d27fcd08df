"""Settings validation and the command line's error contract: one line, a documented exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spotify_logger.cli import main
from spotify_logger.config import Settings
from spotify_logger.errors import ConfigError

from conftest import ROOT
from helpers import run_command


def test_defaults() -> None:
    s = Settings.from_env({"HOME": "/home/pi"}, isatty=False)
    assert s.api_url == "https://api.spotify.com/v1" and s.accounts_url == "https://accounts.spotify.com"
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.state_dir == Path("/home/pi/.local/state/spotify-logger")
    assert (s.poll_interval, s.max_poll_interval, s.idle_max_interval, s.min_play_ms) == (5.0, 300.0, 600.0, 30_000)
    assert s.log_format == "json" and s.client_id is None and s.uses_pkce
    assert Settings.from_env({}, isatty=True).log_format == "console"


def test_systemd_state_directory_wins() -> None:
    s = Settings.from_env({"STATE_DIRECTORY": "/var/lib/spotify-logger:/var/lib/other", "HOME": "/root"})
    assert s.state_dir == Path("/var/lib/spotify-logger")
    assert Settings.from_env({"STATE_DIRECTORY": "/x", "SPOTIFY_LOGGER_STATE_DIR": "/y"}).state_dir == Path("/y")


def test_values_are_parsed() -> None:
    s = Settings.from_env({"SPOTIFY_CLIENT_ID": "id", "SPOTIFY_CLIENT_SECRET": "sec", "SPOTIFY_LOGGER_POLL_INTERVAL": "0.5",
                           "SPOTIFY_LOGGER_MIN_PLAY_MS": "1000", "SPOTIFY_API_URL": "http://127.0.0.1:9/v1/",
                           "SPOTIFY_LOGGER_LOG_FORMAT": "console"})
    assert (s.client_id, s.poll_interval, s.min_play_ms, s.api_url, s.log_format) == (
        "id", 0.5, 1000, "http://127.0.0.1:9/v1", "console")
    assert not s.uses_pkce and "sec" not in repr(s)


@pytest.mark.parametrize("name,value", [
    ("SPOTIFY_LOGGER_POLL_INTERVAL", "fast"), ("SPOTIFY_LOGGER_POLL_INTERVAL", "0"),
    ("SPOTIFY_LOGGER_POLL_INTERVAL", "-1"), ("SPOTIFY_LOGGER_POLL_INTERVAL", "inf"),
    ("SPOTIFY_LOGGER_MIN_PLAY_MS", "30s"), ("SPOTIFY_LOGGER_MIN_PLAY_MS", "-5"),
    ("SPOTIFY_API_URL", "api.spotify.com"), ("SPOTIFY_ACCOUNTS_URL", "ftp://x"),
    ("REDIS_URL", "localhost:6379"), ("REDIS_URL", "redis://localhost:63x9/0"), ("REDIS_URL", "redis://h:1/zero"), ("SPOTIFY_LOGGER_LOG_FORMAT", "xml"), ("SPOTIFY_LOGGER_LOG_LEVEL", "loud"),
])
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name) as info:
        Settings.from_env({name: value})
    assert info.value.exit_code == 78


@pytest.mark.parametrize("name", ["SPOTIFY_LOGGER_MAX_POLL_INTERVAL", "SPOTIFY_LOGGER_IDLE_MAX_INTERVAL"])
def test_max_interval_below_min_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({"SPOTIFY_LOGGER_POLL_INTERVAL": "10", name: "5"})


def test_a_long_poll_interval_raises_the_default_maxima() -> None:
    s = Settings.from_env({"SPOTIFY_LOGGER_POLL_INTERVAL": "900"})
    assert (s.max_poll_interval, s.idle_max_interval) == (900.0, 900.0)


def test_redis_password_is_not_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"REDIS_URL": "http://:hunter2@host"})
    assert "hunter2" not in str(info.value)


def test_run_without_client_id_exits_78_with_one_line(tmp_path: Path) -> None:
    result = run_command(["run"], tmp_path)
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "SPOTIFY_CLIENT_ID" in lines[0] and "Traceback" not in result.stderr


def test_bad_setting_exits_78_with_one_line(tmp_path: Path) -> None:
    result = run_command(["status"], tmp_path, SPOTIFY_LOGGER_POLL_INTERVAL="soon")
    assert result.returncode == 78
    assert result.stderr.strip() == ("spotify-logger: SPOTIFY_LOGGER_POLL_INTERVAL='soon' is invalid: "
                                     "expected a number of seconds, such as 5 or 2.5")


@pytest.mark.parametrize("env", [{"SPOTIFY_LOGGER_LOG_FORMAT": "json"}, {}])
def test_a_bad_setting_of_run_is_logged_as_json_for_the_journal(tmp_path: Path, env: dict[str, str]) -> None:
    """The settings are what failed, yet the line still has the format LOG_FORMAT (or a pipe) asks for."""
    result = run_command(["run"], tmp_path, SPOTIFY_LOGGER_POLL_INTERVAL="0", **env)
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    event = json.loads(lines[0])
    assert event["event"] == "startup_failed" and event["exit_code"] == 78
    assert "SPOTIFY_LOGGER_POLL_INTERVAL" in event["error"]


def test_a_bad_setting_of_run_on_console_format_stays_console(tmp_path: Path) -> None:
    result = run_command(["run"], tmp_path, SPOTIFY_LOGGER_POLL_INTERVAL="0", SPOTIFY_LOGGER_LOG_FORMAT="console")
    assert result.returncode == 78 and "startup_failed" in result.stderr and not result.stderr.startswith("{")


def test_run_without_token_exits_78_and_says_what_to_do(tmp_path: Path) -> None:
    result = run_command(["run"], tmp_path, SPOTIFY_CLIENT_ID="abc")
    assert result.returncode == 78 and "spotify-logger auth" in result.stderr and "Traceback" not in result.stderr


def test_usage_error_exits_64() -> None:
    assert main(["no-such-command"], env={}) == 64
    assert main(["--version"], env={}) == 0


def test_auth_refresh_token_is_stored_0600(tmp_path: Path) -> None:
    state = tmp_path / "s"
    assert main(["auth", "--refresh-token", "abc123"], env={"SPOTIFY_LOGGER_STATE_DIR": str(state),
                                                           "SPOTIFY_CLIENT_ID": "id"}) == 0
    token_file = state / "token.json"
    assert token_file.stat().st_mode & 0o777 == 0o600 and "abc123" in token_file.read_text()


def test_to_env_round_trips() -> None:
    original = Settings.from_env({"SPOTIFY_CLIENT_ID": "id", "SPOTIFY_CLIENT_SECRET": "s", "HOME": "/h",
                                  "SPOTIFY_LOGGER_POLL_INTERVAL": "2.25", "SPOTIFY_LOGGER_MIN_PLAY_MS": "1234"},
                                 isatty=False)
    assert Settings.from_env(original.to_env(), isatty=True) == original


def test_the_daemon_does_not_import_other_commands_code() -> None:
    """`run` stays lean on a Pi: the simulator, importer and stats are never loaded for it."""
    code = ("import sys; from spotify_logger import cli; from spotify_logger.commands import load; "
            "cli.build_parser(['run']); load('run'); import spotify_logger.daemon; "
            "print(sorted(m for m in sys.modules if m.startswith('spotify_logger')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    for heavy in ("spotify_logger.simulator", "spotify_logger.importer", "spotify_logger.stats",
                  "spotify_logger.commands.demo", "spotify_logger.authflow"):
        assert f"'{heavy}'" not in loaded
    assert "'spotify_logger.daemon'" in loaded
