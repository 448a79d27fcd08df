"""Web API JSON objects (TrackObject, EpisodeObject, ContextObject, DeviceObject) for Items.

Shapes follow the recorded real bodies, not only the spec: see shared/spotify-web-api/README.md.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .items import Item, fake_id

API = "https://api.spotify.com/v1"
OPEN = "https://open.spotify.com"
# Real bodies list ~185 markets; a few keep bodies small while keeping the key present.
MARKETS = ["DE", "GB", "SE", "US"]

JSON = dict[str, Any]


def _number(seed: str, modulo: int) -> int:
    return int.from_bytes(hashlib.sha256(seed.encode("utf-8")).digest()[:4], "big") % modulo


def _images(seed: str, prefix: str = "ab67616d") -> list[JSON]:
    digest = hashlib.sha1(seed.encode("utf-8")).hexdigest()
    return [
        {"height": size, "url": f"https://i.scdn.co/image/{prefix}{code}{digest}", "width": size}
        for size, code in ((640, "0000b273"), (300, "00001e02"), (64, "00004851"))
    ]


def _linked(kind: str, spotify_id: str) -> JSON:
    return {
        "external_urls": {"spotify": f"{OPEN}/{kind}/{spotify_id}"},
        "href": f"{API}/{kind}s/{spotify_id}",
        "id": spotify_id,
    }


def artist_object(name: str) -> JSON:
    artist_id = fake_id("artist:" + name)
    return {**_linked("artist", artist_id), "name": name, "type": "artist",
            "uri": f"spotify:artist:{artist_id}"}


def _album_object(item: Item) -> JSON:
    album_id = fake_id("album:" + item.album + "|" + ",".join(item.artists))
    return {
        "album_type": "album",
        "artists": [artist_object(a) for a in item.artists],
        "available_markets": MARKETS,
        **_linked("album", album_id),
        "images": _images(album_id),
        "name": item.album,
        "release_date": f"20{10 + _number(album_id, 15)}-0{1 + _number(album_id, 9)}-15",
        "release_date_precision": "day",
        "total_tracks": 1 + _number(album_id, 14),
        "type": "album",
        "uri": f"spotify:album:{album_id}",
    }


def track_object(item: Item) -> JSON:
    if item.kind == "local":
        return _local_track_object(item)
    track_id = item.id or ""
    return {
        "album": _album_object(item),
        "artists": [artist_object(a) for a in item.artists],
        "available_markets": MARKETS,
        "disc_number": 1,
        "duration_ms": item.duration_ms,
        "explicit": item.explicit,
        "external_ids": {"isrc": "QZ" + fake_id("isrc:" + track_id, 10).upper()},
        **_linked("track", track_id),
        "is_local": False,
        "name": item.name,
        "popularity": _number(track_id, 100),
        "preview_url": None,
        "track_number": 1 + _number(track_id, 12),
        "type": "track",
        "uri": item.uri,
    }


def _local_track_object(item: Item) -> JSON:
    # What the real API sends for a local file: no ids, hrefs or album metadata.
    return {
        "album": {
            "album_type": None, "artists": [], "available_markets": [], "external_urls": {},
            "href": None, "id": None, "images": [], "name": item.album, "release_date": None,
            "release_date_precision": None, "total_tracks": 0, "type": "album", "uri": None,
        },
        "artists": [
            {"external_urls": {}, "href": None, "id": None, "name": a, "type": "artist",
             "uri": None}
            for a in item.artists
        ],
        "available_markets": [],
        "disc_number": 0,
        "duration_ms": item.duration_ms,
        "explicit": False,
        "external_ids": {},
        "external_urls": {},
        "href": None,
        "id": None,
        "is_local": True,
        "name": item.name,
        "popularity": 0,
        "preview_url": None,
        "track_number": 0,
        "type": "track",
        "uri": item.uri,
    }


def show_uri(item: Item) -> str:
    return f"spotify:show:{fake_id('show:' + item.show)}"


def _show_object(item: Item) -> JSON:
    show_id = show_uri(item).rsplit(":", 1)[-1]
    return {
        "available_markets": MARKETS,
        "copyrights": [],
        "description": f"{item.show}, a simulated podcast.",
        "explicit": False,
        **_linked("show", show_id),
        "html_description": f"<p>{item.show}, a simulated podcast.</p>",
        "images": _images(show_id, "ab676563"),
        "is_externally_hosted": False,
        "languages": ["en"],
        "media_type": "audio",
        "name": item.show,
        "publisher": f"{item.show} Publisher",
        "total_episodes": 1 + _number(show_id, 200),
        "type": "show",
        "uri": f"spotify:show:{show_id}",
    }


def episode_object(item: Item) -> JSON:
    episode_id = item.id or ""
    return {
        "audio_preview_url": None,
        "description": f"Episode {item.name} of {item.show}.",
        "duration_ms": item.duration_ms,
        "explicit": item.explicit,
        **_linked("episode", episode_id),
        "html_description": f"<p>Episode {item.name} of {item.show}.</p>",
        "images": _images(episode_id, "ab676563"),
        "is_externally_hosted": False,
        "is_playable": True,
        "language": "en",
        "languages": ["en"],
        "name": item.name,
        "release_date": "2024-07-26",
        "release_date_precision": "day",
        "resume_point": {"fully_played": False, "resume_position_ms": 0},
        "show": _show_object(item),
        "type": "episode",
        "uri": item.uri,
    }


def item_object(item: Item) -> JSON | None:
    if item.kind in ("track", "local"):
        return track_object(item)
    if item.kind == "episode":
        return episode_object(item)
    return None  # ads and unknown items are never described


def context_object(uri: str | None) -> JSON | None:
    if not uri:
        return None
    parts = uri.split(":")
    if len(parts) >= 4 and parts[1] == "user" and parts[-1] == "collection":
        return {"external_urls": {"spotify": f"{OPEN}/collection/tracks"},
                "href": f"{API}/me/tracks", "type": "collection", "uri": uri}
    kind, ctx_id = parts[1], parts[-1]
    return {"external_urls": {"spotify": f"{OPEN}/{kind}/{ctx_id}"},
            "href": f"{API}/{kind}s/{ctx_id}", "type": kind, "uri": uri}


def device_object(name: str, *, active: bool = True, private: bool = False, kind: str | None = None,
                  volume: int = 50) -> JSON:
    """A DeviceObject; without `kind`, a name with "desktop" in it is a Computer, else a Speaker."""
    return {
        "id": hashlib.sha1(("device:" + name).encode("utf-8")).hexdigest(),
        "is_active": active,
        "is_private_session": private,
        "is_restricted": False,
        "name": name,
        "supports_volume": True,
        "type": kind or ("Computer" if "desktop" in name.lower() else "Speaker"),
        "volume_percent": volume,
    }
