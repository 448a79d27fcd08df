from __future__ import annotations

import argparse
import json
import time
from typing import Any

from ..config import Settings
from ..errors import EX_OK, EX_UNAVAILABLE
from ..timeutil import utc_iso
from ..health import Health, gather


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    health = gather(settings)
    if args.json:
        print(json.dumps(health.as_dict(), indent=2, sort_keys=True))
    else:
        print(render(health, time.time()))
    return EX_OK if health.healthy else EX_UNAVAILABLE


def render(h: Health, now: float) -> str:
    lines = [f"status:        {'healthy' if h.healthy else 'UNHEALTHY'}"]
    if h.token_present:
        expires = "not fetched yet" if h.token_expires_in_s is None else f"access token expires in {h.token_expires_in_s:.0f}s"
        age = f", authorized {_when(h.authorized_at, now)}" if h.authorized_at else ", authorized_at unknown"
        lines.append(f"token:         present, {expires}{age}")
    else:
        lines.append(f"token:         missing ({h.token_error})")
    lines.append(f"redis:         {_redis(h)}")
    lines.append(f"last poll:     {_when(h.last_poll_at, now)}")
    lines.append(f"last write:    {_when(h.last_write_at, now)}")
    lines.append(f"rate limit:    {_cooldown(h)}")
    lines.extend(_budget(h.budget))
    lines.append(f"poller:        {_poller(h)}")
    lines.append(f"spool:         {h.spool_bytes} bytes waiting for Redis" if h.spool_bytes else "spool:         empty")
    lines.append(f"gaps:          {len(h.gaps)} recorded (plays lost from recently-played)" if h.gaps else "gaps:          none recorded")
    lines.extend(f"  gap:         {utc_iso(g['start'] / 1000)} to {utc_iso(g['end'] / 1000)}, about {g['estimated_plays']} plays lost"
                 for g in h.gaps)
    lines.extend(f"problem:       {p}" for p in h.problems)
    return "\n".join(lines)


def _redis(h: Health) -> str:
    if h.redis_error:
        return "REFUSED (REDIS_URL: see the problem below)"
    if not h.redis_reachable:
        return "UNREACHABLE"
    if h.foreign_keys:
        return f"reachable, FOREIGN KEY ({', '.join(h.foreign_keys)}: see the problem below)"
    if h.redis_refusing:
        return f"reachable, REFUSES WRITES ({h.redis_refusing}: see the problem below)"
    if h.redis_full and h.redis_memory:
        return f"reachable, FULL (used_memory {h.redis_memory['used_memory']} of maxmemory {h.redis_memory['maxmemory']})"
    return "reachable"


def _cooldown(h: Health) -> str:
    if not h.cooldown_remaining_s:
        return "none"
    return f"cooldown {h.cooldown_remaining_s:.0f}s left ({h.cooldown_reason or 'rate_limited'})"


def _budget(b: dict[str, Any] | None) -> list[str]:
    if b is None:
        return []
    window = f"{b['window_s'] / 3600:g} h" if b["window_s"] >= 3600 else f"{b['window_s']:g} s"
    learned = f", learned from Spotify (configured {b['configured_limit']})" if b["learned_limit"] is not None else ""
    free = f"; next call frees in {b['next_free_in_s']:.0f}s" if b["calls_left"] == 0 else ""
    lines = [f"budget:        {b['used']} of {b['limit']} calls in the last {window}{learned}, "
             f"{b['calls_left']} left{free}" + (" (counted in the state dir: Redis is down)" if b["source"] != "redis" else ""),
             f"pace:          {b['last_hour']} calls in the last hour, about {b['projected_per_day']} a day at that pace"]
    lines.extend(f"  calls 24h:   {n:>5}  {name}" for name, n in b["by_endpoint"].items())
    lines.append(f"  calls 24h:   {b['token_refreshes']:>5}  token refreshes (not in the quota)")
    return lines


def _poller(h: Health) -> str:
    lock = f"{h.poller_lock} holds the state dir's lock" if h.poller_lock else "none holds the state dir's lock"
    if h.poller_lease is None:
        return f"{lock}; no Redis lease" if h.redis_reachable else lock
    return f"{lock}; Redis lease: {h.poller_lease} ({h.poller_lease_ttl_s:.0f}s left)"


def _when(ts: float | None, now: float) -> str:
    if ts is None:
        return "never"
    return f"{utc_iso(ts)} ({_ago(now - ts)})"


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"
