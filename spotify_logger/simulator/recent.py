"""The recently-played feed: stored history plus plays the timeline has finished."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .http_types import Request, Response, api_error, json_response
from .items import Item
from .objects import context_object, track_object

if TYPE_CHECKING:
    from .simulator import SpotifySimulator

FEED_SIZE = 50  # the real feed keeps only the last 50 plays
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class HistoryEntry:
    item: Item
    played_at_ms: int
    context_uri: str | None = None


class History:
    """Entries that no longer come from the live timeline (preloaded or from a replaced one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[HistoryEntry] = []

    def add(self, *entries: HistoryEntry) -> None:
        with self._lock:
            self._entries.extend(entries)

    def entries(self) -> list[HistoryEntry]:
        with self._lock:
            return list(self._entries)


def newest_first(entries: list[HistoryEntry], size: int = FEED_SIZE) -> list[HistoryEntry]:
    return sorted(entries, key=lambda e: e.played_at_ms, reverse=True)[:size]


def iso_ms(ms: int) -> str:
    """ISO 8601 with milliseconds and Z, the form the real feed uses."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _int_param(query: dict[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    if not raw.strip().lstrip("-").isdigit():
        raise ValueError(f"Invalid {name}")
    return int(raw)


def select(entries: list[HistoryEntry], limit: int, before: int | None,
           after: int | None) -> tuple[list[HistoryEntry], bool]:
    """One page of newest-first `entries` and whether more lie beyond it in that direction."""
    if after is not None:
        # Page forward: the oldest `limit` items after the cursor, still shown newest first.
        newer = [e for e in entries if e.played_at_ms > after]
        return newer[-limit:], len(newer) > limit
    older = [e for e in entries if before is None or e.played_at_ms < before]
    return older[:limit], len(older) > limit


def _entry_json(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "track": track_object(entry.item),
        "played_at": iso_ms(entry.played_at_ms),
        "context": context_object(entry.context_uri),
    }


def get_recently_played(sim: SpotifySimulator, request: Request) -> Response:
    query = request.query
    try:
        limit = _int_param(query, "limit")
        before = _int_param(query, "before")
        after = _int_param(query, "after")
    except ValueError as exc:
        return api_error(400, str(exc))
    limit = 20 if limit is None else limit
    if not 1 <= limit <= 50:
        return api_error(400, "Invalid limit")
    if before is not None and after is not None:
        return api_error(400, "Only one of the before or after cursors may be given")
    page, more = select(sim.recently_played(), limit, before, after)
    base = f"{sim.api_url}/me/player/recently-played"
    cursors = None
    next_url = None
    if page:
        cursors = {"after": str(page[0].played_at_ms), "before": str(page[-1].played_at_ms)}
        if more and after is not None:
            next_url = base + "?" + urlencode({"after": cursors["after"], "limit": limit})
        elif more:
            next_url = base + "?" + urlencode({"before": cursors["before"], "limit": limit})
    body = {
        "items": [_entry_json(e) for e in page],
        "next": next_url,
        "cursors": cursors,
        "limit": limit,
        "href": base + ("?" + urlencode(query) if query else ""),
    }
    return json_response(200, body)
