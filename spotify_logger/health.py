"""Health: what `status` reports, gathered without raising, so it works when things are broken."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .backfill import recent_gaps
from .config import Settings
from .cooldown import Cooldown
from .errors import SpotifyLoggerError
from .keys import int_field
from .spool import Spool
from .store import Store, connect
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
    last_poll_at: float | None = None
    last_write_at: float | None = None
    poll_stale: bool = False
    cooldown_remaining_s: float = 0.0
    spool_bytes: int = 0
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
    store = store or Store(connect(settings.redis_url))
    # Reachable means every read below answered, not just the PING: one verdict, one problem.
    try:
        status = store.status()
        h.last_poll_at = _ms_to_s(status.get("last_poll_at"))
        h.last_write_at = _ms_to_s(status.get("last_write_at"))
        h.gaps = recent_gaps(store.redis)
        h.redis_reachable = True
    except SpotifyLoggerError:
        h.problems.append("Redis is unreachable")
    cooldown = Cooldown.in_state_dir(settings.state_dir, redis_client=store.redis if h.redis_reachable else None,
                                     clock=lambda: now)
    cooldown.load()
    h.cooldown_remaining_s = round(cooldown.remaining(), 1)
    h.spool_bytes = Spool.in_state_dir(settings.state_dir).size()
    longest = max(settings.max_poll_interval, settings.idle_max_interval)
    if h.last_poll_at is not None and now - h.last_poll_at > STALE_POLL_FACTOR * longest + h.cooldown_remaining_s:
        h.poll_stale = True
        h.problems.append("no successful poll recently: is the poller running?")
    elif h.redis_reachable and h.last_poll_at is None:
        h.problems.append("no poll recorded yet")
    return h


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
