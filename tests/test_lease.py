"""The Redis lease in-process: compare-and-renew against a real redis-server, a TTL that follows
the settings, and a renewal during an outage that spools instead of stopping the poller. (The
real pollers are in test_instance_lock.py.)"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from spotify_logger import keys
from spotify_logger.batch import Batch, PlayWrite
from spotify_logger.config import Settings
from spotify_logger.errors import InstanceLocked, StoreUnavailable
from spotify_logger.lease import LEASE_GAPS, MIN_TTL_S, Lease, LeasedStore, lease_ttl_s
from spotify_logger.spool import Spool
from spotify_logger.store import connect
from spotify_logger.writer import Writer

URI = "spotify:track:" + "a" * 22
FOREIGN = json.dumps({"id": "f" * 32, "pid": 4242, "host": "elsewhere", "state_dir": "/srv/other"})


def make_lease(client: Any, instance_id: str = "a" * 32, pid: int = 100, ttl_s: float = 30.0) -> Lease:
    return Lease(client, instance_id=instance_id, pid=pid, host="pi4", state_dir="/var/lib/spotify-logger",
                 ttl_s=ttl_s)


def a_batch() -> Batch:
    start = 1_700_000_000_000
    return Batch(polled_at=start + 5_000, writes=(PlayWrite(start, {"started_at": start, "last_seen_at": start + 5_000,
                                                                     "uri": URI}, URI, ("A",)),), current=start)


def test_the_ttl_is_a_few_of_the_longest_gaps_between_writes_with_a_floor() -> None:
    defaults = Settings()
    # The idle cap (600 s) is the longest gap by default.
    assert lease_ttl_s(defaults) == LEASE_GAPS * (600.0 + defaults.connect_timeout + defaults.read_timeout)
    slower = dataclasses.replace(defaults, max_poll_interval=900.0)
    assert lease_ttl_s(slower) == LEASE_GAPS * (900.0 + defaults.connect_timeout + defaults.read_timeout)
    fast = dataclasses.replace(defaults, poll_interval=0.1, max_poll_interval=0.1, idle_max_interval=0.1,
                               connect_timeout=0.1, read_timeout=0.1)
    assert lease_ttl_s(fast) == MIN_TTL_S


def test_any_other_interval_setting_lengthens_the_ttl_too() -> None:
    # A setting such as an idle cap on polling (SPOTIFY_LOGGER_IDLE_MAX_INTERVAL) is a gap too.
    @dataclasses.dataclass(frozen=True)
    class WithIdleCap(Settings):
        idle_max_interval: float = 600.0

    s = WithIdleCap()
    assert lease_ttl_s(s) == LEASE_GAPS * (600.0 + s.connect_timeout + s.read_timeout)


def test_hold_takes_renews_and_never_touches_someone_elses_lease(real_redis) -> None:
    mine = make_lease(real_redis, ttl_s=30.0)
    mine.hold()
    assert json.loads(real_redis.get(keys.LEASE)) == {"id": "a" * 32, "pid": 100, "host": "pi4",
                                                      "state_dir": "/var/lib/spotify-logger"}
    real_redis.pexpire(keys.LEASE, 1_000)
    mine.hold()
    assert real_redis.pttl(keys.LEASE) > 29_000  # renewed

    # The same state dir after a restart (another pid, the same instance id) takes it back.
    make_lease(real_redis, pid=200).hold()
    assert json.loads(real_redis.get(keys.LEASE))["pid"] == 200

    real_redis.set(keys.LEASE, FOREIGN, px=60_000)
    with pytest.raises(InstanceLocked) as refused:
        mine.hold()
    assert str(refused.value) == ("another poller (pid 4242 on elsewhere, state dir /srv/other) is recording "
                                  "into this Redis")
    assert real_redis.get(keys.LEASE) == FOREIGN and real_redis.pttl(keys.LEASE) <= 60_000
    assert mine.release() and real_redis.get(keys.LEASE) == FOREIGN  # not ours: left alone
    with pytest.raises(InstanceLocked):
        mine.hold()  # once refused, always: the holder may lapse, this poller is stopping


def test_a_foreign_value_under_the_key_is_someone_elses_lease(real_redis) -> None:
    real_redis.set(keys.LEASE, "not json")
    with pytest.raises(InstanceLocked, match="spotify-logger:poller holds 'not json'"):
        make_lease(real_redis).hold()


def test_release_gives_up_only_our_own_lease(real_redis) -> None:
    mine = make_lease(real_redis)
    mine.hold()
    assert mine.release()
    assert not real_redis.exists(keys.LEASE)
    with pytest.raises(StoreUnavailable):
        mine.hold()  # a write after the stop goes to the spool


def test_a_leased_write_renews_first_and_refuses_under_another_lease(real_redis) -> None:
    store = LeasedStore(real_redis, make_lease(real_redis))
    assert store.apply(a_batch()) == 1
    assert real_redis.exists(keys.LEASE)
    real_redis.set(keys.LEASE, FOREIGN)
    real_redis.delete(keys.INDEX)
    with pytest.raises(InstanceLocked):
        store.apply(a_batch())
    assert not real_redis.exists(keys.INDEX)  # nothing written


def test_the_writer_renews_the_lease_on_every_write_path(real_redis, tmp_path: Path) -> None:
    # The Writer calls apply_batch, not apply: a renewal hooked on one path only would let a
    # poller write for good under a lease that lapsed or was taken.
    writer = Writer(LeasedStore(real_redis, make_lease(real_redis)), Spool.in_state_dir(tmp_path))
    assert writer.write(a_batch()) is True
    assert real_redis.exists(keys.LEASE)
    real_redis.set(keys.LEASE, FOREIGN)
    with pytest.raises(InstanceLocked):
        writer.write(a_batch())


def test_a_renewal_while_redis_is_down_spools_and_the_poller_carries_on(tmp_path: Path) -> None:
    down = connect("redis://127.0.0.1:1/0")
    writer = Writer(LeasedStore(down, make_lease(down)), Spool.in_state_dir(tmp_path))
    assert writer.write(a_batch()) is False
    assert writer.spool.pending()
