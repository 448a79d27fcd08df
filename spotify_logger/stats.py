"""Answers from the stored plays: top lists, play counts, when you listen, streaks.

Counts are counted plays (`counted` = "1", the MIN_PLAY_MS rule); listening time is the sum of
`ms_played` over every play, counted or not. Plays are read page by page in time order
(playscan.py: the fields each answer needs, one script per 1000 plays), so memory stays flat
whatever the period; an all-time top list of tracks or artists comes straight from the
plays:tracks / plays:artists counters instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import redis

from . import keys
from .periods import DAY_MS, HOUR_MS, LocalTime, day_date, weekday
from .playscan import PAGE, PlayScanner, artists_of, scan_plays
from .store import translate_redis_errors

KINDS = ("tracks", "artists", "albums")
_NAME_SCAN_LIMIT = 20_000  # recent plays read to find the names of the all-time top uris


@dataclass
class Row:
    key: str                 # uri, artist name, or album id (album name and artist without one)
    name: str
    artists: list[str]
    plays: int
    ms_played: int | None    # None when the figure came from a counter, which has no time

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class CountRow:
    uri: str
    name: str
    artists: list[str]
    plays: int
    ms_played: int
    first_at: int | None     # started_at of the first and last counted play
    last_at: int | None


_RANK_FIELDS = {"tracks": ("uri", "name", "counted", "ms_played"), "artists": ("artists", "counted", "ms_played"),
                "albums": ("album", "album_id", "artists", "counted", "ms_played")}


def top(client: "redis.Redis[str]", kind: str, since_ms: int | None = None, until_ms: int | None = None, *,
        limit: int = 10, hours: tuple[int, int] | None = None, local: LocalTime | None = None,
        keep: Callable[[str], bool] | None = None, who: bool = True) -> list[Row]:
    """The `limit` most played tracks, artists or albums among plays started in [since, until),
    and, with `hours=(7, 12)`, at a local hour h with 7 <= h < 12 (wrapping past midnight).
    `keep` ranks only the keys (uris, for tracks) it accepts; `who` False leaves Row.artists
    empty (one read less per winner)."""
    if kind != "albums" and since_ms is None and until_ms is None and hours is None and keep is None:
        return _top_from_counters(client, kind, limit)
    local = local or LocalTime()
    rows: dict[str, Row] = {}
    # Only the fields the ranking needs are read (Redis time grows with them); who to show next
    # to a winner is read afterwards from one of its plays.
    sample: dict[str, int] = {}
    for started_at, fields in scan_plays(client, _RANK_FIELDS[kind], since_ms=since_ms, until_ms=until_ms):
        if hours is not None and not in_hours(local.hour(started_at), hours):
            continue
        counted = fields.get("counted") == "1"
        ms = _int(fields.get("ms_played"))
        for key, name in _keys(kind, fields):
            if keep is not None and not keep(key):
                continue
            row = rows.get(key)
            if row is None:
                row = rows[key] = Row(key=key, name=name, artists=[], plays=0, ms_played=0)
                sample[key] = started_at
            row.plays += counted
            row.ms_played = (row.ms_played or 0) + ms
    ranked = sorted((r for r in rows.values() if r.plays > 0), key=lambda r: (-r.plays, -(r.ms_played or 0), r.name))
    winners = ranked[:limit]
    scanner = PlayScanner(client)
    for start in range(0, len(winners) if who else 0, PAGE):
        page = winners[start:start + PAGE]
        for row, fields in zip(page, scanner.read([str(sample[r.key]) for r in page], ("artists", "show"))):
            names = artists_of(fields)
            row.artists = [row.name] if kind == "artists" else names[:1] if kind == "albums" else names or _show(fields)
    return winners


def top_tracks(client: "redis.Redis[str]", since_ms: int | None, until_ms: int | None, *,
               hours: tuple[int, int] | None = None, tz: str | LocalTime | None = None, limit: int = 10,
               keep: Callable[[str], bool] | None = None) -> list[tuple[str, str, int]]:
    """(uri, name, counted plays) of the top tracks of a period and local-hours window, among
    the uris `keep` accepts (all by default); for callers such as a weekly playlist."""
    local = tz if isinstance(tz, LocalTime) else LocalTime(tz)
    return [(r.key, r.name, r.plays) for r in top(client, "tracks", since_ms, until_ms, limit=limit, hours=hours,
                                                  local=local, keep=keep, who=False)]


def in_hours(hour: int, window: tuple[int, int]) -> bool:
    start, end = window
    return start <= hour < end if start <= end else (hour >= start or hour < end)


def count(client: "redis.Redis[str]", query: str, since_ms: int | None = None,
          until_ms: int | None = None) -> list[CountRow]:
    """Plays of each uri whose track name (or "artist - name") contains `query`, or the uri itself."""
    exact = query if query.startswith("spotify:") else None
    needle = query.casefold()
    rows: dict[str, CountRow] = {}
    for started_at, fields in scan_plays(client, ("uri", "name", "artists", "counted", "ms_played"),
                                         since_ms=since_ms, until_ms=until_ms):
        uri = fields.get("uri", "")
        name = fields.get("name") or uri
        artists = artists_of(fields)
        if exact is not None:
            if uri != exact:
                continue
        elif needle not in name.casefold() and needle not in f"{', '.join(artists)} - {name}".casefold():
            continue
        row = rows.get(uri)
        if row is None:
            row = rows[uri] = CountRow(uri=uri, name=name, artists=artists, plays=0, ms_played=0,
                                       first_at=None, last_at=None)
        row.ms_played += _int(fields.get("ms_played"))
        if fields.get("counted") == "1":
            row.plays += 1
            row.first_at = started_at if row.first_at is None else row.first_at
            row.last_at = started_at
    return sorted(rows.values(), key=lambda r: (-r.plays, -r.ms_played, r.name))


def listening_time(client: "redis.Redis[str]", since_ms: int | None, until_ms: int | None,
                   local: LocalTime) -> tuple[list[int], list[int], dict[int, int]]:
    """ms_played per local hour (24), per weekday (7, Monday first) and per local day number.
    A play is spread over the hours it lasted, from its start, so a long episode is not all
    put in the hour it began."""
    hours, weekdays = [0] * 24, [0] * 7
    days: dict[int, int] = {}
    for started_at, fields in scan_plays(client, ("ms_played",), since_ms=since_ms, until_ms=until_ms):
        remaining, at = _int(fields.get("ms_played")), started_at
        while remaining > 0:
            here = local.local_ms(at)
            piece = min(remaining, HOUR_MS - here % HOUR_MS)
            day = here // DAY_MS
            hours[here // HOUR_MS % 24] += piece
            weekdays[weekday(day)] += piece
            days[day] = days.get(day, 0) + piece
            remaining -= piece
            at += piece
    return hours, weekdays, days


@dataclass
class Streak:
    days: int
    first: str | None        # local dates, ISO
    last: str | None


def streaks(client: "redis.Redis[str]", since_ms: int | None, until_ms: int | None, local: LocalTime,
            now_ms: int) -> tuple[Streak, Streak]:
    """(longest, current) runs of consecutive local days with at least one counted play. The
    current run is the one that ends today, or yesterday when today has no play yet."""
    listened = sorted({local.day(s) for s, f in scan_plays(client, ("counted",), since_ms=since_ms, until_ms=until_ms)
                       if f.get("counted") == "1"})
    longest, current = Streak(0, None, None), Streak(0, None, None)
    run_start = None
    for i, day in enumerate(listened):
        if run_start is None or day != listened[i - 1] + 1:
            run_start = day
        length = day - run_start + 1
        if length > longest.days:
            longest = Streak(length, day_date(run_start).isoformat(), day_date(day).isoformat())
    if listened and local.day(now_ms) - listened[-1] <= 1:
        i = len(listened) - 1
        while i > 0 and listened[i - 1] == listened[i] - 1:
            i -= 1
        current = Streak(listened[-1] - listened[i] + 1, day_date(listened[i]).isoformat(),
                         day_date(listened[-1]).isoformat())
    return longest, current


def _keys(kind: str, fields: dict[str, str]) -> list[tuple[str, str]]:
    if kind == "tracks":
        uri = fields.get("uri", "")
        return [(uri, fields.get("name") or uri)]
    if kind == "artists":
        return [(a, a) for a in artists_of(fields)]
    album = fields.get("album")
    if not album:
        return []
    key = fields.get("album_id") or f"{album.casefold()}\n{(artists_of(fields)[:1] or [''])[0].casefold()}"
    return [(key, album)]


def _show(fields: dict[str, str]) -> list[str]:
    show = fields.get("show")
    return [show] if show else []


def _top_from_counters(client: "redis.Redis[str]", kind: str, limit: int) -> list[Row]:
    with translate_redis_errors():
        ranked = client.zrevrange(keys.TRACK_COUNTS if kind == "tracks" else keys.ARTIST_COUNTS, 0, limit - 1,
                                  withscores=True)
    rows = [Row(key=m, name=m, artists=[m] if kind == "artists" else [], plays=int(s), ms_played=None)
            for m, s in ranked if s > 0]
    if kind == "tracks" and rows:
        # Counters hold uris only: the names come from the newest play of each.
        missing = {r.key: r for r in rows}
        for scanned, (_, fields) in enumerate(scan_plays(client, ("uri", "name", "artists", "show"), reverse=True)):
            row = missing.pop(fields.get("uri", ""), None)
            if row is not None:
                row.name = fields.get("name") or row.key
                row.artists = artists_of(fields) or _show(fields)
            if not missing or scanned >= _NAME_SCAN_LIMIT:
                break
    return sorted(rows, key=lambda r: (-r.plays, r.name))


def _int(raw: str | None) -> int:
    return max(0, keys.int_field(raw) or 0)
