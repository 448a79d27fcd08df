"""Reconciling recently-played items with stored plays. Pure: no I/O, no clock.

Spotify's feed says a track was played at `played_at` (roughly the end of the play, though it
can be anywhere from its start to a minute or so late). The poller may already have recorded
that play; the feed must then only confirm it, never count it a second time. Per uri, items and
stored plays are paired one-to-one, in time order, by a small alignment (most pairs first, then
pairs on counted plays, then the nearest ends), so two back-to-back plays of one track stay two.

A pair records `confirmed_at` = the item's played_at on the play. A later pass binds that item
to that play again before anything else, which makes every pass after the first a no-op. Only
backfill writes `confirmed_at` (an import's confirmation is `import_ts`), so a play is bound
here exactly when an item of this feed confirmed it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .batch import PlayWrite
from .extract import dict_get, extract, redis_convert
from .keys import SOURCE_FEED, int_field
from .overlap import MATCH_SLACK_MS, align_in_order, feed_window, play_end
from .timeutil import iso_to_ms

__all__ = ["MATCH_SLACK_MS", "STORED_FIELDS", "Outcome", "RecentItem", "StoredPlay", "align", "new_play",
           "parse_item", "reconcile"]

# The hash fields StoredPlay.from_hash reads (overlap.play_end's included).
STORED_FIELDS = ("uri", "ended_at", "last_seen_at", "ms_played", "duration_ms", "counted", "confirmed_at")


@dataclass(frozen=True)
class RecentItem:
    """One recently-played entry, flattened: what it is, when, and the play-hash fields."""

    played_at: int
    uri: str
    duration_ms: int
    fields: Mapping[str, Any]  # named as tracker.py names them (type, name, artists, album, ...)

    @property
    def artists(self) -> tuple[str, ...]:
        return tuple(self.fields.get("artists") or ())


@dataclass(frozen=True)
class StoredPlay:
    started_at: int
    uri: str
    end: int                  # overlap.play_end: ended_at, or last_seen_at while the play is open
    duration_ms: int
    counted: bool
    confirmed_at: int | None

    @classmethod
    def from_hash(cls, started_at: int, h: Mapping[str, str]) -> "StoredPlay | None":
        uri = h.get("uri")
        if not uri:
            return None
        return cls(started_at=started_at, uri=uri, end=play_end(started_at, h),
                   duration_ms=int_field(h.get("duration_ms")) or 0, counted=h.get("counted") == "1",
                   confirmed_at=int_field(h.get("confirmed_at")))

    def window(self) -> tuple[int, int]:
        """Where an item of this play may say it was played."""
        return feed_window(self.started_at, self.end, self.duration_ms)


@dataclass
class Outcome:
    """What one pass decided. `confirm` and `create` are the writes; the rest is for reports."""

    confirm: list[tuple[int, RecentItem]] = field(default_factory=list)  # (stored started_at, item)
    create: list[tuple[int, RecentItem]] = field(default_factory=list)   # (new started_at, item)
    already: int = 0                                                      # bound by an earlier pass

    def writes(self) -> list[PlayWrite]:
        out = [PlayWrite(started_at=s, fields={"confirmed_at": item.played_at}, uri=item.uri)
               for s, item in self.confirm]
        out.extend(new_play(s, item) for s, item in self.create)
        return out


def parse_item(raw: Any) -> RecentItem | None:
    """A PlayHistoryObject to a RecentItem; None when it lacks a uri, duration or played_at."""
    played_at = iso_to_ms(dict_get(raw, "played_at"))
    # The feed item carries a TrackObject and a context: the same shapes as a /me/player body,
    # so extract() maps them to the very field names the poller writes.
    snap = extract({"item": dict_get(raw, "track"), "context": dict_get(raw, "context")})
    if played_at is None or not snap.uri or not snap.duration_ms:
        return None
    fields = snap.item_fields()
    fields["type"] = snap.kind or "track"
    return RecentItem(played_at=played_at, uri=snap.uri, duration_ms=snap.duration_ms, fields=fields)


def new_play(started_at: int, item: RecentItem) -> PlayWrite:
    """A play the poller never saw. Spotify lists only plays over 30 s, so it counts; how long
    it was heard is unknown, so ms_played and progress_ms stay absent."""
    values = dict(item.fields)
    values.update(started_at=started_at, ended_at=item.played_at, duration_ms=item.duration_ms,
                  uri=item.uri, playing=False, counted=True, source=SOURCE_FEED,
                  confirmed_at=item.played_at)
    return PlayWrite(started_at=started_at, fields=redis_convert(values), uri=item.uri,
                     artists=item.artists, counted=True, create_only=True)


def reconcile(items: Iterable[RecentItem], stored: Iterable[StoredPlay]) -> Outcome:
    """Pair items with stored plays; the unpaired items become new plays."""
    unique = sorted({(i.uri, i.played_at): i for i in items}.values(), key=lambda i: (i.played_at, i.uri))
    plays = sorted(stored, key=lambda p: p.started_at)
    taken = {p.started_at for p in plays}
    out = Outcome()
    bound = {(p.uri, p.confirmed_at) for p in plays if p.confirmed_at is not None}
    free_items = [i for i in unique if (i.uri, i.played_at) not in bound]
    out.already = len(unique) - len(free_items)
    # A play confirmed earlier belongs to its item, even when that item is no longer listed.
    free_plays = [p for p in plays if p.confirmed_at is None]
    by_uri: dict[str, tuple[list[RecentItem], list[StoredPlay]]] = {}
    for item in free_items:
        by_uri.setdefault(item.uri, ([], []))[0].append(item)
    for play in free_plays:
        if play.uri in by_uri:
            by_uri[play.uri][1].append(play)
    for uri_items, uri_plays in by_uri.values():
        pairs = align(uri_items, uri_plays)
        paired = {id(item) for item, _ in pairs}
        out.confirm.extend((play.started_at, item) for item, play in pairs)
        for item in uri_items:
            if id(item) not in paired:
                out.create.append((_free_key(item.played_at - item.duration_ms, taken), item))
    out.confirm.sort(key=lambda c: c[0])
    out.create.sort(key=lambda c: c[0])
    return out


def align(items: Sequence[RecentItem], plays: Sequence[StoredPlay]) -> list[tuple[RecentItem, StoredPlay]]:
    """Order-preserving pairing of one uri's items (by played_at) with its plays (by started_at).

    Best is, in order: the most pairs, the most pairs on counted plays (a skip the poller saw
    is a weaker candidate than a full play, as Spotify lists only plays over 30 s), the least
    total distance between played_at and the play's end. A plain nearest-first greedy would
    let one item steal the neighbour's play when played_at drifts toward a play's start.
    """

    def fits(i: int, j: int) -> bool:
        low, high = plays[j].window()
        return low <= items[i].played_at <= high

    def weight(i: int, j: int) -> tuple[int, int]:
        return int(plays[j].counted), -abs(items[i].played_at - plays[j].end)

    return [(items[i], plays[j]) for i, j in align_in_order(len(items), len(plays), fits, weight)]


def _free_key(started_at: int, taken: set[int]) -> int:
    # Two plays cannot share a key; a millisecond later is as good a start and stays stable,
    # since a second pass finds this play through its confirmed_at, not through its key.
    while started_at in taken:
        started_at += 1
    taken.add(started_at)
    return started_at
