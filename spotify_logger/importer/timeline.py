"""The plays around the records being imported: read from Redis one time window at a time.

Records are planned in time order, chunk by chunk, so the window slides forward and each stored
play is read about once (playscan: one page of 1000 plays per script call), whatever the
size of the store or of the export. Plays this run plans are added too: in a real run they
are in Redis by the next window; in a dry run they are kept aside (per day) so the summary of a
dry run is the summary the real run will print.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import redis

from ..keys import int_field
from ..overlap import is_pseudo_uri, play_end, precision_ms
from ..periods import DAY_MS
from ..playscan import PlayScanner, artists_of
from .records import MAX_STREAM_MS, SLOTS, name_key

# A stored play that started this long before a record may still overlap it: as long as the
# longest stream a record may hold, so an overlap is never missed for lack of reading the play.
LOOKBACK_MS = MAX_STREAM_MS
_FIELDS = ("uri", "name", "artists", "show", "type", "ended_at", "last_seen_at", "ms_played", "source",
           "duration_ms", "import_ts")


@dataclass(**SLOTS)
class Known:
    started_at: int
    end: int
    uri: str
    name_key: tuple[str, str] | None
    source: str | None
    ms_played: int | None
    import_ts: int | None       # set once an import confirmed this play
    precision: int
    pseudo: bool
    duration_ms: int | None = None

    @classmethod
    def from_hash(cls, started_at: int, h: dict[str, str]) -> "Known":
        uri = h.get("uri") or ""
        artists = artists_of(h)
        by = h.get("show") if h.get("type") == "episode" else (artists[0] if artists else None)
        duration_ms = int_field(h.get("duration_ms"))
        return cls(started_at=started_at, end=play_end(started_at, h), uri=uri,
                   name_key=name_key(h.get("name"), by), source=h.get("source"),
                   ms_played=int_field(h.get("ms_played")), import_ts=int_field(h.get("import_ts")),
                   precision=precision_ms(uri, h.get("source"), duration_ms), pseudo=is_pseudo_uri(uri),
                   duration_ms=duration_ms)


class Timeline:
    def __init__(self, client: "redis.Redis[str]", *, keep_planned: bool) -> None:
        self.client = client
        self.plays: dict[int, Known] = {}
        self._lo: int | None = None
        self._hi: int | None = None
        self._planned: dict[int, list[Known]] | None = {} if keep_planned else None
        self._scanner = PlayScanner(client)

    def cover(self, lo: int, hi: int) -> None:
        """Make `plays` hold every play that started in [lo, hi] (and forget older ones)."""
        if self._lo is not None and self._hi is not None and self._lo <= lo <= self._hi:
            if hi > self._hi:
                self._load(self._hi, hi, exclusive=True)
                self._hi = hi
            self.plays = {s: k for s, k in self.plays.items() if s >= lo}
            self._lo = lo
            return
        self.plays = {}
        self._load(lo, hi, exclusive=False)
        self._lo, self._hi = lo, hi

    def at(self, started_at: int) -> Known | None:
        return self.plays.get(started_at)

    def held(self, plays: Sequence[int], names: Sequence[str]) -> list[frozenset[str]]:
        """Which of `names` each of these stored plays holds, read now in one call: only the few
        plays a chunk confirms need them, so the window does not carry them for every play."""
        return [frozenset(row) for row in self._scanner.read([str(s) for s in plays], names)] if plays else []

    def add(self, known: Known) -> None:
        self.plays[known.started_at] = known
        if self._planned is not None:
            self._planned.setdefault(known.started_at // DAY_MS, []).append(known)

    def _load(self, lo: int, hi: int, *, exclusive: bool) -> None:
        for member, fields in self._scanner.scan(_FIELDS, since_ms=lo + 1 if exclusive else lo, until_ms=hi + 1):
            if member.isdigit() and fields.get("uri"):
                self.plays[int(member)] = Known.from_hash(int(member), fields)
        if self._planned:
            for day in range(lo // DAY_MS, hi // DAY_MS + 1):
                for known in self._planned.get(day, ()):
                    if (lo < known.started_at if exclusive else lo <= known.started_at) and known.started_at <= hi:
                        self.plays[known.started_at] = known
