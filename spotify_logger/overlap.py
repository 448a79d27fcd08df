"""When two plays are the same stretch of listening: shared by `import`, backfill and `check`.

A play's interval is [started_at, end]. Imported plays carry the export's rounding: the extended
history's `ts` has 1 s precision, the account-data `endTime` 1 min. Two intervals that share no
more than that precision are neighbours (back-to-back plays of one track), not one play.

A recently-played `played_at` is vaguer: anywhere from the play's start to a minute or more
after its end. So a play backfill created, stored as [played_at - duration, played_at], may sit
a whole duration away from where it was heard, and anything matched against a `played_at` uses
the generous `feed_window` with an order-preserving one-to-one pairing (`align_in_order`)
instead of interval overlap.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from .keys import SOURCE_FEED, SOURCE_IMPORT, int_field

# Account-data records have no uri; the importer gives them one under this prefix (see
# importer/records.py), built from the artist and track names, so the same song adds up.
PSEUDO_URI_PREFIX = "spotify:import:"

EXTENDED_PRECISION_MS = 1_000
ACCOUNT_PRECISION_MS = 60_000
# Poller and backfill plays: the tracker never overlaps plays, but a play's polled end can be a
# request's latency late, and an export ts is rounded to the second: together under 2 s.
BASE_TOLERANCE_MS = 2_000
# How far a played_at may lie outside [started_at, end + duration] of the play it reports.
MATCH_SLACK_MS = 120_000
# Spotify's recently-played lists only plays heard for longer than this.
FEED_MIN_PLAY_MS = 30_000


def is_pseudo_uri(uri: str) -> bool:
    return uri.startswith(PSEUDO_URI_PREFIX)


def precision_ms(uri: str, source: str | None, duration_ms: int | None) -> int:
    """How far a play's stored interval may be off; `duration_ms` is the hash's (None if absent)."""
    if source == SOURCE_FEED and duration_ms is not None:
        # Its interval is estimated from a played_at that may sit anywhere in the listen, so it
        # may be off by a whole track (plus the feed's slack) without being another play.
        return duration_ms + MATCH_SLACK_MS
    if is_pseudo_uri(uri):
        return ACCOUNT_PRECISION_MS
    if source == SOURCE_IMPORT:
        return EXTENDED_PRECISION_MS
    return BASE_TOLERANCE_MS


def play_end(started_at: int, fields: Mapping[str, str]) -> int:
    """ended_at; for an open play, the last sighting; failing both, start plus time heard."""
    for name in ("ended_at", "last_seen_at"):
        value = int_field(fields.get(name))
        if value is not None and value >= started_at:
            return value
    return started_at + (int_field(fields.get("ms_played")) or 0)


def overlap_ms(a_start: int, a_end: int, b_start: int, b_end: int) -> int:
    return min(a_end, b_end) - max(a_start, b_start)


def tolerance_ms(a_precision: int, b_precision: int) -> int:
    return max(BASE_TOLERANCE_MS, a_precision, b_precision)


def one_play(shared_ms: int, a_precision: int, b_precision: int, length_ms: int) -> bool:
    """Whether two intervals of one track that share `shared_ms` are one listening: the rule
    `import` decides "same play" by, whichever field (ts, ms_played) differs by a little.

    They are when they share more than their timestamps' precision (tolerance_ms), or, for a
    listen of `length_ms` shorter than twice that, more than half of it. So anything `check`
    reports as an overlap (more than the tolerance) is one play here, while back-to-back plays,
    which share no more than the rounding of their timestamps, stay two.
    """
    return shared_ms > min(tolerance_ms(a_precision, b_precision), length_ms // 2)


def feed_window(started_at: int, end: int, duration_ms: int) -> tuple[int, int]:
    """Where a played_at of the play [started_at, end] may lie; for a play backfill created,
    also where the end of the same listening may lie (its played_at is that play's `end`)."""
    return started_at - MATCH_SLACK_MS, end + duration_ms + MATCH_SLACK_MS


Weight = Sequence[int]


def align_in_order(n: int, m: int, fits: Callable[[int, int], bool],
                   weight: Callable[[int, int], Weight]) -> list[tuple[int, int]]:
    """Order-preserving one-to-one pairing of n items with m plays, both in time order.

    Best is the most pairs, then the greatest total weight (tuples, compared in order). Order
    matters because the windows are wide: a plain nearest-first greedy lets one item steal its
    neighbour's play when a played_at drifts toward the play's start.
    """
    size = len(weight(0, 0)) if n and m else 0
    zero = (0,) * (size + 1)

    def paired(i: int, j: int) -> tuple[int, ...]:
        rest = best[i + 1][j + 1]
        return (rest[0] + 1, *(a + b for a, b in zip(rest[1:], weight(i, j))))

    # best[i][j]: the score of pairing items[i:] with plays[j:]: (pairs, *summed weights).
    best = [[zero] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            options = [best[i + 1][j], best[i][j + 1]]
            if fits(i, j):
                options.append(paired(i, j))
            best[i][j] = max(options)
    pairs: list[tuple[int, int]] = []
    i = j = 0
    while i < n and j < m:
        if fits(i, j) and paired(i, j) == best[i][j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif best[i + 1][j] == best[i][j]:
            i += 1
        else:
            j += 1
    return pairs
