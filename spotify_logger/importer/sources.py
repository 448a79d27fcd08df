"""Finding the history files in what the user gave: files, folders, or the export's .zip.

Inside folders and zips only the audio history files are read (the export also holds video
history, playlists, search queries, ...). A file named on the command line is read whatever
its name. Everything is resolved before anything is written, so a typo in the last PATH does
not leave a half-done import behind.
"""

from __future__ import annotations

import fnmatch
import json
import lzma
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Sequence

from ..errors import BadInput

HISTORY_PATTERNS = ("Streaming_History_Audio_*.json", "endsong*.json", "StreamingHistory*.json")
_ACCOUNT_PATTERN = "StreamingHistory*.json"
# What reading a zip or one of its members can raise when its bytes are damaged: a bad CRC or
# header (BadZipFile, struct.error, ValueError), a corrupt deflate, bzip2 or lzma stream (zlib.error,
# OSError, LZMAError), a truncated member (EOFError), encryption or an unknown compression method
# or zip version (RuntimeError, NotImplementedError). Each is that file's problem, not a bug.
_READ_ERRORS = (OSError, EOFError, RuntimeError, NotImplementedError, ValueError, struct.error,
                zipfile.BadZipFile, zlib.error, lzma.LZMAError)


@dataclass(frozen=True)
class Source:
    label: str                    # shown in warnings: the path, or archive.zip!member
    size: int                     # bytes, for the progress bar
    opener: Callable[[], bytes]

    @property
    def account_data(self) -> bool:
        return fnmatch.fnmatch(PurePosixPath(self.label.split("!")[-1]).name, _ACCOUNT_PATTERN)

    def load(self) -> list[Any] | str:
        """The file's records, or why it cannot be read (a one-line reason)."""
        try:
            raw = self.opener()
        except _READ_ERRORS as exc:
            return f"cannot read: {str(exc)[:120] or type(exc).__name__}"
        try:
            data = json.loads(raw)
        except UnicodeDecodeError as exc:
            return f"not UTF-8 text: {str(exc)[:120]}"
        except (ValueError, RecursionError) as exc:
            return f"not valid JSON: {str(exc)[:120]}"
        if not isinstance(data, list):
            return f"not a JSON array of records (found {type(data).__name__})"
        return data


def is_history_name(name: str) -> bool:
    base = PurePosixPath(name).name
    return any(fnmatch.fnmatch(base, pattern) for pattern in HISTORY_PATTERNS)


def resolve(paths: Sequence[str | Path]) -> list[Source]:
    """Every history file under the given paths: extended history first, then account data,
    each in name order (so the precise records are stored before the imprecise ones)."""
    found: list[Source] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.json") if p.is_file() and is_history_name(p.name))
            if not files:
                raise BadInput(f"{path}: no Spotify history file in this folder "
                               f"(looked for {', '.join(HISTORY_PATTERNS)})")
            found.extend(_file(p) for p in files)
        elif path.is_file() and (path.suffix.lower() == ".zip" or zipfile.is_zipfile(path)):
            found.extend(_zip(path))
        elif path.is_file():
            found.append(_file(path))
        elif path.exists():  # /dev/zero, a FIFO: reading one would never end, or wait forever
            raise BadInput(f"{path}: not a regular file or folder (import reads Spotify's export: its .json "
                           "files, a folder of them or the .zip)")
        else:
            raise BadInput(f"{path}: no such file or folder")
    unique = {s.label: s for s in found}.values()
    return sorted(unique, key=lambda s: (s.account_data, s.label))


def _file(path: Path) -> Source:
    return Source(label=str(path), size=path.stat().st_size, opener=path.read_bytes)


def _zip(path: Path) -> list[Source]:
    try:
        with zipfile.ZipFile(path) as archive:
            members = [i for i in archive.infolist() if not i.is_dir() and is_history_name(i.filename)]
    except _READ_ERRORS as exc:
        raise BadInput(f"{path}: not a readable zip file ({str(exc)[:120] or type(exc).__name__})") from None
    if not members:
        raise BadInput(f"{path}: no Spotify history file in this zip (looked for {', '.join(HISTORY_PATTERNS)})")
    return [Source(label=f"{path}!{m.filename}", size=m.file_size, opener=_member_reader(path, m.filename))
            for m in members]


def _member_reader(path: Path, name: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with zipfile.ZipFile(path) as archive:
            return archive.read(name)
    return read
