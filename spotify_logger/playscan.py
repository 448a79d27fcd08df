"""Reading plays back, in time order and constant memory: the one read path for every command.

Fetching each play with its own HGETALL and paging by offset costs ~85 µs a play in redis-py's
reply parsing over a million plays, and offset paging makes Redis walk the skiplist from the
start of the range on every page. Here a page is one ZRANGEBYSCORE that starts after the last
member seen, then one read-only script that returns the page's fields as a single JSON string
(one json.loads in C instead of thousands of replies).
"""

from __future__ import annotations

import json
from typing import Iterator, Sequence

import redis

from . import keys
from .store import translate_redis_errors

PAGE = 1000

# HMGET's missing fields come back as false; HGETALL gives the flat field/value list.
_READ_FIELDS = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HMGET', key, unpack(ARGV)) end
return cjson.encode(out)
"""
_READ_ALL = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGETALL', key) end
return cjson.encode(out)
"""


class PlayScanner:
    def __init__(self, client: "redis.Redis[str]") -> None:
        self.client = client
        self._fields = client.register_script(_READ_FIELDS)
        self._all = client.register_script(_READ_ALL)

    def read(self, members: Sequence[str], fields: Sequence[str] | None) -> list[dict[str, str]]:
        """The hashes of these index members ({} for a member whose hash is gone)."""
        play_keys = [f"{keys.PLAY_PREFIX}{m}" for m in members]
        with translate_redis_errors(self.client):
            if fields is None:
                rows = json.loads(self._all(keys=play_keys, args=[]))
                return [dict(zip(flat[::2], flat[1::2])) if isinstance(flat, list) else {} for flat in rows]
            rows = json.loads(self._fields(keys=play_keys, args=list(fields)))
        return [{k: v for k, v in zip(fields, row) if isinstance(v, str)} for row in rows]

    def scan(self, fields: Sequence[str] | None = None, *, since_ms: int | None = None,
             until_ms: int | None = None, reverse: bool = False,
             page: int = PAGE) -> Iterator[tuple[str, dict[str, str]]]:
        """(index member, fields) for the plays started in [since_ms, until_ms), oldest first
        unless reverse, read `page` plays at a time (1 when only the first is wanted). `fields`
        None reads whole hashes. Members whose hash is gone are skipped."""
        low: str = str(since_ms) if since_ms is not None else "-inf"
        high: str = f"({until_ms}" if until_ms is not None else "+inf"
        while True:
            with translate_redis_errors(self.client):
                if reverse:
                    members = self.client.zrevrangebyscore(keys.INDEX, high, low, start=0, num=page)
                else:
                    members = self.client.zrangebyscore(keys.INDEX, low, high, start=0, num=page)
            if not members:
                return
            for member, row in zip(members, self.read(members, fields)):
                if row:
                    yield member, row
            # Members are their own scores (started_at), so "after the last one" is exact.
            last = members[-1]
            if reverse:
                high = f"({last}"
            else:
                low = f"({last}"
            if len(members) < page:
                return


def scan_plays(client: "redis.Redis[str]", fields: Sequence[str] | None = None, *, since_ms: int | None = None,
               until_ms: int | None = None, reverse: bool = False,
               page: int = PAGE) -> Iterator[tuple[int, dict[str, str]]]:
    """(started_at, hash) in time order; `fields` None for whole hashes."""
    for member, row in PlayScanner(client).scan(fields, since_ms=since_ms, until_ms=until_ms, reverse=reverse,
                                                page=page):
        if member.isdigit():
            yield int(member), row


def artists_of(fields: dict[str, str]) -> list[str]:
    """The artists JSON list of a play hash; [] when absent or damaged."""
    try:
        value = json.loads(fields.get("artists") or "[]")
    except ValueError:
        return []
    return [a for a in value if isinstance(a, str)] if isinstance(value, list) else []
