"""The store's invariants, verified, and rebuilt from the play hashes when they do not hold.

1. Every play hash is in listening:index, and every index member has a play hash.
2. plays:tracks[uri] and plays:artists[name] equal the number of counted plays that name them.
3. No key under a play name is foreign: a hash with none of the play fields (someone's
   `HSET listening:<ms> foreign yes`) is reported, and left out of the index and the counters,
   so that repair never adds it and never removes it again.
4. No two plays of one uri overlap by more than their precision (overlap.precision_ms; for a
   play backfill created, its duration + 2 min).

The play hashes are the truth: `repair` rewrites the index and the counters from them in one
MULTI/EXEC, under WATCH, so a poller write landing meanwhile makes it start over rather than
overwrite a fresher counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, TypeVar

import redis

from . import keys
from .errors import StoreUnavailable
from .overlap import overlap_ms, play_end, precision_ms, tolerance_ms
from .playscan import PlayScanner, artists_of
from .storeerrors import foreign_key_error, foreign_keys, translate_redis_errors

T = TypeVar("T")
SHOWN = 10   # problems listed per kind; the rest are counted
_SCAN = 1000
_PLAY_FIELDS = frozenset(keys.PLAY_FIELDS)
_FIELDS = ("started_at", "uri", "counted", "artists", "ended_at", "last_seen_at", "ms_played", "source", "duration_ms")


@dataclass
class Problems:
    count: int = 0
    shown: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.shown) < SHOWN:
            self.shown.append(text)


@dataclass
class Report:
    plays: int = 0
    counted: int = 0
    no_uri: Problems = field(default_factory=Problems)
    index: Problems = field(default_factory=Problems)
    counters: Problems = field(default_factory=Problems)
    overlaps: Problems = field(default_factory=Problems)
    foreign: Problems = field(default_factory=Problems)
    # Filled for repair: what the play hashes say the index and counters should be.
    missing: list[int] = field(default_factory=list)
    dangling: list[str] = field(default_factory=list)
    tracks: dict[str, int] = field(default_factory=dict)
    artists: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.index.count or self.counters.count or self.overlaps.count or self.no_uri.count
                    or self.foreign.count)

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "plays": self.plays, "counted": self.counted,
                **{name: {"problems": p.count, "shown": p.shown} for name, p in self._sections()}}

    def render(self) -> str:
        lines = [f"{'plays:':<11}{self.plays} ({self.counted} counted)"]
        for name, p in self._sections():
            lines.append(f"{name + ':':<11}" + ("ok" if not p.count else f"{p.count} problem(s)"))
            lines.extend(f"  {text}" for text in p.shown)
            if p.count > len(p.shown):
                lines.append(f"  ... and {p.count - len(p.shown)} more")
        lines.append("result:    " + ("ok" if self.ok else "PROBLEMS FOUND (`check --repair` rebuilds the index "
                                                          "and counters; overlaps and foreign keys need a look)"))
        return "\n".join(lines)

    def _sections(self) -> list[tuple[str, Problems]]:
        return [("index", self.index), ("counters", self.counters), ("overlaps", self.overlaps),
                ("uri", self.no_uri), ("foreign", self.foreign)]


def check(client: "redis.Redis[str]", client_id: str | None = None) -> Report:
    report = Report()
    with translate_redis_errors(client):
        # A fixed key of another type would fail the reads below, and one of the app's budget
        # keys every API call: name it (exit 78) instead.
        found = foreign_keys(client, client_id=client_id)
        if found:
            raise foreign_key_error(found)
        _check_hashes(client, report)
        _check_index(client, report)
        _check_counter(client, keys.TRACK_COUNTS, report.tracks, report)
        _check_counter(client, keys.ARTIST_COUNTS, report.artists, report)
    return report


def repair(client: "redis.Redis[str]", *, attempts: int = 3, client_id: str | None = None) -> Report:
    """Rebuild the index and counters from the play hashes. Returns the report it acted on."""
    watched = (keys.INDEX, keys.TRACK_COUNTS, keys.ARTIST_COUNTS)
    for _ in range(attempts):
        with translate_redis_errors(client):
            with client.pipeline(transaction=True) as pipe:
                pipe.watch(*watched)
                report = check(client, client_id)
                pipe.multi()
                pipe.delete(keys.TRACK_COUNTS, keys.ARTIST_COUNTS)
                for name, counts in ((keys.TRACK_COUNTS, report.tracks), (keys.ARTIST_COUNTS, report.artists)):
                    for counted in _parts(list(counts.items())):
                        pipe.zadd(name, dict(counted))
                for missing in _parts(report.missing):
                    pipe.zadd(keys.INDEX, {str(s): s for s in missing})
                for dangling in _parts(report.dangling):
                    pipe.zrem(keys.INDEX, *dangling)
                try:
                    pipe.execute()
                    return report
                except redis.WatchError:
                    continue
    raise StoreUnavailable("the poller kept writing while repairing: stop it (systemctl stop) and repair again")


def _check_hashes(client: "redis.Redis[str]", report: Report) -> None:
    """Pass 1, over the hashes (SCAN, which may repeat a key): plays missing from the index."""
    missing: set[int] = set()
    for batch in _scan_play_keys(client):
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.zscore(keys.INDEX, str(keys.started_at_of(key)))
        missing.update(keys.started_at_of(k) for k, score in zip(batch, pipe.execute()) if score is None)
    scanner = PlayScanner(client)
    for part in _parts(sorted(missing), _SCAN):
        rows = scanner.read([str(s) for s in part], _FIELDS)
        kinds = _kinds(client, [str(s) for s, row in zip(part, rows) if not row])
        for started_at, fields in zip(part, rows):
            kind = kinds.get(str(started_at), "play")
            if kind == "foreign":
                _foreign(report, keys.play_key(started_at))
            if kind != "play":  # foreign, or deleted since the SCAN saw it
                continue
            report.missing.append(started_at)
            report.index.add(f"{keys.play_key(started_at)} is not in {keys.INDEX}")
            _tally(report, keys.play_key(started_at), fields)


def _check_index(client: "redis.Redis[str]", report: Report) -> None:
    """Pass 2, over the index in time order: tallies, members without a play, overlaps."""
    last: dict[str, tuple[int, int, int]] = {}  # uri -> (started_at, end, precision) of the latest-ending play
    scanner = PlayScanner(client)
    offset = 0
    while True:
        # By rank, not by score: a corrupt index may hold members that are not their own score.
        members = client.zrange(keys.INDEX, offset, offset + _SCAN - 1)
        if not members:
            return
        offset += len(members)
        rows = scanner.read(members, _FIELDS)
        kinds = _kinds(client, [m for m, row in zip(members, rows) if not row and m.isdigit()])
        for member, fields in zip(members, rows):
            kind = kinds.get(member, "play") if member.isdigit() else "gone"
            if kind != "play":
                report.dangling.append(member)  # left out of the index
                if kind == "foreign":
                    _foreign(report, keys.play_key(int(member)))
                else:
                    report.index.add(f"{keys.INDEX} member {member} has no play hash")
                continue
            uri = _tally(report, keys.play_key(int(member)), fields)
            if uri is None:
                continue
            start = int(member)
            end = play_end(start, fields)
            precision = precision_ms(uri, fields.get("source"), keys.int_field(fields.get("duration_ms")))
            before = last.get(uri)
            if before is not None:
                shared = overlap_ms(before[0], before[1], start, end)
                if shared > tolerance_ms(before[2], precision):
                    report.overlaps.add(f"{uri}: {keys.play_key(before[0])} and {keys.play_key(start)} "
                                        f"overlap by {shared / 1000:.1f} s")
            if before is None or end > before[1]:
                last[uri] = (start, end, precision)


def _kinds(client: "redis.Redis[str]", members: list[str]) -> dict[str, str]:
    """For members whose hash has none of _FIELDS (rare): "gone" (no hash), "foreign" (none of
    the play fields) or "play" (a play that lacks them, reported as such by _tally)."""
    if not members:
        return {}
    pipe = client.pipeline(transaction=False)
    for member in members:
        pipe.hkeys(f"{keys.PLAY_PREFIX}{member}")
    out = {}
    for member, names in zip(members, pipe.execute()):
        out[member] = "gone" if not names else ("play" if set(names) & _PLAY_FIELDS else "foreign")
    return out


def _foreign(report: Report, key: str) -> None:
    report.foreign.add(f"{key} is not a play (it has none of the play fields): left out of the index and the "
                       "counters; delete it if it is not yours")


def _tally(report: Report, key: str, fields: dict[str, str]) -> str | None:
    report.plays += 1
    uri = fields.get("uri")
    if not uri:
        report.no_uri.add(f"{key} has no uri: it cannot be counted")
        return None
    if fields.get("counted") == "1":
        report.counted += 1
        report.tracks[uri] = report.tracks.get(uri, 0) + 1
        for artist in artists_of(fields):
            report.artists[artist] = report.artists.get(artist, 0) + 1
    return uri


def _check_counter(client: "redis.Redis[str]", name: str, expected: dict[str, int], report: Report) -> None:
    seen = set()
    for member, score in client.zscan_iter(name, count=_SCAN):
        seen.add(member)
        want = expected.get(member, 0)
        if int(score) != want:
            report.counters.add(f"{name} {member} is {int(score)}, its counted plays are {want}")
    for member, want in expected.items():
        if member not in seen:
            report.counters.add(f"{name} {member} is missing, its counted plays are {want}")


def _scan_play_keys(client: "redis.Redis[str]") -> Iterator[list[str]]:
    batch: list[str] = []
    for key in client.scan_iter(match=f"{keys.PLAY_PREFIX}*", count=_SCAN):
        if keys.is_play_key(key):
            batch.append(key)
            if len(batch) >= _SCAN:
                yield batch
                batch = []
    if batch:
        yield batch


def _parts(items: list[T], size: int = 5000) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
