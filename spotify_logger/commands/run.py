from __future__ import annotations

import argparse

from .. import daemon
from ..config import Settings


def register(p: argparse.ArgumentParser) -> None:
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    return daemon.run(settings)
