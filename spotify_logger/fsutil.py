"""Crash-safe small-file writes: a crash leaves either the old file or the new one, and a power
cut too unless the caller chose speed over durability (durable=False)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace path with data, mode 0600 (every file here may hold a secret or a user's plays).
    durable=False skips the two fsyncs: still atomic against a crash, but a power cut may lose
    the newest write (for hints rewritten often on the poll path, not for tokens)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkstemp: a unique name (a temp file a power cut left behind cannot block this one), created
    # O_EXCL with mode 0600, so a secret is never readable by others, not even briefly.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
