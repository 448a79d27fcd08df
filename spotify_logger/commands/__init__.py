"""One module per command; each has register(subparsers) and sets a handler(args, settings)."""

from . import auth, backfill, demo, run, simulate, status
from . import check, export, importcmd, stats
from . import playlist

COMMANDS = (run, auth, status, simulate, demo, backfill, importcmd, stats, export, check, playlist)
