"""One poller per state dir: an flock on `poller.lock`, held for the life of the process.

Two pollers on one state dir would both record every play (and share one spool). run.py takes
the lock before it starts the poller and hands the locked descriptor down (`run --lock-fd N`):
an flock belongs to the open file, which both processes then share, so the poller holds the
very same lock, across its restarts and even if run.py dies first. A second run.py is refused
at once, before it starts any child. A poller started without run.py takes the lock itself.
Whoever takes it writes its pid and host into the file, so that a refusal can name them.

Exit 75 usually means "try again later". When the poller is refused by the Redis lease
(lease.py) it leaves REFUSED_FILE behind first, which run.py reads as "final, do not restart".
Only the lock holder writes it, so a refused copy can never stop the poller that holds the lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import uuid
from pathlib import Path

from .errors import ConfigError, InstanceLocked, SpotifyLoggerError, StateDirFull
from .fsutil import atomic_write
from .logs import get_logger

log = get_logger(__name__)

# run.py uses the same two names (it cannot import this package; a test keeps them equal).
LOCK_FILE = "poller.lock"
REFUSED_FILE = "poller.refused"
INSTANCE_ID_FILE = "instance_id"
_INSTANCE_ID = re.compile(r"[0-9a-f]{32}")


def holder_phrase(pid: object, host: object) -> str:
    return f"pid {pid} on {host}"


class InstanceLock:
    def __init__(self, fd: int, state_dir: Path) -> None:
        self.fd = fd  # kept open (and so locked) until the process exits
        self.state_dir = state_dir

    @classmethod
    def take(cls, state_dir: Path, *, inherited_fd: int | None = None) -> "InstanceLock":
        """The lock, or InstanceLocked naming its holder. `inherited_fd` is run.py's locked
        descriptor; one that is not this state dir's lock file (run.py read another state dir)
        is ignored, and the lock is taken here."""
        path = state_dir / LOCK_FILE
        try:
            if inherited_fd is not None and _same_file(inherited_fd, path):
                fd = inherited_fd
                os.set_inheritable(fd, False)
                _flock(fd, path, state_dir)  # the same open file: granted at once
                return cls(fd, state_dir)
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                _flock(fd, path, state_dir)
                record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode() + b"\n"
                # Written over the old record, then cut to length: a reader's first line is
                # always one whole record, the old one or this one.
                os.pwrite(fd, record, 0)
                os.ftruncate(fd, len(record))
            except BaseException:
                os.close(fd)
                raise
        except OSError as exc:
            raise _state_dir_error(exc, state_dir) from None
        return cls(fd, state_dir)

    def instance_id(self) -> str:
        """A random id for this state dir, made once: the Redis lease's owner. It outlives the
        pid (run.py restarts the poller) and, unlike the host name, differs between two Pis that
        are both called raspberrypi."""
        path = self.state_dir / INSTANCE_ID_FILE
        try:
            found = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            found = ""
        if _INSTANCE_ID.fullmatch(found):
            return found
        made = uuid.uuid4().hex
        try:
            atomic_write(path, made.encode() + b"\n")  # under the lock: no other writer
        except OSError as exc:
            raise _state_dir_error(exc, self.state_dir) from None
        return made

    def mark_refused(self, message: str) -> None:
        """Tell run.py that this exit 75 is final (see the module docstring)."""
        try:
            atomic_write(self.state_dir / REFUSED_FILE, message.encode() + b"\n")
        except OSError as exc:
            # run.py then restarts the poller with backoff, and the lease refuses it again.
            log.warning("refusal_not_recorded", error=type(exc).__name__)


def _flock(fd: int, path: Path, state_dir: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise InstanceLocked(f"another poller ({read_holder(path)}) is recording into this state dir "
                             f"({state_dir})") from None


def read_holder(path: Path) -> str:
    """'pid 1234 on pi4' from a lock file's record, or what can be told of it."""
    try:
        with open(path, encoding="utf-8") as fh:
            record = json.loads(fh.readline())
        return holder_phrase(record["pid"], record["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"


def _same_file(fd: int, path: Path) -> bool:
    try:
        held, named = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def _state_dir_error(exc: OSError, state_dir: Path) -> SpotifyLoggerError:
    if exc.errno == errno.ENOSPC:
        return StateDirFull(f"the state dir {state_dir} is full: cannot lock it")
    return ConfigError(f"cannot lock the state dir {state_dir} (SPOTIFY_LOGGER_STATE_DIR): "
                       f"{exc.strerror or type(exc).__name__}")


def lock_holder(state_dir: Path) -> str | None:
    """Who holds the state dir's lock now ('pid 1234 on pi4'), or None when no one does; for
    `status`, which must not take the lock itself (a poller starting meanwhile would be refused).
    Linux lists every flock in /proc/locks; elsewhere the recorded pid is asked if it is alive."""
    path = state_dir / LOCK_FILE
    try:
        st = os.stat(path)
    except OSError:
        return None
    # The kernel prints the lock's file as major:minor:inode, "%02x:%02x:%lu".
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii") as fh:
            listed = fh.read()
    except OSError:
        return read_holder(path) if _recorded_pid_alive(path) else None
    # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (a blocked waiter's line has "->").
    for line in listed.splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[1] == "FLOCK" and parts[-3] == where:
            return read_holder(path)
    return None


def _recorded_pid_alive(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            record = json.loads(fh.readline())
        if record.get("host") != socket.gethostname():
            return False
        os.kill(int(record["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return True
