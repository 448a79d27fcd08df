"""What the request budget shows: the BudgetView `status` reports, and the arithmetic of the
rolling window it is computed with (budget.py counts; this module reads)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import BudgetExhausted
from .timeutil import utc_iso

BUCKETS_PER_WINDOW = 240
HOUR_S = 3600.0
ENDPOINT_HOURS = 24                # by_endpoint covers the last 24 hours (hour buckets)
LEARNED_TTL_S = 30 * 86400.0
TOKEN_ENDPOINT = "POST /api/token"


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


def make_view(per: dict[int, int], endpoints: dict[str, int], *, learned: int | None, configured: int,
              window_s: float, bucket_s: float, now: float, source: str) -> BudgetView:
    limit = min(configured, learned) if learned is not None else configured
    used = sum(per.values())
    buckets = tuple(sorted((b, n) for b, n in per.items() if n))
    recent = int((now - HOUR_S) // bucket_s)
    last_hour = sum(n for b, n in buckets if b > recent)
    endpoints = dict(endpoints)
    tokens = endpoints.pop(TOKEN_ENDPOINT, 0)
    next_free = (buckets[0][0] + BUCKETS_PER_WINDOW + 1) * bucket_s - now if buckets else 0.0
    return BudgetView(limit=limit, configured_limit=configured, learned_limit=learned, used=used,
                      calls_left=max(0, limit - used), window_s=window_s,
                      next_free_in_s=round(max(0.0, next_free), 1), last_hour=last_hour,
                      projected_per_day=last_hour * 24, by_endpoint=endpoints, token_refreshes=tokens,
                      source=source, buckets=buckets, bucket_s=bucket_s)


def exhausted(view: BudgetView, now: float, reserve: int) -> BudgetExhausted:
    """The refusal of one call: how full the window is, and when the next call fits."""
    at = view.fits_at(now, 1, reserve)
    until = at if at is not None and at > now else now + view.bucket_s
    return BudgetExhausted(f"request budget spent: {view.used} of {view.limit} calls in the last {span(view.window_s)}"
                           f"{f' ({reserve} held in reserve)' if reserve else ''}; the next call fits at "
                           f"{utc_iso(until)} (in {until - now:.0f} s)", until=until)


def sum_buckets(raw: dict[str, str], first: int) -> dict[int, int]:
    per: dict[int, int] = {}
    for f, v in raw.items():
        try:
            b, n = int(f.split(":", 1)[0]), int(v)
        except ValueError:
            continue
        if b >= first:
            per[b] = per.get(b, 0) + n
    return per


def sum_endpoints(raw: dict[str, Any], first_hour: int) -> dict[str, int]:
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


def learned_limit(raw: str | None, now: float | None = None) -> int | None:
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


def span(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"
