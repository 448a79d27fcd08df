"""Field extraction: a player body in, flat typed fields out. Nothing here raises on bad shapes.

Real bodies drift from the spec (null items for ads and private sessions, episodes without
albums, local files without ids), so every access is a safe walk that falls back to None.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from functools import lru_cache
from typing import Any, Union

# Union, not `|`: these aliases are evaluated at import, and Python 3.9 (Raspberry Pi OS 11) has no `|` for types.
Path = Union[str, Sequence[Union[str, int]]]
RedisValue = Union[str, int, float]

RECORDABLE_KINDS = ("track", "episode")


def dict_get(d: Any, path: Path, default: Any = None) -> Any:
    """Walk nested dicts and list indexes; the default at the first missing or null step."""
    node = d
    for step in _steps(path) if isinstance(path, str) else path:
        # Exact type checks first: JSON bodies hold only dicts and lists, and an ABC check per
        # step was a tenth of a poll's CPU. Other mappings still take the slow road.
        kind = type(node)
        if (kind is dict or (kind is not list and isinstance(node, Mapping))) and isinstance(step, str):
            node = node.get(step)
        elif isinstance(node, list) and isinstance(step, int) and -len(node) <= step < len(node):
            node = node[step]
        else:
            return default
        if node is None:
            return default
    return node


@lru_cache(maxsize=256)
def _steps(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


@dataclass(frozen=True)
class Snapshot:
    """What one /me/player answer says, flattened. `kind` None means nothing is loaded."""

    kind: str | None = None
    uri: str | None = None
    id: str | None = None
    name: str | None = None
    artists: tuple[str, ...] = ()
    artist_ids: tuple[str, ...] = ()
    album: str | None = None
    album_id: str | None = None
    show: str | None = None
    explicit: bool | None = None
    is_local: bool | None = None
    duration_ms: int | None = None
    progress_ms: int | None = None
    is_playing: bool = False
    context_type: str | None = None
    context_uri: str | None = None
    device_name: str | None = None
    device_type: str | None = None
    device_volume: int | None = None
    shuffle_state: bool | None = None
    repeat_state: str | None = None
    private_session: bool = False

    @property
    def recordable(self) -> bool:
        """A play we keep: a track or episode with a uri, outside a private session."""
        return (
            self.kind in RECORDABLE_KINDS
            and bool(self.uri)
            and not self.private_session
            and self.progress_ms is not None
        )

    def item_fields(self) -> dict[str, Any]:
        """The fields that describe the item and playback context, named as in the play hash."""
        out = {name: getattr(self, name) for name in _ITEM_FIELDS}
        out["type"] = self.kind
        out["artists"] = list(self.artists) if self.artists else None
        out["artist_ids"] = list(self.artist_ids) if self.artist_ids else None
        return out


# Snapshot's fields that item_fields() copies as they are; computed once, not on every poll.
_ITEM_FIELDS = tuple(f.name for f in dataclass_fields(Snapshot)
                     if f.name not in {"kind", "is_playing", "private_session", "progress_ms", "artists", "artist_ids"})


def extract(body: Any) -> Snapshot:
    """Map a /me/player (or currently-playing) body to a Snapshot. Never raises."""
    if not isinstance(body, Mapping):
        return Snapshot()
    item = dict_get(body, "item")
    item = item if isinstance(item, Mapping) else {}
    kind = _str(dict_get(item, "type")) or _str(body.get("currently_playing_type"))
    is_episode = kind == "episode"
    artists = dict_get(item, "artists", [])
    return Snapshot(
        kind=kind,
        uri=_str(dict_get(item, "uri")),
        id=_str(dict_get(item, "id")),
        name=_str(dict_get(item, "name")),
        artists=_names(artists, "name"),
        artist_ids=_names(artists, "id"),
        album=None if is_episode else _str(dict_get(item, "album.name")),
        album_id=None if is_episode else _str(dict_get(item, "album.id")),
        show=_str(dict_get(item, "show.name")) if is_episode else None,
        explicit=_bool(dict_get(item, "explicit")),
        is_local=_bool(dict_get(item, "is_local")),
        duration_ms=_int(dict_get(item, "duration_ms")),
        progress_ms=_int(dict_get(body, "progress_ms")),
        is_playing=_bool(dict_get(body, "is_playing")) is True,
        context_type=_str(dict_get(body, "context.type")),
        context_uri=_str(dict_get(body, "context.uri")),
        device_name=_str(dict_get(body, "device.name")),
        device_type=_str(dict_get(body, "device.type")),
        device_volume=_int(dict_get(body, "device.volume_percent")),
        shuffle_state=_bool(dict_get(body, "shuffle_state")),
        repeat_state=_str(dict_get(body, "repeat_state")),
        private_session=_bool(dict_get(body, "device.is_private_session")) is True,
    )


def redis_convert(values: Mapping[str, Any]) -> dict[str, RedisValue]:
    """Make a mapping storable in a Redis hash: bools as "1"/"0", None dropped, lists as JSON."""
    out: dict[str, RedisValue] = {}
    for key, value in values.items():
        if value is None:
            continue
        kind = type(value)
        if kind is str or kind is int:  # most values, every poll: skip the isinstance chain
            out[key] = value
        elif isinstance(value, bool):
            out[key] = "1" if value else "0"
        elif isinstance(value, (int, float, str)):
            out[key] = value
        elif isinstance(value, (list, tuple, dict)):
            out[key] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        else:
            out[key] = str(value)
    return out


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    # bool is an int subclass; a `true` progress is a broken body, not the number 1.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value == value and 0 <= value < 2**62:
        return int(value)
    return None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _names(artists: Any, key: str) -> tuple[str, ...]:
    if not isinstance(artists, list):
        return ()
    return tuple(v for v in (_str(dict_get(a, key)) for a in artists) if v)
