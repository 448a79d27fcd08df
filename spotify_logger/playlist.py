"""The weekly playlist: the most played Spotify tracks of a period, written to one playlist.

Only `spotify:track:` uris can go into a playlist this way: local files (`spotify:local:...`)
are refused by the API and episodes are not what a top-tracks list is about, so both are left
out before the limit is applied (an eleventh track moves up instead).

The playlist is created on first use and its id remembered in Redis (keys.PLAYLISTS, by name),
so later runs replace its contents instead of creating another. PUT /playlists/{id}/items is the
2026 name of the replace operation; /tracks is tried when /items answers 404. When both answer
404 the remembered playlist is gone and a new one is created.

Requests go through the poller's SpotifyClient: same token store, cooldown and retries. A
one-shot command cannot wait for hours, so a rate limit is waited out only when its deadline
is at most `max_wait_s` away, once per request; a longer one raises RateLimited (exit 75) with
the deadline in its message. The deadline is persisted by the cooldown, so an early re-run does
not call Spotify before it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable

import redis

from . import keys, stats
from .api import SpotifyClient
from .errors import EX_TEMPFAIL, ApiError, BudgetExhausted, NotFound, RateLimited, SpotifyLoggerError
from .timeutil import utc_iso
from .logs import get_logger
from .periods import LocalTime
from .store import translate_redis_errors

log = get_logger(__name__)

TRACK_URI = re.compile(r"spotify:track:[0-9A-Za-z]{22}")
_PLAYLIST_ID = re.compile(r"[0-9A-Za-z]{1,64}")
MAX_TRACKS = 100            # one replace request takes at most 100 uris
MAX_WAIT_S = 60.0           # the longest Retry-After a one-shot run waits out
_CLOCK_SLACK_S = 0.05       # the cooldown compares wall-clock time; stop.wait() is monotonic


@dataclass(frozen=True)
class Pick:
    uri: str
    name: str
    plays: int


@dataclass(frozen=True)
class Written:
    playlist_id: str
    created: bool
    endpoint: str            # "items", or "tracks" after the fallback
    snapshot_id: str | None


class Interrupted(SpotifyLoggerError):
    """A stop request (SIGTERM, SIGINT) arrived before the playlist was written."""

    exit_code = EX_TEMPFAIL


class _Gone(Exception):
    """Both replace endpoints answered 404 for this playlist id."""


def name_problem(name: str) -> str | None:
    """Why Spotify would refuse this playlist name (a blank one is a 400), or None."""
    if not name.strip():
        return "must not be empty or blank"
    if any(not c.isprintable() for c in name):
        return "must not contain control characters"
    return None


def is_spotify_track(uri: str) -> bool:
    return TRACK_URI.fullmatch(uri) is not None


def select(client: "redis.Redis[str]", since_ms: int | None, until_ms: int | None, *,
           hours: tuple[int, int] | None, local: LocalTime, limit: int) -> list[Pick]:
    """The `limit` most played Spotify tracks of plays started in [since, until) and `hours`."""
    rows = stats.top_tracks(client, since_ms, until_ms, hours=hours, tz=local, limit=limit, keep=is_spotify_track)
    return [Pick(uri, name, plays) for uri, name, plays in rows]


class Publisher:
    def __init__(self, client: SpotifyClient, redis_client: "redis.Redis[str]", *,
                 max_wait_s: float = MAX_WAIT_S, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.redis = redis_client
        self.max_wait_s = max_wait_s
        self.clock = clock

    def remembered(self, name: str) -> str | None:
        with translate_redis_errors():
            raw = self.redis.hget(keys.PLAYLISTS, name)
        playlist_id = raw if isinstance(raw, str) else None
        if playlist_id is not None and not _PLAYLIST_ID.fullmatch(playlist_id):
            # Hand-edited or damaged: never put it into a URL path.
            log.warning("playlist_id_invalid", name=name)
            return None
        return playlist_id

    def publish(self, name: str, uris: list[str], *, public: bool, description: str) -> Written:
        """Replace the contents of the playlist called `name`, creating it if needed."""
        if len(uris) > MAX_TRACKS:
            raise ValueError(f"at most {MAX_TRACKS} uris fit in one replace request")
        playlist_id = self.remembered(name)
        if playlist_id is not None:
            try:
                endpoint, snapshot = self._replace(playlist_id, uris)
                return Written(playlist_id, False, endpoint, snapshot)
            except _Gone:
                log.warning("playlist_gone", name=name, playlist_id=playlist_id, action="creating a new one")
        playlist_id = self._create(name, public, description)
        try:
            endpoint, snapshot = self._replace(playlist_id, uris)
        except _Gone:
            raise ApiError(f"playlist {playlist_id} was created but Spotify answers 404 for it", status=404) from None
        return Written(playlist_id, True, endpoint, snapshot)

    def _create(self, name: str, public: bool, description: str) -> str:
        body = self._call("POST", "/me/playlists", {"name": name, "public": public, "description": description})
        playlist_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(playlist_id, str) or not _PLAYLIST_ID.fullmatch(playlist_id):
            raise ApiError("POST /me/playlists answered without a playlist id")
        # Remembered before it is filled: a failure from here on must not create a second one.
        with translate_redis_errors():
            self.redis.hset(keys.PLAYLISTS, name, playlist_id)
        log.info("playlist_created", name=name, playlist_id=playlist_id, public=public)
        return playlist_id

    def _replace(self, playlist_id: str, uris: list[str]) -> tuple[str, str | None]:
        for endpoint in ("items", "tracks"):
            try:
                body = self._call("PUT", f"/playlists/{playlist_id}/{endpoint}", {"uris": uris})
            except NotFound:
                if endpoint == "items":
                    log.info("playlist_items_not_found", playlist_id=playlist_id, action="trying /tracks")
                continue
            snapshot = body.get("snapshot_id") if isinstance(body, dict) else None
            return endpoint, snapshot if isinstance(snapshot, str) else None
        raise _Gone(playlist_id)

    def _call(self, method: str, path: str, body: dict[str, Any]) -> Any:
        try:
            return self.client.request(method, path, json=body)
        except BudgetExhausted:
            raise  # our own budget, not Spotify: its message says when the calls fit
        except RateLimited as exc:
            until = exc.until
        wait_s = until - self.clock()
        if wait_s > self.max_wait_s:
            raise _too_long(until, wait_s)
        log.info("rate_limit_wait", path=path, wait_s=round(max(0.0, wait_s), 1), deadline=utc_iso(until))
        if self.client.stop.wait(max(0.0, wait_s) + _CLOCK_SLACK_S):
            raise Interrupted("stopped while waiting out a rate limit: the playlist was not written")
        try:
            return self.client.request(method, path, json=body)
        except BudgetExhausted:
            raise
        except RateLimited as again:
            raise _too_long(again.until, again.until - self.clock()) from None


def _too_long(until: float, wait_s: float) -> RateLimited:
    return RateLimited(
        f"Spotify rate limit: no request before {utc_iso(until)} (in {max(0.0, wait_s):.0f} s); the playlist "
        "was not written. Run it again after that time", until=until)
