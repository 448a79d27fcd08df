"""The systemd units and the poller's example EnvironmentFile: what the issue requires of them,
timings that agree with the code, and the hardening score (at most 2.0, checked here and so in CI).
The weekly playlist's timer and oneshot unit share the poller's sandbox."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import IN_CI, ROOT

from spotify_logger import daemon, loop, playlist
from spotify_logger.api import SpotifyClient
from spotify_logger.config import Settings
from spotify_logger.errors import EX_CONFIG, EX_DATAERR, EX_TEMPFAIL, EX_USAGE

UNIT = ROOT / "systemd" / "spotify-logger.service"
ENV_EXAMPLE = ROOT / "systemd" / "spotify-logger.env.example"
PLAYLIST_SERVICE = ROOT / "systemd" / "spotify-logger-playlist.service"
PLAYLIST_TIMER = ROOT / "systemd" / "spotify-logger-playlist.timer"
MAX_EXPOSURE = 2.0
# Keys of the poller's unit that are about its lifecycle; every other [Service] key is sandboxing
# or identity and must be the same in the playlist unit.
LIFECYCLE = {"Type", "NotifyAccess", "ExecStart", "Restart", "RestartSec", "RestartPreventExitStatus",
             "WatchdogSec", "WatchdogSignal", "KillMode", "TimeoutStopSec", "TimeoutStartSec"}


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value (unit files repeat keys, so configparser will not do)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT)


def worst_call_s() -> float:
    """The longest one API call can take with the client's defaults: every attempt may be a
    request, a token refresh and the request again after a 401; between attempts, exponential
    backoff plus up to `initial` of jitter."""
    defaults = inspect.signature(SpotifyClient).parameters
    attempts = defaults["attempts"].default
    initial, cap = defaults["initial_backoff_s"].default, defaults["max_backoff_s"].default
    request = Settings().connect_timeout + Settings().read_timeout
    return attempts * 3 * request + sum(min(initial * 2 ** i, cap) + initial for i in range(attempts - 1))


def require_systemd_analyze() -> None:
    if shutil.which("systemd-analyze") is None:
        if IN_CI:
            pytest.fail("systemd-analyze is missing, and CI=true: install Debian's systemd package")
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values is not None and len(values) == 1, f"[{section}] {key}= should be set once, got {values}"
    return values[0]


def test_notify_service_run_by_run_py(unit) -> None:
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "all"  # the poller, not run.py, sends READY=1
    assert one(unit, "Service", "ExecStart") == "/opt/spotify-logger/venv/bin/python /opt/spotify-logger/run.py"
    assert one(unit, "Service", "KillMode") == "mixed"
    assert one(unit, "Service", "EnvironmentFile") == "/etc/spotify-logger.env"
    assert one(unit, "Service", "StateDirectory") == "spotify-logger"


def test_restart_policy(unit) -> None:
    assert one(unit, "Service", "Restart") == "on-failure"
    # Bad arguments, bad input, a bad setting or a revoked authorization: no restart can help.
    # run.py exits 75 only when another poller holds the lock or lease (it retries any other 75).
    assert set(one(unit, "Service", "RestartPreventExitStatus").split()) == {str(EX_USAGE), str(EX_DATAERR),
                                                                             str(EX_TEMPFAIL), str(EX_CONFIG)}
    assert seconds(one(unit, "Unit", "StartLimitIntervalSec")) > 0
    assert int(one(unit, "Unit", "StartLimitBurst")) >= 1


def test_ordering(unit) -> None:
    for key in ("After", "Wants"):
        wanted = " ".join(unit["Unit"][key]).split()
        assert "redis-server.service" in wanted and "network-online.target" in wanted, key


def test_watchdog_outlasts_the_worst_poll_and_stop_timeout_outlasts_run_py() -> None:
    unit = parse_unit(UNIT)
    watchdog = seconds(one(unit, "Service", "WatchdogSec"))
    request = Settings().connect_timeout + Settings().read_timeout
    worst_poll = worst_call_s() + 2.0  # then a Redis write (2 s)
    assert watchdog >= worst_poll, (watchdog, worst_poll)
    assert watchdog > daemon.STARTUP_REDIS_WAIT_S + request * 3
    assert watchdog > 3 * loop.WATCHDOG_SLICE_S  # deliberate waits feed it in slices
    run_py_stop_timeout = 10.0
    assert seconds(one(unit, "Service", "TimeoutStopSec")) > run_py_stop_timeout


def test_hardening_directives(unit) -> None:
    service = unit["Service"]
    assert "User" in service or one(unit, "Service", "DynamicUser") == "yes"
    expected = {
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
        "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }
    for key, value in expected.items():
        assert one(unit, "Service", key) == value, key
    assert "@system-service" in service["SystemCallFilter"]


def exposure(unit_path: Path) -> float:
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit_path)],
                         capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", out.stdout)
    assert match, f"no exposure level in systemd-analyze output:\n{out.stdout}\n{out.stderr}"
    return float(match.group(1))


@pytest.mark.parametrize("path", [UNIT, PLAYLIST_SERVICE], ids=["poller", "playlist"])
def test_systemd_analyze_security_scores_at_most_2(path: Path) -> None:
    require_systemd_analyze()
    score = exposure(path)
    assert score <= MAX_EXPOSURE, score


def test_systemd_analyze_check_can_fail(tmp_path: Path) -> None:
    # The check above must be able to fail: an unhardened copy of the unit scores far higher.
    require_systemd_analyze()
    bare = tmp_path / "spotify-logger.service"
    bare.write_text("[Service]\nType=notify\nExecStart=/opt/spotify-logger/venv/bin/python /opt/spotify-logger/run.py\n")
    assert exposure(bare) > MAX_EXPOSURE


def test_env_example_names_only_real_settings() -> None:
    known = (ROOT / "spotify_logger" / "config.py").read_text() + (ROOT / "run.py").read_text()
    active: dict[str, str] = {}
    for raw in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?([A-Z][A-Z0-9_]+)=(.*)$", raw.strip())
        if match:
            assert f'"{match.group(1)}"' in known, f"{match.group(1)} is not a setting"
            if not raw.startswith("#"):
                active[match.group(1)] = match.group(2)
    assert "SPOTIFY_CLIENT_ID" in active and "REDIS_URL" in active
    # Filled in, the example is a valid configuration.
    settings = Settings.from_env({**active, "SPOTIFY_CLIENT_ID": "abc"}, isatty=False)
    assert settings.redis_url == "redis://127.0.0.1:6379/0"



# --- the weekly playlist: a timer and a oneshot unit -----------------------------------------

def test_timer_runs_weekly_on_monday_morning_and_catches_up() -> None:
    timer = parse_unit(PLAYLIST_TIMER)
    assert timer["Timer"]["OnCalendar"] == ["Mon *-*-* 07:00:00"]
    assert timer["Timer"]["Persistent"] == ["true"]
    assert timer["Timer"]["Unit"] == [PLAYLIST_SERVICE.name]
    assert timer["Install"]["WantedBy"] == ["timers.target"]


def test_playlist_service_is_a_oneshot_sharing_the_pollers_settings_and_sandbox() -> None:
    unit, poller = parse_unit(PLAYLIST_SERVICE), parse_unit(UNIT)
    service = unit["Service"]
    assert service["Type"] == ["oneshot"]
    assert service["ExecStart"] == ["/opt/spotify-logger/venv/bin/spotify-logger playlist"]
    assert "78" in service["RestartPreventExitStatus"][0].split()
    assert "Install" not in unit  # started by the timer only
    for key, values in poller["Service"].items():
        if key not in LIFECYCLE:
            assert service.get(key) == values, key
    assert unit["Unit"]["After"] == poller["Unit"]["After"]


def test_playlist_units_pass_systemd_analyze_verify() -> None:
    require_systemd_analyze()
    checked = subprocess.run(["systemd-analyze", "verify", "--man=no", str(PLAYLIST_SERVICE), str(PLAYLIST_TIMER)],
                             capture_output=True, text=True, timeout=60)
    # Offline, the only complaint allowed is the venv that is not installed here.
    problems = [line for line in checked.stderr.splitlines() if line.strip() and "is not executable" not in line]
    assert problems == [], checked.stderr
    calendar = subprocess.run(["systemd-analyze", "calendar", "Mon *-*-* 07:00:00"],
                              capture_output=True, text=True, timeout=30)
    assert calendar.returncode == 0 and "Next elapse: Mon" in calendar.stdout


def test_the_playlist_start_timeout_outlasts_the_worst_run() -> None:
    # At worst four requests (/items 404, /tracks 404, create, fill), each waiting out one
    # rate limit and then retried in full.
    worst = 4 * (worst_call_s() + playlist.MAX_WAIT_S + worst_call_s())
    assert seconds(parse_unit(PLAYLIST_SERVICE)["Service"]["TimeoutStartSec"][0]) >= worst
