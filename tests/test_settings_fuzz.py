"""Every setting, driven with arbitrary text and numbers: the only outcomes are a usable Settings
(every duration finite and within its documented range) or ConfigError, exit 78, one line naming
the variable. The same for run.py's own tunables, in-process and as a real process."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
import redis.connection
from hypothesis import HealthCheck, given, settings, strategies as st

from spotify_logger import config
from spotify_logger.config import Settings
from spotify_logger.converters import Seconds, Whole
from spotify_logger.errors import ConfigError

from conftest import ROOT, run_py_cmd
from helpers import run_command
from test_supervisor import load_run_py

NAMES = [name for name, _, _ in config._VARIABLES]
RUN_PY = load_run_py()
RUN_PY_NAMES = [name for name, *_ in RUN_PY.TUNABLES]
SECRET = "hunter2"

# Numbers as people (and typos) write them, and the values that broke things before.
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(min_value=-(10**400), max_value=10**400).map(str),
    st.sampled_from(["inf", "-inf", "nan", "1e308", "-1e308", "1e-7", "-0", "0", "0.0", "+5", "5e0", "1_0",
                     "0x10", "\u0665", "\u00b2", " 7 ", "\t3\n", "5\n6", "9" * 5000, "1e309", "3600.0000001"]),
)
urls = st.one_of(
    st.sampled_from(["http://h:99999/v1", "http://h:abc/v1", "http://ho st/v1", "http://h:0/", "http://[::1]:8/x",
                     "http://[zz]/", "http://999.1.1.1/", "http://h/v1?x=1", "http://h/#f", "http://bücher.de/",
                     f"http://u:{SECRET}@h:1/v1", f"redis://:{SECRET}@h:6379/99999",
                     f"redis://:{SECRET}@h/0?socket_timeout=abc", f"redis://:{SECRET}@h/0?socket_timeout=1e308",
                     f"redis://:{SECRET}@h/0?password={SECRET}", f"redis://:{SECRET}@h/99999999999999",
                     f"redis://:{SECRET}@h/0?ssl_cert_reqs=none", f"rediss://:{SECRET}@h/0?ssl_cert_reqs=none",
                     f"unix:///tmp/r.sock?socket_keepalive=yes&pw={SECRET}", "redis://h:/0", "unix://"]),
    st.builds(lambda scheme, rest: scheme + rest, st.sampled_from(["http://", "https://", "redis://", "unix://"]),
              st.text(max_size=30)),
    st.builds(lambda name: "redis://h/0?client_name=" + quote(name), st.text(max_size=12)),
)
values = st.one_of(numbers, urls, st.text(max_size=40), st.text(alphabet=" \t\n\r\x0b\x00\u00a0\u2028", max_size=5))
environments = st.dictionaries(st.sampled_from(NAMES), values, min_size=1, max_size=4)
api_urls = st.sampled_from([None, "http://127.0.0.1:9/v1", "https://api.spotify.com/v1"])


def check_settings(env: dict[str, str]) -> None:
    try:
        s = Settings.from_env(env, isatty=False)
    except ConfigError as exc:
        message = str(exc)
        assert exc.exit_code == 78
        assert "\n" not in message and "\r" not in message and message.isprintable(), message
        assert any(name in message for name in env), message
        if message.split("=")[0].endswith(("_URL", "_URI", "SECRET")):
            assert SECRET not in message, message
        return
    for name, attr, convert in config._VARIABLES:
        value = getattr(s, attr)
        if isinstance(convert, Seconds):
            assert math.isfinite(value) and convert.floor <= value <= convert.hi, (name, value)
        elif isinstance(convert, Whole):
            assert convert.lo <= value <= convert.hi, (name, value)
    # What redis-py makes of REDIS_URL, and sends on connect, must be what Redis takes: a
    # client_name with a space passed here and was exit 70 at the first command.
    options = redis.connection.parse_url(s.redis_url)
    name = options.get("client_name")
    assert name is None or all("!" <= c <= "~" for c in name), s.redis_url  # Redis's CLIENT SETNAME rule
    # What the poller does with them must not overflow: ms as ints, timeouts for sockets.
    assert int(s.end_grace_s * 1000) >= 0 and int(s.reconcile_interval_s * 1000) >= 0
    assert Settings.from_env(s.to_env(), isatty=False) == s  # a child process gets the same


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(environments, api_urls)
def test_any_environment_gives_settings_or_one_line_exit_78(env: dict[str, str], api_url: str | None) -> None:
    if api_url is not None and "SPOTIFY_API_URL" not in env:
        env = {**env, "SPOTIFY_API_URL": api_url}
    check_settings(env)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("raw", ["inf", "nan", "1e308", "-0", "9" * 30, "\u0665\u0665", "a\nb", "\x00"])
def test_each_setting_alone_with_the_values_that_broke_things(name: str, raw: str) -> None:
    check_settings({name: raw})


@pytest.mark.parametrize("name,raw,expected", [
    ("SPOTIFY_LOGGER_END_GRACE", "1e308", "from 1 to 86400 seconds"),
    ("SPOTIFY_LOGGER_CONNECT_TIMEOUT", "1e308", "from 0.1 to 300 seconds"),
    ("SPOTIFY_LOGGER_READ_TIMEOUT", "1e308", "from 0.1 to 300 seconds"),
    ("SPOTIFY_LOGGER_POLL_INTERVAL", "1e-7", "from 1 to 3600 seconds"),
    ("SPOTIFY_LOGGER_RECONCILE_INTERVAL", "5", "from 60 to 86400 seconds"),
    ("SPOTIFY_LOGGER_MIN_PLAY_MS", "99999999999", "from 0 to 3600000 ms"),
    ("SPOTIFY_API_URL", "http://h:99999/v1", "port"),
    ("SPOTIFY_API_URL", "http://h:abc/v1", "port"),
    ("SPOTIFY_ACCOUNTS_URL", "http://ho st", "spaces"),
    ("SPOTIFY_ACCOUNTS_URL", "http://ho$t", "not a host name"),
    ("REDIS_URL", f"redis://:{SECRET}@h/0?socket_timeout=abc", "socket_timeout"),
    ("REDIS_URL", f"redis://:{SECRET}@h/{2**31}", "from 0 to 2147483647"),
    ("REDIS_URL", f"redis://:{SECRET}@h/0?frobnicate=1", "unsupported option"),
    ("REDIS_URL", f"redis://:{SECRET}@h/0?client_name=a%20b", "client_name"),
    ("REDIS_URL", f"redis://:{SECRET}@h/0?client_name=%20ab", "client_name"),
    ("REDIS_URL", "unix:///run/redis.sock?socket_keepalive=1", "needs redis:// or rediss://"),
])
def test_out_of_range_names_the_variable_and_the_range(name: str, raw: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: raw})
    assert str(info.value).startswith(f"{name}=") and expected in str(info.value)
    assert SECRET not in str(info.value)


def test_sub_second_floors_only_against_a_loopback_api() -> None:
    """Tests and benchmarks compress time against the simulator on 127.0.0.1; Spotify never sees it."""
    fast = {"SPOTIFY_LOGGER_POLL_INTERVAL": "0.2", "SPOTIFY_LOGGER_MAX_POLL_INTERVAL": "1",
            "SPOTIFY_LOGGER_END_GRACE": "0.5", "SPOTIFY_LOGGER_RECONCILE_INTERVAL": "2"}
    for api in ("http://127.0.0.1:8765/v1", "http://[::1]:8765/v1", "http://localhost:1/v1"):
        assert Settings.from_env({**fast, "SPOTIFY_API_URL": api}).poll_interval == 0.2
    with pytest.raises(ConfigError, match="POLL_INTERVAL='0.2'.*loopback"):
        Settings.from_env(fast)
    with pytest.raises(ConfigError, match="POLL_INTERVAL"):  # 1 ms is the floor even there
        Settings.from_env({"SPOTIFY_LOGGER_POLL_INTERVAL": "1e-7", "SPOTIFY_API_URL": "http://127.0.0.1:1/v1"})


def test_valid_endpoints_still_pass() -> None:
    s = Settings.from_env({"SPOTIFY_API_URL": "http://user:pw@[::1]:8080/v1/", "SPOTIFY_ACCOUNTS_URL": "https://bücher.de",
                           "REDIS_URL": "rediss://:pw@redis.lan:6380/3?ssl_cert_reqs=none&socket_timeout=2.5"})
    assert s.api_url == "http://user:pw@[::1]:8080/v1" and s.redis_url.endswith("socket_timeout=2.5")
    assert Settings.from_env({"REDIS_URL": "unix:///run/redis/redis.sock?db=2"}).redis_url.startswith("unix://")


@pytest.mark.parametrize("env", [
    {"SPOTIFY_LOGGER_END_GRACE": "1e308"}, {"SPOTIFY_LOGGER_READ_TIMEOUT": "inf"},
    {"SPOTIFY_API_URL": "http://h:99999/v1"}, {"REDIS_URL": f"redis://:{SECRET}@h/0?socket_timeout=abc"},
])
def test_the_command_line_exits_78_with_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    result = run_command(["status"], tmp_path, **env)
    assert result.returncode == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and next(iter(env)) in lines[0] and SECRET not in result.stderr


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(RUN_PY_NAMES), values, min_size=1, max_size=4))
def test_run_py_tunables_give_a_policy_or_one_line(env: dict[str, str]) -> None:
    try:
        policy = RUN_PY.Policy.from_env(env)
    except ValueError as exc:
        message = str(exc)
        assert "\n" not in message and any(name in message for name in env), message
        return
    for name, attr, _, hi in RUN_PY.TUNABLES:
        assert RUN_PY.MIN_S <= getattr(policy, attr) <= hi, (name, policy)


@pytest.mark.parametrize("name,raw", [("SPOTIFY_LOGGER_STOP_TIMEOUT", "inf"), ("SPOTIFY_LOGGER_RESTART_DELAY", "1e308"),
                                      ("SPOTIFY_LOGGER_HEALTHY_AFTER", "nan"), ("SPOTIFY_LOGGER_RESTART_MAX_DELAY", "-0")])
def test_run_py_refuses_a_bad_tunable_as_a_real_process(name: str, raw: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTIFY_", "REDIS_URL", "NOTIFY_SOCKET"))}
    result = subprocess.run(run_py_cmd(), env={**env, name: raw}, cwd=ROOT, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "supervisor_config_invalid" in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "child_started" not in result.stderr
