"""Settings: one frozen object, built from the environment once at start-up and validated there.

The environment is the only source so that a systemd EnvironmentFile, a shell export and a test
all configure the daemon the same way. Nothing else in the package reads os.environ.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, TypeVar
from urllib.parse import urlsplit

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
    max_poll_interval: float = 30.0
    min_play_ms: int = 30_000
    end_grace_s: float = 300.0
    reconcile_interval_s: float = 900.0
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
        poll_interval = get("SPOTIFY_LOGGER_POLL_INTERVAL", 5.0, _positive_float)
        max_poll_interval = get("SPOTIFY_LOGGER_MAX_POLL_INTERVAL", max(30.0, poll_interval), _positive_float)
        if max_poll_interval < poll_interval:
            raise ConfigError(
                f"SPOTIFY_LOGGER_MAX_POLL_INTERVAL ({max_poll_interval}) must not be below "
                f"SPOTIFY_LOGGER_POLL_INTERVAL ({poll_interval})"
            )
        return cls(
            client_id=get("SPOTIFY_CLIENT_ID", None, _non_empty),
            client_secret=get("SPOTIFY_CLIENT_SECRET", None, _non_empty),
            api_url=get("SPOTIFY_API_URL", cls.api_url, _http_url),
            accounts_url=get("SPOTIFY_ACCOUNTS_URL", cls.accounts_url, _http_url),
            redirect_uri=get("SPOTIFY_REDIRECT_URI", cls.redirect_uri, _non_empty),
            redis_url=get("REDIS_URL", "redis://localhost:6379/0", _redis_url),
            state_dir=get("SPOTIFY_LOGGER_STATE_DIR", _default_state_dir(env), _path),
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            min_play_ms=get("SPOTIFY_LOGGER_MIN_PLAY_MS", 30_000, _non_negative_int),
            end_grace_s=get("SPOTIFY_LOGGER_END_GRACE", 300.0, _positive_float),
            reconcile_interval_s=get("SPOTIFY_LOGGER_RECONCILE_INTERVAL", 900.0, _positive_float),
            connect_timeout=get("SPOTIFY_LOGGER_CONNECT_TIMEOUT", 3.05, _positive_float),
            read_timeout=get("SPOTIFY_LOGGER_READ_TIMEOUT", 10.0, _positive_float),
            log_format=get("SPOTIFY_LOGGER_LOG_FORMAT", "console" if isatty else "json", _log_format),
            log_level=get("SPOTIFY_LOGGER_LOG_LEVEL", "info", _log_level),
        )


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
    if "SECRET" in name or name == "REDIS_URL":
        return "<hidden>"
    return repr(raw)


def _non_empty(raw: str) -> str:
    return raw


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("expected a number of seconds, such as 5 or 0.5") from None
    if not value > 0 or value == float("inf"):
        raise ValueError("must be a positive number")
    return value


def _non_negative_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("expected a whole number") from None
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL")
    return raw.rstrip("/")


def _redis_url(raw: str) -> str:
    if urlsplit(raw).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("expected redis://host:port/db, rediss:// or unix://")
    return raw


def _path(raw: str) -> Path:
    return Path(raw).expanduser()


def _log_format(raw: str) -> str:
    if raw not in ("json", "console"):
        raise ValueError("expected json or console")
    return raw


def _log_level(raw: str) -> str:
    if raw.lower() not in ("debug", "info", "warning", "error"):
        raise ValueError("expected debug, info, warning or error")
    return raw.lower()
