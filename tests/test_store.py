"""The store: atomic, idempotent batches, and the counter invariant on fakeredis and real Redis."""

from __future__ import annotations

import random
from typing import Any

import pytest

from spotify_logger import keys
from spotify_logger.batch import Batch, PlayWrite, merge_write
from spotify_logger.extract import Snapshot
from spotify_logger.errors import StoreUnavailable
from spotify_logger.redisproc import RedisServer
from spotify_logger.store import Store, connect
from spotify_logger.tracker import PlayTracker

from conftest import assert_counter_invariant, play_hashes

T0 = 1_700_000_000_000
URIS = [f"spotify:track:{c * 4}" for c in "ABCDE"]


def session_batches(seed: int, polls: int = 400) -> list[Batch]:
    """A random listening session through the real tracker: skips, repeats, pauses, idle."""
    rng = random.Random(seed)
    tracker = PlayTracker(min_play_ms=30_000, end_grace_ms=30_000)
    batches, now, uri, progress, playing = [], T0, rng.choice(URIS), 0, True
    for _ in range(polls):
        now += rng.choice([2_000, 5_000, 5_000, 10_000])
        roll = rng.random()
        if roll < 0.08:
            uri, progress = rng.choice(URIS), 0            # skip or change
        elif roll < 0.12:
            progress = 0                                   # repeat
        elif roll < 0.18:
            playing = not playing
        elif playing:
            progress += 5_000
        if roll > 0.97:
            batches.append(tracker.observe(Snapshot(), now))  # nothing playing
            continue
        snap = Snapshot(kind="track", uri=uri, name=uri, artists=("X", uri[-4:]), duration_ms=180_000,
                        progress_ms=min(progress, 180_000), is_playing=playing)
        batches.append(tracker.observe(snap, now))
    return batches


@pytest.fixture(params=["fakeredis", "redis-server"])
def client(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("fake_redis" if request.param == "fakeredis" else "real_redis")


def test_counter_invariant_holds_after_a_random_session(client: Any) -> None:
    store = Store(client)
    for batch in session_batches(seed=1):
        store.apply(batch)
    assert_counter_invariant(client)
    assert client.zcard(keys.TRACK_COUNTS) > 0


def test_replaying_every_batch_twice_changes_nothing(client: Any) -> None:
    store = Store(client)
    batches = session_batches(seed=2)
    for batch in batches:
        store.apply(batch)
    before = (play_hashes(client), client.zrange(keys.TRACK_COUNTS, 0, -1, withscores=True),
              client.zrange(keys.ARTIST_COUNTS, 0, -1, withscores=True), client.get(keys.CURRENT))
    for batch in batches:
        store.apply(batch)
    after = (play_hashes(client), client.zrange(keys.TRACK_COUNTS, 0, -1, withscores=True),
             client.zrange(keys.ARTIST_COUNTS, 0, -1, withscores=True), client.get(keys.CURRENT))
    assert after == before
    assert_counter_invariant(client)


def test_each_batch_applied_twice_in_a_row_counts_once(client: Any) -> None:
    store = Store(client)
    for batch in session_batches(seed=3):
        store.apply(batch)
        store.apply(batch)  # a retry after a lost reply
    assert_counter_invariant(client)


def test_a_stale_write_does_not_overwrite_a_newer_one(fake_redis: Any) -> None:
    store = Store(fake_redis)
    new = PlayWrite(T0, {"last_seen_at": T0 + 10_000, "ms_played": 10_000, "uri": URIS[0]}, URIS[0])
    old = PlayWrite(T0, {"last_seen_at": T0 + 5_000, "ms_played": 5_000}, URIS[0])
    store.apply(Batch(polled_at=T0 + 10_000, writes=(new,), current=T0))
    assert store.apply(Batch(polled_at=T0 + 5_000, writes=(old,), current=T0)) == 0
    assert fake_redis.hget(keys.play_key(T0), "ms_played") == "10000"


def test_create_only_writes_never_touch_an_existing_play(fake_redis: Any) -> None:
    store = Store(fake_redis)
    polled = PlayWrite(T0, {"last_seen_at": T0, "source": "poll", "uri": URIS[0], "counted": "1"}, URIS[0],
                       ("X",), counted=True)
    imported = PlayWrite(T0, {"source": "import", "uri": URIS[0], "counted": "1"}, URIS[0], ("X",),
                         counted=True, create_only=True)
    store.apply(Batch(polled_at=T0, writes=(polled,), current=None))
    store.apply(Batch(polled_at=T0, writes=(imported,), keep_current=True))
    assert fake_redis.hget(keys.play_key(T0), "source") == "poll"
    assert fake_redis.zscore(keys.TRACK_COUNTS, URIS[0]) == 1
    assert fake_redis.zscore(keys.ARTIST_COUNTS, "X") == 1


def test_current_pointer_and_status(fake_redis: Any) -> None:
    store = Store(fake_redis)
    w = PlayWrite(T0, {"last_seen_at": T0, "uri": URIS[0]}, URIS[0])
    store.apply(Batch(polled_at=T0, writes=(w,), current=T0))
    assert fake_redis.get(keys.CURRENT) == keys.play_key(T0)
    assert store.load_current() == (T0, {"last_seen_at": str(T0), "uri": URIS[0]})
    store.apply(Batch(polled_at=T0 + 1, current=None))
    assert fake_redis.get(keys.CURRENT) is None and store.load_current() is None
    store.apply(Batch(polled_at=T0 - 5))  # an old replay does not move the status back
    assert store.status() == {"last_poll_at": str(T0 + 1), "last_write_at": str(T0)}


def test_unicode_names_and_artists_round_trip(real_redis: Any) -> None:
    store = Store(real_redis)
    fields = {"last_seen_at": T0, "uri": URIS[0], "name": "Björk — Jóga 🎵", "artists": '["Björk"]', "counted": "1"}
    store.apply(Batch(polled_at=T0, writes=(PlayWrite(T0, fields, URIS[0], ("Björk",), counted=True),)))
    assert real_redis.hget(keys.play_key(T0), "name") == "Björk — Jóga 🎵"
    assert real_redis.zscore(keys.ARTIST_COUNTS, "Björk") == 1


def test_batch_json_round_trip() -> None:
    batch = session_batches(seed=4, polls=50)[-1]
    assert Batch.from_json(batch.to_json()) == batch


def test_listening_time_never_shrinks(fake_redis: Any) -> None:
    store = Store(fake_redis)
    store.apply(Batch(polled_at=T0, writes=(PlayWrite(T0, {"last_seen_at": T0, "ms_played": 100_000, "uri": URIS[0]},
                                                       URIS[0]),)))
    store.apply(Batch(polled_at=T0 + 1, writes=(PlayWrite(T0, {"last_seen_at": T0 + 1, "ms_played": 25_000}, URIS[0]),)))
    assert fake_redis.hget(keys.play_key(T0), "ms_played") == "100000"


def test_a_counted_write_without_the_field_still_counts_once(fake_redis: Any) -> None:
    """The tracker sends only changed fields; a bump must pin counted=1 itself, or every later
    write of the play would bump the counters again."""
    store = Store(fake_redis)
    for i in range(3):
        store.apply(Batch(polled_at=T0 + i, writes=(
            PlayWrite(T0, {"last_seen_at": T0 + i, "uri": URIS[0]}, URIS[0], ("X",), counted=True),)))
    assert fake_redis.hget(keys.play_key(T0), "counted") == "1"
    assert fake_redis.zscore(keys.TRACK_COUNTS, URIS[0]) == 1 and fake_redis.zscore(keys.ARTIST_COUNTS, "X") == 1


def test_a_clock_step_back_counts_once(client: Any) -> None:
    store = Store(client)
    tracker = PlayTracker(min_play_ms=30_000, end_grace_ms=300_000)

    def body(progress: int) -> Snapshot:
        return Snapshot(kind="track", uri=URIS[0], name="n", artists=("X",), duration_ms=300_000,
                        progress_ms=progress, is_playing=True)

    store.apply(tracker.observe(body(0), T0))
    store.apply(tracker.observe(body(10_000), T0 + 10_000))
    back = T0 + 10_000 - 60_000
    for i in range(1, 12):
        store.apply(tracker.observe(body(10_000 + 10_000 * i), back + 10_000 * i))
    assert client.hget(keys.play_key(T0), "counted") == "1"
    assert_counter_invariant(client)
    assert client.zscore(keys.TRACK_COUNTS, URIS[0]) == 1


def test_merge_write_agrees_with_the_store_script(fake_redis: Any) -> None:
    """batch.merge_write (restores without Redis) and the Lua script must build the same plays."""
    store = Store(fake_redis)
    rebuilt: dict[int, dict[str, str]] = {}
    batches = session_batches(seed=5)
    for batch in batches + batches[::7]:   # with stale replays of earlier batches mixed in
        store.apply(batch)
        for write in batch.writes:
            merge_write(rebuilt.setdefault(write.started_at, {}), write)
    assert {k: v for k, v in play_hashes(fake_redis).items()} == rebuilt


def test_one_connection_that_survives_a_redis_restart(redis_server: RedisServer) -> None:
    store = Store(connect(redis_server.url))
    store.apply(Batch(polled_at=1000, writes=(PlayWrite(1000, {"uri": "spotify:track:a", "last_seen_at": 1000}, "a"),)))
    redis_server.stop()
    redis_server.start()  # the client's connection is dead now: the next command retries on a new one
    landed = store.apply(Batch(polled_at=2000, writes=(PlayWrite(1000, {"last_seen_at": 2000}, "a"),)))
    assert landed == 1 and store.redis.hget(keys.play_key(1000), "last_seen_at") == "2000"
    assert store.redis.connection is not None  # a single connection, not a pool's


def test_a_client_made_while_redis_is_down_works_once_it_is_up(redis_server: RedisServer) -> None:
    redis_server.stop()
    store = Store(connect(redis_server.url))  # no error here: the poller starts and spools
    with pytest.raises(StoreUnavailable):
        store.apply(Batch(polled_at=1000))
    redis_server.start()
    assert store.apply(Batch(polled_at=1000, writes=(PlayWrite(1000, {"uri": "spotify:track:a"}, "a"),))) == 1
