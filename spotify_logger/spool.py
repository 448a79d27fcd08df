"""The outage spool: batches Redis could not take, one JSON line each, fsync'd, in order.

Replay is safe to repeat (the store ignores stale and duplicate writes), so the file is only
truncated after every line landed, and a crash mid-replay just replays again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

from .batch import Batch
from .logs import get_logger

log = get_logger(__name__)


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path

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
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def batches(self) -> Iterator[Batch]:
        """Yield spooled batches in order; damaged lines are skipped with a warning."""
        with open(self.path, "rb") as fh:
            lines = fh.read().split(b"\n")
        last = len(lines) - 1
        for number, raw in enumerate(lines):
            if not raw.strip():
                continue
            try:
                yield Batch.from_json(raw.decode("utf-8"))
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                # A torn last line is a power cut mid-append; anything else is damage. Neither
                # may stop the lines after it from landing.
                log.warning("spool_line_skipped", line=number + 1, torn=number >= last - 1, path=str(self.path))

    def replay(self, apply: Callable[[Batch], object]) -> int:
        """Apply every spooled batch in order, then truncate. Raises whatever apply raises."""
        if not self.pending():
            return 0
        count = 0
        for batch in self.batches():
            apply(batch)
            count += 1
        os.truncate(self.path, 0)
        return count
