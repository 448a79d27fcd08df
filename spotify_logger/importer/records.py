"""One export record in, one Record (or the reason it is skipped) out. Never raises.

Two shapes exist. The extended streaming history (`Streaming_History_Audio_*.json`,
`endsong_*.json`) has `ts` (UTC, when the stream ended, 1 s precision), `ms_played`, uris and
the extra fields. The account-data history (`StreamingHistory*.json`) has `endTime`
("YYYY-MM-DD HH:MM", UTC, 1 min precision), `msPlayed` and names only: no uri. Such records get a
pseudo-uri, `spotify:import:track:<sha1>` (or `:episode:`), from the lower-cased artist and track
names (show and episode names for podcasts), so every play of one song shares one uri.

A uri must be one Spotify writes in that field (`spotify:track:<22 base62>` or a local file's
`spotify:local:...` for tracks, `spotify:episode:<id>` for podcasts, that or `spotify:chapter:<id>`
for audiobook chapters), and text must be valid Unicode: anything else is a broken record,
skipped, rather than a key or counter member nothing else matches, or a write Redis refuses.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..extract import RedisValue
from ..keys import SOURCE_IMPORT
from ..overlap import ACCOUNT_PRECISION_MS, EXTENDED_PRECISION_MS, PSEUDO_URI_PREFIX
from ..periods import DAY_MS
from ..timeutil import iso_to_ms

EXTRA_FIELDS = ("platform", "reason_start", "reason_end", "shuffle", "skipped", "offline", "incognito_mode")
# Spotify opened in 2008; anything before its founding, or in the future, is a broken record.
_EARLIEST_MS = 1_136_073_600_000  # 2006-01-01
# A record may end a little after "now": the export was made on a device whose clock ran ahead.
CLOCK_SKEW_MS = 10 * 60_000
# A single stream longer than a day is a broken record; timeline.LOOKBACK_MS is tied to this.
MAX_STREAM_MS = DAY_MS
# The uris Spotify writes in each field. A local file's is form-encoded text
# (`spotify:local:artist:album:title:seconds`): printable characters, no control characters.
_TRACK_URI = re.compile(r"spotify:track:[0-9A-Za-z]{22}|spotify:local:[^\x00-\x1f\x7f-\x9f]{1,1000}")
_EPISODE_URI = re.compile(r"spotify:episode:[0-9A-Za-z]{1,64}")
_CHAPTER_URI = re.compile(r"spotify:(?:episode|chapter):[0-9A-Za-z]{1,64}")
# An import holds up to a few million of these at once; slots need Python 3.10 (3.9 goes without).
SLOTS: dict[str, bool] = {"slots": True} if sys.version_info >= (3, 10) else {}

MALFORMED = "malformed"
INCOGNITO = "incognito"
NO_ITEM = "no_item"


@dataclass(frozen=True, **SLOTS)
class Skip:
    reason: str   # MALFORMED, NO_ITEM
    detail: str


@dataclass(**SLOTS)
class Record:
    started_at: int
    ended_at: int
    ms_played: int
    uri: str
    kind: str                      # track or episode
    name: str | None
    artist: str | None             # the album artist; None for episodes
    album: str | None
    show: str | None
    precision: int
    pseudo: bool
    incognito: bool
    extras: dict[str, RedisValue] = field(default_factory=dict)

    @property
    def name_key(self) -> tuple[str, str] | None:
        return name_key(self.name, self.artist if self.kind == "track" else self.show)

    def fields(self, *, counted: bool, started_at: int) -> dict[str, RedisValue]:
        """The play hash of a new imported play."""
        # Built by hand rather than through redis_convert: this runs for every record of an export.
        local = self.uri.startswith("spotify:local:")
        out: dict[str, RedisValue] = {
            "started_at": started_at, "ended_at": self.ended_at, "ms_played": self.ms_played,
            "type": self.kind, "uri": self.uri, "is_local": "1" if local else "0", "playing": "0",
            "counted": "1" if counted else "0", "source": SOURCE_IMPORT,
        }
        if not (self.pseudo or local):
            out["id"] = self.uri.rsplit(":", 1)[-1]
        if self.name:
            out["name"] = self.name
        if self.artist:
            out["artists"] = json.dumps([self.artist], ensure_ascii=False)
        if self.album:
            out["album"] = self.album
        if self.show:
            out["show"] = self.show
        out.update(self.extras)
        return out


def name_key(name: str | None, by: str | None) -> tuple[str, str] | None:
    if not name:
        return None
    return name.strip().casefold(), (by or "").strip().casefold()


def pseudo_uri(kind: str, name: str, by: str | None) -> str:
    key = name_key(name, by)
    digest = hashlib.sha1("\n".join(key or ("", "")).encode("utf-8")).hexdigest()[:20]
    return f"{PSEUDO_URI_PREFIX}{kind}:{digest}"


def parse(raw: Any, *, now_ms: int) -> Record | Skip:
    """A Record, or why it is skipped: MALFORMED, or NO_ITEM (nothing says what played)."""
    if not isinstance(raw, dict):
        return Skip(MALFORMED, f"a {type(raw).__name__}, not an object")
    try:
        if "ts" in raw:
            return _extended(raw, now_ms)
        if "endTime" in raw:
            return _account(raw, now_ms)
    except _BadText as exc:
        return Skip(MALFORMED, f"{exc} is not valid unicode (a lone surrogate)")
    return Skip(MALFORMED, "neither ts nor endTime")


def _timing(raw: dict[str, Any], end_key: str, ms_key: str, now_ms: int) -> tuple[int, int] | Skip:
    """(end of the stream, ms played) of a record, or why they are unusable."""
    ended_at = _time(raw.get(end_key), now_ms)
    if ended_at is None:
        return Skip(MALFORMED, f"{end_key} {_shown(raw.get(end_key))} is not a UTC time between 2006 and now")
    ms = _ms(raw.get(ms_key))
    if ms is None:
        return Skip(MALFORMED, f"{ms_key} {_shown(raw.get(ms_key))} is not a whole number of ms between 0 and a day")
    return ended_at, ms


def _extended(raw: dict[str, Any], now_ms: int) -> Record | Skip:
    timing = _timing(raw, "ts", "ms_played", now_ms)
    if isinstance(timing, Skip):
        return timing
    ended_at, ms = timing
    extras = {k: _extra(v) for k in EXTRA_FIELDS if (v := raw.get(k)) is not None and isinstance(v, (str, bool))}
    base = _Base(ended_at, ms, EXTENDED_PRECISION_MS, raw.get("incognito_mode") is True, extras)
    track_name = _text(raw.get("master_metadata_track_name"))
    artist = _text(raw.get("master_metadata_album_artist_name"))
    album = _text(raw.get("master_metadata_album_album_name"))
    if uri := _uri(raw, "spotify_track_uri", _TRACK_URI):
        return uri if isinstance(uri, Skip) else _record("track", uri, track_name, artist, album, None, base)
    episode, show = _text(raw.get("episode_name")), _text(raw.get("episode_show_name"))
    if uri := _uri(raw, "spotify_episode_uri", _EPISODE_URI):
        return uri if isinstance(uri, Skip) else _record("episode", uri, episode, None, None, show, base)
    # Audiobook chapters play as episodes in the Web API, so they are stored as episodes here too.
    chapter, book = _text(raw.get("audiobook_chapter_title")), _text(raw.get("audiobook_title"))
    if uri := _uri(raw, "audiobook_chapter_uri", _CHAPTER_URI):
        return uri if isinstance(uri, Skip) else _record("episode", uri, chapter, None, None, book, base)
    if track_name:
        return _record("track", None, track_name, artist, album, None, base)
    if episode:
        return _record("episode", None, episode, None, None, show, base)
    return Skip(NO_ITEM, "no uri and no name")


def _account(raw: dict[str, Any], now_ms: int) -> Record | Skip:
    timing = _timing(raw, "endTime", "msPlayed", now_ms)
    if isinstance(timing, Skip):
        return timing
    ended_at, ms = timing
    base = _Base(ended_at, ms, ACCOUNT_PRECISION_MS, False, {})
    if track := _text(raw.get("trackName")):
        return _record("track", None, track, _text(raw.get("artistName")), None, None, base)
    if episode := _text(raw.get("episodeName")):
        return _record("episode", None, episode, None, None, _text(raw.get("podcastName")), base)
    return Skip(NO_ITEM, "no track or episode name")


class _BadText(ValueError):
    """Text Redis cannot store: a JSON string with an unpaired surrogate (\\ud800) in it."""


class _Base(NamedTuple):
    ended_at: int
    ms: int
    precision: int
    incognito: bool
    extras: dict[str, RedisValue]


def _record(kind: str, uri: str | None, name: str | None, artist: str | None, album: str | None,
            show: str | None, base: _Base) -> Record:
    pseudo = uri is None
    if uri is None:
        uri = pseudo_uri(kind, name or "", artist if kind == "track" else show)
    return Record(started_at=base.ended_at - base.ms, ended_at=base.ended_at, ms_played=base.ms, uri=uri,
                  kind=kind, name=name, artist=artist, album=album, show=show, precision=base.precision,
                  pseudo=pseudo, incognito=base.incognito, extras=base.extras)


def _time(raw: Any, now_ms: int) -> int | None:
    ms = iso_to_ms(raw)
    return ms if ms is not None and _EARLIEST_MS <= ms <= now_ms + CLOCK_SKEW_MS else None


def _ms(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    return raw if isinstance(raw, int) and 0 <= raw <= MAX_STREAM_MS else None


def _uri(raw: dict[str, Any], key: str, pattern: "re.Pattern[str]") -> str | Skip | None:
    """The uri in `key`; None when the field is empty or absent (null in the export)."""
    value = raw.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str) and pattern.fullmatch(value):
        return _checked(value)
    return Skip(MALFORMED, f"{key} {_shown(value)} is not a uri Spotify writes there")


def _text(raw: Any) -> str | None:
    return _checked(raw) if isinstance(raw, str) and raw.strip() else None


def _checked(text: str) -> str:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _BadText(_shown(text)) from None
    return text


def _shown(raw: Any) -> str:
    return repr(raw)[:40]


def _extra(raw: str | bool) -> str:
    # Strings and booleans only (the caller drops anything else): booleans as "1"/"0", as stored.
    if isinstance(raw, bool):
        return "1" if raw else "0"
    return raw if raw.isascii() else _checked(raw)
