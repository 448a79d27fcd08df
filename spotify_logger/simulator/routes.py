"""The routing table: path pattern -> handler.

To add an endpoint (e.g. playlists), write a handler module with functions
`(sim, request) -> Response` and append Route lines to ROUTES; nothing else changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import accounts, playback, playlists, recent
from .http_types import Request, Response

if TYPE_CHECKING:
    from .simulator import SpotifySimulator

Handler = Callable[["SpotifySimulator", Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # a regex matched against the whole path; groups go to Request.params
    handler: Handler
    auth: bool = True  # Web API endpoints need a valid Bearer token
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern))


ROUTES: tuple[Route, ...] = (
    Route("GET", r"/v1/me/player", playback.get_playback_state),
    Route("GET", r"/v1/me/player/currently-playing", playback.get_currently_playing),
    Route("GET", r"/v1/me/player/devices", playback.get_devices),
    Route("GET", r"/v1/me/player/recently-played", recent.get_recently_played),
    Route("POST", r"/v1/me/playlists", playlists.create_playlist),
    Route("GET", r"/v1/playlists/([^/]+)", playlists.get_playlist),
    Route("PUT", r"/v1/playlists/([^/]+)/items", playlists.replace_items),
    Route("PUT", r"/v1/playlists/([^/]+)/tracks", playlists.replace_tracks),
    Route("POST", r"/api/token", accounts.post_token, auth=False),
    Route("GET", r"/authorize", accounts.get_authorize, auth=False),
)


@dataclass(frozen=True)
class Match:
    route: Route | None
    params: tuple[str, ...] = ()
    path_known: bool = False  # a route exists for the path, under another method


def match(method: str, path: str) -> Match:
    """The route for a request (the first whose pattern and method fit), its captured groups, and
    whether the path is known under another method (405 rather than 404)."""
    path_known = False
    for route in ROUTES:
        found = route.regex.fullmatch(path)
        if found is None:
            continue
        if route.method == method:
            return Match(route, tuple(found.groups()))
        path_known = True
    return Match(None, path_known=path_known)
