"""Every play, one row each, as CSV or JSON Lines, streamed in constant memory (page by page).

Columns are keys.PLAY_FIELDS in order (started_at first, taken from the key when a hash lacks
it). CSV cells are the stored strings (booleans "1"/"0", artist lists as JSON, empty when
absent). JSON Lines are typed: numbers, true/false, lists, null when absent, and any field
outside the schema is kept after the known ones.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TextIO

import redis

from . import keys
from .errors import BadInput
from .playscan import scan_plays

FORMATS = ("csv", "jsonl")
COLUMNS = keys.PLAY_FIELDS


def export(client: "redis.Redis[str]", out: TextIO, fmt: str, *, since_ms: int | None = None,
           until_ms: int | None = None) -> int:
    """Write the plays started in [since, until) to `out`; returns how many."""
    if fmt not in FORMATS:
        raise BadInput(f"--format {fmt!r}: expected csv or jsonl")
    rows = 0
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(COLUMNS)
    for started_at, fields in scan_plays(client, since_ms=since_ms, until_ms=until_ms):
        fields.setdefault("started_at", str(started_at))
        if writer is not None:
            writer.writerow([fields.get(c, "") for c in COLUMNS])
        else:
            out.write(json.dumps(typed(fields), ensure_ascii=False, separators=(",", ":")) + "\n")
        rows += 1
    return rows


def typed(fields: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {c: _value(c, fields.get(c)) for c in COLUMNS}
    for name in sorted(set(fields) - set(COLUMNS)):
        row[name] = fields[name]
    return row


def _value(name: str, raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        if name in keys.INT_FIELDS:
            return int(raw)
        if name in keys.BOOL_FIELDS:
            return {"1": True, "0": False}.get(raw, raw)
        if name in keys.LIST_FIELDS:
            value = json.loads(raw)
            return value if isinstance(value, list) else raw
    except ValueError:
        return raw
    return raw


@contextmanager
def output(path: str | None, stdout: TextIO) -> Iterator[TextIO]:
    """stdout for None or "-", else a regular file that appears only once complete (a temporary
    file renamed into place). Anything else at the path is refused, never replaced: a symlink
    (its target would stay unwritten), a FIFO, a device (as root, /dev/full became a file)."""
    if path is None or path == "-":
        yield stdout
        return
    if not path:
        raise BadInput("-o: the file name is empty; give a file, or - for stdout")
    target = Path(path)
    mode = _refuse_unless_regular(target, path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # O_EXCL, so a symlink planted at the temporary name is not followed either. A listening
        # history is private: a new file is 0600, and a replaced one keeps its own mode, never
        # widened by the rename (chmod 600 ok.csv stayed 600 only until the next export).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        if mode is not None:
            os.fchmod(fd, mode)
        fh = open(fd, "w", encoding="utf-8", newline="")
    except OSError as exc:
        raise BadInput(f"-o {path}: cannot write: {exc.strerror or exc}") from None
    try:
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        raise BadInput(f"-o {path}: cannot write: {exc.strerror or exc}") from None
    finally:
        _remove_quietly(tmp)


def _refuse_unless_regular(target: Path, path: str) -> int | None:
    """The permission bits of the regular file at target, None for a new file; else BadInput."""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return None  # a new file
    except OSError as exc:
        raise BadInput(f"-o {path}: cannot write: {exc.strerror or exc}") from None
    if stat.S_ISREG(mode):
        return stat.S_IMODE(mode)
    kind = ("a symbolic link (give the path of the file it points to)" if stat.S_ISLNK(mode)
            else "a folder" if stat.S_ISDIR(mode)
            else "a FIFO" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file")
    raise BadInput(f"-o {path}: is {kind}; export writes a regular file only, or - for stdout")


def _remove_quietly(tmp: Path) -> None:
    # On a read-only filesystem unlink() fails with EROFS even for a file that was never made:
    # the cleanup must not turn a one-line error into a traceback.
    try:
        tmp.unlink()
    except OSError:
        pass
