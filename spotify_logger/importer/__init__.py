"""Importing Spotify's own history export (files, folders or the .zip) into the play store.

Each file is read, its records parsed and sorted, then planned and written chunk by chunk: one
Lua call (Store.apply) per chunk of up to CHUNK writes, atomic, idempotent, `create_only` for new
plays, so the counters keep their invariant and a re-import adds nothing. A chunk lands whole or
not at all; an import cut short by Redis says so and can simply be run again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator, Sequence

import redis

from ..batch import Batch
from ..errors import StoreUnavailable
from ..store import Store, StoreError
from .planner import Planner
from .progress import Progress
from .records import INCOGNITO, MALFORMED, Record, Skip, parse
from .sources import Source, resolve
from .summary import Summary
from .timeline import LOOKBACK_MS, Timeline

__all__ = ["CHUNK", "Summary", "import_sources", "run_import"]

CHUNK = 500


def run_import(client: "redis.Redis[str]", paths: Sequence[str | Path], *, min_play_ms: int,
               dry_run: bool = False, include_incognito: bool = False, now_ms: int | None = None) -> Summary:
    """Import every history file under `paths`. Bad paths raise BadInput before anything is
    written; bad files and records are listed in the summary and the rest is imported."""
    return import_sources(client, resolve(paths), min_play_ms=min_play_ms, dry_run=dry_run,
                          include_incognito=include_incognito, now_ms=now_ms)


def import_sources(client: "redis.Redis[str]", sources: Sequence[Source], *, min_play_ms: int,
                   dry_run: bool = False, include_incognito: bool = False, progress: Progress | None = None,
                   now_ms: int | None = None) -> Summary:
    """run_import of files already resolved (sources.resolve), drawing `progress` if given."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    summary = Summary(dry_run=dry_run)
    importer = _Importer(client, summary, min_play_ms=min_play_ms, dry_run=dry_run)
    bar = progress or Progress(sum(s.size for s in sources), enabled=False)
    done = 0
    try:
        for source in sources:
            records = _read(source, summary, include_incognito=include_incognito, now_ms=now_ms)
            applied = 0
            for chunk in _chunks(records):
                importer.apply(chunk)
                applied += len(chunk)
                bar.update(done + source.size * applied / max(len(records), 1), summary.records)
            done += source.size
            bar.update(done, summary.records)
    except (StoreUnavailable, StoreError) as exc:
        summary.interrupted = str(exc)
    finally:
        bar.close()
    return summary


class _Importer:
    def __init__(self, client: "redis.Redis[str]", summary: Summary, *, min_play_ms: int, dry_run: bool) -> None:
        self.store = Store(client)
        self.summary = summary
        self.dry_run = dry_run
        self.planner = Planner(Timeline(client, keep_planned=dry_run), min_play_ms=min_play_ms)

    def apply(self, chunk: list[Record]) -> None:
        plan = self.planner.plan(chunk)
        raced = 0
        if plan.writes and not self.dry_run:
            landed = self.store.apply(Batch.not_a_poll(plan.writes))
            raced = len(plan.writes) - landed
        s = self.summary
        if raced:
            s.problem(f"{raced} plays were created by the poller while importing: counted as duplicates")
        s.added += len(plan.creates) - raced
        s.added_counted += plan.counted
        s.confirmed += plan.confirmed
        s.duplicates += plan.duplicates + raced
        if plan.collisions:
            s.skipped["key_collision"] += plan.collisions


def _read(source: Source, summary: Summary, *, include_incognito: bool, now_ms: int) -> list[Record]:
    data = source.load()
    if isinstance(data, str):
        summary.bad_files += 1
        summary.problem(f"{source.label}: {data}")
        return []
    summary.files += 1
    records: list[Record] = []
    for index, raw in enumerate(data):
        summary.records += 1
        parsed = parse(raw, now_ms=now_ms)
        if isinstance(parsed, Skip):
            summary.skipped[parsed.reason] += 1
            if parsed.reason == MALFORMED:
                summary.problem(f"{source.label}: record {index}: {parsed.detail}")
            continue
        if parsed.incognito and not include_incognito:
            summary.skipped[INCOGNITO] += 1
            continue
        summary.span(parsed.started_at, parsed.ended_at)
        records.append(parsed)
    records.sort(key=lambda r: (r.started_at, r.uri, r.ms_played))
    return records


def _chunks(records: list[Record]) -> Iterator[list[Record]]:
    """Up to CHUNK records, cut where listening paused for longer than the lookback, so a
    chunk's window of stored plays never spans a long silence (months of unrelated plays)."""
    chunk: list[Record] = []
    last_end = None
    for rec in records:
        if chunk and (len(chunk) >= CHUNK or (last_end is not None and rec.started_at - last_end > LOOKBACK_MS)):
            yield chunk
            chunk, last_end = [], None
        chunk.append(rec)
        last_end = rec.ended_at if last_end is None else max(last_end, rec.ended_at)
    if chunk:
        yield chunk
