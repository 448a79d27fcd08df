"""The request budget's copy in the state dir: the calls counted while Redis was down, the
shared count as Redis last showed it (rewritten after every call, so that a process starting
during an outage knows what was spent), and the learned limit: none is lost to an outage or a
restart.

Offline counts are absolute per time bucket and per origin (a random id of this state dir), so
merging them into Redis is an HSET of the same value however often it is repeated: a merge
interrupted by a crash, or done by two processes, never adds a call twice. Every process that
shares the state dir (the poller, backfill, playlist) updates the file under one flock.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .fsutil import atomic_write
from .logs import get_logger

log = get_logger(__name__)

STATE_FILE = "budget.json"
SEEN_FILE = "budget-seen.json"


@dataclass
class OfflineCounts:
    origin: str = field(default_factory=lambda: secrets.token_hex(4))
    calls: dict[int, int] = field(default_factory=dict)        # bucket -> calls made offline
    merged: dict[int, int] = field(default_factory=dict)       # bucket -> what Redis has confirmed
    endpoints: dict[str, int] = field(default_factory=dict)    # "<hour>|<endpoint>" -> calls offline
    merged_endpoints: dict[str, int] = field(default_factory=dict)
    seen: dict[int, int] = field(default_factory=dict)         # bucket -> the shared count Redis last showed
    seen_at: float = 0.0                                       # (both kept in SEEN_FILE)
    learned: dict[str, Any] | None = None                      # {limit, learned_at, window_s}

    def unmerged(self) -> bool:
        return self.calls != self.merged or self.endpoints != self.merged_endpoints

    def used(self, first_bucket: int) -> int:
        """The shared count as best known offline: what Redis last showed, plus what was counted
        here since and not yet merged (a merged count is already in `seen`)."""
        shared = sum(n for b, n in self.seen.items() if b >= first_bucket)
        own = sum(n - self.merged.get(b, 0) for b, n in self.calls.items() if b >= first_bucket)
        return shared + own

    def prune(self, first_bucket: int, first_hour: int) -> None:
        for counts in (self.calls, self.merged, self.seen):
            for b in [b for b in counts if b < first_bucket]:
                del counts[b]
        for counts_ in (self.endpoints, self.merged_endpoints):
            for f in [f for f in counts_ if int(f.split("|", 1)[0]) < first_hour]:
                del counts_[f]

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "calls": _str_keys(self.calls), "merged": _str_keys(self.merged),
                "endpoints": self.endpoints, "merged_endpoints": self.merged_endpoints,
                "learned": self.learned}

    @classmethod
    def from_json(cls, raw: Any) -> "OfflineCounts":
        if not isinstance(raw, dict):
            return cls()
        origin = raw.get("origin")
        return cls(origin=origin if isinstance(origin, str) and origin else secrets.token_hex(4),
                   calls=_int_keys(raw.get("calls")), merged=_int_keys(raw.get("merged")),
                   endpoints=_counts(raw.get("endpoints")), merged_endpoints=_counts(raw.get("merged_endpoints")),
                   learned=raw.get("learned") if isinstance(raw.get("learned"), dict) else None)


class BudgetFile:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILE
        self.seen_path = state_dir / SEEN_FILE
        self._checked: tuple[int, int] | None = None

    def changed(self) -> bool:
        """Whether the file may hold counts to merge that were not there at the last
        mark_checked(): one stat, cheap enough for every call."""
        return self._file_stamp() != self._checked

    def mark_checked(self) -> None:
        self._checked = self._file_stamp()

    def read(self) -> OfflineCounts:
        try:
            counts = OfflineCounts.from_json(json.loads(self.path.read_text()))
        except FileNotFoundError:
            counts = OfflineCounts()
        except (OSError, ValueError):
            log.warning("budget_file_unreadable", path=str(self.path), action="starting a new count")
            counts = OfflineCounts()
        try:
            raw = json.loads(self.seen_path.read_text())
            counts.seen, counts.seen_at = _int_keys(raw.get("seen")), _number(raw.get("seen_at"))
        except (OSError, ValueError, AttributeError):
            pass  # never written yet, or torn: the offline count starts from this process's own
        return counts

    def write_seen(self, seen: dict[int, int], seen_at: float) -> None:
        """The shared count as Redis just showed it. Its own file, written after every call
        without the lock: a whole snapshot, so the last writer is (to a call or two, when two
        processes call at the same instant) the newest."""
        data = json.dumps({"seen_at": seen_at, "seen": _str_keys(seen)}).encode()
        # atomic_write's unique temp name costs a third of this on the poll path; a name of this
        # process and thread cannot clash, and the rename keeps it atomic all the same.
        tmp = self.seen_path.with_name(f".{SEEN_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(tmp, self.seen_path)
        except FileNotFoundError:
            atomic_write(self.seen_path, data, durable=False)  # the first write: it makes the state dir
        except OSError as exc:
            log.warning("budget_not_persisted", where="state_dir", error=type(exc).__name__)

    def write(self, counts: OfflineCounts) -> None:
        try:
            # Not fsync'd: it is rewritten on every offline call, on a Pi's SD card; a power cut
            # may lose the last few counts, which Spotify's own answer (QUOTA_EXCEEDED) covers.
            atomic_write(self.path, json.dumps(counts.to_json(), sort_keys=True).encode(), durable=False)
        except OSError as exc:
            log.warning("budget_not_persisted", where="state_dir", error=type(exc).__name__)
        if not counts.unmerged():  # written under the lock from a fresh read: nothing to merge in it
            self.mark_checked()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Read-modify-write across processes sharing the state dir (released on exit)."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            yield  # an unwritable state dir: counting goes on, unshared (the write logs it)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_ino


def _str_keys(counts: dict[int, int]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(counts.items())}


def _int_keys(raw: Any) -> dict[int, int]:
    if not isinstance(raw, dict):
        return {}
    out = {}
    for k, v in raw.items():
        try:
            out[int(k)] = int(v)
        except (TypeError, ValueError):
            continue
    return out


def _number(raw: Any) -> float:
    return float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else 0.0


def _counts(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): int(v) for k, v in raw.items()
            if isinstance(v, int) and "|" in str(k) and str(k).split("|", 1)[0].lstrip("-").isdigit()}
