"""Helpers shared by several test modules: plays and export records put in a store the ways the
project writes them, a stand-in recently-played feed and player, the API client, and the CLI run
in-process or as a new process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import pytest

from spotify_logger import keys
from spotify_logger.api import SpotifyClient
from spotify_logger.httpsession import make_session
from spotify_logger.auth import Authenticator
from spotify_logger.backfill import FEED_SIZE
from spotify_logger.batch import Batch, PlayWrite
from spotify_logger.cli import main
from spotify_logger.config import Settings
from spotify_logger.cooldown import Cooldown
from spotify_logger.extract import Snapshot, redis_convert
from spotify_logger.simulator.items import Item
from spotify_logger.simulator.objects import context_object, track_object
from spotify_logger.simulator.recent import iso_ms
from spotify_logger.store import Store
from spotify_logger.tokenstore import TokenStore
from spotify_logger.tracker import PlayTracker

from conftest import ROOT

H, MIN, DAY = 3_600_000, 60_000, 86_400_000
MON = 1_717_372_800_000  # Monday 2024-06-03 00:00 UTC
A, B, C = ("spotify:track:" + c * 22 for c in "abc")
EP = "spotify:episode:" + "e" * 22
CONTEXT = "spotify:playlist:37i9dQZF1DXcBWIGoYBM5M"


# --- plays in a store --------------------------------------------------------------------------

def add_play(client: Any, start: int, ms: int, uri: str = A, *, name: str | None = None,
             artists: Sequence[str] = ("Artist",), album: str | None = "Album", counted: bool | None = None,
             kind: str = "track", show: str | None = None) -> None:
    """One finished play, written through the store as the poller would (counters included)."""
    counted = ms >= 30_000 if counted is None else counted
    fields = redis_convert(dict(started_at=start, last_seen_at=start + ms, ended_at=start + ms, ms_played=ms, uri=uri,
                                name=name or f"Song {uri[-1].upper()}", artists=list(artists) or None, album=album,
                                type=kind, show=show, counted=counted, playing=False, source="poll"))
    write = PlayWrite(start, fields, uri, tuple(artists), counted=counted)
    Store(client).apply(Batch.not_a_poll([write]))


def play_through_tracker(client: Any, uri: str, start: int, length_ms: int, *, name: str = "Song A") -> int:
    """One play recorded as the poller does (the real tracker, a poll every 5 s), ended by the next
    track; returns its key."""
    tracker = PlayTracker(min_play_ms=30_000, end_grace_ms=30_000)
    store = Store(client)
    for progress in range(0, length_ms + 1, 5_000):
        snap = Snapshot(kind="track", uri=uri, name=name, artists=("Artist",), duration_ms=length_ms,
                        progress_ms=progress, is_playing=True)
        store.apply(tracker.observe(snap, start + progress))
    store.apply(tracker.observe(Snapshot(kind="track", uri="spotify:track:" + "z" * 22, name="next",
                                         duration_ms=length_ms, progress_ms=0, is_playing=True), start + length_ms + 500))
    return min(int(m) for m in client.zrangebyscore(keys.INDEX, start - 5_000, start + 5_000))


def write_polled_play(store: Store, item: Item, started_at: int, ms: int | None = None, *,
                      open_: bool = False) -> None:
    """A play as the poller leaves it (source=poll), its fields set directly, written through the store."""
    ms = item.duration_ms if ms is None else ms
    fields: dict[str, Any] = {
        "started_at": started_at, "last_seen_at": started_at + ms, "ms_played": ms, "duration_ms": item.duration_ms,
        "progress_ms": ms, "type": "track", "uri": item.uri, "name": item.name, "counted": "1" if ms >= 30_000 else "0",
        "source": "poll", "playing": "1" if open_ else "0",
    }
    if not open_:
        fields["ended_at"] = started_at + ms
    store.apply(Batch(polled_at=started_at + ms, writes=(PlayWrite(
        started_at, fields, item.uri, item.artists, counted=ms >= 30_000),), current=started_at if open_ else None))


# --- Spotify's history export ------------------------------------------------------------------

def iso(ms: int) -> str:
    """An export's `ts`: UTC, to the second."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ext(end_ms: int, ms: int, uri: str | None = A, name: str = "Song A", artist: str = "Artist", **extra: Any) -> dict[str, Any]:
    """An extended streaming history record that ended at end_ms."""
    record = {"ts": iso(end_ms), "ms_played": ms, "master_metadata_track_name": name,
              "master_metadata_album_artist_name": artist, "master_metadata_album_album_name": "Album",
              "spotify_track_uri": uri, "episode_name": None, "episode_show_name": None,
              "spotify_episode_uri": None, "platform": "android", "reason_start": "clickrow",
              "reason_end": "trackdone", "shuffle": False, "skipped": False, "offline": False,
              "incognito_mode": False, "conn_country": "FR"}
    record.update(extra)
    return record


def write_json(path: Path, records: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))
    return path


# --- stand-ins for Spotify, and the real client ------------------------------------------------

def raw_item(item: Item, played_at: int) -> dict[str, Any]:
    """One recently-played entry as the API lists it."""
    return {"track": track_object(item), "played_at": iso_ms(played_at), "context": context_object(CONTEXT)}


class FakeFeed:
    """Hand-written stand-in for SpotifyClient.recently_played: newest first, at most 50 kept,
    `before` paging, and an optional smaller page size to make the walk take several pages."""

    def __init__(self, entries: list[tuple[Item, int]], *, page_size: int = FEED_SIZE, keep: int = FEED_SIZE) -> None:
        self.entries = entries
        self.page_size = page_size
        self.keep = keep
        self.calls: list[int | None] = []

    def recently_played(self, *, limit: int = 50, before: int | None = None) -> dict[str, Any]:
        self.calls.append(before)
        feed = sorted(self.entries, key=lambda e: e[1], reverse=True)[:self.keep]
        older = [e for e in feed if before is None or e[1] < before]
        page = older[:min(limit, self.page_size)]
        return {"items": [raw_item(i, p) for i, p in page],
                "next": "more" if len(older) > len(page) else None}


class FakePlayer:
    """Stands in for SpotifyClient.player(): answers whatever body the test set."""

    def __init__(self, body: dict[str, Any] | None = None) -> None:
        self.body = body

    def player(self, *, reserve: int = 0) -> dict[str, Any] | None:
        return self.body


def make_client(settings: Settings, cooldown: Cooldown | None = None, **options: Any) -> SpotifyClient:
    """The real client on its own session, with quick retry backoffs unless `options` say otherwise."""
    session = make_session()
    auth = Authenticator(settings, TokenStore(settings.token_file), session)
    if cooldown is None:
        cooldown = Cooldown(state_file=settings.state_dir / "cooldown.json")
    options = {"initial_backoff_s": 0.01, "max_backoff_s": 0.05, **options}
    return SpotifyClient(settings, auth, cooldown, session=session, **options)


# --- the command line --------------------------------------------------------------------------

def run_cli(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    """`spotify-logger ARGV` in-process against the Redis at `url`: (exit code, stdout, stderr)."""
    code = main(list(argv), env={"REDIS_URL": url, "SPOTIFY_LOGGER_LOG_FORMAT": "json"})
    out, err = capsys.readouterr()
    return code, out, err


def run_command(args: list[str], tmp_path: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m spotify_logger ARGS` as a new process, in a bare environment with HOME and the
    state dir in tmp_path."""
    full = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
            "SPOTIFY_LOGGER_STATE_DIR": str(tmp_path / "state"), **env}
    return subprocess.run([sys.executable, "-m", "spotify_logger", *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=timeout)
