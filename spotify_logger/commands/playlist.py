"""`spotify-logger playlist`: write the period's most played tracks to a Spotify playlist.

Meant for a weekly timer (systemd/spotify-logger-playlist.timer). --dry-run reads Redis only:
it needs no token and writes nothing, here or at Spotify.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from .. import playlist
from ..config import Settings
from ..daemon import Parts
from ..errors import EX_OK
from ..periods import LocalTime, add_period_arguments, parse_hours, period
from ..schedule import reserve_for
from ..store import connect

DEFAULT_NAME = "Top 10 this week"
# The worst case: PUT /items (404), PUT /tracks (404: the playlist is gone), then create and fill.
CALLS_NEEDED = 4


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", type=_name, default=DEFAULT_NAME, help=f"the playlist; created on first use (default: {DEFAULT_NAME!r})")
    add_period_arguments(p, tz_for="--hours and dates", since_default="7d")
    p.add_argument("--hours", default="7-12",
                   help="only plays started in these local hours: 7-12 (the default; 12 excluded), 22-2, 0-24 for all")
    p.add_argument("--limit", type=_limit, default=10, help=f"how many tracks, 1 to {playlist.MAX_TRACKS} (default 10)")
    p.add_argument("--public", action="store_true", help="create the playlist public (default: private)")
    p.add_argument("--dry-run", action="store_true", help="print the tracks; write nothing")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    hours = parse_hours(args.hours)
    local = LocalTime(args.tz)
    since_ms, until_ms = period(args.since, args.until, local, int(time.time() * 1000))
    label = _label(hours, since_ms, until_ms, local)
    if args.dry_run:
        picks = playlist.select(connect(settings.redis_url), since_ms, until_ms, hours=hours, local=local,
                                limit=args.limit)
        print(f"dry run: {args.name!r} would get {len(picks)} tracks ({label}); nothing written")
        print(_table(picks))
        return EX_OK
    stop = threading.Event()
    with _stop_on_signals(stop):
        parts = Parts.build(settings, stop)  # fails fast on a missing client id or token file
        picks = playlist.select(parts.store.redis, since_ms, until_ms, hours=hours, local=local, limit=args.limit)
        if not picks:
            # An empty week leaves last week's list in place rather than an empty playlist.
            print(f"no counted Spotify tracks ({label}): {args.name!r} left unchanged")
            return EX_OK
        # The calls the poller holds back for recently-played are not a playlist's to spend.
        reserve = reserve_for(parts.budget.view(), settings.min_play_ms / 1000)
        parts.budget.require(CALLS_NEEDED, "playlist", reserve=reserve)
        written = playlist.Publisher(parts.client, parts.store.redis).publish(
            args.name, [p.uri for p in picks], public=args.public,
            description=f"Most played tracks ({_hours_text(hours)}), updated by spotify-logger.")
    how = "created and filled" if written.created else "replaced"
    print(f"{args.name!r} {how} with {len(picks)} tracks ({label}); playlist "
          f"spotify:playlist:{written.playlist_id}")
    print(_table(picks))
    return EX_OK


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set `stop`, which cuts any retry backoff or rate-limit wait short."""
    handled = (signal.SIGTERM, signal.SIGINT) if threading.current_thread() is threading.main_thread() else ()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in handled}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _table(picks: list[playlist.Pick]) -> str:
    return "\n".join(f"{i:>3}  {p.plays:>4} plays  {p.name}  ({p.uri})" for i, p in enumerate(picks, 1))


def _hours_text(hours: tuple[int, int]) -> str:
    start, end = hours
    return "all day" if (start, end) == (0, 24) else f"{start:02d}:00-{end % 24:02d}:00"


def _label(hours: tuple[int, int], since_ms: int | None, until_ms: int | None, local: LocalTime) -> str:
    return f"plays started {_hours_text(hours)}, {local.span(since_ms, until_ms)}"


def _name(raw: str) -> str:
    problem = playlist.name_problem(raw)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return raw


def _limit(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number") from None
    if not 1 <= value <= playlist.MAX_TRACKS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {playlist.MAX_TRACKS} (one replace request)")
    return value
