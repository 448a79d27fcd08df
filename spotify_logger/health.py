"""Health: what `status` reports, gathered without raising, so it works when things are broken.

The request budget is reported, never a problem by itself: a spent budget means the poller waits
for calls to leave the window, as designed (the stale-poll check allows for that wait). A
QUOTA_EXCEEDED cooldown is a problem: Spotify refuses every call for hours, and plays beyond
the last 50 of recently-played may be lost; a short rate-limit cooldown is not.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .backfill import recent_gaps
from .budget import RequestBudget
from .config import Settings
from .cooldown import QUOTA_EXCEEDED, Cooldown
from .errors import ConfigError, ForeignKey, SpotifyLoggerError
from . import keys
from .instancelock import lock_holder
from .keys import int_field
from .lease import read_lease
from .spool import Spool
from .store import Memory, Store, StoreError, connect
from .storeerrors import foreign_key_error, foreign_keys, translate_redis_errors, write_refusal
from .tokenstore import TokenStore

STALE_POLL_FACTOR = 3             # a poll older than 3 x the longest interval (idle or playing) means the poller is down


@dataclass
class Health:
    token_present: bool = False
    token_error: str | None = None
    token_expires_in_s: float | None = None
    authorized_at: float | None = None
    token_age_days: float | None = None
    token_old: bool = False
    redis_reachable: bool = False
    redis_error: str | None = None   # reachable, but unusable as REDIS_URL says (password, db, not Redis)
    redis_full: bool = False         # at maxmemory, with a policy that evicts nothing: writes are refused
    redis_refusing: str | None = None  # READONLY (a replica) or MISCONF (a failed save): writes are refused
    redis_memory: dict[str, Any] | None = None   # used_memory, maxmemory (bytes), maxmemory_policy
    foreign_keys: list[str] = field(default_factory=list)  # our key names holding another type
    last_poll_at: float | None = None
    last_write_at: float | None = None
    poll_stale: bool = False
    cooldown_remaining_s: float = 0.0
    cooldown_reason: str | None = None   # rate_limited (burst) or quota_exceeded, while one holds
    budget: dict[str, Any] | None = None  # budget.BudgetView.as_dict(); None without a client id
    spool_bytes: int = 0
    poller_lock: str | None = None   # who holds the state dir's lock ('pid 1234 on pi4'), if anyone
    poller_lease: str | None = None  # who holds the Redis lease, and its state dir
    poller_lease_ttl_s: float | None = None
    gaps: list[dict[str, int]] = field(default_factory=list)  # recorded by backfill, oldest first
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["healthy"] = self.healthy
        return out


def gather(settings: Settings, *, now: float | None = None, store: Store | None = None) -> Health:
    now = time.time() if now is None else now
    h = Health()
    _token(settings, now, h)
    try:
        store = store or Store(connect(settings.redis_url))
    except ConfigError as exc:
        h.redis_error = str(exc)
        h.problems.append(str(exc))
        return _local(settings, now, h, None)
    _redis(store, h, settings.client_id)
    return _local(settings, now, h, store)


def _redis(store: Store, h: Health, client_id: str | None) -> None:
    """Reachable means every read below answered, not just the PING: one verdict, one problem.
    A foreign key or a full store is Redis reachable, with that as the problem."""
    try:
        found = _foreign_keys(store, client_id)
        h.foreign_keys = [name for name, _, _ in found]
        if found:
            h.problems.append(str(foreign_key_error(found)))
        h.redis_reachable = True
        _refusal(store, h)
        memory = _memory(store)
        if memory is None:
            return _status(store, h)
        h.redis_memory = {"used_memory": memory.used_memory, "maxmemory": memory.maxmemory,
                          "maxmemory_policy": memory.policy}
        if memory.full:
            h.redis_full = True
            h.problems.append(f"Redis is full (used_memory {memory.used_memory} >= maxmemory {memory.maxmemory}, "
                              f"policy {memory.policy}): it refuses writes and plays wait in the spool; raise "
                              "maxmemory or free memory")
        _status(store, h)
    except ForeignKey as exc:  # a play key, say, found by the reads themselves
        h.problems.append(str(exc))
    except ConfigError as exc:
        h.redis_reachable = False
        h.redis_error = str(exc)
        h.problems.append(str(exc))
    except SpotifyLoggerError:
        h.redis_reachable = False
        h.problems.append("Redis is unreachable")


def _status(store: Store, h: Health) -> None:
    # What a foreign key holds is not ours to read: it is named as a problem instead.
    status = {} if keys.STATUS in h.foreign_keys else store.status()
    h.last_poll_at = _ms_to_s(status.get("last_poll_at"))
    h.last_write_at = _ms_to_s(status.get("last_write_at"))
    h.gaps = [] if keys.GAPS in h.foreign_keys else recent_gaps(store.redis)
    lease = None if keys.LEASE in h.foreign_keys else read_lease(store.redis)
    if lease is not None:
        h.poller_lease, h.poller_lease_ttl_s = lease[0], round(lease[1], 1)


def _refusal(store: Store, h: Health) -> None:
    try:
        h.redis_refusing = write_refusal(store.redis)
    except StoreError:
        return
    if h.redis_refusing:
        why = ("it is a read-only replica (REPLICAOF)" if h.redis_refusing == "READONLY" else
               "its last save to disk failed and stop-writes-on-bgsave-error is on (see Redis's log)")
        h.problems.append(f"Redis refuses writes ({h.redis_refusing}): {why}; plays wait in the spool")


def _memory(store: Store) -> Memory | None:
    try:
        return store.memory()
    except StoreError:  # INFO renamed or denied: no verdict on memory, the rest still holds
        return None


def _foreign_keys(store: Store, client_id: str | None) -> list[tuple[str, str, str]]:
    with translate_redis_errors(store.redis):
        return foreign_keys(store.redis, client_id=client_id)


def _local(settings: Settings, now: float, h: Health, store: Store | None) -> Health:
    # What a foreign key holds is not ours to read (the app's cooldown key is one of the budget's).
    usable = store is not None and h.redis_reachable and not h.foreign_keys
    cooldown = Cooldown.in_state_dir(settings.state_dir, redis_client=store.redis if usable else None,
                                     clock=lambda: now, client_id=settings.client_id)
    cooldown.load()
    h.cooldown_remaining_s = round(cooldown.remaining(), 1)
    h.cooldown_reason = cooldown.reason if h.cooldown_remaining_s else None
    budget_wait_s = _budget(settings, store, now, h)
    if h.cooldown_reason == QUOTA_EXCEEDED:
        h.problems.append(f"Spotify's request quota is spent (QUOTA_EXCEEDED): no calls for "
                          f"{h.cooldown_remaining_s:.0f}s; lower SPOTIFY_LOGGER_REQUEST_BUDGET")
    h.spool_bytes = Spool.in_state_dir(settings.state_dir).size()
    h.poller_lock = lock_holder(settings.state_dir)
    longest = max(settings.max_poll_interval, settings.idle_max_interval)
    allowed_s = STALE_POLL_FACTOR * longest + max(h.cooldown_remaining_s, budget_wait_s)
    if h.last_poll_at is not None and now - h.last_poll_at > allowed_s:
        h.poll_stale = True
        h.problems.append("no successful poll recently: is the poller running?"
                          + ("" if h.poller_lock else " (no process holds the state dir's lock)"))
    elif h.redis_reachable and h.last_poll_at is None and not h.foreign_keys:
        h.problems.append("no poll recorded yet")
    return h


def _budget(settings: Settings, store: Store | None, now: float, h: Health) -> float:
    """Fill h.budget; returns how long a spent budget makes the poller wait (0 when not spent)."""
    if not settings.client_id:
        return 0.0
    try:
        usable = store is not None and h.redis_reachable and not h.foreign_keys
        view = RequestBudget(settings, store.redis if usable else None, settings.state_dir,
                             clock=lambda: now).view()
    except SpotifyLoggerError:
        return 0.0
    h.budget = view.as_dict()
    return view.next_free_in_s if view.calls_left == 0 else 0.0


def _token(settings: Settings, now: float, h: Health) -> None:
    store = TokenStore(settings.token_file)
    try:
        tokens = store.load()
    except SpotifyLoggerError as exc:
        h.token_error = str(exc)
        h.problems.append(str(exc))
        return
    h.token_present = True
    h.token_expires_in_s = round(tokens.expires_at - now, 1) if tokens.access_token else None
    h.authorized_at = tokens.authorized_at
    age = tokens.age_s(now)
    if age is not None:
        h.token_age_days = round(age / 86400, 1)
        if tokens.is_old(now):
            h.token_old = True
            h.problems.append(
                "the refresh token is over 5 months old and expires 6 months after authorization: "
                "run `spotify-logger auth` soon"
            )


def _ms_to_s(raw: str | None) -> float | None:
    ms = int_field(raw)
    return None if ms is None else ms / 1000
