"""`spotify-logger import PATH...`: Spotify's own history export into the store (safe to repeat).

Exit codes: 0 everything was read; 65 a file or record was malformed (listed on stderr by file
and record index; everything else was imported); 75 Redis failed part-way (the summary says
what was written; run it again to finish), or plays wait in the outage spool (nothing written).
"""

from __future__ import annotations

import argparse
import json
import sys

from ..config import Settings
from ..errors import EX_DATAERR, EX_OK, EX_TEMPFAIL
from ..importer import import_sources
from ..importer.progress import Progress
from ..importer.sources import resolve
from ..spool import require_empty
from ..store import connect


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="Streaming_History_Audio_*.json, endsong_*.json, StreamingHistory*.json, a folder or a .zip")
    p.add_argument("--dry-run", action="store_true", help="print what would be imported, write nothing")
    p.add_argument("--include-incognito", action="store_true", help="also import plays from private sessions")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    sources = resolve(args.paths)  # a bad path fails here, before Redis is even contacted
    if not args.dry_run:
        # Polled plays still in the spool are not in Redis: their records would be added, not confirmed.
        require_empty(settings.state_dir)
    bar = Progress(sum(s.size for s in sources))
    summary = import_sources(connect(settings.redis_url), sources, min_play_ms=settings.min_play_ms,
                             dry_run=args.dry_run, include_incognito=args.include_incognito, progress=bar)
    for line in summary.render_problems():
        print(line, file=sys.stderr)
    print(json.dumps(summary.as_dict(), indent=2) if args.json else summary.render())
    if summary.interrupted:
        return EX_TEMPFAIL
    return EX_DATAERR if summary.malformed else EX_OK
