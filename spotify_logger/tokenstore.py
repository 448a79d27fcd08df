"""The token file: one JSON document in the state dir, mode 0600, replaced atomically.

It records `authorized_at`, when the user granted access (`spotify-logger auth`): Spotify ends
refresh tokens 6 months after that, so the age is what `status` and the poller warn about.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator

from .errors import ConfigError, StateDirFull, TokenFileInsecure, TokenMissing
from .fsutil import atomic_write

REFRESH_TOKEN_LIFETIME_S = 182 * 86400   # Spotify: 6 months after authorization
TOKEN_OLD_AFTER_S = 150 * 86400          # warn from 5 months on, leaving a month to re-authorize


@dataclass(frozen=True)
class Tokens:
    refresh_token: str
    access_token: str | None = None
    expires_at: float = 0.0          # epoch seconds
    scope: str | None = None
    authorized_at: float | None = None  # when the user granted access; refresh tokens die 6 months later
    refreshed_at: float | None = None

    def __repr__(self) -> str:  # never let a token reach a log through repr()
        return f"Tokens(expires_at={self.expires_at}, authorized_at={self.authorized_at})"

    def age_s(self, now: float) -> float | None:
        """Seconds since authorization; None when unknown (a token stored with --refresh-token)."""
        return None if self.authorized_at is None else now - self.authorized_at

    def is_old(self, now: float) -> bool:
        """Past 5 months: time to authorize again before Spotify ends it at 6."""
        age = self.age_s(now)
        return age is not None and age >= TOKEN_OLD_AFTER_S

    def with_refresh(self, access_token: str, expires_at: float, refresh_token: str | None,
                     scope: str | None, now: float) -> "Tokens":
        return replace(
            self, access_token=access_token, expires_at=expires_at,
            refresh_token=refresh_token or self.refresh_token, scope=scope or self.scope,
            refreshed_at=now,
        )


class TokenStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def refresh_lock(self) -> Iterator[None]:
        """An exclusive lock shared by every process using this token file (released on exit)."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot create {lock_path}: {exc.strerror}; is the state dir writable?") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def file_id(self) -> tuple[int, int] | None:
        """Changes whenever the file is replaced (every save is a rename onto it); None if absent."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def check_permissions(self) -> None:
        mode = self.path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TokenFileInsecure(
                f"refusing to use {self.path}: it holds your Spotify refresh token and is readable by "
                f"group or others (mode {stat.S_IMODE(mode):o}); run: chmod 600 {self.path}"
            )

    def load(self) -> Tokens:
        if not self.path.exists():
            raise TokenMissing(f"no token at {self.path}: run `spotify-logger auth` first")
        self.check_permissions()
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return Tokens(
                refresh_token=str(raw["refresh_token"]),
                access_token=raw.get("access_token"),
                expires_at=float(raw.get("expires_at") or 0),
                scope=raw.get("scope"),
                authorized_at=_float_or_none(raw.get("authorized_at")),
                refreshed_at=_float_or_none(raw.get("refreshed_at")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TokenMissing(f"{self.path} is damaged: run `spotify-logger auth` again") from None

    def save(self, tokens: Tokens) -> None:
        try:
            atomic_write(self.path, json.dumps(asdict(tokens), indent=2).encode("utf-8"))
        except OSError as exc:
            message = f"cannot write the token file {self.path}: {exc.strerror or exc}"
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                # Worth a restart later; if the lost answer had rotated the token, the restart
                # meets invalid_grant and says so (exit 78) instead of guessing here.
                raise StateDirFull(f"{message}: free some space") from None
            raise ConfigError(f"{message} (check SPOTIFY_LOGGER_STATE_DIR and its permissions)") from None


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float, str)) and value != "" else None
