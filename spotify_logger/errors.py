"""One exception tree for the whole package, and the exit codes it maps to.

Library errors (requests, redis, json, OS) are translated into these at the module edge that
meets them, so callers above that edge never catch a third-party exception.
"""

from __future__ import annotations

# sysexits.h numbers, so systemd's RestartPreventExitStatus and run.py can tell "fix your
# settings" (78) from "try again later" (75).
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_CONFIG = 78


class SpotifyLoggerError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = EX_SOFTWARE


class ConfigError(SpotifyLoggerError):
    """A setting is missing or invalid: no restart can fix it."""

    exit_code = EX_CONFIG


class AuthError(SpotifyLoggerError):
    """Authorization is gone for good until the user acts (run `spotify-logger auth`)."""

    exit_code = EX_CONFIG


class InvalidGrant(AuthError):
    """The refresh token is revoked, expired (6 months) or was already used."""


class InvalidClient(AuthError):
    """SPOTIFY_CLIENT_ID or SPOTIFY_CLIENT_SECRET is wrong."""


class TokenMissing(AuthError):
    """No token file yet."""


class TokenFileInsecure(AuthError):
    """The token file is readable by group or others."""


class ApiError(SpotifyLoggerError):
    """The Spotify API did not give a usable answer."""

    exit_code = EX_TEMPFAIL

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientApiError(ApiError):
    """5xx, connection error, timeout or a body that is not JSON: worth retrying."""


class Unauthorized(ApiError):
    """401 even after a fresh token."""


class Forbidden(ApiError):
    """403: Premium missing on the app owner, or the user is not on the app's allowlist."""

    exit_code = EX_CONFIG


class NotFound(ApiError):
    """404 from an endpoint."""


class RateLimited(ApiError):
    """429, or a cooldown from an earlier 429 that has not passed yet."""

    reason = "rate_limited"

    def __init__(self, message: str, *, until: float) -> None:
        super().__init__(message, status=429)
        self.until = until


class QuotaExceeded(RateLimited):
    """429 with reason QUOTA_EXCEEDED: the app's daily request quota is spent (hours, not seconds)."""

    reason = "quota_exceeded"


class BudgetExhausted(RateLimited):
    """The request budget (budget.py) cannot afford the call: nothing was sent. `until` is when
    it fits again."""

    reason = "budget_exhausted"


class StoreUnavailable(SpotifyLoggerError):
    """Redis cannot be reached or refused the write."""

    exit_code = EX_TEMPFAIL


class StoreFull(StoreUnavailable):
    """Redis is up but refuses writes: it reached maxmemory and its policy evicts nothing. Plays
    wait in the spool until it has room again."""


class StoreMisconfigured(ConfigError):
    """REDIS_URL reaches something that cannot be used as it says: a wrong password or user, a
    database that does not exist, a user the ACL denies our commands, or a service that is not
    Redis. Waiting will not fix it; the message names REDIS_URL, never its password."""


class ForeignKey(ConfigError):
    """A key under one of spotify-logger's names holds another type of value: it is someone
    else's, and writing around it would corrupt both. The user renames or deletes it."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class StateDirFull(SpotifyLoggerError):
    """The state dir's disk is full: a restart after some space is freed can carry on."""

    exit_code = EX_TEMPFAIL


class InstanceLocked(SpotifyLoggerError):
    """Another poller records into this state dir (its lock) or this Redis (its lease). Exit 75,
    but final for this copy: run.py and systemd do not restart it (see instancelock.py)."""

    exit_code = EX_TEMPFAIL


class BadInput(SpotifyLoggerError):
    """A file or argument the user gave cannot be used."""

    exit_code = EX_DATAERR
