"""When two plays are the same stretch of listening: shared by `import` (matching) and `check`.

A play's interval is [started_at, end]. Imported plays carry the export's rounding: the extended
history's `ts` has 1 s precision, the account-data `endTime` 1 min. Two intervals that share no
more than that precision are neighbours (back-to-back plays of one track), not one play.
"""

from __future__ import annotations

from typing import Mapping

# Account-data records have no uri; the importer gives them one under this prefix (see
# importer/records.py), built from the artist and track names, so the same song adds up.
PSEUDO_URI_PREFIX = "spotify:import:"

EXTENDED_PRECISION_MS = 1_000
ACCOUNT_PRECISION_MS = 60_000
# Poller and backfill plays: the tracker never overlaps plays, but a play's polled end can be a
# request's latency late, and an export ts is rounded to the second: together under 2 s.
BASE_TOLERANCE_MS = 2_000


def is_pseudo_uri(uri: str) -> bool:
    return uri.startswith(PSEUDO_URI_PREFIX)


def precision_ms(uri: str, source: str | None) -> int:
    if is_pseudo_uri(uri):
        return ACCOUNT_PRECISION_MS
    if source == "import":
        return EXTENDED_PRECISION_MS
    return BASE_TOLERANCE_MS


def play_end(started_at: int, fields: Mapping[str, str]) -> int:
    """ended_at; for an open play, the last sighting; failing both, start plus time heard."""
    for name in ("ended_at", "last_seen_at"):
        value = _int(fields.get(name))
        if value is not None and value >= started_at:
            return value
    return started_at + (_int(fields.get("ms_played")) or 0)


def overlap_ms(a_start: int, a_end: int, b_start: int, b_end: int) -> int:
    return min(a_end, b_end) - max(a_start, b_start)


def tolerance_ms(a_precision: int, b_precision: int) -> int:
    return max(BASE_TOLERANCE_MS, a_precision, b_precision)


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw not in (None, "") else None
    except ValueError:
        return None
