"""Latency of `spotify-logger stats top` over 1M stored plays, on a real redis-server.

The plays (full poller-shaped hashes, ~25 fields, a 20k-item catalogue with Zipf-like
popularity, spread over the ten years up to now) are written straight into Redis with
pipelined HSET/ZADD (a fixture, not the code under test), the counters computed to match.
Each command runs in-process through the CLI entry point (`cli.main`), output discarded; the
figure is the median of `--repeat` runs (a single run for the full scans).

    python bench/stats_latency.py
    python bench/stats_latency.py --plays 200000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import resource
import statistics
import subprocess
import sys
import time

import _common as common

from spotify_logger import keys
from spotify_logger.cli import main as cli_main
from spotify_logger.simulator.items import fake_id

DAY_MS = 86_400_000


def fill(client: object, plays: int, seed: int = 11) -> None:
    rng = random.Random(seed)
    items = common.realistic_items(20_000)
    weights = [1 / (rank + 1) ** 0.9 for rank in range(len(items))]
    now = int(time.time() * 1000)
    start = now - 3650 * DAY_MS
    step = (now - start) // plays
    tracks: dict[str, int] = {}
    artists: dict[str, int] = {}
    picks = rng.choices(items, weights=weights, k=plays)
    pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
    index: dict[str, int] = {}
    for n, item in enumerate(picks):
        started = start + n * step + rng.randint(0, step // 2)
        ms = rng.randint(1_000, 25_000) if rng.random() < 0.25 else item.duration_ms
        counted = ms >= 30_000
        device = rng.choice(common.devices())
        fields = {
            "started_at": started, "last_seen_at": started + ms, "ended_at": started + ms, "ms_played": ms,
            "progress_ms": ms, "duration_ms": item.duration_ms, "type": "episode" if item.kind == "episode" else "track",
            "uri": item.uri, "id": item.id or "", "name": item.name,
            "artists": json.dumps(list(item.artists), ensure_ascii=False),
            # Ids the same every run (str hash() is not), as long as the numeric ones they replaced.
            "artist_ids": json.dumps([f"id{fake_id('artist:' + a, 8)}" for a in item.artists]),
            "explicit": "1" if item.explicit else "0", "is_local": "0", "context_type": "playlist",
            "context_uri": "spotify:playlist:37i9dQZF1DXcBWIGoYBM5M", "device_name": device[0],
            "device_type": device[1], "device_volume": 70, "shuffle_state": "0", "repeat_state": "off",
            "playing": "0", "counted": "1" if counted else "0", "source": "poll",
        }
        if item.kind == "episode":
            fields["show"] = item.show
        else:
            fields["album"] = item.album
            fields["album_id"] = f"al{fake_id('album:' + item.album, 10)}"
        pipe.hset(keys.play_key(started), mapping=fields)
        index[str(started)] = started
        if counted:
            tracks[item.uri] = tracks.get(item.uri, 0) + 1
            for artist in item.artists:
                artists[artist] = artists.get(artist, 0) + 1
        if len(index) >= 5_000:
            pipe.zadd(keys.INDEX, index)
            pipe.execute()
            index = {}
    if index:
        pipe.zadd(keys.INDEX, index)
    for name, counts in ((keys.TRACK_COUNTS, tracks), (keys.ARTIST_COUNTS, artists)):
        pipe.zadd(name, counts)
    pipe.execute()


def timed(argv: list[str], env: dict[str, str], repeat: int) -> tuple[float, str]:
    runs = []
    out = ""
    for _ in range(repeat):
        buffer = io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stdout(buffer):
            code = cli_main(argv, env=env)
        runs.append(time.perf_counter() - started)
        if code != 0:
            raise SystemExit(f"{argv} exited {code}")
        out = buffer.getvalue()
    return statistics.median(runs), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plays", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {common.machine()}")
    with common.redis_server("stats") as (_, server):
        client = server.client()
        started = time.perf_counter()
        fill(client, args.plays)
        print(f"redis-server {common.redis_version(client)}: {client.zcard(keys.INDEX):,} plays written in "
              f"{time.perf_counter() - started:.1f} s, used_memory "
              f"{int(client.info('memory')['used_memory']) / 1e6:.0f} MB")
        env = {"REDIS_URL": server.url, "SPOTIFY_LOGGER_LOG_FORMAT": "json"}
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cases = [
            (["stats", "top", "tracks"], args.repeat),
            (["stats", "top", "artists"], args.repeat),
            (["stats", "top", "tracks", "--since", "7d"], args.repeat),
            (["stats", "top", "tracks", "--since", "30d"], args.repeat),
            (["stats", "top", "artists", "--since", "30d"], args.repeat),
            (["stats", "top", "tracks", "--since", "365d"], 1),
            (["stats", "top", "albums"], 1),
        ]
        for argv, repeat in cases:
            seconds, out = timed(argv, env, repeat)
            rows = max(0, len(out.splitlines()) - 2)
            print(f"{' '.join(argv):<40} {seconds * 1000:9.0f} ms  ({rows} rows, median of {repeat})")
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "spotify_logger", "stats", "top", "tracks"], env={**env, "PATH": ""},
                       check=True, stdout=subprocess.DEVNULL, cwd=common.ROOT)
        print(f"{'new process: stats top tracks':<40} {(time.perf_counter() - started) * 1000:9.0f} ms  "
              "(Python start-up included)")
        print(f"peak RSS of this process: {rss_before:.0f} MB after writing the fixture, "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB after the stats runs")


if __name__ == "__main__":
    main()
