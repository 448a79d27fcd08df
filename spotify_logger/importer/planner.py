"""Deciding, record by record, what an import writes: a new play, a confirmation, or nothing.

- A record is a play already stored (or planned) when it is the same track and their intervals
  are one listening by overlap.one_play: they share more than the timestamps' precision (2 s,
  or 1 min for account data), or more than half the record when it is shorter. Whichever field
  differs a little (ms_played 200000 or 199999, ts to the second or to the ms), it is one play.
  Records and plays pair one to one, largest overlap first, before any backfilled play is
  considered; a record left over that is still one listening with a paired play lists that play
  again: a duplicate. So back-to-back plays of one track stay two plays, and nothing an import
  writes overlaps a play of its track by more than `check` allows.
- "Same track" is the uri; an account-data record (pseudo-uri) is matched by track and artist
  name against extended-history plays too, and the other way round, so importing both exports
  does not double them.
- Same key, uri and ms_played as an imported play (a re-import, or a record the export lists
  twice): that play, even when it is too short to overlap anything. Nothing is written.
- A play the poller recorded that a record is: confirmed, never added. The export's extra fields
  the play lacks are added, and `import_ts` = ts when it has none: what an import stored once is
  never rewritten, so a later import (the other export, or a record listed a little differently)
  changes nothing.
- A play backfill created is stored as [played_at - duration, played_at], and played_at can
  lie anywhere from the play's start to a minute late: its interval says little. A record left
  unmatched confirms it when its ts falls in the play's feed window (overlap.feed_window, the
  one backfill matches with: [started_at - 2 min, end + duration_ms + 2 min], end - started_at
  standing in for a missing duration_ms) widened by the record's precision on both sides, paired
  in time order as backfill pairs (overlap.align_in_order). From then on, for the rest of the
  run, that listen is where the record says: a record that is one listening with it (a near
  duplicate, in this chunk or a later one) is a duplicate, not a new play beside it.
- `confirmed_at` is backfill's (the played_at it binds its feed item by): never written here.
- Otherwise it is a new play, keyed by ts - ms_played; when another item already holds that
  millisecond, the next free one, so skipped tracks ending in the same second are all kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ..batch import PlayWrite
from ..extract import RedisValue
from ..keys import SOURCE_FEED, SOURCE_IMPORT
from ..overlap import FEED_MIN_PLAY_MS, MATCH_SLACK_MS, align_in_order, feed_window, one_play, overlap_ms
from .records import EXTRA_FIELDS, Record
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
        # Where the records that confirmed a backfilled play say it was heard, for the whole run:
        # a record in a later chunk or file that is that listen cannot pair with the play again.
        self._heard = _Tracks(())

    def plan(self, records: list[Record]) -> ChunkPlan:
        """Records in started_at order, spanning at most a few hours more than LOOKBACK_MS."""
        out = ChunkPlan()
        lo = min(r.started_at for r in records) - LOOKBACK_MS
        # A backfilled play may start after the record ended (a late played_at; see _fits): read
        # those too. The probed keys (under started_at + MAX_PROBE_MS <= ended_at + precision) are in.
        hi = max(r.ended_at + r.precision for r in records) + MATCH_SLACK_MS
        self.timeline.cover(lo, hi)
        fresh: list[Record] = []
        first_free: list[int | None] = []
        for i, rec in enumerate(records):
            stored, free = self._probe(rec)
            if stored or (i and _same(records[i - 1], rec)):
                out.duplicates += 1
            else:
                fresh.append(rec)
                first_free.append(free)
        if not fresh:
            return out
        names = [rec.name_key for rec in fresh]
        matches, overlapping = self._match(fresh, names)
        confirming: list[tuple[Record, Known]] = []
        for i, match in sorted(matches.items()):
            if match.source == SOURCE_IMPORT:
                out.duplicates += 1
                continue
            out.confirmed += 1
            confirming.append((fresh[i], match))
            if match.source == SOURCE_FEED:
                # Its interval says little: from now on the listen is where this record says.
                self._heard.add(_as_play(fresh[i], fresh[i].started_at, names[i]))
        planned = _Tracks(())  # the plays this chunk adds, in the order it adds them
        for i, rec in enumerate(fresh):
            if i in matches:
                continue
            if i in overlapping or any(_one_play(rec, known) for tracks in (planned, self._heard)
                                       for known in tracks.of(rec, names[i])):
                # Another record took (or is) that play: this one lists it again, a little differently.
                out.duplicates += 1
                continue
            key = self._still_free(rec, first_free[i])
            if key is None:
                out.collisions += 1
                continue
            counted = rec.ms_played >= self.min_play_ms
            out.counted += counted
            out.creates.append(PlayWrite(
                started_at=key, fields=rec.fields(counted=counted, started_at=key), uri=rec.uri,
                artists=(rec.artist,) if rec.artist else (), counted=counted, create_only=True,
            ))
            known = _as_play(rec, key, names[i])
            self.timeline.add(known)
            planned.add(known)
        self._confirm(confirming, out)
        return out

    def _match(self, records: list[Record], names: list[tuple[str, str] | None]) -> tuple[dict[int, Known], set[int]]:
        """Pair records with the stored plays they are (one_play), one to one, largest overlaps
        first, so a record that only grazes a play (its neighbour's) cannot take it from the
        right one. Also returns the records that are some stored play, paired or not."""
        tracks = _Tracks(k for k in self.timeline.plays.values() if k.source != SOURCE_FEED)
        pairs = []
        for i, rec in enumerate(records):
            for known in tracks.of(rec, names[i]):
                if _one_play(rec, known):
                    overlap = overlap_ms(rec.started_at, rec.ended_at, known.started_at, known.end)
                    pairs.append((overlap, -i, known.started_at, known))
        overlapping = {-p[1] for p in pairs}
        pairs.sort(key=lambda p: p[:3], reverse=True)
        matched: dict[int, Known] = {}
        taken = set(self._confirmed)
        for _, neg_i, started_at, known in pairs:
            if -neg_i not in matched and started_at not in taken:
                matched[-neg_i] = known
                taken.add(started_at)
        self._match_feed(records, matched, taken)
        return matched, overlapping

    def _match_feed(self, records: list[Record], matched: dict[int, Known], taken: set[int]) -> None:
        """Pair the records still unmatched with the plays backfill created: by uri, then (for
        account data) by name, in time order, most pairs first, then records the feed would list
        (over 30 s), then the ts nearest each played_at."""
        feed = sorted((k for k in self.timeline.plays.values() if k.source == SOURCE_FEED), key=lambda k: k.started_at)
        if not feed:
            return
        for by_name in (False, True):
            groups: dict[object, tuple[list[int], list[Known]]] = {}
            for i, rec in enumerate(records):
                if i not in matched and rec.pseudo == by_name and (key := _group(rec.uri, rec.name_key, by_name)):
                    groups.setdefault(key, ([], []))[0].append(i)
            for known in feed:
                key = _group(known.uri, known.name_key, by_name)
                if known.started_at not in taken and key in groups and not known.pseudo:
                    groups[key][1].append(known)
            for indexes, plays in groups.values():
                for i, known in _pair_in_order(records, sorted(indexes, key=lambda i: records[i].ended_at), plays):
                    matched[i] = known
                    taken.add(known.started_at)

    def _probe(self, rec: Record) -> tuple[bool, int | None]:
        """(imported already?, first free key), walking the keys from ts - ms_played on: an
        import of the same uri and ms_played at one of them, before a free one, is this record."""
        for key in range(rec.started_at, rec.started_at + MAX_PROBE_MS):
            known = self.timeline.at(key)
            if known is None:
                return False, key
            if known.source == SOURCE_IMPORT and known.uri == rec.uri and known.ms_played == rec.ms_played:
                return True, None
        return False, None

    def _still_free(self, rec: Record, key: int | None) -> int | None:
        """The first free key from the probed one on: a record planned since may have taken it
        (the keys before it were taken already, and plays are only added while planning)."""
        if key is None:
            return None
        while key < rec.started_at + MAX_PROBE_MS:
            if self.timeline.at(key) is None:
                return key
            key += 1
        return None

    def _confirm(self, pairs: list[tuple[Record, Known]], out: ChunkPlan) -> None:
        pairs = [(rec, play) for rec, play in pairs if play.started_at not in self._confirmed]
        held = self.timeline.held([play.started_at for _, play in pairs], EXTRA_FIELDS)
        for (rec, play), present in zip(pairs, held):
            self._confirmed.add(play.started_at)
            # Only fields the play lacks: what an import stored stays as it is, so a record listing
            # the play a little differently, or the other export, changes nothing. import_ts is
            # kept once set, so the account data cannot flip it to its minute rounding.
            fields: dict[str, RedisValue] = {k: v for k, v in rec.extras.items() if k not in present}
            if play.import_ts is None:
                fields["import_ts"] = rec.ended_at
            if fields:
                out.confirms.append(PlayWrite(started_at=play.started_at, fields=fields, uri=play.uri))


class _Tracks:
    """The stored and planned plays (backfill's aside) a record may be: by uri, and by name for
    the other export (an account-data record against the extended history, and back)."""

    def __init__(self, plays: Iterable[Known]) -> None:
        self.by_uri: dict[str, list[Known]] = {}
        self.by_name: dict[tuple[str, str], list[Known]] = {}
        for known in plays:
            self.add(known)

    def add(self, known: Known) -> None:
        self.by_uri.setdefault(known.uri, []).append(known)
        if known.name_key:
            self.by_name.setdefault(known.name_key, []).append(known)

    def of(self, rec: Record, name_key: tuple[str, str] | None) -> list[Known]:
        same_name = self.by_name.get(name_key, ()) if name_key else ()
        return [*self.by_uri.get(rec.uri, ()), *(k for k in same_name if k.pseudo != rec.pseudo)]


def _as_play(rec: Record, started_at: int, name: tuple[str, str] | None) -> Known:
    return Known(started_at=started_at, end=rec.ended_at, uri=rec.uri, name_key=name, source=SOURCE_IMPORT,
                 ms_played=rec.ms_played, import_ts=None, precision=rec.precision, pseudo=rec.pseudo)


def _one_play(rec: Record, known: Known) -> bool:
    # Most candidates in the window are other plays of the track, hours away: skip them cheaply
    # (intervals that share nothing are never one play).
    if known.end <= rec.started_at or known.started_at >= rec.ended_at:
        return False
    shared = overlap_ms(rec.started_at, rec.ended_at, known.started_at, known.end)
    return one_play(shared, rec.precision, known.precision, rec.ms_played)


def _group(uri: str, key: tuple[str, str] | None, by_name: bool) -> object:
    return key if by_name else uri


def _pair_in_order(records: list[Record], indexes: list[int], plays: list[Known]) -> list[tuple[int, Known]]:
    recs = [records[i] for i in indexes]
    pairs = align_in_order(len(recs), len(plays), lambda i, j: _fits(recs[i], plays[j]),
                           lambda i, j: _nearness(recs[i], plays[j]))
    return [(indexes[i], plays[j]) for i, j in pairs]


def _fits(rec: Record, play: Known) -> bool:
    low, high = feed_window(play.started_at, play.end, play.duration_ms or play.end - play.started_at)
    return low - rec.precision <= rec.ended_at <= high + rec.precision


def _nearness(rec: Record, play: Known) -> tuple[int, int]:
    # A backfilled play's end is its played_at. A skip of the same track next to it is a weaker
    # candidate than a full listen: the feed lists only plays over 30 s.
    return int(rec.ms_played >= FEED_MIN_PLAY_MS), -abs(rec.ended_at - play.end)


def _same(a: Record, b: Record) -> bool:
    return (a.started_at, a.uri, a.ms_played) == (b.started_at, b.uri, b.ms_played)
