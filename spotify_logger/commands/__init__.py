"""One module per command; each has register(subparsers) and sets a handler(args, settings)."""

from . import auth, demo, run, simulate, status

COMMANDS = (run, auth, status, simulate, demo)
