"""redis-py's errors, translated into the package's at the store's edge, and the keys they name.

Redis answers "cannot write now" (OOM, READONLY, MISCONF ...) in more than one shape: as the
reply's first word, which redis-py strips and turns into an exception class (OutOfMemoryError),
or inside a script error ("Error running script ... -OOM command not allowed ..."). Either way it
is an outage for the spool, not a bug. A wrong password, a database that does not exist or a
service that is not Redis is a setting (exit 78), as is a key of the wrong type under our names.
"""

from __future__ import annotations

import re
import socket
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import redis

from . import keys
from .errors import ForeignKey, SpotifyLoggerError, StoreFull, StoreMisconfigured, StoreUnavailable

# The reply codes that mean "Redis is there but cannot take writes right now", wherever they
# appear in the message: a whole upper-case word, so BUSYKEY or a script's text cannot match.
_TRANSIENT = re.compile(r"(?<![A-Za-z])(OOM|READONLY|MISCONF|LOADING|MASTERDOWN|BUSY|NOREPLICAS|TRYAGAIN|"
                        r"CLUSTERDOWN)(?![A-Za-z])")
_TRANSIENT_CLASSES = (redis.exceptions.ReadOnlyError, redis.exceptions.MasterDownError,
                      redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError)
_FULL = re.compile(r"(?<![A-Za-z])OOM(?![A-Za-z])|used memory > 'maxmemory'")
# Redis 7 answers a large command on a connection that did not log in with a protocol error.
_NO_LOGIN = ("NOAUTH", "unauthenticated")
_NOT_REDIS = "REDIS_URL does not point to a Redis server: what answered there does not speak Redis's protocol"
_WRONG_DB = ("DB index is out of range", "invalid DB index")

# The type of each fixed key, as the code writes it (a key that does not exist is fine).
KEY_TYPES: dict[str, str] = {
    keys.INDEX: "zset", keys.CURRENT: "string", keys.TRACK_COUNTS: "zset", keys.ARTIST_COUNTS: "zset",
    keys.STATUS: "hash", keys.COOLDOWN: "string", keys.RECENT_CURSOR: "string", keys.GAPS: "zset",
    keys.PLAYLISTS: "hash", keys.LEASE: "string",
}


class StoreError(SpotifyLoggerError):
    """Redis answered with an error that waiting will not fix (a bug, not an outage)."""


class _WrongType(redis.ResponseError):
    """A WRONGTYPE reply with the keys found to blame, raised by NamingClient."""

    def __init__(self, message: str, foreign: list[tuple[str, str, str]]) -> None:
        super().__init__(message)
        self.foreign = foreign


def foreign_keys(client: "redis.Redis[str]", extra: Sequence[str] = (),
                 client_id: str | None = None) -> list[tuple[str, str, str]]:
    """(key, type found, type expected) for each of our keys that holds another type: the fixed
    keys, the budget and cooldown keys of `client_id`, and `extra` (keys a command named). One
    round trip; called on a WRONGTYPE, at start and by `status`/`check`, never on the poll path."""
    expected = {**KEY_TYPES, **(keys.client_key_types(client_id) if client_id else {})}
    for name in extra:
        expected.setdefault(name, keys.client_key_type(name) or "hash")  # else a play key
    names = list(expected)
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.type(name)
        found = pipe.execute()
    out = []
    for name, kind in zip(names, found):
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind not in ("none", expected[name]):
            out.append((name, kind, expected[name]))
    return out


def foreign_key_error(foreign: list[tuple[str, str, str]]) -> ForeignKey:
    if not foreign:
        return ForeignKey("Redis answered WRONGTYPE: a key in spotify-logger's keyspace holds another type of "
                          "value; `spotify-logger check` names it")
    name, kind, expected = foreign[0]
    more = f" (and {len(foreign) - 1} more: {', '.join(f[0] for f in foreign[1:])})" if len(foreign) > 1 else ""
    return ForeignKey(f"the Redis key {name} is a {kind}, not the {expected} spotify-logger keeps there{more}: it is "
                      "not ours; rename or delete it, or point REDIS_URL at another database", key=name)


class NamingClient(redis.Redis):  # type: ignore[type-arg]
    """redis.Redis that, on a WRONGTYPE reply, finds which of our keys has the wrong type, so that
    every command's one-line error names it, whichever module sent the command."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute_command(*args, **options)
        except redis.ConnectionError as exc:
            # A web server answers the first command and closes; the unread rest of it turns the
            # close into a reset, and redis-py never sees the answer: an outage forever. Only
            # then (never for a refused or timed-out connect, a dead Redis) ask it once directly.
            if not isinstance(exc, redis.AuthenticationError) and _closed_on_us(exc) and not _speaks_resp(self):
                raise redis.exceptions.InvalidResponse("not Redis") from None
            raise
        except redis.ResponseError as exc:
            if isinstance(exc, _WrongType) or "WRONGTYPE" not in str(exc):
                raise
            raise _WrongType(str(exc), foreign_keys(self, _keys_of(args))) from None


def _closed_on_us(exc: redis.ConnectionError) -> bool:
    text = str(exc)
    return "Connection closed by server" in text or "Connection reset" in text


def _speaks_resp(client: "redis.Redis[str]") -> bool:
    """False only when what listens at the client's address answers an inline PING with
    something that is not a RESP reply ('HTTP/1.0 400', '<!DOCTYPE'); True when unsure (TLS,
    no answer, a connect that fails: an outage, not a setting)."""
    pool = client.connection_pool
    kw = pool.connection_kwargs
    if issubclass(pool.connection_class, redis.SSLConnection):
        return True  # a TLS server answers plain bytes with an alert, Redis or not
    try:
        if "path" in kw:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(2)
            sock.connect(kw["path"])
        else:
            sock = socket.create_connection((kw.get("host", "localhost"), kw.get("port", 6379)), timeout=2)
        with sock:
            sock.sendall(b"PING\r\n")
            first = sock.recv(1)
    except OSError:
        return True
    return not first or first in b"+-:$*%_,#!=(|>~"


def _keys_of(args: Sequence[Any]) -> list[str]:
    """Our keys a command names (plays, budget, cooldown): a script's KEYS, or a plain command's
    first argument."""
    if not args:
        return []
    if str(args[0]).upper() in ("EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO") and len(args) > 2:
        named = args[3:3 + int(args[2])]
    else:
        named = args[1:2]
    return [k for k in named if isinstance(k, str) and (keys.is_play_key(k) or keys.client_key_type(k))]


def write_refusal(client: "redis.Redis[str]") -> str | None:
    """READONLY or MISCONF when Redis answers but would refuse a write, for `status` (a poller
    meets it as a write error and spools): a read-only replica, or a failed background save with
    stop-writes-on-bgsave-error (or a failed AOF write). One round trip, never on the poll path;
    a CONFIG that is renamed or denied counts as Redis's default."""
    with translate_redis_errors(client):
        with client.pipeline(transaction=False) as pipe:
            pipe.info("replication")
            pipe.info("persistence")
            for name in ("replica-read-only", "stop-writes-on-bgsave-error", "save"):
                pipe.config_get(name)
            replication, persistence, *config = pipe.execute(raise_on_error=False)
    if isinstance(replication, Exception) or isinstance(persistence, Exception):
        return None  # INFO renamed or denied: no verdict
    read_only, stop_writes, save = (_config(c, name, default) for c, (name, default) in
                                    zip(config, (("replica-read-only", "yes"), ("stop-writes-on-bgsave-error", "yes"),
                                                 ("save", "3600 1"))))
    if replication.get("role") == "slave" and read_only == "yes":
        return "READONLY"
    if (persistence.get("rdb_last_bgsave_status") == "err" and stop_writes == "yes" and save.strip()) or (
            persistence.get("aof_enabled") == 1 and persistence.get("aof_last_write_status") == "err"):
        return "MISCONF"
    return None


def _config(reply: object, name: str, default: str) -> str:
    value = reply.get(name) if isinstance(reply, dict) else None
    return default if value is None else str(value)


@contextmanager
def translate_redis_errors(client: "redis.Redis[str] | None" = None) -> Iterator[None]:
    """redis-py's errors as the package's. `client` lets a WRONGTYPE name the key even from a
    plain redis.Redis (tests, callers that were handed one)."""
    try:
        yield
    except redis.AuthenticationError as exc:  # before ConnectionError: it is one
        raise StoreMisconfigured(f"REDIS_URL: Redis refused the login ({exc}); check the user and password in "
                                 "REDIS_URL") from None
    except redis.exceptions.InvalidResponse:
        raise StoreMisconfigured(_NOT_REDIS) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        if client is not None and isinstance(exc, redis.ConnectionError) and _closed_on_us(exc) \
                and not _speaks_resp(client):  # a pipeline's command, which NamingClient does not see
            raise StoreMisconfigured(_NOT_REDIS) from None
        raise StoreUnavailable(f"Redis is unreachable: {type(exc).__name__}") from None
    except redis.ResponseError as exc:
        raise _response_error(exc, client) from None
    except redis.RedisError as exc:
        raise StoreUnavailable(f"Redis failed: {type(exc).__name__}") from None


def _response_error(exc: redis.ResponseError, client: "redis.Redis[str] | None") -> SpotifyLoggerError:
    text = str(exc)
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or _FULL.search(text):
        # Said by commands that spool nothing (import, check --repair; each says to run it again):
        # the poller's store_full event names its spool itself.
        return StoreFull("Redis is full (used memory > maxmemory, and its policy evicts nothing) and took no "
                         "write: free memory or raise maxmemory")
    if isinstance(exc, _TRANSIENT_CLASSES) or (match := _TRANSIENT.search(text)):
        code = type(exc).__name__ if isinstance(exc, _TRANSIENT_CLASSES) else match.group(1)  # type: ignore[union-attr]
        return StoreUnavailable(f"Redis refused the write: {code}")
    if "WRONGTYPE" in text:
        if isinstance(exc, _WrongType):
            return foreign_key_error(exc.foreign)
        try:
            found = foreign_keys(client) if client is not None else []
        except redis.RedisError:
            found = []
        return foreign_key_error(found)
    if any(phrase in text for phrase in _NO_LOGIN):
        return StoreMisconfigured("REDIS_URL: Redis wants a login (a password) that REDIS_URL does not give; add the "
                                  "password to REDIS_URL")
    if any(phrase in text for phrase in _WRONG_DB):
        return StoreMisconfigured("REDIS_URL names a database this Redis does not have (see its `databases` "
                                  "setting; the default is 0-15)")
    if "Client names cannot contain" in text:  # CLIENT SETNAME, sent on connect from ?client_name=
        return StoreMisconfigured("REDIS_URL: Redis refused the client_name option (printable ASCII with no "
                                  "spaces only)")
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return StoreMisconfigured(f"REDIS_URL: Redis's ACL does not let this user run spotify-logger's commands "
                                  f"({text})")
    return StoreError(f"Redis error: {text}")
