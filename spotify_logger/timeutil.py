"""Instants as people and Spotify write them: ISO 8601 in, epoch ms out, and back for display."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_FRACTION = re.compile(r"\.(\d{1,6})(?!\d)")


def utc_iso(epoch_s: float) -> str:
    """Epoch seconds as ISO 8601 UTC to the second: how logs and commands show an instant."""
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="seconds")


def iso_to_ms(raw: Any) -> int | None:
    """ISO 8601 (`2026-02-25T20:15:20.497Z`, `2026-02-25 20:15`; no zone means UTC) to epoch ms."""
    if not isinstance(raw, str) or not raw:
        return None
    text = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
    # Python 3.9 and 3.10 accept only 3 or 6 fraction digits; Spotify's played_at has 1 to 6.
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "00000")[:6], text, count=1)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // timedelta(milliseconds=1)
