"""The rate-limit cooldown: no request goes to Spotify before a Retry-After deadline passes.

The deadline survives restarts: it is kept in Redis (a key whose TTL ends with it) and in the
state dir, so that a poller restarted by run.py or systemd does not extend the penalty.

Spotify limits the app (the client id), not the process: the Redis key is per client id
(keys.cooldown_key), with the reason (rate_limited: the 30 s burst limit; quota_exceeded: the
daily quota). The request budget's script reads it before every call (budget.py), so a
deadline one process met stops every other process of the app at once, through adopt().
"""

from __future__ import annotations

import json
import math
import time
from datetime import timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable

import redis

from . import keys
from .errors import QuotaExceeded, RateLimited, StoreUnavailable
from .timeutil import utc_iso
from .fsutil import atomic_write
from .logs import get_logger
from .store import translate_redis_errors

log = get_logger(__name__)

DEFAULT_RETRY_AFTER_S = 5.0
LONG_PENALTY_S = 600.0
MAX_RETRY_AFTER_S = 86_400.0
STATE_FILE = "cooldown.json"
RATE_LIMITED = "rate_limited"
QUOTA_EXCEEDED = "quota_exceeded"


def parse_retry_after(value: str | None, now: float) -> float:
    """Seconds to wait: Retry-After is delta-seconds or an HTTP-date (RFC 9110), capped at a
    day so that an absurd header (1e400, inf) cannot overflow a deadline and crash the poller."""
    if not value:
        return DEFAULT_RETRY_AFTER_S
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return DEFAULT_RETRY_AFTER_S
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - now
    if math.isnan(seconds):
        return DEFAULT_RETRY_AFTER_S
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


# Keeps the later deadline: a process must never shorten one another process set.
_SET_LATER = """
local raw = redis.call('GET', KEYS[1])
if raw then
  local ok, cd = pcall(cjson.decode, raw)
  local deadline = tonumber(raw)
  if ok and type(cd) == 'table' then deadline = tonumber(cd['until']) end
  if deadline and deadline >= tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


class Cooldown:
    def __init__(self, *, state_file: Path | None = None, redis_client: "redis.Redis[str] | None" = None,
                 clock: Callable[[], float] = time.time, key: str = keys.COOLDOWN) -> None:
        self.state_file = state_file
        self.redis = redis_client
        self.clock = clock
        self.key = key
        self.until = 0.0
        self.reason = RATE_LIMITED

    @classmethod
    def in_state_dir(cls, state_dir: Path, *, redis_client: "redis.Redis[str] | None" = None,
                     clock: Callable[[], float] = time.time, client_id: str | None = None) -> "Cooldown":
        """client_id names the app's shared key; without one, the global key of earlier versions."""
        key = keys.cooldown_key(client_id) if client_id else keys.COOLDOWN
        return cls(state_file=state_dir / STATE_FILE, redis_client=redis_client, clock=clock, key=key)

    def remaining(self) -> float:
        return max(0.0, self.until - self.clock())

    def check(self) -> None:
        if self.clock() < self.until:
            kind = QuotaExceeded if self.reason == QUOTA_EXCEEDED else RateLimited
            raise kind(f"{'request quota spent' if kind is QuotaExceeded else 'rate-limited'}: "
                       f"{self.remaining():.1f}s more, until {utc_iso(self.until)}", until=self.until)

    def start(self, retry_after_s: float, reason: str = RATE_LIMITED) -> float:
        until = self.clock() + retry_after_s
        if until <= self.until:
            return self.until
        self.until, self.reason = until, reason
        deadline = utc_iso(until)
        if reason == QUOTA_EXCEEDED:
            # Once per deadline: every later call waits, so nothing logs it again.
            log.warning("quota_exceeded", retry_after_s=retry_after_s, deadline=deadline,
                        action="no Web API call from any process of this app before the deadline")
        elif retry_after_s > LONG_PENALTY_S:
            log.warning("rate_limited_long", retry_after_s=retry_after_s, deadline=deadline)
        else:
            log.info("rate_limited", retry_after_s=retry_after_s, deadline=deadline)
        self._persist()
        return until

    def adopt(self, until: float, reason: str) -> None:
        """A deadline another process of the app met (read from Redis by the budget)."""
        if until <= self.until:
            return
        self.until, self.reason = until, reason
        log.info("cooldown_adopted", reason=reason, remaining_s=round(until - self.clock(), 1), deadline=utc_iso(until))
        if self.state_file is not None:
            self._write_file()

    def load(self) -> float:
        """Adopt a deadline an earlier process persisted, if it has not passed."""
        candidates: dict[str, tuple[float, str]] = {}
        if self.redis is not None:
            try:
                with translate_redis_errors():
                    raw = self.redis.get(self.key)
                    legacy = self.redis.get(keys.COOLDOWN) if self.key != keys.COOLDOWN else None
                candidates["redis"] = max(_parse(raw), _parse(legacy))
            except StoreUnavailable:
                pass  # Redis down: the state-dir copy is what it is there for
        candidates["state_dir"] = self._read_file()
        source, (until, reason) = max(candidates.items(), key=lambda kv: kv[1][0])  # the first on a tie
        if until > self.until and until > self.clock():
            log.info("cooldown_restored", source=source, reason=reason, remaining_s=round(until - self.clock(), 1),
                     deadline=utc_iso(until))
        if until > self.until:
            self.until, self.reason = until, reason
        return self.until

    def _persist(self) -> None:
        # The file first: it is what a restart reads when Redis is down.
        if self.state_file is not None:
            self._write_file()
        if self.redis is not None:
            ttl = max(1, math.ceil(self.until - self.clock()))
            value = json.dumps({"until": self.until, "reason": self.reason})
            try:
                with translate_redis_errors():
                    self.redis.eval(_SET_LATER, 1, self.key, value, repr(self.until), ttl)
            except StoreUnavailable:
                log.warning("cooldown_not_persisted", where="redis")

    def _write_file(self) -> None:
        assert self.state_file is not None
        try:
            atomic_write(self.state_file, json.dumps({"until": self.until, "reason": self.reason}).encode())
        except OSError as exc:
            log.warning("cooldown_not_persisted", where="state_dir", error=type(exc).__name__)

    def _read_file(self) -> tuple[float, str]:
        if self.state_file is None or not self.state_file.exists():
            return 0.0, RATE_LIMITED
        try:
            return _parse(self.state_file.read_text())
        except OSError:
            return 0.0, RATE_LIMITED


def _parse(raw: str | None) -> tuple[float, str]:
    """(deadline, reason) of a stored cooldown: JSON {until, reason}, or a bare number (the
    global key of earlier versions); (0, rate_limited) when absent or damaged."""
    if not raw:
        return 0.0, RATE_LIMITED
    try:
        value = json.loads(raw)
        if isinstance(value, dict):
            reason = value.get("reason")
            return float(value["until"]), reason if reason in (RATE_LIMITED, QUOTA_EXCEEDED) else RATE_LIMITED
        return float(value), RATE_LIMITED
    except (ValueError, KeyError, TypeError):
        return 0.0, RATE_LIMITED
