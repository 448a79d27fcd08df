"""Reading plays back: in started_at order through the index, in chunks, in constant memory."""

from __future__ import annotations

import json
from typing import Iterator

import redis

from . import keys
from .store import translate_redis_errors

CHUNK = 500


def iter_plays(client: "redis.Redis[str]", *, since_ms: int | None = None, until_ms: int | None = None,
               reverse: bool = False) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (started_at_ms, hash) for plays in [since_ms, until_ms), oldest first unless reverse."""
    low: str | int = since_ms if since_ms is not None else "-inf"
    high: str | int = f"({until_ms}" if until_ms is not None else "+inf"
    offset = 0
    while True:
        with translate_redis_errors():
            if reverse:
                members = client.zrevrangebyscore(keys.INDEX, high, low, start=offset, num=CHUNK)
            else:
                members = client.zrangebyscore(keys.INDEX, low, high, start=offset, num=CHUNK)
            if not members:
                return
            pipe = client.pipeline(transaction=False)
            for member in members:
                pipe.hgetall(keys.play_key(int(member)))
            hashes = pipe.execute()
        for member, fields in zip(members, hashes):
            if fields:
                yield int(member), fields
        offset += len(members)


def artists_of(fields: dict[str, str]) -> list[str]:
    try:
        value = json.loads(fields.get("artists") or "[]")
    except ValueError:
        return []
    return [a for a in value if isinstance(a, str)] if isinstance(value, list) else []
