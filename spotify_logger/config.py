"""Settings: one frozen object, built from the environment once at start-up and validated there.

The environment is the only source so that a systemd EnvironmentFile, a shell export and a test
all configure the daemon the same way. No other module reads a setting from os.environ; the
two process-level variables are read where they act: systemd's NOTIFY_SOCKET (notify.py) and
SPOTIFY_LOGGER_DEBUG, which adds a traceback to an internal error for a bug report (cli.py).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from .converters import Seconds, http_url, is_loopback_url, redis_url, seconds, whole
from .errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    api_url: str = "https://api.spotify.com/v1"
    accounts_url: str = "https://accounts.spotify.com"
    redirect_uri: str = "http://127.0.0.1:8888/callback"
    redis_url: str = field(default="redis://localhost:6379/0", repr=False)
    state_dir: Path = Path("~/.local/state/spotify-logger").expanduser()
    poll_interval: float = 5.0
    # While playing, the near-end poll makes most of the calls; this caps the gap before it only
    # in long items (an episode) while the budget has room. A tighter budget stretches it.
    max_poll_interval: float = 300.0
    idle_max_interval: float = 600.0
    min_play_ms: int = 30_000
    end_grace_s: float = 300.0
    reconcile_interval_s: float = 900.0
    request_budget: int = 1000                # Web API calls per rolling window, for the whole app
    request_budget_window_s: float = 86400.0
    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    log_format: str = "json"
    log_level: str = "info"

    @property
    def token_file(self) -> Path:
        return self.state_dir / "token.json"

    @property
    def uses_pkce(self) -> bool:
        return not self.client_secret

    def require_client_id(self) -> str:
        if not self.client_id:
            raise ConfigError(
                "SPOTIFY_CLIENT_ID is not set: copy the Client ID of your app from "
                "https://developer.spotify.com/dashboard"
            )
        return self.client_id

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, isatty: bool | None = None) -> "Settings":
        env = os.environ if env is None else env
        isatty = sys.stderr.isatty() if isatty is None else isatty
        get = _Reader(env)
        defaults = {f.name: f.default for f in fields(cls)}
        # Defaults that depend on the environment or on another setting.
        defaults["state_dir"] = _default_state_dir(env)
        defaults["log_format"] = "console" if isatty else "json"
        values = {attr: get(name, defaults[attr], convert) for name, attr, convert in _VARIABLES}
        for attr, name in (("max_poll_interval", "SPOTIFY_LOGGER_MAX_POLL_INTERVAL"),
                           ("idle_max_interval", "SPOTIFY_LOGGER_IDLE_MAX_INTERVAL")):
            if not env.get(name, "").strip():
                values[attr] = max(defaults[attr], values["poll_interval"])
        _check_floors(env, values)
        for attr, name in (("max_poll_interval", "SPOTIFY_LOGGER_MAX_POLL_INTERVAL"),
                           ("idle_max_interval", "SPOTIFY_LOGGER_IDLE_MAX_INTERVAL")):
            if values[attr] < values["poll_interval"]:
                raise ConfigError(
                    f"{name} ({values[attr]}) must not be below SPOTIFY_LOGGER_POLL_INTERVAL ({values['poll_interval']})"
                )
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The variables that make from_env() build these Settings again (for child processes)."""
        out = {}
        for name, attr, _ in _VARIABLES:
            value = getattr(self, attr)
            if value is not None:
                out[name] = repr(value) if isinstance(value, float) else str(value)
        return out


def _check_floors(env: Mapping[str, str], values: dict[str, Any]) -> None:
    """The converters accept durations down to the compressed-time floor; the real one applies
    unless the API is the simulator on a loopback address."""
    if is_loopback_url(values["api_url"]):
        return
    for name, attr, convert in _VARIABLES:
        if isinstance(convert, Seconds) and values[attr] < convert.lo:
            raise ConfigError(f"{name}={_shown(name, env.get(name, ''))} is invalid: must be "
                              f"{convert.range_text} (below {convert.lo:g} only against a loopback "
                              "SPOTIFY_API_URL, such as the simulator)")


# Sane bounds: Spotify's quota is about a day; a window under 10 s only makes sense in tests at
# compressed time (against the simulator, down to 1 s: see _check_floors), and a budget beyond 100,000 calls
# would never be reached by one listener. The table's converters are the one place they are checked.
MAX_REQUEST_BUDGET = 100_000


def _default_state_dir(env: Mapping[str, str]) -> Path:
    # systemd's StateDirectory= sets STATE_DIRECTORY (colon-separated when several are listed).
    systemd_dir = env.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd_dir:
        return Path(systemd_dir)
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "state" / "spotify-logger"


class _Reader:
    """Reads one variable, converts it, and names the variable in any error."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def __call__(self, name: str, default: T, convert: Callable[[str], T]) -> T:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return convert(raw.strip())
        except ValueError as exc:
            raise ConfigError(f"{name}={_shown(name, raw)} is invalid: {exc}") from None


def _shown(name: str, raw: str) -> str:
    if "SECRET" in name:
        return "<hidden>"
    if name.endswith(("_URL", "_URI")):
        return repr(_without_secrets(raw))
    return repr(raw)


def _without_secrets(url: str) -> str:
    """The URL with its user:password and its ?query hidden (a redis option may be a password).
    Everything up to the last @ goes: a password may hold an unescaped / or @."""
    head, at, tail = url.rpartition("@")
    if at:
        scheme, slashes, _ = head.partition("//")
        url = f"{scheme}{slashes}[redacted]@{tail}" if slashes else f"[redacted]@{tail}"
    base, question, _ = url.partition("?")
    return f"{base}?[redacted]" if question else base


# The converters other code and older table rows name; both are bounded like the rest.
_http_url = http_url
_redis_url = redis_url


def _path(raw: str) -> Path:
    if "\0" in raw:
        raise ValueError("a path has no NUL character")
    return Path(raw).expanduser()


def log_format_of(env: Mapping[str, str] | None = None, *, isatty: bool | None = None) -> str:
    """The log format the environment asks for, when the Settings cannot be built: a start-up
    error goes to the journal (json) like every other line of `run`."""
    env = os.environ if env is None else env
    raw = (env.get("SPOTIFY_LOGGER_LOG_FORMAT") or "").strip()
    if raw in ("json", "console"):
        return raw
    return "console" if (sys.stderr.isatty() if isatty is None else isatty) else "json"


def _log_format(raw: str) -> str:
    if raw not in ("json", "console"):
        raise ValueError("expected json or console")
    return raw


def _log_level(raw: str) -> str:
    if raw.lower() not in ("debug", "info", "warning", "error"):
        raise ValueError("expected debug, info, warning or error")
    return raw.lower()


# Environment variable, Settings attribute, converter: the one list both directions read.
_VARIABLES: tuple[tuple[str, str, Callable[[str], Any]], ...] = (
    ("SPOTIFY_CLIENT_ID", "client_id", str),
    ("SPOTIFY_CLIENT_SECRET", "client_secret", str),
    ("SPOTIFY_API_URL", "api_url", _http_url),
    ("SPOTIFY_ACCOUNTS_URL", "accounts_url", _http_url),
    ("SPOTIFY_REDIRECT_URI", "redirect_uri", str),
    ("REDIS_URL", "redis_url", _redis_url),
    ("SPOTIFY_LOGGER_STATE_DIR", "state_dir", _path),
    # Ranges: README's configuration table says the same. Floors relax on a loopback API (converters.py).
    ("SPOTIFY_LOGGER_POLL_INTERVAL", "poll_interval", seconds(1, 3_600)),
    ("SPOTIFY_LOGGER_MAX_POLL_INTERVAL", "max_poll_interval", seconds(1, 86_400)),
    ("SPOTIFY_LOGGER_IDLE_MAX_INTERVAL", "idle_max_interval", seconds(1, 86_400)),
    ("SPOTIFY_LOGGER_MIN_PLAY_MS", "min_play_ms", whole(0, 3_600_000, "ms")),
    ("SPOTIFY_LOGGER_END_GRACE", "end_grace_s", seconds(1, 86_400)),
    ("SPOTIFY_LOGGER_RECONCILE_INTERVAL", "reconcile_interval_s", seconds(60, 86_400)),
    ("SPOTIFY_LOGGER_REQUEST_BUDGET", "request_budget", whole(1, MAX_REQUEST_BUDGET, "calls")),
    ("SPOTIFY_LOGGER_REQUEST_BUDGET_WINDOW", "request_budget_window_s", seconds(10, 7 * 86_400, loopback_lo=1)),
    ("SPOTIFY_LOGGER_CONNECT_TIMEOUT", "connect_timeout", seconds(0.1, 300)),
    ("SPOTIFY_LOGGER_READ_TIMEOUT", "read_timeout", seconds(0.1, 300)),
    ("SPOTIFY_LOGGER_LOG_FORMAT", "log_format", _log_format),
    ("SPOTIFY_LOGGER_LOG_LEVEL", "log_level", _log_level),
)
