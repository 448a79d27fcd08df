"""The commands: one module each, with register(parser) adding its arguments and setting
handler(args, settings) -> int.

Only the module of the command being run is imported. The daemon then does not carry the
simulator, the importer or the stats code in a Pi's RAM, and every command starts faster.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> (module in this package, one-line help), in the order `--help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "poll Spotify and record plays (the daemon)"),
    "auth": ("auth", "authorize spotify-logger with your Spotify account"),
    "status": ("status", "show token, poller, Redis and rate-limit health (exit 69 when unhealthy)"),
    "backfill": ("backfill", "add the plays from recently-played that Redis is missing (safe to repeat)"),
    "import": ("importcmd", "import Spotify's history export (files, folders or the .zip); safe to repeat"),
    "stats": ("stats", "top lists, play counts, listening hours, days and streaks"),
    "export": ("export", "write every play as CSV or JSON Lines (streamed, constant memory)"),
    "check": ("check", "verify the index, counters and play overlaps (exit 65 when something is wrong)"),
    "playlist": ("playlist", "write the most played tracks of a period to a Spotify playlist"),
    "simulate": ("simulate", "run the built-in Spotify Web API simulator on 127.0.0.1"),
    "demo": ("demo", "record a ~60 s scripted session from the built-in simulator and show it"),
}


def load(name: str) -> ModuleType:
    return importlib.import_module(f".{COMMANDS[name][0]}", __name__)
