"""The request budget: at most SPOTIFY_LOGGER_REQUEST_BUDGET Web API calls per rolling window,
for the whole app, so that Spotify's unpublished quota (about a day, shared by every user and
process of a client id) is never what stops the logger.

- Counted in Redis per client id (keys.budget_calls), in time buckets of window/240 with a TTL,
  so the poller, backfill, playlist and every account of the app share one count. One Lua script
  checks and counts atomically: two processes can never both take the last call. A bucket stays
  counted until its last instant is a full window old, so the count never undercounts a true
  rolling window (it may hold a call up to one bucket longer).
- The same script refuses while the app's shared cooldown (keys.cooldown_key) holds, and applies
  the learned limit (keys.budget_learned), so every process obeys both at no extra round trip.
- While Redis is down, calls are counted in the state dir (budgetfile.py) and merged back,
  idempotently, once it answers again.
- spend(endpoint, reserve=N) refuses a call that would leave fewer than N calls in the window:
  the reserve is the caller's policy (the poller holds calls back for recently-played), not
  this module's; by default nothing is reserved.
- learn(): Spotify answered QUOTA_EXCEEDED while the budget thought there was room. The quota is
  then what was actually spent in the window; the effective limit drops to it (never below a
  tenth of the configured budget, so a count lost with Redis's data cannot starve the logger),
  for LEARNED_TTL_S, after which the configured budget is tried again.
- note(endpoint) counts a call outside the Web API quota (the token endpoint), shown only.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import redis

from . import keys
from .budgetfile import BudgetFile, OfflineCounts
from .budgetlua import SPEND, parse_buckets
from .budgetview import (BUCKETS_PER_WINDOW, ENDPOINT_HOURS, HOUR_S, LEARNED_TTL_S, TOKEN_ENDPOINT, BudgetView,
                         exhausted, learned_limit, make_view, span, sum_buckets, sum_endpoints)
from .config import Settings
from .cooldown import QUOTA_EXCEEDED, Cooldown
from .errors import BudgetExhausted, QuotaExceeded, RateLimited, StoreUnavailable
from .logs import get_logger
from .store import translate_redis_errors
from .timeutil import utc_iso

log = get_logger(__name__)

__all__ = ["BudgetView", "RequestBudget", "TOKEN_ENDPOINT"]


class RequestBudget:
    def __init__(self, settings: Settings, redis_client: "redis.Redis[str] | None", state_dir: Path,
                 clock: Callable[[], float] = time.time, *, cooldown: Cooldown | None = None) -> None:
        client_id = settings.require_client_id()
        self.configured = settings.request_budget
        self.window_s = settings.request_budget_window_s
        self.bucket_s = self.window_s / BUCKETS_PER_WINDOW
        self.floor = max(1, self.configured // 10)
        self.redis = redis_client
        self.clock = clock
        self.cooldown = cooldown  # told of a deadline another process of the app met
        self.file = BudgetFile(state_dir)
        self._keys = [keys.budget_calls(client_id), keys.budget_endpoints(client_id),
                      keys.cooldown_key(client_id), keys.budget_learned(client_id)]
        self._script = redis_client.register_script(SPEND) if redis_client is not None else None
        self._seen: dict[int, int] = {}
        self._last: tuple[dict[int, int], int] | None = None  # (per bucket, effective limit) at the last call
        self._offline = False
        self._refusing = False  # budget_exhausted is logged once per stretch of refusals
        self._unmerged = True  # look at the file once: an earlier run may have counted offline

    # --- counting ----------------------------------------------------------------------------

    def spend(self, endpoint: str, *, reserve: int = 0) -> None:
        """Count one Web API call, or raise BudgetExhausted (nothing counted) if it does not fit
        with `reserve` calls left over; RateLimited/QuotaExceeded while the app's cooldown holds."""
        now = self.clock()
        try:
            status, limit, per, extra = self._run(now, endpoint, self.configured, reserve)
        except StoreUnavailable:
            self._spend_offline(now, endpoint, reserve)
            return
        if status == -1:
            deadline, reason = float(extra[0]), str(extra[1])
            if self.cooldown is not None:
                self.cooldown.adopt(deadline, reason)
            kind = QuotaExceeded if reason == QUOTA_EXCEEDED else RateLimited
            raise kind(f"{endpoint}: the app is rate-limited ({reason}) until {utc_iso(deadline)}", until=deadline)
        if status == 0:
            raise self._exhausted(now, limit, per, reserve)
        self._refusing = False

    def note(self, endpoint: str = TOKEN_ENDPOINT) -> None:
        """Count a call outside the Web API quota (shown in by_endpoint/token_refreshes only)."""
        now = self.clock()
        try:
            self._run(now, endpoint, 0, 0)
        except StoreUnavailable:
            with self.file.locked():
                counts = self._read_pruned(now)
                field_ = f"{self._hour(now)}|{endpoint}"
                counts.endpoints[field_] = counts.endpoints.get(field_, 0) + 1
                self.file.write(counts)

    def require(self, calls: int, what: str, *, reserve: int = 0) -> None:
        """For a one-shot command: BudgetExhausted (exit 75) unless `calls` calls fit now."""
        now = self.clock()
        view = self.view()
        left = max(0, view.calls_left - reserve)
        if calls <= left:
            return
        at = view.fits_at(now, calls, reserve)
        when = (f"they fit at {utc_iso(at)} (in {at - now:.0f} s)" if at is not None else
                "they never fit: raise SPOTIFY_LOGGER_REQUEST_BUDGET")
        raise BudgetExhausted(f"{what}: {calls} calls needed, {left} left in the request budget "
                              f"({view.used} of {view.limit} used in the last {span(self.window_s)}); {when}",
                              until=at if at is not None else now + self.window_s)

    def learn(self) -> int | None:
        """Spotify refused with QUOTA_EXCEEDED: lower the effective limit to what was spent in the
        window (the refused call itself is counted, hence - 1). Returns the new limit, if lower."""
        view = self.view()
        spent = max(self.floor, view.used - 1)
        if spent >= view.limit:
            return None
        record = {"limit": spent, "learned_at": self.clock(), "window_s": self.window_s}
        log.warning("budget_learned", limit=spent, previous_limit=view.limit, configured_limit=self.configured,
                    used=view.used, action="Spotify's quota is lower than the budget: using the lower figure")
        with self.file.locked():
            counts = self._read_pruned(self.clock())
            counts.learned = record
            self.file.write(counts)
        try:
            self._set_learned(record)
        except StoreUnavailable:
            pass  # the state dir has it; merged back with the counts
        return spent

    # --- reading -----------------------------------------------------------------------------

    def view(self) -> BudgetView:
        now = self.clock()
        first = self._bucket(now) - BUCKETS_PER_WINDOW
        first_hour = self._hour(now) - ENDPOINT_HOURS + 1
        try:
            if self.redis is None:
                raise StoreUnavailable("no Redis client")
            with translate_redis_errors():
                raw_calls = self.redis.hgetall(self._keys[0])
                raw_endpoints = self.redis.hgetall(self._keys[1])
                learned = learned_limit(self.redis.get(self._keys[3]))
            per = sum_buckets(raw_calls, first)
            endpoints = sum_endpoints(raw_endpoints, first_hour)
            source = "redis"
        except StoreUnavailable:
            counts = self._read_pruned(now)
            per = dict(counts.seen)
            for b, n in counts.calls.items():
                per[b] = per.get(b, 0) + n - counts.merged.get(b, 0)
            endpoints = sum_endpoints(counts.endpoints, first_hour)
            learned = learned_limit(json.dumps(counts.learned) if counts.learned else None, now)
            source = "state_dir"
        return make_view(per, endpoints, learned=learned, configured=self.configured, window_s=self.window_s,
                         bucket_s=self.bucket_s, now=now, source=source)

    def last_view(self) -> BudgetView:
        """The window as this process's last call saw it, aged to now, without any I/O: for a
        poller that paces itself on every poll (by_endpoint is empty). view() before any call."""
        if self._last is None:
            return self.view()
        now = self.clock()
        first = self._bucket(now) - BUCKETS_PER_WINDOW
        per, limit = self._last
        return make_view({b: n for b, n in per.items() if b >= first}, {},
                         learned=limit if limit < self.configured else None, configured=self.configured,
                         window_s=self.window_s, bucket_s=self.bucket_s, now=now, source="memory")

    # --- internals ---------------------------------------------------------------------------

    def _bucket(self, t: float) -> int:
        return math.floor(t / self.bucket_s)

    def _hour(self, t: float) -> int:
        return math.floor(t / HOUR_S)

    def _run(self, now: float, endpoint: str, limit: int, reserve: int) -> tuple[int, int, dict[int, int], list[Any]]:
        if self._script is None:
            raise StoreUnavailable("no Redis client")
        self._merge_if_needed(now)
        bucket = self._bucket(now)
        with translate_redis_errors():
            reply = self._script(keys=self._keys, args=[
                repr(now), bucket, bucket - BUCKETS_PER_WINDOW, limit, reserve,
                f"{self._hour(now)}|{endpoint}", self._hour(now) - ENDPOINT_HOURS,
                math.ceil(self.window_s + 2 * self.bucket_s), int((ENDPOINT_HOURS + 2) * HOUR_S)])
        if self._offline:
            self._offline = False
            log.info("budget_online", action="counting in Redis again")
        status, effective = int(reply[0]), int(reply[2])
        per = parse_buckets(reply[3])
        if status == 1 and limit > 0:
            per[bucket] = per.get(bucket, 0) + 1
        if status != -1 and limit > 0:
            self._remember(now, per)
            self._last = (per, effective)
        return status, effective, per, list(reply[4:])

    def _remember(self, now: float, per: dict[int, int]) -> None:
        # The whole shared count, for any process of this state dir that finds Redis down next.
        self._seen = per
        self.file.write_seen(per, now)

    def _spend_offline(self, now: float, endpoint: str, reserve: int) -> None:
        if not self._offline:
            self._offline = True
            log.warning("budget_offline", action="Redis is unreachable: counting calls in the state dir")
        with self.file.locked():
            counts = self._read_pruned(now)
            for b, n in self._seen.items():  # what this process last saw in Redis
                counts.seen[b] = max(counts.seen.get(b, 0), n)
            first = self._bucket(now) - BUCKETS_PER_WINDOW
            used = counts.used(first)
            learned = learned_limit(json.dumps(counts.learned) if counts.learned else None, now)
            limit = min(self.configured, learned) if learned is not None else self.configured
            if used + 1 > limit - reserve:
                per = dict(counts.seen)
                for b, n in counts.calls.items():
                    per[b] = per.get(b, 0) + n - counts.merged.get(b, 0)
                raise self._exhausted(now, limit, per, reserve)
            bucket = self._bucket(now)
            counts.calls[bucket] = counts.calls.get(bucket, 0) + 1
            field_ = f"{self._hour(now)}|{endpoint}"
            counts.endpoints[field_] = counts.endpoints.get(field_, 0) + 1
            self.file.write(counts)
            per = dict(counts.seen)
            for b, n in counts.calls.items():
                per[b] = per.get(b, 0) + n - counts.merged.get(b, 0)
            self._last = (per, limit)
        self._unmerged, self._refusing = True, False

    def _merge_if_needed(self, now: float) -> None:
        """Counts made offline (here or by another process of this state dir) go into Redis as
        absolute values under this state dir's origin: repeating a merge changes nothing."""
        if not (self._unmerged or self.file.changed()):
            return
        assert self.redis is not None
        with self.file.locked():
            counts = self._read_pruned(now)
            if counts.unmerged():
                calls = {f"{b}:{counts.origin}": n for b, n in counts.calls.items()}
                endpoints = {f"{f}|{counts.origin}": n for f, n in counts.endpoints.items()}
                with translate_redis_errors():
                    if calls:
                        self.redis.hset(self._keys[0], mapping=calls)  # type: ignore[arg-type]
                        self.redis.expire(self._keys[0], math.ceil(self.window_s + 2 * self.bucket_s))
                    if endpoints:
                        self.redis.hset(self._keys[1], mapping=endpoints)  # type: ignore[arg-type]
                        self.redis.expire(self._keys[1], int((ENDPOINT_HOURS + 2) * HOUR_S))
                merged = sum(n - counts.merged.get(b, 0) for b, n in counts.calls.items())
                for b, n in counts.calls.items():  # in Redis now: part of the shared count
                    counts.seen[b] = counts.seen.get(b, 0) + n - counts.merged.get(b, 0)
                counts.merged, counts.merged_endpoints = dict(counts.calls), dict(counts.endpoints)
                self.file.write_seen(counts.seen, now)
                self.file.write(counts)
                log.info("budget_merged", calls=merged, origin=counts.origin)
            self.file.mark_checked()
            if counts.learned and learned_limit(json.dumps(counts.learned), now) is not None:
                with translate_redis_errors():
                    if self.redis.get(self._keys[3]) is None:  # Redis lost it (a flush, no persistence)
                        self._set_learned(counts.learned)
        self._unmerged = False

    def _set_learned(self, record: dict[str, Any]) -> None:
        if self.redis is None:
            raise StoreUnavailable("no Redis client")
        ttl = math.ceil(float(record.get("learned_at", 0)) + LEARNED_TTL_S - self.clock())
        if ttl > 0:
            with translate_redis_errors():
                self.redis.set(self._keys[3], json.dumps(record), ex=ttl)

    def _read_pruned(self, now: float) -> OfflineCounts:
        counts = self.file.read()
        counts.prune(self._bucket(now) - BUCKETS_PER_WINDOW, self._hour(now) - ENDPOINT_HOURS)
        return counts

    def _exhausted(self, now: float, limit: int, per: dict[int, int], reserve: int) -> BudgetExhausted:
        view = make_view(per, {}, learned=None, configured=limit, window_s=self.window_s, bucket_s=self.bucket_s,
                         now=now, source="")
        error = exhausted(view, now, reserve)
        if not self._refusing:
            self._refusing = True
            # A warning when the budget is spent; info when only the caller's reserve holds it back.
            emit = log.warning if view.calls_left == 0 else log.info
            emit("budget_exhausted", used=view.used, limit=limit, reserve=reserve, next_call_at=utc_iso(error.until))
        return error
