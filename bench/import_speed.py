"""Import speed: plays/s of `spotify-logger import` on a synthetic extended-history export.

The export has `--records` records (default 200k) split into files of ~15k, as Spotify splits
them, over about three years: a realistic catalogue (bench/_common.py) with Zipf-like
popularity, a quarter of the records short skips, 4 % podcast episodes, 0.5 % incognito. It is
imported into a fresh redis-server (empty store), imported again (everything a duplicate),
checked, then dry-run into an emptied store. Each prints wall time, records/s, plays/s and the
peak RSS of this process so far.

    python bench/import_speed.py
    python bench/import_speed.py --records 50000 --chunk 1000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import _common as common

from spotify_logger import importer
from spotify_logger.check import check
from spotify_logger.importer import run_import

FILE_RECORDS = 15_000
START_MS = 1_609_459_200_000  # 2021-01-01


def synthetic_export(directory: Path, records: int, seed: int = 7) -> list[Path]:
    rng = random.Random(seed)
    items = common.realistic_items(5_000)
    weights = [1 / (rank + 1) ** 0.9 for rank in range(len(items))]
    picks = rng.choices(items, weights=weights, k=records)
    at, out, paths = START_MS, [], []
    platforms = ("android", "ios", "linux", "windows", "web_player")
    for index, item in enumerate(picks):
        skipped = rng.random() < 0.25
        ms = rng.randint(500, 20_000) if skipped else item.duration_ms - rng.randint(0, 3_000)
        at += ms + (rng.randint(0, 8) * 3_600_000 if rng.random() < 0.02 else rng.randint(0, 1_500))
        record: dict[str, Any] = {
            "ts": datetime.fromtimestamp(at / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "platform": rng.choice(platforms), "ms_played": ms, "conn_country": "FR",
            "master_metadata_track_name": None, "master_metadata_album_artist_name": None,
            "master_metadata_album_album_name": None, "spotify_track_uri": None, "episode_name": None,
            "episode_show_name": None, "spotify_episode_uri": None, "reason_start": "trackdone",
            "reason_end": "fwdbtn" if skipped else "trackdone", "shuffle": rng.random() < 0.4,
            "skipped": skipped, "offline": rng.random() < 0.05, "offline_timestamp": None,
            "incognito_mode": rng.random() < 0.005,
        }
        if item.kind == "episode":
            record.update(episode_name=item.name, episode_show_name=item.show, spotify_episode_uri=item.uri)
        else:
            record.update(master_metadata_track_name=item.name, master_metadata_album_artist_name=item.artists[0],
                          master_metadata_album_album_name=item.album, spotify_track_uri=item.uri)
        out.append(record)
        if len(out) == FILE_RECORDS or index == records - 1:
            path = directory / f"Streaming_History_Audio_{len(paths)}.json"
            path.write_text(json.dumps(out))
            paths.append(path)
            out = []
    return paths


def timed(label: str, client: Any, folder: Path, **kwargs: Any) -> importer.Summary:
    started = time.perf_counter()
    summary = run_import(client, [folder], min_play_ms=30_000, **kwargs)
    elapsed = time.perf_counter() - started
    print(f"{label:<22} {elapsed:7.2f} s  {summary.records / elapsed:9,.0f} records/s  "
          f"{summary.added / elapsed:9,.0f} plays/s  (added {summary.added:,}, duplicates {summary.duplicates:,}, "
          f"skipped {sum(summary.skipped.values()):,}; peak RSS so far {_rss_mb():.0f} MB)")
    return summary


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=importer.CHUNK, help="writes per Lua call")
    args = parser.parse_args()
    importer.CHUNK = args.chunk
    print(f"machine: {common.machine()}")
    with common.redis_server("import") as (tmp, server):
        folder = tmp / "export"
        folder.mkdir()
        started = time.perf_counter()
        paths = synthetic_export(folder, args.records)
        size = sum(p.stat().st_size for p in paths) / 1e6
        print(f"export: {args.records:,} records in {len(paths)} files, {size:.0f} MB "
              f"(generated in {time.perf_counter() - started:.1f} s); chunk {args.chunk} writes per Lua call; "
              f"peak RSS {_rss_mb():.0f} MB")
        client = server.client()
        print(f"redis-server {common.redis_version(client)} on loopback")
        first = timed("import (empty store)", client, folder)
        timed("re-import (all dupes)", client, folder)
        started = time.perf_counter()
        report = check(client)
        print(f"{'check':<22} {time.perf_counter() - started:7.2f} s  ok={report.ok} "
              f"plays={report.plays:,} counted={report.counted:,} (counted on import: {first.added_counted:,})")
        print(f"redis used_memory: {int(client.info('memory')['used_memory']) / 1e6:.0f} MB")
        # Last, on an empty store again: a dry run keeps the plays it would add in memory
        # (to predict the real run exactly), which would hide the real import's peak RSS.
        client.flushdb()
        timed("dry run (empty store)", client, folder, dry_run=True)


if __name__ == "__main__":
    main()
