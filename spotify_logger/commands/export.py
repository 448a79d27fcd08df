"""`spotify-logger export --format csv|jsonl [--since] [--until] [-o FILE]`: every play, streamed."""

from __future__ import annotations

import argparse
import sys
import time

from ..config import Settings
from ..errors import EX_OK
from ..export import FORMATS, export, output
from ..periods import LocalTime, add_period_arguments, period
from ..store import connect


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="csv", help="csv (default) or jsonl")
    add_period_arguments(p, tz_for="dates in --since/--until")
    p.add_argument("-o", "--output", metavar="FILE", help="write this regular file (complete or not at all); - or none: stdout")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    since_ms, until_ms = period(args.since, args.until, LocalTime(args.tz), int(time.time() * 1000))
    client = connect(settings.redis_url)
    with output(args.output, sys.stdout) as out:
        rows = export(client, out, args.format, since_ms=since_ms, until_ms=until_ms)
    if args.output and args.output != "-":
        print(f"exported {rows} plays to {args.output}", file=sys.stderr)
    return EX_OK
