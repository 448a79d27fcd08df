"""`spotify-logger stats top|count|hours|weekdays|days|streak`: readable tables, or --json."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .. import stats
from ..config import Settings
from ..errors import EX_OK
from ..periods import LocalTime, add_period_arguments, day_date, parse_hours, period, weekday
from ..store import connect

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_BAR = 40


def register(p: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    add_period_arguments(common, tz_for="days and hours")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    top = what.add_parser("top", parents=[common], help="most played tracks, artists or albums")
    top.add_argument("kind", choices=stats.KINDS)
    top.add_argument("--limit", type=_positive, default=10, help=f"how many rows, 1 to {MAX_LIMIT} (default 10)")
    top.add_argument("--hours", help="only plays started in these local hours, e.g. 7-12 (12 excluded) or 22-2")
    count = what.add_parser("count", parents=[common], help="plays of the tracks matching a name or uri")
    count.add_argument("query")
    what.add_parser("hours", parents=[common], help="listening time per hour of the day")
    what.add_parser("weekdays", parents=[common], help="listening time per day of the week")
    what.add_parser("days", parents=[common], help="minutes of listening per day")
    what.add_parser("streak", parents=[common], help="the longest run of consecutive listening days")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    now_ms = int(time.time() * 1000)
    local = LocalTime(args.tz)
    since_ms, until_ms = period(args.since, args.until, local, now_ms)
    client = connect(settings.redis_url)
    head = {"since": since_ms, "until": until_ms, "tz": local.name}
    label = _period_label(since_ms, until_ms, local)
    if args.what == "top":
        hours = parse_hours(args.hours) if args.hours else None
        rows = stats.top(client, args.kind, since_ms, until_ms, limit=args.limit, hours=hours, local=local)
        _out(args, {**head, "kind": args.kind, "hours": hours, "rows": [r.as_dict() for r in rows]},
             lambda: _render_top(args.kind, rows, label))
    elif args.what == "count":
        found = stats.count(client, args.query, since_ms, until_ms)
        _out(args, {**head, "query": args.query, "rows": [vars(r) for r in found]},
             lambda: _render_count(args.query, found, local, label))
    elif args.what == "streak":
        longest, current = stats.streaks(client, since_ms, until_ms, local, now_ms)
        _out(args, {**head, "longest": vars(longest), "current": vars(current)},
             lambda: f"longest streak: {_streak(longest)}\ncurrent streak: {_streak(current)}")
    else:
        by_hour, by_weekday, by_day = stats.listening_time(client, since_ms, until_ms, local)
        if args.what == "hours":
            _out(args, {**head, "ms_played": by_hour},
                 lambda: _histogram(f"listening time by hour, {label}", [f"{h:02d}" for h in range(24)], by_hour))
        elif args.what == "weekdays":
            _out(args, {**head, "ms_played": dict(zip(_WEEKDAYS, by_weekday))},
                 lambda: _histogram(f"listening time by weekday, {label}", list(_WEEKDAYS), by_weekday))
        else:
            days = _all_days(by_day)
            _out(args, {**head, "minutes": {day_date(d).isoformat(): round(ms / 60000, 1) for d, ms in days}},
                 lambda: _histogram(f"minutes per day, {label}",
                                    [f"{day_date(d).isoformat()} {_WEEKDAYS[weekday(d)]}" for d, _ in days],
                                    [ms for _, ms in days], minutes=True))
    return EX_OK


def _out(args: argparse.Namespace, data: dict[str, Any], text: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False) if args.json else text())


def _render_top(kind: str, rows: list[stats.Row], label: str) -> str:
    title = {"tracks": "track", "artists": "artist", "albums": "album"}[kind]
    lines = [f"top {kind}, {label}" + ("  (from the counters: time not tracked)" if rows and rows[0].ms_played is None
                                       else ""),
             f"{'#':>3}  {'plays':>6}  {'time':>8}  {title}"]
    for i, r in enumerate(rows, 1):
        who = f" - {', '.join(r.artists)}" if r.artists and kind != "artists" else ""
        time_shown = "" if r.ms_played is None else _duration(r.ms_played)
        lines.append(f"{i:>3}  {r.plays:>6}  {time_shown:>8}  {r.name}{who}")
    return "\n".join(lines) if rows else f"top {kind}, {label}: no counted plays"


def _render_count(query: str, rows: list[stats.CountRow], local: LocalTime, label: str) -> str:
    if not rows:
        return f"no plays match {query!r} ({label})"
    lines = [f"plays matching {query!r}, {label}",
             f"{'plays':>6}  {'time':>8}  {'first':<16}  {'last':<16}  track"]
    for r in rows:
        first = local.stamp(r.first_at) if r.first_at is not None else "-"
        last = local.stamp(r.last_at) if r.last_at is not None else "-"
        who = f" - {', '.join(r.artists)}" if r.artists else ""
        lines.append(f"{r.plays:>6}  {_duration(r.ms_played):>8}  {first:<16}  {last:<16}  {r.name}{who}  ({r.uri})")
    if len(rows) > 1:
        lines.append(f"{sum(r.plays for r in rows):>6}  {_duration(sum(r.ms_played for r in rows)):>8}  total")
    return "\n".join(lines)


def _histogram(title: str, labels: list[str], values: list[int], *, minutes: bool = False) -> str:
    peak = max(values, default=0) or 1
    width = max((len(x) for x in labels), default=0)
    lines = [title]
    for name, ms in zip(labels, values):
        shown = f"{ms / 60000:.0f} min" if minutes else _duration(ms)
        lines.append(f"{name:<{width}}  {shown:>8}  {'#' * round(_BAR * ms / peak)}")
    return "\n".join(lines) if values else f"{title}: no plays"


def _all_days(by_day: dict[int, int]) -> list[tuple[int, int]]:
    """Every day from the first to the last with listening, silent days included."""
    if not by_day:
        return []
    return [(d, by_day.get(d, 0)) for d in range(min(by_day), max(by_day) + 1)]


def _streak(s: stats.Streak) -> str:
    return f"{s.days} days ({s.first} .. {s.last})" if s.days else "0 days"


def _period_label(since_ms: int | None, until_ms: int | None, local: LocalTime) -> str:
    if since_ms is None and until_ms is None:
        return f"all time ({local.name})"
    return local.span(since_ms, until_ms)


def _duration(ms: int) -> str:
    minutes = ms // 60000
    if minutes >= 60:
        return f"{minutes // 60}h {minutes % 60:02d}m"
    return f"{minutes}m {ms // 1000 % 60:02d}s"


MAX_LIMIT = 100_000  # far more rows than a table shows, far below what Redis's LIMIT overflows at


def _positive(raw: str) -> int:
    try:
        value = int(raw) if len(raw.strip()) <= 20 else MAX_LIMIT + 1
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number") from None
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_LIMIT}")
    return value
