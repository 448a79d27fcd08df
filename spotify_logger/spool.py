"""The outage spool: batches Redis could not take, one JSON line each, fsync'd, in order.

Replay is safe to repeat (the store ignores stale and duplicate writes, and counters move only
when a play first becomes counted), so the file is truncated only after every line landed, and
a crash mid-replay just replays again from the top.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterator

from .batch import Batch, merge_write
from .errors import EX_TEMPFAIL, SpotifyLoggerError
from .fsutil import fsync_dir
from .logs import get_logger

log = get_logger(__name__)

# How often a long replay reports progress (systemd's watchdog must not take it for a hang).
PROGRESS_EVERY = 100
SPOOL_NAME = "spool.jsonl"


class SpoolPending(SpotifyLoggerError):
    """Plays wait in the spool for Redis: a command that reconciles against Redis would not see
    them and would add them a second time."""

    exit_code = EX_TEMPFAIL


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> "Spool":
        return cls(state_dir / SPOOL_NAME)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def pending(self) -> bool:
        return self.size() > 0

    def append(self, batch: Batch) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = (batch.to_json() + "\n").encode("utf-8")
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if not created and _ends_torn(fd):
                # A power cut tore the last append: end that fragment first, or this good line
                # would be glued to it and be lost with it.
                line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.path.parent)  # the new file's directory entry must survive a power cut too

    def batches(self) -> Iterator[Batch]:
        """Yield spooled batches in order; damaged lines are skipped with a warning."""
        with open(self.path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                torn = not raw.endswith(b"\n")  # only the last line can lack its newline
                try:
                    yield Batch.from_json(raw.decode("utf-8"))
                except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                    # A torn last line is a power cut mid-append; anything else is damage. Neither
                    # may stop the lines after it from landing.
                    log.warning("spool_line_skipped", line=number, torn=torn, length=len(raw), path=str(self.path))

    def replay(self, apply: Callable[[Batch], object], *, progress: Callable[[], None] = lambda: None) -> int:
        """Apply every spooled batch in order, then truncate. Raises whatever apply raises, and
        then leaves the file whole: the next replay starts again from the top."""
        if not self.pending():
            return 0
        count = 0
        for batch in self.batches():
            apply(batch)
            count += 1
            if count % PROGRESS_EVERY == 0:
                progress()
        os.truncate(self.path, 0)
        return count

    def open_play(self, base: tuple[int, dict[str, str]] | None = None) -> tuple[int, dict[str, str]] | None:
        """The open play as replaying the spool would leave it in Redis, as (started_at, hash):
        what a poller restarted during an outage continues, instead of starting a duplicate.

        The spool holds only what changed while Redis was away. `base` is the open play's full
        state from when the spool began (the open-play mirror); without it a play that began
        before the outage comes back with only the fields that changed since."""
        plays: dict[int, dict[str, str]] = {}
        current: int | None = None
        if base is not None:
            current = base[0]
            plays[current] = dict(base[1])
        for batch in self.batches() if self.pending() else ():
            if not batch.keep_current:
                current = batch.current
            for w in batch.writes:
                h = plays.setdefault(w.started_at, {})
                merge_write(h, w)
                h.setdefault("uri", w.uri)
                h.setdefault("artists", json.dumps(list(w.artists), ensure_ascii=False))
        found = plays.get(current) if current is not None else None
        if not found or "ended_at" in found or "last_seen_at" not in found:
            return None
        return current, found


def require_empty(state_dir: Path) -> None:
    """Refuse (exit 75) while plays wait in the spool. Replaying it from here is no way out: the
    running poller may be appending to it, and a truncate from here would lose its lines."""
    size = Spool.in_state_dir(state_dir).size()
    if size:
        raise SpoolPending(f"{size} bytes of plays are waiting in the spool for Redis; run this again "
                           "once `spotify-logger status` shows the spool empty")


def _ends_torn(fd: int) -> bool:
    end = os.lseek(fd, 0, os.SEEK_END)
    return end > 0 and os.pread(fd, 1, end - 1) != b"\n"
