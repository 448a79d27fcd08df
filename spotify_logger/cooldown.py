"""The rate-limit cooldown: no request goes to Spotify before a Retry-After deadline passes.

The deadline survives restarts: it is kept in Redis (a key whose TTL ends with it) and in the
state dir, so that a poller restarted by run.py or systemd does not extend the penalty.
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
from .errors import RateLimited, StoreUnavailable
from .timeutil import utc_iso
from .fsutil import atomic_write
from .logs import get_logger
from .store import translate_redis_errors

log = get_logger(__name__)

DEFAULT_RETRY_AFTER_S = 5.0
LONG_PENALTY_S = 600.0
MAX_RETRY_AFTER_S = 86_400.0
STATE_FILE = "cooldown.json"


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


class Cooldown:
    def __init__(self, *, state_file: Path | None = None, redis_client: "redis.Redis[str] | None" = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.state_file = state_file
        self.redis = redis_client
        self.clock = clock
        self.until = 0.0

    @classmethod
    def in_state_dir(cls, state_dir: Path, *, redis_client: "redis.Redis[str] | None" = None,
                     clock: Callable[[], float] = time.time) -> "Cooldown":
        return cls(state_file=state_dir / STATE_FILE, redis_client=redis_client, clock=clock)

    def remaining(self) -> float:
        return max(0.0, self.until - self.clock())

    def check(self) -> None:
        if self.clock() < self.until:
            raise RateLimited(f"rate-limited for {self.remaining():.1f}s more", until=self.until)

    def start(self, retry_after_s: float) -> float:
        until = self.clock() + retry_after_s
        if until <= self.until:
            return self.until
        self.until = until
        deadline = utc_iso(until)
        if retry_after_s > LONG_PENALTY_S:
            log.warning("rate_limited_long", retry_after_s=retry_after_s, deadline=deadline)
        else:
            log.info("rate_limited", retry_after_s=retry_after_s, deadline=deadline)
        self._persist()
        return until

    def load(self) -> float:
        """Adopt a deadline an earlier process persisted, if it has not passed."""
        candidates: dict[str, float] = {}
        if self.redis is not None:
            try:
                with translate_redis_errors():
                    raw = self.redis.get(keys.COOLDOWN)
                candidates["redis"] = float(raw) if raw else 0.0
            except (StoreUnavailable, ValueError):
                pass  # Redis down: the state-dir copy is what it is there for
        candidates["state_dir"] = self._read_file()
        source, until = max(candidates.items(), key=lambda kv: kv[1])  # the first on a tie
        if until > self.until and until > self.clock():
            log.info("cooldown_restored", source=source, remaining_s=round(until - self.clock(), 1),
                     deadline=utc_iso(until))
        self.until = max(self.until, until)
        return self.until

    def _persist(self) -> None:
        # The file first: it is what a restart reads when Redis is down.
        if self.state_file is not None:
            try:
                atomic_write(self.state_file, json.dumps({"until": self.until}).encode())
            except OSError as exc:
                log.warning("cooldown_not_persisted", where="state_dir", error=type(exc).__name__)
        if self.redis is not None:
            ttl = max(1, math.ceil(self.until - self.clock()))
            try:
                with translate_redis_errors():
                    self.redis.set(keys.COOLDOWN, repr(self.until), ex=ttl)
            except StoreUnavailable:
                log.warning("cooldown_not_persisted", where="redis")

    def _read_file(self) -> float:
        if self.state_file is None or not self.state_file.exists():
            return 0.0
        try:
            return float(json.loads(self.state_file.read_text())["until"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0.0
