"""The Redis store: applies Batches atomically and idempotently. redis-py errors stop here.

One Lua script per batch means one round trip per poll, and Redis runs it atomically: either
the whole poll's writes land or none do. Counters move only when a play's stored `counted`
flips from not-"1" to "1", so a retried, replayed or restarted write can never count twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import keys
from .batch import Batch
from .errors import StoreMisconfigured, StoreUnavailable
from .storeerrors import NamingClient, StoreError, foreign_key_error, foreign_keys, translate_redis_errors

__all__ = ["Applied", "Memory", "Store", "StoreError", "connect", "no_backoff_retry", "translate_redis_errors"]

_APPLY = """
local writes = cjson.decode(ARGV[3])
local polled_at = tonumber(ARGV[1])
-- Every key's type first, before any write: a key of the wrong type would stop the script
-- midway, after the writes before it landed (a counted flag without its counter bump, say).
local types = {'zset', 'string', 'zset', 'zset', 'hash'}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key).ok
  if kind ~= 'none' and kind ~= (types[i] or 'hash') then
    return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
  end
end
local wrote = 0
local result = {0}
for i, w in ipairs(writes) do
  local key = KEYS[5 + i]
  local stored = redis.call('HGET', key, 'last_seen_at')
  local seen = tonumber(stored or '0')
  local apply
  if w.new == 1 then
    apply = redis.call('EXISTS', key) == 0
  elseif w.w == 0 and not stored and redis.call('EXISTS', key) == 0 then
    -- An update to a play Redis no longer has (it restarted empty): writing it would leave a
    -- play with no uri. Refused and reported; the writer restates the whole play.
    apply = false
    result[#result + 1] = w.s
  else
    apply = w.seen == '' or tonumber(w.seen) >= seen
  end
  if apply then
    local was = redis.call('HGET', key, 'counted')
    local heard = tonumber(redis.call('HGET', key, 'ms_played') or '0')
    redis.call('HSET', key, unpack(w.f))
    redis.call('ZADD', KEYS[1], tonumber(w.s), w.s)
    -- Listening time only grows: a restart that rebuilt less of the play cannot shrink it.
    if tonumber(redis.call('HGET', key, 'ms_played') or '0') < heard then
      redis.call('HSET', key, 'ms_played', heard)
    end
    if w.c == 1 and was ~= '1' then
      -- counted is set here too, so the bump happens once even if the write omitted the field.
      redis.call('HSET', key, 'counted', '1')
      redis.call('ZINCRBY', KEYS[3], 1, w.u)
      for _, artist in ipairs(w.a) do redis.call('ZINCRBY', KEYS[4], 1, artist) end
    end
    wrote = wrote + 1
  end
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[2])
elseif ARGV[2] ~= '-' then
  redis.call('SET', KEYS[2], ARGV[2])
end
local last_poll = tonumber(redis.call('HGET', KEYS[5], 'last_poll_at') or '0')
if polled_at > last_poll then redis.call('HSET', KEYS[5], 'last_poll_at', ARGV[1]) end
if wrote > 0 then
  local last_write = tonumber(redis.call('HGET', KEYS[5], 'last_write_at') or '0')
  if polled_at > last_write then redis.call('HSET', KEYS[5], 'last_write_at', ARGV[1]) end
end
result[1] = wrote
return result
"""


@dataclass(frozen=True)
class Applied:
    """What one batch did: how many play writes landed, and the started_at of each update the
    store refused because its play is gone (see Writer, which restates them)."""

    wrote: int
    refused: tuple[int, ...] = ()


@dataclass(frozen=True)
class Memory:
    """INFO memory, for `status` and the store_full log line."""

    used_memory: int | None
    maxmemory: int | None
    policy: str | None

    @property
    def full(self) -> bool:
        # With noeviction (the default) or a volatile-* policy and nothing volatile to evict,
        # Redis refuses writes above maxmemory; allkeys-* policies evict instead.
        return bool(self.maxmemory and self.used_memory is not None and self.used_memory >= self.maxmemory
                    and not (self.policy or "").startswith("allkeys"))


def no_backoff_retry() -> Retry:
    # redis-py's default retries a failed command 3 times with seconds of backoff. A poll must
    # not stall on a dead Redis: one immediate retry (on a new connection, when Redis dropped
    # the old one: a restart, an idle timeout), then the caller spools and moves on.
    return Retry(NoBackoff(), 1)


def connect(url: str) -> "redis.Redis[str]":
    """A client for one thread's sequential commands (the poller's, a command's).

    Plain commands and scripts share one connection, not a pool's: a pooled command checks a
    connection out, probes it for stray data and gives it back, a third of redis-py's cost per
    poll. (A pipeline still takes its own connection from the pool.) No health-check PING
    either: with smart polling most polls come 30 s apart, and a PING before each would double
    the round trips. A connection Redis dropped fails its next command, which the one retry
    sends again on a new connection; every write is idempotent, so sending one twice is harmless.
    """
    options = {"decode_responses": True, "socket_timeout": 2.0, "socket_connect_timeout": 2.0,
               "retry": no_backoff_retry(),
               # redis-py 5 retries only the errors named here; 6 and later also by default.
               "retry_on_error": [redis.ConnectionError, redis.TimeoutError]}
    # NamingClient: a WRONGTYPE names the key, whichever module sent the command (storeerrors.py).
    with translate_redis_errors():
        try:
            return NamingClient.from_url(url, single_connection_client=True, **options)
        except ValueError as exc:
            # redis-py's own check of the URL's options (config.py validates the syntax first);
            # its messages name the option, never the URL and its password.
            raise StoreMisconfigured(f"REDIS_URL is not a usable Redis URL: {exc}") from None
        except redis.AuthenticationError:
            raise  # a wrong password is a setting, not an outage (translated above)
        except (redis.ConnectionError, redis.TimeoutError):
            # redis-py opens the single connection at once, and Redis is down. A pooled client
            # connects whenever Redis comes back (the spool holds the plays until then), and this
            # process keeps it: correct, if a little more CPU per command, until its next start.
            return NamingClient.from_url(url, **options)


class Store:
    def __init__(self, client: "redis.Redis[str]") -> None:
        self.redis = client
        self._apply = client.register_script(_APPLY)

    def apply(self, batch: Batch) -> int:
        """Write one batch atomically. Returns how many play writes landed (stale ones do not)."""
        return self.apply_batch(batch).wrote

    def apply_batch(self, batch: Batch) -> Applied:
        """Write one batch atomically; say which updates were refused because their play is gone."""
        play_keys = [keys.play_key(w.started_at) for w in batch.writes]
        payload = [
            {
                "s": str(w.started_at),
                "seen": str(w.fields.get("last_seen_at", "")),
                "new": 1 if w.create_only else 0,
                "w": 1 if "uri" in w.fields else 0,  # a whole play: the first write of one carries its uri
                "f": [str(x) for kv in w.fields.items() for x in kv],
                "u": w.uri,
                "a": list(w.artists),
                "c": 1 if w.counted else 0,
            }
            for w in batch.writes
        ]
        current = "-" if batch.keep_current else ("" if batch.current is None else keys.play_key(batch.current))
        with translate_redis_errors(self.redis):
            reply = self._apply(
                keys=[keys.INDEX, keys.CURRENT, keys.TRACK_COUNTS, keys.ARTIST_COUNTS, keys.STATUS, *play_keys],
                args=[batch.polled_at, current, json.dumps(payload, ensure_ascii=False) if payload else "[]"],
            )
        return Applied(int(reply[0]), tuple(int(s) for s in reply[1:]))

    def load_current(self) -> tuple[int, dict[str, str]] | None:
        """The open play a previous process left behind, as (started_at, hash)."""
        with translate_redis_errors(self.redis):
            key = self.redis.get(keys.CURRENT)
            if not key or not keys.is_play_key(key):
                return None
            fields = self.redis.hgetall(key)
        if not fields or "ended_at" in fields:
            return None
        return keys.started_at_of(key), fields

    def ping(self) -> bool:
        try:
            with translate_redis_errors(self.redis):
                return bool(self.redis.ping())
        except StoreUnavailable:
            return False

    def check_keys(self, client_id: str | None = None) -> None:
        """Raise ForeignKey (exit 78) naming a fixed key of ours that holds another type. Once at
        start: the poll path finds one only when it writes, in the store script's type check."""
        with translate_redis_errors(self.redis):
            found = foreign_keys(self.redis, client_id=client_id)
        if found:
            raise foreign_key_error(found)

    def status(self) -> dict[str, str]:
        with translate_redis_errors(self.redis):
            return self.redis.hgetall(keys.STATUS)

    def memory(self) -> Memory:
        """INFO memory: only when a write failed, or for `status`; never on the poll path."""
        with translate_redis_errors(self.redis):
            info = self.redis.info("memory")
        policy = info.get("maxmemory_policy")
        return Memory(_int(info.get("used_memory")), _int(info.get("maxmemory")),
                      None if policy is None else str(policy))


def _int(raw: object) -> int | None:
    try:
        return int(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
