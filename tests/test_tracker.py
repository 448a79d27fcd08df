"""The play rules, on the pure tracker: explicit snapshots and explicit times, no I/O."""

from __future__ import annotations

import dataclasses

from spotify_logger.batch import Batch
from spotify_logger.extract import Snapshot
from spotify_logger.tracker import OpenPlay, PlayTracker

T0 = 1_700_000_000_000
A, B = "spotify:track:AAAA", "spotify:track:BBBB"


def snap(uri: str = A, progress: int = 0, playing: bool = True, duration: int = 200_000, **kw: object) -> Snapshot:
    return Snapshot(kind=kw.pop("kind", "track"), uri=uri, name=uri[-4:], artists=("Artist",),  # type: ignore[arg-type]
                    duration_ms=duration, progress_ms=progress, is_playing=playing, **kw)  # type: ignore[arg-type]


class Store:
    """The store's visible effect, replayed from batches: hash per play and counter per uri."""

    def __init__(self) -> None:
        self.plays: dict[int, dict[str, object]] = {}
        self.counts: dict[str, int] = {}
        self.current: int | None = None

    def apply(self, batch: Batch) -> None:
        for w in batch.writes:
            row = self.plays.setdefault(w.started_at, {})
            if w.counted and row.get("counted") != "1":
                self.counts[w.uri] = self.counts.get(w.uri, 0) + 1
            row.update(w.fields)
        self.current = batch.current


def run(observations: list[tuple[int, Snapshot]], *, tracker: PlayTracker | None = None,
        store: Store | None = None) -> tuple[PlayTracker, Store]:
    tracker = tracker or PlayTracker(min_play_ms=30_000, end_grace_ms=60_000)
    store = store or Store()
    for at, s in observations:
        store.apply(tracker.observe(s, T0 + at))
    return tracker, store


def every(start: int, end: int, step: int, make: "callable") -> list[tuple[int, Snapshot]]:  # type: ignore[valid-type]
    return [(t, make(t)) for t in range(start, end, step)]


def test_a_track_played_through_is_one_counted_play() -> None:
    obs = every(0, 200_001, 5_000, lambda t: snap(A, t)) + [(205_000, snap(B, 5_000))]
    _, store = run(obs)
    assert len(store.plays) == 2
    play = store.plays[T0]
    assert play["counted"] == "1" and play["ended_at"] == T0 + 200_000
    assert 199_000 <= int(play["ms_played"]) <= 200_000  # type: ignore[call-overload]
    assert store.counts == {A: 1}


def test_a_skip_before_min_play_is_not_counted_and_ends_where_the_next_began() -> None:
    obs = [(0, snap(A, 0)), (5_000, snap(A, 5_000)), (10_000, snap(A, 10_000)), (15_000, snap(B, 3_000))]
    _, store = run(obs)
    skipped = store.plays[T0]
    assert skipped["counted"] == "0" and skipped["ended_at"] == T0 + 12_000
    assert skipped["ms_played"] == 12_000   # the unseen 2 s tail up to the next play's start
    assert A not in store.counts


def test_pause_and_resume_continue_the_same_play_and_pause_time_is_not_listening() -> None:
    tracker = PlayTracker(min_play_ms=30_000, end_grace_ms=600_000)
    obs = every(0, 20_001, 5_000, lambda t: snap(A, t))
    obs += every(25_000, 90_001, 5_000, lambda t: snap(A, 20_000, playing=False))  # a 70 s pause
    obs += every(95_000, 130_001, 5_000, lambda t: snap(A, 20_000 + (t - 90_000)))
    _, store = run(obs, tracker=tracker)
    assert list(store.plays) == [T0]
    assert store.plays[T0]["ms_played"] == 60_000 and store.plays[T0]["counted"] == "1"


def test_repeat_of_the_same_track_is_a_new_play() -> None:
    obs = every(0, 200_001, 10_000, lambda t: snap(A, t))
    obs += [(205_000, snap(A, 4_000)), (215_000, snap(A, 14_000)), (245_000, snap(A, 44_000))]
    _, store = run(obs)
    assert sorted(store.plays) == [T0, T0 + 201_000]
    assert store.counts == {A: 2}
    assert store.plays[T0]["ended_at"] == T0 + 201_000


def test_a_seek_forward_is_not_listening_time() -> None:
    obs = [(0, snap(A, 0)), (5_000, snap(A, 5_000)), (10_000, snap(A, 100_000)), (15_000, snap(A, 105_000))]
    _, store = run(obs)
    assert store.plays[T0]["ms_played"] == 15_000
    assert list(store.plays) == [T0]


def test_a_seek_backwards_is_the_same_play() -> None:
    obs = [(0, snap(A, 50_000)), (5_000, snap(A, 55_000)), (10_000, snap(A, 20_000)), (15_000, snap(A, 25_000))]
    _, store = run(obs)
    assert len(store.plays) == 1


def test_episodes_and_local_files_are_recorded() -> None:
    ep = "spotify:episode:EEEE"
    local = "spotify:local:Artist:Album:Title:215"
    obs = every(0, 40_001, 10_000, lambda t: snap(ep, t, kind="episode", show="Show"))
    obs += every(45_000, 85_001, 10_000, lambda t: snap(local, t - 45_000, is_local=True))
    obs += [(90_000, snap(B, 1_000))]
    _, store = run(obs)
    by_uri = {p["uri"]: p for p in store.plays.values()}
    assert by_uri[ep]["type"] == "episode" and by_uri[ep]["show"] == "Show" and by_uri[ep]["counted"] == "1"
    assert by_uri[local]["is_local"] == "1" and "id" not in by_uri[local] and by_uri[local]["counted"] == "1"


def test_an_ad_ends_the_play_and_is_never_recorded() -> None:
    ad = Snapshot(kind="ad", progress_ms=2_000, is_playing=True)
    obs = every(0, 40_001, 10_000, lambda t: snap(A, t)) + [(45_000, ad), (50_000, ad), (60_000, snap(B, 1_000))]
    _, store = run(obs)
    assert {p["uri"] for p in store.plays.values()} == {A, B}
    assert store.plays[T0]["ended_at"] == T0 + 43_000


def test_a_private_session_is_never_recorded() -> None:
    private = dataclasses.replace(snap(B, 10_000), private_session=True)
    obs = every(0, 40_001, 10_000, lambda t: snap(A, t)) + every(45_000, 100_001, 10_000, lambda t: private)
    _, store = run(obs)
    assert {p["uri"] for p in store.plays.values()} == {A}


def test_stopped_longer_than_the_grace_period_ends_the_play_at_its_natural_end() -> None:
    nothing = Snapshot()
    obs = every(0, 190_001, 10_000, lambda t: snap(A, t)) + every(200_000, 300_001, 10_000, lambda t: nothing)
    tracker, store = run(obs)
    assert tracker.open is None and store.current is None
    play = store.plays[T0]
    assert play["ended_at"] == T0 + 200_000 and play["ms_played"] == 200_000


def test_a_short_outage_does_not_end_the_play() -> None:
    obs = [(0, snap(A, 0)), (10_000, snap(A, 10_000)), (15_000, Snapshot()), (20_000, snap(A, 20_000))]
    _, store = run(obs)
    assert len(store.plays) == 1 and store.plays[T0]["ms_played"] == 20_000


def test_a_late_poll_still_gives_the_right_ms_played() -> None:
    # Polled at 10 s, then not until 70 s: A ended at 60 s, when B started (B shows 10 s in).
    obs = [(0, snap(A, 0, duration=60_000)), (10_000, snap(A, 10_000, duration=60_000)), (70_000, snap(B, 10_000))]
    _, store = run(obs)
    assert store.plays[T0]["ms_played"] == 60_000 and store.plays[T0]["ended_at"] == T0 + 60_000
    assert store.plays[T0 + 60_000]["ms_played"] == 10_000


def test_counting_happens_once_when_the_threshold_is_crossed() -> None:
    tracker = PlayTracker(min_play_ms=30_000, end_grace_ms=60_000)
    store = Store()
    counted_writes = []
    for t in range(0, 100_001, 5_000):
        batch = tracker.observe(snap(A, t), T0 + t)
        store.apply(batch)
        counted_writes += [w for w in batch.writes if w.fields.get("counted") == "1"]
    assert len(counted_writes) == 1 and counted_writes[0].fields["ms_played"] == 30_000
    assert store.counts == {A: 1}


def test_restart_mid_play_continues_the_same_play() -> None:
    first, store = run(every(0, 40_001, 10_000, lambda t: snap(A, t)))
    hash_as_redis = {k: str(v) for k, v in store.plays[T0].items()}
    restored = OpenPlay.from_hash(T0, hash_as_redis)
    assert restored is not None
    second = PlayTracker(min_play_ms=30_000, end_grace_ms=60_000, restored=restored)
    _, store = run([(60_000, snap(A, 60_000)), (70_000, snap(A, 70_000))], tracker=second, store=store)
    assert list(store.plays) == [T0]
    assert store.plays[T0]["ms_played"] == 70_000 and store.counts == {A: 1}


def test_unchanged_polls_write_nothing_new_beyond_last_seen() -> None:
    tracker = PlayTracker(min_play_ms=30_000, end_grace_ms=600_000)
    tracker.observe(snap(A, 10_000, playing=False), T0)
    batch = tracker.observe(snap(A, 10_000, playing=False), T0 + 5_000)
    assert [set(w.fields) for w in batch.writes] == [{"last_seen_at"}]


def test_open_play_hash_is_marked_playing_and_finished_play_is_not() -> None:
    _, store = run([(0, snap(A, 0)), (5_000, snap(A, 5_000))])
    assert store.plays[T0]["playing"] == "1" and "ended_at" not in store.plays[T0]
    assert store.current == T0
    _, store = run([(10_000, snap(B, 0))], store=store, tracker=PlayTracker(min_play_ms=1, end_grace_ms=1,
                   restored=OpenPlay.from_hash(T0, {k: str(v) for k, v in store.plays[T0].items()})))
    assert store.plays[T0]["playing"] == "0" and store.plays[T0]["ended_at"] == T0 + 10_000


def test_a_private_session_mid_track_is_a_pause_and_its_span_is_not_credited() -> None:
    """Toggling a private session on and off mid-track: still one listen of the item, counted
    once, and none of the progress made while private is recorded as heard."""
    private = dataclasses.replace(snap(A, 70_000), private_session=True, kind="track", uri=None)
    obs = every(0, 60_001, 10_000, lambda t: snap(A, t)) + [(70_000, private)]
    obs += every(110_000, 160_001, 10_000, lambda t: snap(A, t))
    _, store = run(obs)
    assert list(store.plays) == [T0] and store.counts == {A: 1}
    assert store.plays[T0]["ms_played"] == 60_000 + 50_000


def test_private_session_then_another_item_ends_the_play_where_it_was_last_seen() -> None:
    private = dataclasses.replace(snap(B, 5_000), private_session=True, uri=None)
    obs = every(0, 40_001, 10_000, lambda t: snap(A, t)) + [(50_000, private), (60_000, private)]
    obs += [(70_000, snap(B, 1_000))]
    _, store = run(obs)
    assert store.plays[T0]["ended_at"] == T0 + 40_000 and store.plays[T0]["ms_played"] == 40_000
    assert min(k for k in store.plays if k != T0) > T0 + 40_000


def test_an_ad_with_a_large_progress_cannot_make_plays_overlap_or_share_a_key() -> None:
    ad = Snapshot(kind="ad", progress_ms=55_000, is_playing=True)
    obs = every(0, 40_001, 10_000, lambda t: snap(A, t)) + [(45_000, ad), (50_000, snap(A, 48_000))]
    _, store = run(obs)
    first, second = sorted(store.plays)
    assert first == T0 and store.plays[T0]["ended_at"] == T0 + 40_000
    assert second > T0 + 40_000


def test_a_wall_clock_step_back_neither_stalls_nor_rewinds_the_play() -> None:
    tracker = PlayTracker(min_play_ms=30_000, end_grace_ms=60_000)
    batches = [tracker.observe(snap(A, 0), T0), tracker.observe(snap(A, 10_000), T0 + 10_000)]
    back = T0 + 10_000 - 60_000  # NTP steps the clock back 60 s
    batches += [tracker.observe(snap(A, 10_000 + 10_000 * i), back + 10_000 * i) for i in range(1, 4)]
    seen = [w.fields["last_seen_at"] for b in batches for w in b.writes]
    assert seen == sorted(seen), "last_seen_at must never go back, or the store drops the writes as stale"


def test_an_item_that_ended_before_a_private_session_keeps_its_tail() -> None:
    private = dataclasses.replace(snap(B, 5_000), private_session=True, uri=None)
    obs = [(0, snap(A, 0, duration=40_000)), (30_000, snap(A, 30_000, duration=40_000)), (45_000, private)]
    _, store = run(obs)
    assert store.plays[T0]["ended_at"] == T0 + 40_000 and store.plays[T0]["ms_played"] == 40_000


def test_the_last_write_of_a_play_says_what_it_came_to_even_after_a_pause() -> None:
    # The play_finished log line reads ms_played from the finishing write; a pause leaves it
    # unchanged, so only this rule puts it there.
    tracker = PlayTracker(min_play_ms=30_000, end_grace_ms=60_000)
    for at, s in every(0, 40_001, 10_000, lambda t: snap(A, t)) + [(45_000, snap(A, 40_000, playing=False))]:
        tracker.observe(s, T0 + at)
    last = tracker.observe(Snapshot(), T0 + 120_000).writes
    assert [(w.fields.get("ended_at"), w.fields.get("ms_played")) for w in last] == [(T0 + 45_000, 40_000)]
