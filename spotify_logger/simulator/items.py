"""Playable items of the simulated catalogue and factories with sensible defaults."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import quote_plus

ItemKind = Literal["track", "episode", "local", "ad", "unknown"]
ITEM_KINDS: tuple[str, ...] = get_args(ItemKind)

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def fake_id(seed: str, length: int = 22) -> str:
    """A deterministic Spotify-looking base62 id: the same name gives the same uri every run."""
    number = int.from_bytes(hashlib.sha256(seed.encode("utf-8")).digest(), "big")
    chars = []
    for _ in range(length):
        number, rest = divmod(number, 62)
        chars.append(_BASE62[rest])
    return "".join(chars)


@dataclass(frozen=True)
class Item:
    kind: ItemKind
    uri: str
    name: str
    duration_ms: int
    artists: tuple[str, ...] = ()
    album: str = ""
    show: str = ""
    explicit: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ITEM_KINDS:
            raise ValueError(f"unknown item kind {self.kind!r}")
        if self.duration_ms <= 0:
            raise ValueError("duration_ms must be positive")
        # Tuples keep the dataclass hashable even when callers pass a list.
        object.__setattr__(self, "artists", tuple(self.artists))

    @property
    def id(self) -> str | None:
        """The Spotify id, or None for local files (the real API sends id null for them)."""
        if self.kind == "local":
            return None
        return self.uri.rsplit(":", 1)[-1]


def track(
    name: str,
    duration_ms: int,
    artists: tuple[str, ...] | list[str] = ("Artist",),
    album: str = "Album",
    uri: str | None = None,
    explicit: bool = False,
) -> Item:
    uri = uri or f"spotify:track:{fake_id('track:' + name)}"
    return Item("track", uri, name, duration_ms, tuple(artists), album, explicit=explicit)


def episode(name: str, duration_ms: int, show: str = "Show", uri: str | None = None) -> Item:
    uri = uri or f"spotify:episode:{fake_id('episode:' + name)}"
    return Item("episode", uri, name, duration_ms, show=show)


def local_file(
    name: str, duration_ms: int, artist: str = "Local Artist", album: str = "Local Album"
) -> Item:
    # Spotify form-encodes each part of a local uri, and the last part is whole seconds.
    parts = (quote_plus(artist), quote_plus(album), quote_plus(name), str(duration_ms // 1000))
    uri = "spotify:local:" + ":".join(parts)
    return Item("local", uri, name, duration_ms, (artist,), album)


def ad(duration_ms: int = 15000, name: str = "Advertisement") -> Item:
    return Item("ad", f"spotify:ad:{fake_id('ad:' + name + str(duration_ms))}", name, duration_ms)


def unknown(duration_ms: int, name: str = "Unknown") -> Item:
    return Item("unknown", f"spotify:unknown:{fake_id('unknown:' + name)}", name, duration_ms)


def item_to_json(item: Item) -> dict[str, object]:
    out: dict[str, object] = {
        "kind": item.kind,
        "name": item.name,
        "duration_ms": item.duration_ms,
        "uri": item.uri,
    }
    if item.artists:
        out["artists"] = list(item.artists)
    if item.album:
        out["album"] = item.album
    if item.show:
        out["show"] = item.show
    if item.explicit:
        out["explicit"] = True
    return out


def item_from_json(obj: dict[str, object]) -> Item:
    """Build an Item from the script JSON form; missing fields get the factory defaults."""
    kind = str(obj.get("kind", "track"))
    name = str(obj.get("name", kind.title()))
    duration = int(obj["duration_ms"])  # type: ignore[call-overload]
    raw_artists = obj.get("artists")
    artists = tuple(str(a) for a in raw_artists) if isinstance(raw_artists, list) else None
    uri = obj.get("uri")
    if kind == "track":
        made = track(name, duration, artists or ("Artist",), str(obj.get("album", "Album")),
                     explicit=bool(obj.get("explicit", False)))
    elif kind == "episode":
        made = episode(name, duration, str(obj.get("show", "Show")))
    elif kind == "local":
        made = local_file(name, duration, (artists or ("Local Artist",))[0],
                          str(obj.get("album", "Local Album")))
    elif kind == "ad":
        made = ad(duration, name)
    elif kind == "unknown":
        made = unknown(duration, name)
    else:
        raise ValueError(f"unknown item kind {kind!r}")
    if isinstance(uri, str) and uri != made.uri:
        made = Item(made.kind, uri, made.name, made.duration_ms, made.artists, made.album,
                    made.show, made.explicit)
    return made
