"""The open play's full state, mirrored in the state dir for a restart while Redis is down.

During an outage the spool holds only what changed; the state it changed from is in Redis, which
a poller restarted during the outage (or a Pi whose redis-server comes up late) cannot read.
Without it the restarted poller either opens a second play a few ms from the stored one or
continues a play with its ms_played, duration and item forgotten. This file is that state:
{started_at, hash}, the open play's hash as last written (`OpenPlay.written`).

It is written when a play starts, when it ends (the file is removed) and when the spool starts
filling, never on every poll: an SD card wears with every write. Between those writes its
progress fields lag behind Redis, which stays the source of truth whenever it is reachable.
"""

from __future__ import annotations

import json
from pathlib import Path

from .fsutil import atomic_write
from .logs import get_logger
from .tracker import OpenPlay

log = get_logger(__name__)

MIRROR_NAME = "open_play.json"
_UNKNOWN = -1  # no started_at is negative: the first follow() always writes


class OpenPlayMirror:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._saved: int | None = _UNKNOWN  # started_at of the play in the file, None: no file

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> "OpenPlayMirror":
        return cls(state_dir / MIRROR_NAME)

    def load(self) -> tuple[int, dict[str, str]] | None:
        """(started_at, hash) of the mirrored play, or None when there is none or it is unreadable."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("open_play_mirror_unreadable", error=str(exc), path=str(self.path))
            return None
        try:
            data = json.loads(raw)
            started_at, fields = int(data["started_at"]), data["hash"]
            if not isinstance(fields, dict):
                raise TypeError("hash is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("open_play_mirror_unreadable", error=str(exc), path=str(self.path))
            return None
        return started_at, {str(k): str(v) for k, v in fields.items()}

    def follow(self, play: OpenPlay | None) -> None:
        """Save when the open play is not the one in the file: it started, ended, or this is
        the first poll of the process (the file may be from an older play)."""
        if (play.started_at if play else None) != self._saved:
            self.save(play)

    def save(self, play: OpenPlay | None, *, durable: bool = False) -> None:
        """Write the play's full state, or remove the file when no play is open. Never raises:
        the mirror must not stop the recording."""
        if play is not None and "last_seen_at" not in play.written:
            # Restored from the state dir and not written since: the file still holds what it
            # was restored from, and an empty hash would lose that.
            return
        try:
            if play is None:
                self.path.unlink(missing_ok=True)
            else:
                # Rewritten at every play change on the poll path, so not fsync'd there (it cost
                # 0.3 ms of CPU a poll, bench/poll_cost.py): a crash still leaves a whole file, and
                # a power cut may lose only the newest play, which the restore logic treats like any
                # stale mirror. The save the fsync'd spool builds on (an outage starts) is durable.
                body = {"started_at": play.started_at, "hash": {k: str(v) for k, v in play.written.items()}}
                atomic_write(self.path, json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
                             durable=durable)
        except OSError as exc:
            log.warning("open_play_mirror_failed", error=str(exc), path=str(self.path))
            # A stale mirror is worse than none: a restart would continue, and end again, a play
            # Redis may already have ended.
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                pass
            self._saved = _UNKNOWN
            return
        self._saved = play.started_at if play else None
