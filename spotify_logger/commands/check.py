"""`spotify-logger check [--repair] [--json]`: verify the store's invariants (exit 65 when broken)."""

from __future__ import annotations

import argparse
import json

from ..check import check, repair
from ..config import Settings
from ..errors import EX_DATAERR, EX_OK, StoreUnavailable
from ..store import connect


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repair", action="store_true",
                   help="rebuild listening:index and the plays:* counters from the play hashes, then check again")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    client = connect(settings.redis_url)
    if args.repair:
        try:
            before = repair(client, client_id=settings.client_id)
        except StoreUnavailable as exc:  # a full Redis, say: it says what to fix, this says what next
            raise type(exc)(f"{exc}, then run `spotify-logger check --repair` again") from None
        if not args.json:
            print(f"repaired: {len(before.missing)} plays added to the index, {len(before.dangling)} stale index "
                  f"members removed, counters rewritten ({len(before.tracks)} uris, {len(before.artists)} artists)")
    report = check(client, settings.client_id)
    print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) if args.json else report.render())
    return EX_OK if report.ok else EX_DATAERR
