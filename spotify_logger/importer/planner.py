"""Deciding, record by record, what an import writes: a new play, a confirmation, or nothing.

- An imported play stored under the record's started_at with the same uri and ms_played is that
  play (a re-import, or a record the export lists twice): nothing is written.
- A record that overlaps a play of the same uri the poller or backfill recorded is that play:
  it is confirmed (the export's extra fields, and `confirmed_at` = ts when it has none), never
  added. An account-data record (pseudo-uri) is matched by track and artist name instead, and
  also against extended-history imports, so importing both exports does not double them.
- Otherwise it is a new play, keyed by ts - ms_played; when another item already holds that
  millisecond, the next free one, so skipped tracks ending in the same second are all kept.

Overlap means more than the timestamps' precision (2 s, or 1 min for account data), or more than
half the record when it is shorter; records and plays pair one to one, largest overlap first. So
back-to-back plays of one track stay two plays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ..batch import PlayWrite
from ..extract import RedisValue
from ..overlap import overlap_ms, tolerance_ms
from .records import Record
from .timeline import LOOKBACK_MS, Known, Timeline

MAX_PROBE_MS = 1_000  # how many milliseconds past ts - ms_played a record may move for a free key


@dataclass
class ChunkPlan:
    creates: list[PlayWrite] = field(default_factory=list)
    confirms: list[PlayWrite] = field(default_factory=list)
    counted: int = 0
    confirmed: int = 0
    duplicates: int = 0
    collisions: int = 0

    @property
    def writes(self) -> list[PlayWrite]:
        return self.confirms + self.creates


class Planner:
    def __init__(self, timeline: Timeline, *, min_play_ms: int) -> None:
        self.timeline = timeline
        self.min_play_ms = min_play_ms
        self._confirmed: set[int] = set()  # stored plays this run confirmed: one write each

    def plan(self, records: list[Record]) -> ChunkPlan:
        """Records in started_at order, spanning at most a few hours more than LOOKBACK_MS."""
        out = ChunkPlan()
        lo = min(r.started_at for r in records) - LOOKBACK_MS
        hi = max(r.ended_at for r in records) + MAX_PROBE_MS
        self.timeline.cover(lo, hi)
        fresh: list[Record] = []
        for i, rec in enumerate(records):
            if self._stored(rec) or (i and _same(records[i - 1], rec)):
                out.duplicates += 1
            else:
                fresh.append(rec)
        matches = self._match(fresh)
        for i, rec in enumerate(fresh):
            match = matches.get(i)
            if match is not None:
                if match.source == "import":
                    out.duplicates += 1
                else:
                    out.confirmed += 1
                    self._confirm(rec, match, out)
                continue
            key = self._free_key(rec)
            if key is None:
                out.collisions += 1
                continue
            counted = rec.ms_played >= self.min_play_ms
            out.counted += counted
            out.creates.append(PlayWrite(
                started_at=key, fields=rec.fields(counted=counted, started_at=key), uri=rec.uri,
                artists=(rec.artist,) if rec.artist else (), counted=counted, create_only=True,
            ))
            self.timeline.add(Known(started_at=key, end=rec.ended_at, uri=rec.uri, name_key=rec.name_key,
                                    source="import", ms_played=rec.ms_played, confirmed=False,
                                    precision=rec.precision, pseudo=rec.pseudo))
        return out

    def _match(self, records: list[Record]) -> dict[int, Known]:
        """Pair records with the stored plays they overlap, one to one, largest overlaps first, so
        a record that only grazes a play (its neighbour's) cannot take it from the right one."""
        by_uri, by_name = _candidates(self.timeline.plays.values())
        pairs = []
        for i, rec in enumerate(records):
            same_name = by_name.get(rec.name_key, ()) if rec.name_key else ()
            for known in [*by_uri.get(rec.uri, ()), *(k for k in same_name if k.pseudo != rec.pseudo)]:
                overlap = overlap_ms(rec.started_at, rec.ended_at, known.started_at, known.end)
                if overlap > min(tolerance_ms(rec.precision, known.precision), rec.ms_played // 2):
                    pairs.append((overlap, -i, known.started_at, known))
        pairs.sort(key=lambda p: p[:3], reverse=True)
        matched: dict[int, Known] = {}
        taken = set(self._confirmed)
        for _, neg_i, started_at, known in pairs:
            if -neg_i not in matched and started_at not in taken:
                matched[-neg_i] = known
                taken.add(started_at)
        return matched

    def _stored(self, rec: Record) -> bool:
        """This record was imported already: same uri and ms_played at its key (or a probed one)."""
        for key in range(rec.started_at, rec.started_at + MAX_PROBE_MS):
            known = self.timeline.at(key)
            if known is None:
                return False
            if known.source == "import" and known.uri == rec.uri and known.ms_played == rec.ms_played:
                return True
        return False

    def _free_key(self, rec: Record) -> int | None:
        for key in range(rec.started_at, rec.started_at + MAX_PROBE_MS):
            if self.timeline.at(key) is None:
                return key
        return None

    def _confirm(self, rec: Record, play: Known, out: ChunkPlan) -> None:
        if play.started_at in self._confirmed:
            return
        self._confirmed.add(play.started_at)
        fields: dict[str, RedisValue] = dict(rec.extras)
        if not play.confirmed:
            # Never overwritten: backfill binds its recently-played item to a play by this value.
            fields["confirmed_at"] = rec.ended_at
        if fields:
            out.confirms.append(PlayWrite(started_at=play.started_at, fields=fields, uri=play.uri))


def _candidates(plays: Iterable[Known]) -> tuple[dict[str, list[Known]], dict[tuple[str, str], list[Known]]]:
    by_uri: dict[str, list[Known]] = {}
    by_name: dict[tuple[str, str], list[Known]] = {}
    for known in plays:
        if known.source != "import":
            by_uri.setdefault(known.uri, []).append(known)
        if known.name_key:
            by_name.setdefault(known.name_key, []).append(known)
    return by_uri, by_name



def _same(a: Record, b: Record) -> bool:
    return (a.started_at, a.uri, a.ms_played) == (b.started_at, b.uri, b.ms_played)
