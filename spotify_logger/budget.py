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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import redis

from . import keys
from .budgetfile import BudgetFile, OfflineCounts
from .config import Settings
from .errors import BudgetExhausted, QuotaExceeded, RateLimited, StoreUnavailable
from .logs import get_logger
from .store import translate_redis_errors
from .timeutil import utc_iso

log = get_logger(__name__)

BUCKETS_PER_WINDOW = 240
HOUR_S = 3600.0
ENDPOINT_HOURS = 24                # by_endpoint covers the last 24 hours (hour buckets)
LEARNED_TTL_S = 30 * 86400.0
TOKEN_ENDPOINT = "POST /api/token"
QUOTA_EXCEEDED = "quota_exceeded"

# KEYS: calls, endpoints, cooldown, learned. ARGV: now, bucket, first bucket, configured limit
# (0: only note the endpoint), reserve, endpoint field, first hour kept, calls TTL, endpoints TTL.
# Returns {1 spent | 0 refused | -1 cooldown, used, effective limit, "field n,field n", deadline, reason}.
_SPEND = """
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[4])
if limit > 0 then
  local raw = redis.call('GET', KEYS[3])
  if raw then
    local ok, cd = pcall(cjson.decode, raw)
    local deadline, reason = tonumber(raw), 'rate_limited'
    if ok and type(cd) == 'table' then deadline, reason = tonumber(cd['until']), tostring(cd['reason'] or reason) end
    if deadline and deadline > now then return {-1, 0, 0, '', tostring(deadline), reason} end
  end
  local lraw = redis.call('GET', KEYS[4])
  if lraw then
    local ok, learned = pcall(cjson.decode, lraw)
    if ok and type(learned) == 'table' and tonumber(learned['limit']) then
      limit = math.min(limit, tonumber(learned['limit']))
    end
  end
end
local first = tonumber(ARGV[3])
local fields = redis.call('HGETALL', KEYS[1])
local used, stale, per = 0, {}, {}  -- per: "bucket n" pairs in one string, cheap to parse
for i = 1, #fields, 2 do
  local b = tonumber(string.match(fields[i], '^%-?%d+'))
  if b == nil or b < first then
    stale[#stale + 1] = fields[i]
  else
    local n = tonumber(fields[i + 1]) or 0
    used = used + n
    per[#per + 1] = fields[i] .. ' ' .. fields[i + 1]
  end
end
if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
if limit > 0 then
  if used + 1 > limit - tonumber(ARGV[5]) then return {0, used, limit, table.concat(per, ',')} end
  redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
  redis.call('EXPIRE', KEYS[1], ARGV[8])
  used = used + 1
end
if redis.call('HINCRBY', KEYS[2], ARGV[6], 1) == 1 then
  -- The first call of an endpoint in a new hour: drop the hours that left the span.
  local old = {}
  for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
    local h = tonumber(string.match(f, '^%-?%d+'))
    if h == nil or h < tonumber(ARGV[7]) then old[#old + 1] = f end
  end
  if #old > 0 then redis.call('HDEL', KEYS[2], unpack(old)) end
end
redis.call('EXPIRE', KEYS[2], ARGV[9])
return {1, used, limit, table.concat(per, ',')}
"""


@dataclass(frozen=True)
class BudgetView:
    limit: int                    # effective: the learned limit when lower than the configured one
    configured_limit: int
    learned_limit: int | None
    used: int                     # calls counted in the current rolling window
    calls_left: int
    window_s: float
    next_free_in_s: float         # until the oldest counted bucket leaves the window (0: none counted)
    last_hour: int                # calls in about the last hour
    projected_per_day: int        # last_hour x 24: the day's calls at the current pace
    by_endpoint: dict[str, int] = field(default_factory=dict)   # the last 24 h, Web API only
    token_refreshes: int = 0      # token endpoint calls, the last 24 h (not in the quota)
    source: str = "redis"         # or "state_dir" while Redis is unreachable
    buckets: tuple[tuple[int, int], ...] = field(default=(), repr=False)
    bucket_s: float = field(default=360.0, repr=False)

    def fits_at(self, now: float, calls: int = 1, reserve: int = 0) -> float | None:
        """When `calls` more calls fit (now if they do); None if they never can."""
        room = self.limit - reserve
        if calls > room:
            return None
        used = self.used
        if used + calls <= room:
            return now
        for bucket, n in self.buckets:  # oldest first
            used -= n
            if used + calls <= room:
                return (bucket + BUCKETS_PER_WINDOW + 1) * self.bucket_s
        return now

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["buckets"], out["bucket_s"]
        return out


class RequestBudget:
    def __init__(self, settings: Settings, redis_client: "redis.Redis[str] | None", state_dir: Path,
                 clock: Callable[[], float] = time.time, *, cooldown: Any = None) -> None:
        client_id = settings.require_client_id()
        self.configured = settings.request_budget
        self.window_s = settings.request_budget_window_s
        self.bucket_s = self.window_s / BUCKETS_PER_WINDOW
        self.floor = max(1, self.configured // 10)
        self.redis = redis_client
        self.clock = clock
        self.cooldown = cooldown  # a cooldown.Cooldown: told of a deadline another process set
        self.file = BudgetFile(state_dir)
        self._keys = [keys.budget_calls(client_id), keys.budget_endpoints(client_id),
                      keys.cooldown_key(client_id), keys.budget_learned(client_id)]
        self._script = redis_client.register_script(_SPEND) if redis_client is not None else None
        self._seen: dict[int, int] = {}
        self._offline = False
        self._unmerged = True  # look at the file once: an earlier run may have counted offline

    # --- counting ----------------------------------------------------------------------------

    def spend(self, endpoint: str, *, reserve: int = 0) -> None:
        """Count one Web API call, or raise BudgetExhausted (nothing counted) if it does not fit
        with `reserve` calls left over; RateLimited/QuotaExceeded while the app's cooldown holds."""
        now = self.clock()
        try:
            status, used, limit, per, extra = self._run(now, endpoint, self.configured, reserve)
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
            raise self._exhausted(now, used, limit, per, reserve)

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
                              f"({view.used} of {view.limit} used in the last {_span(self.window_s)}); {when}",
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
                learned = _learned_limit(self.redis.get(self._keys[3]))
            per = _sum_buckets(raw_calls, first)
            endpoints = _sum_endpoints(raw_endpoints, first_hour)
            source = "redis"
        except StoreUnavailable:
            counts = self._read_pruned(now)
            per = dict(counts.seen)
            for b, n in counts.calls.items():
                per[b] = per.get(b, 0) + n - counts.merged.get(b, 0)
            endpoints = _sum_endpoints(counts.endpoints, first_hour)
            learned = _learned_limit(json.dumps(counts.learned) if counts.learned else None, now)
            source = "state_dir"
        limit = min(self.configured, learned) if learned is not None else self.configured
        used = sum(per.values())
        buckets = tuple(sorted((b, n) for b, n in per.items() if n))
        recent = self._bucket(now - HOUR_S)
        last_hour = sum(n for b, n in buckets if b > recent)
        tokens = endpoints.pop(TOKEN_ENDPOINT, 0)
        next_free = (buckets[0][0] + BUCKETS_PER_WINDOW + 1) * self.bucket_s - now if buckets else 0.0
        return BudgetView(limit=limit, configured_limit=self.configured, learned_limit=learned, used=used,
                          calls_left=max(0, limit - used), window_s=self.window_s,
                          next_free_in_s=round(max(0.0, next_free), 1), last_hour=last_hour,
                          projected_per_day=last_hour * 24, by_endpoint=endpoints, token_refreshes=tokens,
                          source=source, buckets=buckets, bucket_s=self.bucket_s)

    # --- internals ---------------------------------------------------------------------------

    def _bucket(self, t: float) -> int:
        return math.floor(t / self.bucket_s)

    def _hour(self, t: float) -> int:
        return math.floor(t / HOUR_S)

    def _run(self, now: float, endpoint: str, limit: int, reserve: int) -> tuple[int, int, int, dict[int, int], list[Any]]:
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
        status, used, effective = int(reply[0]), int(reply[1]), int(reply[2])
        per: dict[int, int] = {}
        for pair in reply[3].split(",") if reply[3] else ():
            field_, n = pair.split(" ")
            bucket_ = int(field_.split(":", 1)[0])  # a bucket may come in several fields (merged origins)
            per[bucket_] = per.get(bucket_, 0) + int(n)
        if status == 1 and limit > 0:
            per[bucket] = per.get(bucket, 0) + 1
        if status != -1 and limit > 0:
            self._remember(now, per)
        return status, used, effective, per, list(reply[4:])

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
            learned = _learned_limit(json.dumps(counts.learned) if counts.learned else None, now)
            limit = min(self.configured, learned) if learned is not None else self.configured
            if used + 1 > limit - reserve:
                per = dict(counts.seen)
                for b, n in counts.calls.items():
                    per[b] = per.get(b, 0) + n - counts.merged.get(b, 0)
                raise self._exhausted(now, used, limit, per, reserve)
            bucket = self._bucket(now)
            counts.calls[bucket] = counts.calls.get(bucket, 0) + 1
            field_ = f"{self._hour(now)}|{endpoint}"
            counts.endpoints[field_] = counts.endpoints.get(field_, 0) + 1
            self.file.write(counts)
        self._unmerged = True

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
            if counts.learned and _learned_limit(json.dumps(counts.learned), now) is not None:
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

    def _exhausted(self, now: float, used: int, limit: int, per: dict[int, int], reserve: int) -> BudgetExhausted:
        buckets = tuple(sorted((b, n) for b, n in per.items() if n))
        view = BudgetView(limit=limit, configured_limit=self.configured, learned_limit=None, used=used,
                          calls_left=max(0, limit - used), window_s=self.window_s, next_free_in_s=0.0,
                          last_hour=0, projected_per_day=0, buckets=buckets, bucket_s=self.bucket_s)
        at = view.fits_at(now, 1, reserve)
        until = at if at is not None and at > now else now + self.bucket_s
        return BudgetExhausted(f"request budget spent: {used} of {limit} calls in the last {_span(self.window_s)}"
                               f"{f' ({reserve} held in reserve)' if reserve else ''}; the next call fits at "
                               f"{utc_iso(until)} (in {until - now:.0f} s)", until=until)


def _sum_buckets(raw: dict[str, str], first: int) -> dict[int, int]:
    per: dict[int, int] = {}
    for f, v in raw.items():
        try:
            b, n = int(f.split(":", 1)[0]), int(v)
        except ValueError:
            continue
        if b >= first:
            per[b] = per.get(b, 0) + n
    return per


def _sum_endpoints(raw: dict[str, Any], first_hour: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for f, v in raw.items():
        parts = f.split("|")
        try:
            hour, n = int(parts[0]), int(v)
        except (ValueError, IndexError):
            continue
        if hour >= first_hour and len(parts) >= 2:
            out[parts[1]] = out.get(parts[1], 0) + n
    return dict(sorted(out.items()))


def _learned_limit(raw: str | None, now: float | None = None) -> int | None:
    """The limit of a learned record; None when absent, damaged, or (state dir copy) expired."""
    if not raw:
        return None
    try:
        record = json.loads(raw)
        limit = int(record["limit"])
        learned_at = float(record.get("learned_at", 0))
    except (ValueError, TypeError, KeyError):
        return None
    if now is not None and now > learned_at + LEARNED_TTL_S:
        return None
    return limit if limit >= 1 else None


def _span(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"
