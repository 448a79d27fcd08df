from __future__ import annotations

import argparse

from .. import daemon
from ..config import Settings


def register(p: argparse.ArgumentParser) -> None:
    # run.py's locked descriptor of the state dir's lock file (instancelock.py); not for people.
    p.add_argument("--lock-fd", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    return daemon.run(settings, lock_fd=args.lock_fd)
