"""Reconciliation rules (pure) and the Reconciler's cursor, paging, gaps and hook, on fakeredis."""

from __future__ import annotations

from typing import Any

import pytest

from spotify_logger import keys
from spotify_logger.backfill import FEED_SIZE, ReconcileHook, Reconciler, recent_gaps
from spotify_logger.errors import ApiError, Forbidden, InvalidGrant, RateLimited, StoreUnavailable
from spotify_logger.extract import extract
from spotify_logger.loop import PollEvent
from spotify_logger.timeutil import iso_to_ms
from spotify_logger.reconcile import MATCH_SLACK_MS, RecentItem, StoredPlay, new_play, parse_item, reconcile
from spotify_logger.simulator import track
from spotify_logger.simulator.items import Item
from spotify_logger.simulator.objects import context_object, device_object, track_object
from spotify_logger.store import Store
from spotify_logger.tracker import PlayTracker

from conftest import assert_counter_invariant, play_hashes, recorded, redis_dump
from helpers import CONTEXT, FakeFeed, raw_item, write_polled_play

T0 = 1_700_000_000_000
D = 200_000  # a realistic track length: longer than the 2-minute slack, so neighbours differ
SONG = track("Song", D, ("Singer", "Band"), "Record")
OTHER = track("Other", 150_000)


def recent(item: Item, played_at: int) -> RecentItem:
    parsed = parse_item(raw_item(item, played_at))
    assert parsed is not None
    return parsed


def stored(started_at: int, *, uri: str = SONG.uri, end: int | None = None, counted: bool = True,
           confirmed_at: int | None = None, duration: int = D) -> StoredPlay:
    return StoredPlay(started_at=started_at, uri=uri, end=started_at + duration if end is None else end,
                      duration_ms=duration, counted=counted, confirmed_at=confirmed_at)


# --- parsing -------------------------------------------------------------------------------

def test_a_recorded_real_feed_parses_item_by_item() -> None:
    body = recorded("recently_played_tracks.json")
    items = [parse_item(raw) for raw in body["items"]]
    assert all(items) and len(items) == len(body["items"])
    first = items[0]
    assert first is not None
    assert first.played_at == int(body["cursors"]["after"])  # 2026-02-25T20:15:20.497Z
    raw = body["items"][0]
    assert first.uri == raw["track"]["uri"] and first.duration_ms == raw["track"]["duration_ms"]
    assert first.fields["name"] == raw["track"]["name"]
    assert first.fields["album"] == raw["track"]["album"]["name"]
    assert first.fields["artists"] == [a["name"] for a in raw["track"]["artists"]]
    assert first.fields["context_uri"] == raw["context"]["uri"] and first.fields["type"] == "track"
    assert min(i.played_at for i in items if i) == int(body["cursors"]["before"])


@pytest.mark.parametrize("raw, expected", [
    ("2026-02-25T20:15:20.497Z", 1772050520497),
    ("2016-12-13T20:44:04Z", 1481661844000),
    ("2016-12-13T21:44:04.5+01:00", 1481661844500),
    ("yesterday", None), ("", None), (None, None), (1481661844000, None),
])
def test_played_at_parsing(raw: Any, expected: int | None) -> None:
    assert iso_to_ms(raw) == expected


def test_an_item_without_uri_or_played_at_is_skipped() -> None:
    good = raw_item(SONG, T0)
    assert parse_item({**good, "played_at": None}) is None
    assert parse_item({**good, "track": {**good["track"], "uri": None}}) is None
    assert parse_item("junk") is None


def test_a_new_play_has_the_fields_a_polled_play_has_wherever_the_item_carries_them() -> None:
    body = {"item": track_object(SONG), "context": context_object(CONTEXT), "device": device_object("Desk"),
            "progress_ms": 1_000, "is_playing": True, "shuffle_state": False, "repeat_state": "off"}
    polled = dict(PlayTracker(min_play_ms=30_000, end_grace_ms=1).observe(extract(body), T0).writes[0].fields)
    added = dict(new_play(T0, recent(SONG, T0 + D)).fields)
    only_a_poll_knows = {"last_seen_at", "ms_played", "progress_ms", "device_name", "device_type",
                         "device_volume", "shuffle_state", "repeat_state"}
    assert set(polled) - set(added) == only_a_poll_knows
    for name in set(polled) - only_a_poll_knows - {"started_at", "playing", "counted", "source"}:
        assert added[name] == polled[name], name
    assert added["source"] == "recently_played" and added["counted"] == "1" and added["playing"] == "0"
    assert added["ended_at"] == added["confirmed_at"] == T0 + D and set(added) <= set(keys.PLAY_FIELDS)


# --- matching rules ------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [0, D // 2, D, D + 60_000], ids=["start", "middle", "end", "minute-late"])
def test_an_item_confirms_the_play_the_poller_saw_wherever_played_at_falls(offset: int) -> None:
    out = reconcile([recent(SONG, T0 + offset)], [stored(T0)])
    assert [s for s, _ in out.confirm] == [T0] and out.create == []


def test_the_match_window_is_two_minutes_around_the_play() -> None:
    play = stored(T0)
    low, high = T0 - MATCH_SLACK_MS, T0 + D + D + MATCH_SLACK_MS
    assert play.window() == (low, high)
    for inside in (low, high):
        assert reconcile([recent(SONG, inside)], [play]).confirm
    for outside in (low - 1, high + 1):
        out = reconcile([recent(SONG, outside)], [play])
        assert out.confirm == [] and [s for s, _ in out.create] == [outside - D]


def test_another_uri_never_matches() -> None:
    out = reconcile([recent(OTHER, T0 + D)], [stored(T0)])
    assert out.confirm == [] and len(out.create) == 1


@pytest.mark.parametrize("offset", [0, D // 2, D, D + 60_000], ids=["start", "middle", "end", "minute-late"])
def test_back_to_back_plays_of_one_track_stay_separate(offset: int) -> None:
    plays = [stored(T0 + k * D) for k in range(3)]
    items = [recent(SONG, T0 + k * D + offset) for k in range(3)]
    out = reconcile(items, plays)
    # In order, one item per play. Pairing the nearest pairs first would give the item of play 1
    # (at its start, which is play 0's end) to play 0 and leave play 0's item with nothing in reach.
    assert [(s, i.played_at) for s, i in out.confirm] == [(p.started_at, i.played_at) for p, i in zip(plays, items)]
    assert out.create == []


def test_each_stored_play_is_confirmed_by_at_most_one_item() -> None:
    items = [recent(SONG, T0 + D), recent(SONG, T0 + 2 * D)]
    out = reconcile(items, [stored(T0)])
    assert [(s, i.played_at) for s, i in out.confirm] == [(T0, T0 + D)]   # the nearest end wins
    assert [(s, i.played_at) for s, i in out.create] == [(T0 + D, T0 + 2 * D)]


def test_a_counted_play_is_preferred_to_a_skip_of_the_same_track() -> None:
    skip = stored(T0, end=T0 + 5_000, counted=False)
    full = stored(T0 + 5_000)
    out = reconcile([recent(SONG, T0 + 5_000)], [skip, full])   # played_at as near the skip's end
    assert [s for s, _ in out.confirm] == [T0 + 5_000]


def test_an_open_play_matches_through_last_seen_at() -> None:
    open_play = StoredPlay.from_hash(T0, {"uri": SONG.uri, "last_seen_at": str(T0 + 60_000),
                                          "duration_ms": str(D), "counted": "1"})
    assert open_play is not None and open_play.end == T0 + 60_000
    assert reconcile([recent(SONG, T0 + D)], [open_play]).confirm


def test_a_confirmed_play_stays_with_its_item() -> None:
    first = recent(SONG, T0 + D)
    later = recent(SONG, T0 + D + 30_000)   # in the window too, but the play is taken
    out = reconcile([first, later], [stored(T0, confirmed_at=first.played_at)])
    assert out.already == 1 and out.confirm == []
    assert [i.played_at for _, i in out.create] == [later.played_at]


def test_a_new_play_never_takes_an_existing_key() -> None:
    item = recent(OTHER, T0 + OTHER.duration_ms)
    out = reconcile([item], [stored(T0)])     # SONG already holds listening:T0
    assert [s for s, _ in out.create] == [T0 + 1]


def test_duplicate_items_count_once() -> None:
    out = reconcile([recent(SONG, T0), recent(SONG, T0)], [])
    assert len(out.create) == 1


# --- the Reconciler on fakeredis -----------------------------------------------------------

def test_a_pass_confirms_adds_and_a_second_pass_changes_nothing(fake_redis: Any) -> None:
    store = Store(fake_redis)
    write_polled_play(store, SONG, T0)                               # seen by the poller
    write_polled_play(store, SONG, T0 + D, 5_000)                    # a skip it saw: counted 0
    write_polled_play(store, OTHER, T0 + D + 5_000, open_=True)      # open, still playing
    feed = FakeFeed([(SONG, T0 + D + 20_000), (SONG, T0 - 400_000), (OTHER, T0 + D + 60_000)])
    result = Reconciler(feed, store).run_once()  # type: ignore[arg-type]
    plays = play_hashes(fake_redis)
    assert [a["started_at"] for a in result.added] == [T0 - 400_000 - D]
    assert plays[T0 - 400_000 - D]["source"] == "recently_played" and plays[T0 - 400_000 - D]["counted"] == "1"
    assert plays[T0]["confirmed_at"] == str(T0 + D + 20_000)
    assert plays[T0 + D + 5_000]["confirmed_at"] == str(T0 + D + 60_000)
    assert plays[T0 + D]["counted"] == "0" and "confirmed_at" not in plays[T0 + D]
    assert fake_redis.get(keys.CURRENT) == keys.play_key(T0 + D + 5_000)  # untouched
    assert fake_redis.get(keys.RECENT_CURSOR) == str(T0 + D + 60_000)
    assert result.gap is None and recent_gaps(fake_redis) == []
    assert_counter_invariant(fake_redis)
    before = redis_dump(fake_redis)
    again = Reconciler(feed, store).run_once()  # type: ignore[arg-type]
    assert redis_dump(fake_redis) == before
    assert again.added == [] and again.confirmed == 0 and again.already == 3


def test_a_confirmation_leaves_counted_as_the_poller_measured_it(fake_redis: Any) -> None:
    store = Store(fake_redis)
    write_polled_play(store, SONG, T0, 20_000)   # the poller heard 20 s; Spotify lists it anyway
    Reconciler(FakeFeed([(SONG, T0 + 20_000)]), store).run_once()  # type: ignore[arg-type]
    assert fake_redis.hget(keys.play_key(T0), "counted") == "0"
    assert fake_redis.hget(keys.play_key(T0), "confirmed_at") == str(T0 + 20_000)
    assert len(play_hashes(fake_redis)) == 1
    assert_counter_invariant(fake_redis)


def test_items_behind_the_reread_window_are_left_alone_and_late_ones_are_caught(fake_redis: Any) -> None:
    store = Store(fake_redis)
    cursor = T0 + 10 * D
    fake_redis.set(keys.RECENT_CURSOR, cursor)
    window = 3_600_000
    late = (SONG, cursor - window + 1)        # an offline play, reported after the cursor moved on
    too_old = (OTHER, cursor - window)
    result = Reconciler(FakeFeed([late, too_old]), store, reread_window_ms=window).run_once()  # type: ignore[arg-type]
    assert result.read == 1 and [a["uri"] for a in result.added] == [SONG.uri]
    assert fake_redis.get(keys.RECENT_CURSOR) == str(cursor)   # never moves back
    assert_counter_invariant(fake_redis)


def test_the_walk_follows_before_cursors_until_it_reaches_the_window(fake_redis: Any) -> None:
    store = Store(fake_redis)
    entries = [(track(f"T{k}", 150_000), T0 + k * 150_000) for k in range(25)]
    feed = FakeFeed(entries, page_size=10)
    Reconciler(feed, store).run_once()  # type: ignore[arg-type]
    assert feed.calls == [None, T0 + 15 * 150_000, T0 + 5 * 150_000]
    assert len(play_hashes(fake_redis)) == 25
    # The cursor is now the newest item: the next pass stops at the first page reaching the window.
    feed.calls.clear()
    Reconciler(feed, store, reread_window_ms=3 * 150_000).run_once()  # type: ignore[arg-type]
    assert feed.calls == [None]
    assert_counter_invariant(fake_redis)


def test_a_full_feed_that_cannot_reach_the_cursor_records_a_gap(fake_redis: Any) -> None:
    store = Store(fake_redis)
    cursor = T0
    fake_redis.set(keys.RECENT_CURSOR, cursor)
    step = 180_000
    entries = [(track(f"T{k}", step), T0 + (k + 1) * step) for k in range(80)]  # back to back after the cursor
    result = Reconciler(FakeFeed(entries), store).run_once()  # type: ignore[arg-type]
    assert len(result.added) == FEED_SIZE
    gap = result.gap
    assert gap is not None and gap.start == cursor and gap.end == T0 + 30 * step   # start of the oldest listed
    assert gap.estimated_plays == 30   # 30 plays of the same density fit before the oldest listed
    assert recent_gaps(fake_redis) == [{"start": gap.start, "end": gap.end, "estimated_plays": 30}]
    before = redis_dump(fake_redis)
    Reconciler(FakeFeed(entries), store).run_once()  # type: ignore[arg-type]
    assert redis_dump(fake_redis) == before
    assert_counter_invariant(fake_redis)


def test_without_a_cursor_the_last_stored_play_marks_the_gap(fake_redis: Any) -> None:
    store = Store(fake_redis)
    write_polled_play(store, SONG, T0 - D)
    entries = [(track(f"T{k}", 100_000), T0 + 3_600_000 + k * 100_000) for k in range(60)]
    gap = Reconciler(FakeFeed(entries), store).run_once().gap  # type: ignore[arg-type]
    assert gap is not None and gap.start == T0 and gap.end == T0 + 3_600_000 + 9 * 100_000
    assert_counter_invariant(fake_redis)


def test_a_stale_cursor_does_not_hide_what_the_poller_recorded(fake_redis: Any) -> None:
    store = Store(fake_redis)
    fake_redis.set(keys.RECENT_CURSOR, T0 - 86_400_000)     # passes failed for a day...
    write_polled_play(store, SONG, T0)                               # ...while the poller kept recording
    entries = [(track(f"T{k}", 100_000), T0 + D + 600_000 + k * 100_000) for k in range(60)]
    gap = Reconciler(FakeFeed(entries), store).run_once().gap  # type: ignore[arg-type]
    assert gap is not None and gap.start == T0 + D and gap.end == T0 + D + 600_000 + 9 * 100_000
    assert_counter_invariant(fake_redis)


@pytest.mark.parametrize("count, keep", [(49, 50), (60, 60)], ids=["feed-not-full", "feed-reaches-cursor"])
def test_no_gap_when_the_feed_holds_everything_since_the_cursor(fake_redis: Any, count: int, keep: int) -> None:
    store = Store(fake_redis)
    fake_redis.set(keys.RECENT_CURSOR, T0 + 10 * 100_000)
    entries = [(track(f"T{k}", 100_000), T0 + k * 100_000) for k in range(count)]
    result = Reconciler(FakeFeed(entries, keep=keep), store).run_once()  # type: ignore[arg-type]
    assert result.gap is None and fake_redis.zcard(keys.GAPS) == 0
    assert_counter_invariant(fake_redis)


def test_an_empty_feed_changes_nothing(fake_redis: Any) -> None:
    result = Reconciler(FakeFeed([]), Store(fake_redis)).run_once()  # type: ignore[arg-type]
    assert result.read == 0 and fake_redis.keys("*") == []


# --- the poller hook -----------------------------------------------------------------------

class FakeReconciler:
    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.runs = 0

    def run_once(self) -> None:
        self.runs += 1
        if self.errors:
            raise self.errors.pop(0)


def poll(now: float, previous: float | None, *, playing: bool = True, was_playing: bool = True,
         gap: bool = False) -> PollEvent:
    return PollEvent(now, previous, playing, was_playing, gap)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def hook_with(fake: "FakeReconciler", clock: "Clock", interval: float = 900) -> ReconcileHook:
    return ReconcileHook(fake, interval, min_play_s=30, clock=clock)  # type: ignore[arg-type]


def test_the_hook_runs_at_start_up_on_a_gap_and_every_interval_while_playing() -> None:
    clock, fake = Clock(), FakeReconciler()
    hook = hook_with(fake, clock)
    hook(poll(clock.now, None))
    assert fake.runs == 1                              # the first poll: start-up
    clock.now += 5
    hook(poll(clock.now, clock.now - 5))
    assert fake.runs == 1                              # a normal poll: nothing due
    clock.now += 31
    hook(poll(clock.now, clock.now - 31, gap=True))
    assert fake.runs == 2                              # polling failed for longer than a play
    clock.now += 899
    hook(poll(clock.now, clock.now - 5))
    assert fake.runs == 2
    clock.now += 1
    hook(poll(clock.now, clock.now - 5))
    assert fake.runs == 3                              # the interval


def test_a_short_gap_cannot_hide_a_play_and_costs_no_pass() -> None:
    clock, fake = Clock(), FakeReconciler()
    hook = hook_with(fake, clock)
    hook(poll(clock.now, None))
    clock.now += 20
    hook(poll(clock.now, clock.now - 20, gap=True))    # a burst 429 of a few seconds, say
    assert fake.runs == 1


def test_an_idle_day_costs_no_pass_after_the_start_up_one() -> None:
    clock, fake = Clock(), FakeReconciler()
    hook = hook_with(fake, clock)
    hook(poll(clock.now, None, playing=False, was_playing=False))
    for _ in range(144):                               # a day of idle polls, 10 minutes apart
        clock.now += 600
        hook(poll(clock.now, clock.now - 600, playing=False, was_playing=False))
    assert fake.runs == 1


def test_playback_seen_after_a_long_idle_stretch_runs_a_pass_at_once() -> None:
    clock, fake = Clock(), FakeReconciler()
    hook = hook_with(fake, clock)
    hook(poll(clock.now, None, playing=False, was_playing=False))
    clock.now += 10
    hook(poll(clock.now, clock.now - 10, playing=True, was_playing=False))
    assert fake.runs == 1                              # 10 s since a poll saw nothing: no play fits in
    clock.now += 600
    hook(poll(clock.now, clock.now - 600, playing=False, was_playing=True))
    clock.now += 600
    hook(poll(clock.now, clock.now - 600, playing=True, was_playing=False))
    assert fake.runs == 2                              # a whole play could hide in those 600 s


def test_after_playback_stops_one_more_pass_comes_then_none() -> None:
    clock, fake = Clock(), FakeReconciler()
    hook = hook_with(fake, clock)
    hook(poll(clock.now, None))
    clock.now += 300
    hook(poll(clock.now, clock.now - 300, playing=False))     # the last play ended
    for _ in range(20):
        clock.now += 600
        hook(poll(clock.now, clock.now - 600, playing=False, was_playing=False))
    assert fake.runs == 2                              # the interval after the last play, once


def test_a_cooldown_that_could_hide_plays_is_followed_by_a_pass_before_polling() -> None:
    clock, fake = Clock(), FakeReconciler()
    hook = hook_with(fake, clock)
    hook(poll(clock.now, None))
    clock.now += 5
    hook.before_resume(clock.now)                      # a burst limit of 5 s: nothing could hide
    assert fake.runs == 1
    clock.now += 13 * 3600
    hook.before_resume(clock.now)                      # QUOTA_EXCEEDED for 13 hours
    assert fake.runs == 2
    clock.now += 1
    hook(poll(clock.now, clock.now - 13 * 3600 - 6, gap=True))
    assert fake.runs == 2                              # the gap is read already


def test_while_deferred_a_pass_runs_once_per_feed_of_shortest_plays() -> None:
    clock, fake = Clock(), FakeReconciler()
    hook = hook_with(fake, clock)
    hook(poll(clock.now, None))
    for _ in range(6 * 60):                            # six hours deferred, a look every minute
        clock.now += 60
        hook.while_deferred(clock.now)
    # 50 plays of 30 s take 25 minutes: one pass every 25 minutes keeps up with the feed.
    assert fake.runs == 1 + (6 * 60) // 25


@pytest.mark.parametrize("error", [ApiError("boom", status=500), RateLimited("429", until=0.0),
                                   StoreUnavailable("down"), Forbidden("no scope", status=403), ValueError("a bug")])
def test_the_hook_never_crashes_the_poller_and_retries_soon(error: BaseException) -> None:
    now = [1000.0]
    fake = FakeReconciler(error)
    hook = ReconcileHook(fake, 900, clock=lambda: now[0])  # type: ignore[arg-type]
    hook(poll(now[0], None))
    now[0] += 59
    hook(poll(now[0], now[0] - 5))
    assert fake.runs == 1
    now[0] += 901 if isinstance(error, (ValueError, Forbidden)) else 1   # these wait for the interval
    hook(poll(now[0], now[0] - 5, playing=False))     # owed: it runs even with nothing playing
    assert fake.runs == 2


def test_a_lost_authorization_reaches_the_poller() -> None:
    hook = ReconcileHook(FakeReconciler(InvalidGrant("revoked")), 900)  # type: ignore[arg-type]
    with pytest.raises(InvalidGrant):
        hook(poll(1000.0, None))
