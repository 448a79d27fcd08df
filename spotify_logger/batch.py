"""What one poll asks the store to do, as plain data that survives a trip through the spool."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Mapping

from .extract import RedisValue


@dataclass(frozen=True)
class PlayWrite:
    """Fields to set on one play hash. `uri` and `artists` name the counters to bump if the
    play is counted now and was not before; the store decides that, so replays stay idempotent.

    A write that carries `last_seen_at` is ignored when the stored play was seen later (a stale
    replay). `create_only` writes (backfill, import) land only if the play key does not exist.
    """

    started_at: int
    fields: Mapping[str, RedisValue]
    uri: str
    artists: tuple[str, ...] = ()
    counted: bool = False
    create_only: bool = False


@dataclass(frozen=True)
class Batch:
    """All writes of one poll, applied atomically. `current` is the open play's started_at, or
    None when no play is open; `keep_current` leaves listening:current as it is."""

    polled_at: int
    writes: tuple[PlayWrite, ...] = ()
    current: int | None = None
    keep_current: bool = False

    @classmethod
    def not_a_poll(cls, writes: Iterable[PlayWrite]) -> "Batch":
        """Writes from backfill or import: polled_at 0 and keep_current, so they move neither
        the open play nor the poll times `status` shows."""
        return cls(polled_at=0, writes=tuple(writes), keep_current=True)

    def to_json(self) -> str:
        return json.dumps(
            {
                "polled_at": self.polled_at,
                "current": self.current,
                "keep_current": self.keep_current,
                "writes": [
                    {"started_at": w.started_at, "fields": dict(w.fields), "uri": w.uri,
                     "artists": list(w.artists), "counted": w.counted, "create_only": w.create_only}
                    for w in self.writes
                ],
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, line: str) -> "Batch":
        raw = json.loads(line)
        return cls(
            polled_at=int(raw["polled_at"]),
            current=None if raw["current"] is None else int(raw["current"]),
            keep_current=bool(raw.get("keep_current", False)),
            writes=tuple(
                PlayWrite(
                    started_at=int(w["started_at"]), fields=w["fields"], uri=str(w["uri"]),
                    artists=tuple(w["artists"]), counted=bool(w["counted"]),
                    create_only=bool(w.get("create_only", False)),
                )
                for w in raw["writes"]
            ),
        )


def merge_write(stored: dict[str, str], write: PlayWrite) -> None:
    """Apply a write to a play hash as the store's Lua script does (store.py), for code that
    rebuilds a play without Redis: create-only writes never touch an existing play, stale writes
    lose, ms_played never shrinks, and counted sticks once set. (Unlike the store it folds an
    update into an empty hash: the folds built on it start from a base the store does not have.)"""
    if write.create_only and stored:
        return
    seen = write.fields.get("last_seen_at")
    if not write.create_only and seen is not None and int(seen) < int(stored.get("last_seen_at") or 0):
        return
    heard = int(stored.get("ms_played") or 0)
    stored.update({k: str(v) for k, v in write.fields.items()})
    if int(stored.get("ms_played") or 0) < heard:
        stored["ms_played"] = str(heard)
    if write.counted:
        stored["counted"] = "1"
