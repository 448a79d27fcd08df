"""One poller per Redis keyspace: a lease in Redis, for two machines (or two state dirs) sharing
one Redis, which the state dir's flock cannot see.

The lease is a STRING (keys.LEASE) naming its holder, with a TTL. The poller takes or renews it
before every write (LeasedStore), with one script that sets it only when it is free or already
ours, so a poller never renews someone else's lease. "Ours" is the state dir's instance id: a
poller that run.py restarted, or that a crash killed, takes its own lease back at once.

While Redis is down the renewal fails like the write, so the batch is spooled and the poller
carries on. When Redis answers again and another poller took the lease meanwhile, this one stops
with InstanceLocked (exit 75, final) before it writes anything, its spool included.

The TTL is a few of the longest gaps between two writes (the longest poll interval plus one
slow request): a live poller's lease does not lapse between polls, and one that died is taken
over elsewhere a few minutes later. A lapse (a long rate-limit cooldown) is harmless: the next
write takes the lease again if it is free, and stops the poller if it is not.
"""

from __future__ import annotations

import json
from dataclasses import fields

import redis

from . import keys
from .batch import Batch
from .config import Settings
from .errors import InstanceLocked, SpotifyLoggerError, StoreUnavailable
from .instancelock import holder_phrase
from .store import Applied, Store, translate_redis_errors

LEASE_GAPS = 3
MIN_TTL_S = 5.0  # well above one renewal's worst round trip (2 s socket timeout, one retry)

# Set the lease when it is free or ours (same instance id); otherwise return who holds it.
_HOLD = """
local held = redis.call('GET', KEYS[1])
if held then
  local ok, owner = pcall(cjson.decode, held)
  if not (ok and type(owner) == 'table' and owner.id == ARGV[2]) then return held end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return false
"""

# Delete the lease only if it is still ours.
_RELEASE = """
local held = redis.call('GET', KEYS[1])
if not held then return 0 end
local ok, owner = pcall(cjson.decode, held)
if ok and type(owner) == 'table' and owner.id == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lease_ttl_s(settings: Settings) -> float:
    """Every `*_interval` setting bounds a gap between polls (POLL_INTERVAL, MAX_POLL_INTERVAL and
    any idle cap): the TTL follows the longest, so slower polling lengthens it by itself."""
    longest = max(float(getattr(settings, f.name)) for f in fields(settings) if f.name.endswith("_interval"))
    return max(MIN_TTL_S, LEASE_GAPS * (longest + settings.connect_timeout + settings.read_timeout))


class Lease:
    def __init__(self, client: "redis.Redis[str]", *, instance_id: str, pid: int, host: str, state_dir: str,
                 ttl_s: float) -> None:
        self.instance_id = instance_id
        self.value = json.dumps({"id": instance_id, "pid": pid, "host": host, "state_dir": state_dir})
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self._hold = client.register_script(_HOLD)
        self._release = client.register_script(_RELEASE)
        self.refused: str | None = None  # the refusal, once another poller was found holding it
        self.released = False

    def hold(self) -> None:
        """Take or renew the lease. StoreUnavailable when Redis cannot answer (the caller spools);
        InstanceLocked, naming the holder, when another poller has it."""
        if self.refused:
            raise InstanceLocked(self.refused)
        if self.released:
            # A write after the stop (an abandoned thread waking up): spooled, for the next start.
            raise StoreUnavailable("the lease was released: the poller is stopping")
        with translate_redis_errors():
            held = self._hold(keys=[keys.LEASE], args=[self.value, self.instance_id, self.ttl_ms])
        if held is not None:
            self.refused = f"another poller ({describe(held)}) is recording into this Redis"
            raise InstanceLocked(self.refused)

    def release(self) -> bool:
        """Give the lease up if it is still ours, so that another poller may start at once. False
        when Redis could not be told: the TTL ends it then."""
        self.released = True
        try:
            with translate_redis_errors():
                self._release(keys=[keys.LEASE], args=[self.instance_id])
        except SpotifyLoggerError:
            return False
        return True


class LeasedStore(Store):
    """A Store that writes only under the lease: each write renews it first."""

    def __init__(self, client: "redis.Redis[str]", lease: Lease) -> None:
        super().__init__(client)
        self.lease = lease

    def apply_batch(self, batch: Batch) -> Applied:
        # Store.apply goes through here too: every write path renews the lease first.
        self.lease.hold()
        return super().apply_batch(batch)


def describe(held: str) -> str:
    """'pid 1234 on pi4, state dir /var/lib/spotify-logger' from a lease's value."""
    try:
        owner = json.loads(held)
        return f"{holder_phrase(owner['pid'], owner['host'])}, state dir {owner['state_dir']}"
    except (ValueError, KeyError, TypeError):
        return f"{keys.LEASE} holds {held[:80]!r}"


def read_lease(client: "redis.Redis[str]") -> tuple[str, float] | None:
    """The lease's holder as `describe` words it, and the seconds left on it; None when free."""
    with translate_redis_errors(client):
        with client.pipeline(transaction=False) as pipe:
            pipe.get(keys.LEASE)
            pipe.pttl(keys.LEASE)
            held, ttl_ms = pipe.execute()
    if not held:
        return None
    return describe(held), max(0.0, int(ttl_ms) / 1000)
