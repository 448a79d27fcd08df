from __future__ import annotations

import argparse

from .. import daemon
from ..config import Settings


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("run", help="poll Spotify and record plays (the daemon)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    return daemon.run(settings)
