"""`spotify-logger backfill`: one reconciliation pass against recently-played, then a report.

Exit 75 while plays wait in the outage spool (see spool.require_empty), and when the request
budget cannot afford a pass (it says when one fits).
"""

from __future__ import annotations

import argparse
import json

from ..backfill import Reconciler, Result
from ..config import Settings
from ..daemon import Parts
from ..errors import EX_OK
from ..timeutil import utc_iso
from ..schedule import CALLS_PER_PASS
from ..spool import require_empty

# A pass over a full feed reads one page, then learns from a second that it is all. Backfill is a
# recently-played pass itself, so it may use the calls the poller holds back for such passes.
CALLS_NEEDED = CALLS_PER_PASS


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    # Plays in the spool are not in Redis yet: the feed would add them again, and the poller's
    # replay would add its own copies on top.
    require_empty(settings.state_dir)
    parts = Parts.build(settings)
    parts.budget.require(CALLS_NEEDED, "backfill")
    result = Reconciler(parts.client, parts.store).run_once()
    print(json.dumps(result.as_dict(), indent=2, sort_keys=True) if args.json else render(result))
    return EX_OK


def render(result: Result) -> str:
    lines = [f"added {utc_iso(p['started_at'] / 1000)}  {', '.join(p['artists']) or '?'} - {p['name'] or p['uri']}"
             for p in result.added]
    lines.append(f"backfill: {result.read} recently-played items read, {len(result.added)} plays added, "
                 f"{result.confirmed} confirmed, {result.already} already reconciled")
    if result.gap is not None:
        lines.append(f"gap: about {result.gap.estimated_plays} plays between {utc_iso(result.gap.start / 1000)} and "
                     f"{utc_iso(result.gap.end / 1000)} are no longer in recently-played and are lost")
    return "\n".join(lines)
