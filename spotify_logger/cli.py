"""The command line: parse, build Settings once, dispatch, and turn errors into exit codes.

A traceback is never the user interface: every SpotifyLoggerError becomes one line on stderr
and its documented exit code; anything unexpected becomes one line and exit 70.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import Mapping, Sequence

from . import __version__, logs
from .commands import COMMANDS, load
from .config import Settings, log_format_of
from .errors import EX_SOFTWARE, EX_USAGE, SpotifyLoggerError

PROG = "spotify-logger"


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The full parser of the command named in argv (or of every command when argv is None);
    the others are listed by name and help only, so their modules are never imported."""
    parser = argparse.ArgumentParser(prog=PROG, description="Record every Spotify play into Redis.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    for name, (_, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text)
        if argv is None or name == wanted:
            load(name).register(command_parser)
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its one-line usage error
        return EX_USAGE if exc.code not in (0, None) else 0
    settings: Settings | None = None
    try:
        settings = Settings.from_env(env)
        logs.configure(settings.log_format, level=getattr(logging, settings.log_level.upper()))
        return int(args.handler(args, settings))
    except SpotifyLoggerError as exc:
        if args.command == "run":
            if settings is None:  # the settings are the error: take the format from the environment
                logs.configure(log_format_of(env))
            logs.get_logger(PROG).error("startup_failed", error=str(exc), exit_code=exc.exit_code)
        else:
            print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `spotify-logger export | head`
        return 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence, see module docstring
        print(f"{PROG}: internal error: {type(exc).__name__}: {logs.redact_text(str(exc))}", file=sys.stderr)
        if (env if env is not None else os.environ).get("SPOTIFY_LOGGER_DEBUG"):
            traceback.print_exc()
        return EX_SOFTWARE


def entry_point() -> None:
    sys.exit(main())
