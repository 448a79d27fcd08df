"""Extraction: safe nested access, real recorded bodies, Redis conversion, arbitrary JSON."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings, strategies as st

from spotify_logger.extract import Snapshot, dict_get, extract, redis_convert
from spotify_logger.tracker import PlayTracker

from conftest import recorded

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
# Bodies that look like player answers with any value in any slot: the shapes that break naive code.
player_like = st.fixed_dictionaries(
    {},
    optional={
        "item": json_values | st.fixed_dictionaries({}, optional={
            "type": json_values | st.sampled_from(["track", "episode"]), "uri": json_values | st.text(min_size=1),
            "duration_ms": json_values, "artists": json_values, "album": json_values, "show": json_values,
            "name": json_values}),
        "progress_ms": json_values | st.integers(min_value=0, max_value=10**7),
        "is_playing": json_values, "device": json_values, "context": json_values,
        "currently_playing_type": json_values,
    },
)


def test_dict_get_walks_dicts_and_list_indexes() -> None:
    body = {"item": {"artists": [{"name": "A"}, {"name": "B"}]}}
    assert dict_get(body, "item.artists") == [{"name": "A"}, {"name": "B"}]
    assert dict_get(body, ["item", "artists", 1, "name"]) == "B"
    assert dict_get(body, ["item", "artists", -1, "name"]) == "B"


def test_dict_get_returns_the_default_at_the_first_missing_or_null_step() -> None:
    body: dict[str, Any] = {"item": None, "device": {"name": None}, "list": [1]}
    assert dict_get(body, "item.album.name", "x") == "x"
    assert dict_get(body, "device.name", "x") == "x"
    assert dict_get(body, "nope", 0) == 0
    assert dict_get(body, ["list", 5], "x") == "x"
    assert dict_get(body, ["list", "0"], "x") == "x"     # a string step does not index a list
    assert dict_get("not a dict", "a", "x") == "x"
    assert dict_get(body, "device.name.deeper", "x") == "x"


def test_recorded_track_body() -> None:
    snap = extract(recorded("playback_1.json"))
    assert snap.kind == "track" and snap.recordable
    assert snap.uri and snap.uri.startswith("spotify:track:") and snap.id
    assert snap.artists == ("Machinae Supremacy",) and len(snap.artist_ids) == 1
    assert snap.album and snap.album_id
    assert snap.device_name == "DESKTOP-BKC5SIK" and snap.device_type == "Computer" and snap.device_volume == 69
    assert snap.progress_ms == 225564 and snap.duration_ms and snap.duration_ms > 0
    assert snap.context_type == "collection" and snap.shuffle_state is False and snap.repeat_state == "off"
    assert snap.show is None


def test_recorded_episode_body() -> None:
    snap = extract(recorded("playback_episode_1.json"))
    assert snap.kind == "episode" and snap.recordable
    assert snap.show and snap.album is None and snap.artists == ()
    assert snap.duration_ms == 3690161 and snap.progress_ms == 5410


def test_recorded_currently_playing_body_without_device_keys() -> None:
    snap = extract(recorded("current_playing_track.json"))
    assert snap.recordable and snap.device_name is None and snap.shuffle_state is None


def test_ads_private_sessions_and_unknown_are_not_recordable() -> None:
    base = recorded("playback_1.json")
    ad = {**base, "item": None, "currently_playing_type": "ad"}
    unknown = {**base, "item": None, "currently_playing_type": "unknown"}
    private = {**base, "item": None, "device": {**base["device"], "is_private_session": True}}
    for body in (ad, unknown, private):
        snap = extract(body)
        assert not snap.recordable
    assert extract(ad).kind == "ad" and extract(private).private_session


def test_local_file_has_no_id_and_is_recordable_by_uri() -> None:
    base = recorded("playback_1.json")
    item = {**base["item"], "id": None, "is_local": True, "uri": "spotify:local:Artist:Album:Title:215"}
    snap = extract({**base, "item": item})
    assert snap.recordable and snap.id is None and snap.is_local is True


def test_redis_convert_booleans_none_and_lists() -> None:
    out = redis_convert({"a": True, "b": False, "c": None, "d": ["x", "y"], "e": 5, "f": "s", "g": {"k": 1}})
    assert out == {"a": "1", "b": "0", "d": '["x","y"]', "e": 5, "f": "s", "g": '{"k":1}'}
    assert "c" not in out


def test_snapshot_fields_convert_without_none() -> None:
    fields = redis_convert(extract(recorded("playback_episode_1.json")).item_fields())
    assert all(v is not None and v != "None" for v in fields.values())
    assert "album" not in fields and fields["type"] == "episode"


@settings(max_examples=300, deadline=None)
@given(body=json_values | player_like)
def test_extraction_never_raises_on_arbitrary_json(body: Any) -> None:
    snap = extract(body)
    assert isinstance(snap, Snapshot)
    redis_convert(snap.item_fields())


@settings(max_examples=200, deadline=None)
@given(bodies=st.lists(player_like, max_size=8), steps=st.lists(st.integers(0, 120_000), min_size=8, max_size=8))
def test_tracking_never_raises_on_arbitrary_json(bodies: list[Any], steps: list[int]) -> None:
    tracker = PlayTracker(min_play_ms=30_000, end_grace_ms=60_000)
    now = 1_700_000_000_000
    for body, step in zip(bodies, steps):
        now += step
        batch = tracker.observe(extract(body), now)
        for write in batch.writes:
            assert all(v is not None for v in write.fields.values())
