"""Redis bytes per stored play: INFO memory and MEMORY USAGE over 100k plays.

Plays go through the real path: a /me/player body (built by the simulator's object builders)
-> extract() -> PlayTracker -> Store.apply, with the writes of many polls batched into one
Lua call to save time. Each play is seen at its start and once more, and ends when the next
one starts, so every hash holds what a finished play really holds. Field values come from a
seeded realistic catalogue (bench/_common.py): names, 1-4 artists, albums, podcast episodes,
playlist/album/artist/liked-songs contexts, several devices.

Then: bytes per play (used_memory delta / plays), the MEMORY USAGE of a play hash and where its
bytes go (key, index entry, each field), how many hashes left the compact listpack encoding
and which fields pushed them out, and what-if layouts measured on a sample (never written by
the daemon: the schema is specified elsewhere).

    python bench/memory.py                  # 100k plays, ~2 minutes
    python bench/memory.py --plays 20000    # quicker
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from typing import Any, Iterator

import _common as common
from spotify_logger import keys
from spotify_logger.batch import Batch, PlayWrite
from spotify_logger.extract import extract
from spotify_logger.simulator.items import fake_id
from spotify_logger.simulator.objects import context_object, device_object, item_object, show_uri
from spotify_logger.store import Store
from spotify_logger.tracker import PlayTracker

START_MS = 1_732_180_000_000
BATCH_WRITES = 500
_INT = re.compile(r"-?[1-9][0-9]{0,18}|0")


def bodies(count: int, seed: int) -> Iterator[tuple[dict[str, Any], int, int]]:
    """(player body at the start of a play, when it started, ms heard) for `count` plays."""
    rng = random.Random(seed)
    catalogue = common.realistic_items(5000, seed)
    # Popular items come back often (a long tail, as in real histories).
    weights = [1 / (rank + 20) for rank in range(len(catalogue))]
    contexts = _contexts()
    objects: dict[str, dict[str, Any]] = {}
    now, left_today = START_MS, rng.randint(20, 100)
    for _ in range(count):
        if left_today == 0:  # a listening day holds 20-100 plays; the next starts in the morning
            now = (now // 86_400_000 + 1) * 86_400_000 + rng.randint(6, 12) * 3_600_000
            left_today = rng.randint(20, 100)
        left_today -= 1
        item = rng.choices(catalogue, weights)[0]
        obj = objects.get(item.uri) or objects.setdefault(item.uri, item_object(item) or {})
        name, kind = rng.choice(common.devices())
        context = show_uri(item) if item.kind == "episode" else rng.choice(contexts)
        body = {
            "device": device_object(name, kind=kind, volume=rng.choice((30, 45, 50, 65, 80, 100))),
            "shuffle_state": rng.random() < 0.4, "smart_shuffle": False,
            "repeat_state": rng.choice(("off", "off", "off", "context", "track")),
            "timestamp": now, "context": context_object(context), "progress_ms": 0, "item": obj,
            "currently_playing_type": item.kind, "is_playing": True,
        }
        heard = item.duration_ms if rng.random() < 0.75 else min(item.duration_ms, rng.randint(3_000, 120_000))
        yield body, now, heard
        now += heard + rng.randint(0, 2_000)


def _contexts() -> list[str | None]:
    user = fake_id("user", 25).lower()
    playlists = [f"spotify:playlist:{fake_id(f'playlist{i}')}" for i in range(40)]
    albums = [f"spotify:album:{fake_id(f'album{i}')}" for i in range(30)]
    artists = [f"spotify:artist:{fake_id(f'artist{i}')}" for i in range(8)]
    return playlists * 5 + albums * 3 + artists + [f"spotify:user:{user}:collection"] * 60 + [None] * 10


def write_plays(store: Store, count: int, seed: int) -> float:
    """Drive the tracker through `count` plays and apply its writes, batched. Returns seconds."""
    tracker = PlayTracker(min_play_ms=30_000, end_grace_ms=300_000)
    pending: list[PlayWrite] = []
    started = time.monotonic()
    for body, start, heard in bodies(count, seed):
        for progress in (min(400, heard), heard // 2 + 1):
            body["progress_ms"] = progress
            pending.extend(tracker.observe(extract(body), start + progress).writes)
        if len(pending) >= BATCH_WRITES:
            _apply(store, tracker, pending)
    _apply(store, tracker, pending)
    return time.monotonic() - started


def _apply(store: Store, tracker: PlayTracker, pending: list[PlayWrite]) -> None:
    current = tracker.open.started_at if tracker.open else None
    store.apply(Batch(polled_at=pending[-1].started_at if pending else START_MS, writes=tuple(pending), current=current))
    pending.clear()


def lp_entry_bytes(value: str) -> int:
    """Bytes of one listpack entry (Redis 7 listpack.c): integers are stored as integers."""
    if _INT.fullmatch(value) and -2**63 <= int(value) < 2**63:
        v = int(value)
        size = (1 if 0 <= v <= 127 else 2 if -4096 <= v <= 4095 else 3 if -2**15 <= v < 2**15
                else 4 if -2**23 <= v < 2**23 else 5 if -2**31 <= v < 2**31 else 9)
    else:
        n = len(value.encode())
        size = (1 if n < 64 else 2 if n < 4096 else 5) + n
    return size + (1 if size < 128 else 2 if size < 16384 else 3)


def measure(client: Any, plays: int, seed: int, sample: int) -> dict[str, Any]:
    client.flushall()
    store = Store(client)
    store.redis.script_load(store._apply.script)  # noqa: SLF001 - keep the script cache out of the delta
    base = _used(client)
    seconds = write_plays(store, plays, seed)
    used = _used(client) - base
    members = client.zrange(keys.INDEX, 0, -1)
    play_keys = [keys.play_key(int(m)) for m in members]
    encodings: Counter[str] = Counter()
    for chunk in _chunks(play_keys, 2000):
        with client.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.object("encoding", key)
            encodings.update(pipe.execute())
    rng = random.Random(seed)
    sampled = rng.sample(play_keys, min(sample, len(play_keys)))
    hashes, usage = _hashes_and_usage(client, sampled)
    return {"plays": len(play_keys), "seconds": seconds, "used": used, "encodings": encodings,
            "hashes": hashes, "usage": usage,
            "index": client.memory_usage(keys.INDEX, samples=0) or 0,
            "counters": sum(client.memory_usage(k, samples=0) or 0 for k in (keys.TRACK_COUNTS, keys.ARTIST_COUNTS))}


def _used(client: Any) -> int:
    """used_memory less client buffers: a big batch leaves its query buffer behind for a while,
    which is the load, not the data."""
    info = client.info("memory")
    return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0))


def _hashes_and_usage(client: Any, sampled: list[str]) -> tuple[list[dict[str, str]], list[int]]:
    hashes: list[dict[str, str]] = []
    usage: list[int] = []
    for chunk in _chunks(sampled, 1000):
        with client.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.hgetall(key)
                pipe.memory_usage(key, samples=0)
            out = pipe.execute()
        hashes += out[0::2]
        usage += out[1::2]
    return hashes, usage


def _chunks(seq: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


# --- what-ifs: the same plays in other layouts, written straight to a scratch database ------------

ITEM_FIELDS = ("type", "id", "name", "artists", "artist_ids", "album", "album_id", "show", "explicit",
               "is_local", "duration_ms")
DERIVABLE = ("started_at", "context_type")  # the key holds started_at; context_uri holds its type


def what_if(client: Any, hashes: list[dict[str, str]], layout: str, listpack_value: int = 64) -> tuple[float, float]:
    """(bytes per play including its index entry, share of play hashes not in listpack)."""
    scratch = client.connection_pool.connection_kwargs.get("db", 0) + 1
    other = type(client)(**{**client.connection_pool.connection_kwargs, "db": scratch})
    other.flushdb()
    old = client.config_get("hash-max-listpack-value")["hash-max-listpack-value"]
    client.config_set("hash-max-listpack-value", listpack_value)
    try:
        base = _used(other)
        items: dict[str, dict[str, str]] = {}
        with other.pipeline(transaction=False) as pipe:
            for h in hashes:
                started = h["started_at"]
                fields = dict(h)
                if layout == "no_playing_when_closed" and "ended_at" in fields:
                    fields.pop("playing", None)
                elif layout in ("interned_items", "lean", "day_hash"):
                    items.setdefault(fields["uri"], {k: fields[k] for k in ITEM_FIELDS if k in fields})
                    fields = {k: v for k, v in fields.items() if k not in ITEM_FIELDS and k not in DERIVABLE}
                    if layout != "interned_items" and "ended_at" in fields:
                        fields.pop("playing", None)
                day = int(started) // 86_400_000
                if layout == "day_hash":
                    # One hash per day; a play is one compact value, its field names implied by position.
                    packed = json.dumps([fields.get(k) for k in keys.PLAY_FIELDS if k in fields], separators=(",", ":"))
                    pipe.hset(f"listening:day:{day}", started, packed)
                    continue
                pipe.hset(f"listening:{started}", mapping=fields)
                if layout == "lean":  # an index per day stays small enough for a listpack zset
                    pipe.zadd(f"{keys.INDEX}:{day}", {started: int(started)})
                else:
                    pipe.zadd(keys.INDEX, {started: int(started)})
            for uri, item in items.items():
                pipe.hset(f"item:{uri}", mapping=item)
            pipe.execute()
        per_play = (_used(other) - base) / len(hashes)
        if layout == "day_hash":
            return per_play, float("nan")
        not_listpack = sum(other.object("encoding", f"listening:{h['started_at']}") != "listpack" for h in hashes)
        return per_play, not_listpack / len(hashes)
    finally:
        client.config_set("hash-max-listpack-value", old)
        other.flushdb()
        other.close()


def report(r: dict[str, Any], client: Any) -> None:
    n = r["plays"]
    hashes, usage = r["hashes"], r["usage"]
    mean_usage = sum(usage) / len(usage)
    per_play = r["used"] / n
    enc = r["encodings"]
    listpack = [u for u, h in zip(usage, hashes) if _fits(h, 64)]
    print(f"plays written: {n} through Store.apply in {r['seconds']:.0f} s "
          f"(redis-server {common.redis_version(client)}, allocator {client.info('memory').get('mem_allocator', '?')}, "
          f"hash-max-listpack-value "
          f"{client.config_get('hash-max-listpack-value')['hash-max-listpack-value']})")
    print(f"INFO used_memory delta (less client buffers): {r['used'] / 1e6:.1f} MB = {per_play:.0f} bytes per play   (target <= 400)")
    print(f"MEMORY USAGE of a play hash (sample of {len(usage)}): mean {mean_usage:.0f} B, "
          f"listpack ones {sum(listpack) / max(1, len(listpack)):.0f} B, "
          f"min {min(usage)} B, max {max(usage)} B")
    print(f"encodings: {dict(enc)} -> {100 * (n - enc.get('listpack', 0)) / n:.1f} % of hashes are not listpack")
    too_long: Counter[str] = Counter()
    for h in hashes:
        too_long.update(k for k, v in h.items() if len(v.encode()) > 64)
    if too_long:
        print("  fields longer than 64 bytes, per 100 plays: "
              + ", ".join(f"{k} {100 * c / len(hashes):.1f}" for k, c in too_long.most_common()))
    print("breakdown per play:")
    key_len = len(keys.play_key(START_MS))
    lp = [6 + sum(lp_entry_bytes(k) + lp_entry_bytes(v) for k, v in h.items()) + 1 for h in hashes]
    print(f"  play hash, MEMORY USAGE      {mean_usage:6.0f} B  = key '{keys.play_key(START_MS)}' ({key_len} chars, "
          f"sds 32 B) + dictEntry 24 B + robj 16 B + listpack (content {sum(lp) / len(lp):.0f} B, "
          f"allocated in jemalloc size classes)")
    print(f"  listening:index entry        {r['index'] / n:6.0f} B  (zset: skiplist node + dict entry + member sds)")
    print(f"  plays:tracks + plays:artists {r['counters'] / n:6.0f} B  (grow with distinct uris and artists, not plays)")
    rest = per_play - mean_usage - r["index"] / n - r["counters"] / n
    print(f"  keyspace hash table and rest {rest:6.0f} B  (main dict buckets, allocator overhead)")
    print("  fields in the listpack (field name + value entries), mean bytes per play:")
    per_field: Counter[str] = Counter()
    for h in hashes:
        for k, v in h.items():
            per_field[k] += lp_entry_bytes(k) + lp_entry_bytes(v)
    names = sum(lp_entry_bytes(k) for h in hashes for k in h) / len(hashes)
    print(f"    (of the {sum(lp) / len(lp):.0f} B of listpack content, {names:.0f} B are field names)")
    cells = [f"{k} {v / len(hashes):.0f}" for k, v in per_field.most_common()]
    for i in range(0, len(cells), 7):
        print("    " + ", ".join(cells[i:i + 7]))
    print(f"what-ifs on {len(hashes)} of these plays, written straight to a scratch db (bytes per play "
          f"with its index entry and interned items, without the counters; % of play hashes not listpack):")
    for label, layout, value in (
        ("as stored", "as_is", 64),
        ("as stored, hash-max-listpack-value 256", "as_is", 256),
        ("no 'playing' field once a play ended", "no_playing_when_closed", 64),
        ("item metadata interned in one hash per uri", "interned_items", 64),
        ("interned, with hash-max-listpack-value 256", "interned_items", 256),
        ("interned, no 'playing' once ended, index per day", "lean", 64),
        ("one hash per day, a play = one packed value", "day_hash", 64),
        ("one hash per day, hash-max-listpack-value 512", "day_hash", 512),
    ):
        bytes_, share = what_if(client, hashes, layout, value)
        shown = "    -" if share != share else f"{100 * share:5.1f}"
        print(f"  {label:<50} {bytes_:6.0f} B  {shown} %")


def _fits(h: dict[str, str], limit: int) -> bool:
    return all(len(k.encode()) <= limit and len(v.encode()) <= limit for k, v in h.items())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plays", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=6)
    p.add_argument("--sample", type=int, default=20_000, help="hashes read back for MEMORY USAGE and what-ifs")
    args = p.parse_args()
    print(f"machine: {common.machine()}")
    with common.redis_server("memory") as (_, server):
        client = server.client()
        result = measure(client, args.plays, args.seed, args.sample)
        report(result, client)
    return 0


if __name__ == "__main__":
    sys.exit(main())
