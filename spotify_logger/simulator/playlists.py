"""Handlers for the playlist endpoints a weekly playlist needs, and the playlists they keep.

POST /me/playlists creates one (201, a PlaylistObject); PUT /playlists/{id}/items replaces its
items (the 2026 name) and PUT /playlists/{id}/tracks is the older name of the same operation;
GET /playlists/{id} reads one back. Like the real API, a replace takes at most 100 uris, each a
track or episode uri with a base62 id: a local file's uri is refused with 400.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .http_types import Request, Response, api_error, json_response
from .items import fake_id
from .objects import API, OPEN

if TYPE_CHECKING:
    from .simulator import SpotifySimulator

USER_ID = "sim-user"
MAX_URIS = 100
_PLAYABLE_URI = re.compile(r"spotify:(track|episode):[0-9A-Za-z]{22}")


@dataclass
class Playlist:
    id: str
    name: str
    public: bool
    description: str
    uris: list[str] = field(default_factory=list)
    snapshot_id: str = ""
    replaced: int = 0  # how many times its items were replaced, for assertions

    def as_object(self, with_items: bool = False) -> dict[str, Any]:
        items = []
        for uri in self.uris if with_items else []:
            item = {"type": uri.split(":")[1], "uri": uri, "id": uri.rsplit(":", 1)[-1]}
            # "item" is the 2026 name of "track"; both are sent, as during the migration.
            items.append({"added_at": None, "added_by": _owner(), "is_local": False, "item": item, "track": item})
        paging = {"href": f"{API}/playlists/{self.id}/items", "items": items, "limit": 100,
                  "next": None, "offset": 0, "previous": None, "total": len(self.uris)}
        return {
            "collaborative": False, "description": self.description or None,
            "external_urls": {"spotify": f"{OPEN}/playlist/{self.id}"},
            "followers": {"href": None, "total": 0}, "href": f"{API}/playlists/{self.id}",
            "id": self.id, "images": [], "name": self.name, "owner": _owner(),
            "primary_color": None, "public": self.public, "snapshot_id": self.snapshot_id,
            "items": paging, "tracks": paging, "type": "playlist", "uri": f"spotify:playlist:{self.id}",
        }


def _owner() -> dict[str, Any]:
    return {"display_name": "Simulated User", "external_urls": {"spotify": f"{OPEN}/user/{USER_ID}"},
            "href": f"{API}/users/{USER_ID}", "id": USER_ID, "type": "user", "uri": f"spotify:user:{USER_ID}"}


def _snapshot() -> str:
    return secrets.token_urlsafe(24)


class Playlists:
    """The user's playlists (thread-safe): `sim.playlists` in tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, Playlist] = {}
        self._serial = itertools.count(1)
        self.items_endpoint = True  # False: /items answers 404, as before the 2026 rename

    def create(self, name: str, public: bool = True, description: str = "") -> Playlist:
        with self._lock:
            playlist_id = fake_id(f"playlist:{next(self._serial)}:{name}")
            playlist = Playlist(playlist_id, name, public, description, snapshot_id=_snapshot())
            self._by_id[playlist_id] = playlist
            return playlist

    def get(self, playlist_id: str) -> Playlist | None:
        with self._lock:
            return self._by_id.get(playlist_id)

    def all(self) -> list[Playlist]:
        with self._lock:
            return list(self._by_id.values())

    def replace(self, playlist_id: str, uris: list[str]) -> str | None:
        """The new snapshot_id, or None when there is no such playlist."""
        with self._lock:
            playlist = self._by_id.get(playlist_id)
            if playlist is None:
                return None
            playlist.uris = list(uris)
            playlist.snapshot_id = _snapshot()
            playlist.replaced += 1
            return playlist.snapshot_id

    def delete(self, playlist_id: str) -> None:
        """Make the playlist unknown, so that every request naming it answers 404."""
        with self._lock:
            self._by_id.pop(playlist_id, None)

    def retire_items_endpoint(self) -> None:
        """Answer 404 on /playlists/{id}/items, so a client's fall back to /tracks runs."""
        self.items_endpoint = False


def _json_body(request: Request) -> Any:
    if not request.body:
        return {}
    try:
        return json.loads(request.body)
    except ValueError:
        return None


def create_playlist(sim: SpotifySimulator, request: Request) -> Response:
    body = _json_body(request)
    if not isinstance(body, dict):
        return api_error(400, "Error parsing JSON.")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        return api_error(400, "Missing required field: name")
    public = body.get("public", True)  # the real default is public
    description = body.get("description", "")
    if not isinstance(public, bool) or not isinstance(description, str):
        return api_error(400, "Invalid request body")
    playlist = sim.playlists.create(name, public, description)
    return json_response(201, playlist.as_object())


def get_playlist(sim: SpotifySimulator, request: Request) -> Response:
    playlist = sim.playlists.get(request.params[0])
    if playlist is None:
        return api_error(404, "Resource not found")
    return json_response(200, playlist.as_object(with_items=True))


def replace_items(sim: SpotifySimulator, request: Request) -> Response:
    if not sim.playlists.items_endpoint:
        return api_error(404, "Service not found")
    return _replace(sim, request)


def replace_tracks(sim: SpotifySimulator, request: Request) -> Response:
    return _replace(sim, request)


def _replace(sim: SpotifySimulator, request: Request) -> Response:
    uris = _uris(request)
    if isinstance(uris, Response):
        return uris
    snapshot_id = sim.playlists.replace(request.params[0], uris)
    if snapshot_id is None:
        return api_error(404, "Resource not found")
    return json_response(200, {"snapshot_id": snapshot_id})


def _uris(request: Request) -> list[str] | Response:
    # The query parameter wins over the body, as the reference says.
    if "uris" in request.query:
        uris: Any = [u.strip() for u in request.query["uris"].split(",") if u.strip()]
    else:
        body = _json_body(request)
        if not isinstance(body, dict):
            return api_error(400, "Error parsing JSON.")
        uris = body.get("uris")
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        return api_error(400, "uris must be a list of Spotify URIs")
    if len(uris) > MAX_URIS:
        return api_error(400, f"You can add a maximum of {MAX_URIS} tracks per request.")
    for uri in uris:
        if not _PLAYABLE_URI.fullmatch(uri):
            return api_error(400, f"Invalid track uri: {uri}")
    return uris
