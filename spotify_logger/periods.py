"""Local calendar arithmetic for stats and export: --since/--until/--tz parsing, local days and hours.

Plays are stored in UTC epoch ms; people ask about "this week" and "mornings" in their own time
zone. That zone is --tz (an IANA name) or else the system's local time, which honours the TZ
environment variable through the C library, so TZ=Europe/Paris works without this module ever
reading the environment.
"""

from __future__ import annotations

import argparse
import re
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import BadInput

_UNIT_MS = {"h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_RELATIVE = re.compile(r"^(\d+)\s*([hdw])$")
_BUCKET_MS = 900_000  # every UTC offset in use is a multiple of 15 minutes, and so are DST switches
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
# The moments --since/--until may name. Beyond them datetime and mktime overflow (year 1 with an
# offset east of UTC, the day after 9999-12-31), and a period that wide is a typo anyway.
EARLIEST = date(1900, 1, 1)
LATEST = date(9998, 12, 31)
_EARLIEST_MS = (EARLIEST.toordinal() - _EPOCH_ORDINAL - 1) * DAY_MS    # a day of slack for UTC offsets
_LATEST_MS = (LATEST.toordinal() - _EPOCH_ORDINAL + 2) * DAY_MS


class LocalTime:
    """Epoch ms to local day and hour numbers, fast (one offset lookup per 15 minutes of time)."""

    def __init__(self, tz: str | None = None) -> None:
        self.zone: ZoneInfo | None = None
        if tz:
            try:
                self.zone = ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise BadInput(f"--tz {tz!r} is not a known time zone (try Europe/Paris or UTC)") from None
        self._offsets: dict[int, int] = {}

    @property
    def name(self) -> str:
        if self.zone is not None:
            return str(self.zone)
        return time.strftime("%Z") or "local"

    def offset_ms(self, ms: int) -> int:
        bucket = ms // _BUCKET_MS
        offset = self._offsets.get(bucket)
        if offset is None:
            seconds = bucket * _BUCKET_MS / 1000
            if self.zone is not None:
                delta = datetime.fromtimestamp(seconds, self.zone).utcoffset() or timedelta(0)
                offset = int(delta.total_seconds() * 1000)
            else:
                offset = time.localtime(seconds).tm_gmtoff * 1000
            self._offsets[bucket] = offset
        return offset

    def local_ms(self, ms: int) -> int:
        """Milliseconds since 1970-01-01 00:00 *local*: day and hour numbers fall out by division."""
        return ms + self.offset_ms(ms)

    def day(self, ms: int) -> int:
        return self.local_ms(ms) // DAY_MS

    def hour(self, ms: int) -> int:
        return self.local_ms(ms) // HOUR_MS % 24

    def at(self, moment: datetime) -> int:
        """A naive local wall-clock time to epoch ms."""
        if self.zone is not None:
            return int(moment.replace(tzinfo=self.zone).timestamp() * 1000)
        return int(time.mktime(moment.timetuple()) * 1000) + moment.microsecond // 1000

    def midnight(self, day: date) -> int:
        return self.at(datetime(day.year, day.month, day.day))

    def today(self, now_ms: int) -> date:
        return day_date(self.day(now_ms))

    def stamp(self, ms: int, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return datetime.fromtimestamp(ms / 1000, self.zone).strftime(fmt) if self.zone else \
            datetime.fromtimestamp(ms / 1000).strftime(fmt)

    def span(self, since_ms: int | None, until_ms: int | None) -> str:
        """A period for people: `2026-11-14 11:18 .. now (CET)`, open ends as "the start"/"now"."""
        start = self.stamp(since_ms) if since_ms is not None else "the start"
        end = self.stamp(until_ms) if until_ms is not None else "now"
        return f"{start} .. {end} ({self.name})"


def day_date(day: int) -> date:
    return date.fromordinal(day + _EPOCH_ORDINAL)


def weekday(day: int) -> int:
    """Monday 0 .. Sunday 6, of a local day number (1970-01-01 was a Thursday)."""
    return (day + 3) % 7


def parse_when(text: str, local: LocalTime, now_ms: int, *, end: bool = False, option: str = "--since") -> int:
    """`7d`, `12h`, `2w` (before now), `today`, `yesterday`, `2026-01-01` (local midnight; as an
    --until bound, the end of that day), `2026-01-01T08:00` (local), or with an explicit offset;
    from EARLIEST to LATEST."""
    try:
        ms = _parse_when(text, local, now_ms, end=end)
    except ValueError:
        raise BadInput(f"{option} {text!r}: expected 7d, 12h, 2w, today, yesterday, 2026-01-01 "
                       "or 2026-01-01T08:00") from None
    except (OverflowError, OSError):  # datetime/mktime beyond what the platform represents
        ms = None
    if ms is None or not _EARLIEST_MS <= ms <= _LATEST_MS:
        raise BadInput(f"{option} {text!r}: out of range, {EARLIEST.isoformat()} to {LATEST.isoformat()}")
    return ms


def _parse_when(text: str, local: LocalTime, now_ms: int, *, end: bool) -> int | None:
    raw = text.strip().lower()
    if match := _RELATIVE.match(raw):
        if len(match.group(1)) > 9:  # a billion hours is out of range already; spare the arithmetic
            return None
        return now_ms - int(match.group(1)) * _UNIT_MS[match.group(2)]
    if raw in ("today", "yesterday"):
        day = local.today(now_ms) - timedelta(days=1 if raw == "yesterday" else 0)
        return local.midnight(day + timedelta(days=1) if end else day)
    if len(raw) == 10:
        day = date.fromisoformat(raw)
        if not EARLIEST <= day <= LATEST:
            return None
        return local.midnight(day + timedelta(days=1) if end else day)
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if not EARLIEST <= moment.date() <= LATEST:
        return None
    if moment.tzinfo is not None:
        return int(moment.timestamp() * 1000)
    return local.at(moment)


def add_period_arguments(p: argparse.ArgumentParser, *, tz_for: str, since_default: str | None = None) -> None:
    """--since, --until and --tz, worded the same for every command that takes a period."""
    default = f"; default {since_default}" if since_default else ""
    p.add_argument("--since", default=since_default,
                   help=f"7d, 12h, 2w, today, yesterday, 2026-01-01 or 2026-01-01T08:00 (local time{default})")
    p.add_argument("--until", help="same forms; a date includes that whole day (default: now)")
    p.add_argument("--tz", help=f"IANA time zone for {tz_for} (default: the system's, or TZ)")


def period(since: str | None, until: str | None, local: LocalTime, now_ms: int) -> tuple[int | None, int | None]:
    """[since_ms, until_ms) from the options; None for an open end."""
    since_ms = parse_when(since, local, now_ms) if since else None
    until_ms = parse_when(until, local, now_ms, end=True, option="--until") if until else None
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise BadInput(f"--until {until!r} is not after --since {since!r}")
    return since_ms, until_ms


def parse_hours(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d{1,2})\s*-\s*(\d{1,2})\s*", text)
    if not match or not all(0 <= int(x) <= 24 for x in match.groups()) or match.group(1) == match.group(2):
        raise BadInput(f"--hours {text!r}: expected START-END local hours, such as 7-12 or 22-2")
    # 24 may close a window (18-24); as a start it is midnight.
    return int(match.group(1)) % 24, int(match.group(2))
