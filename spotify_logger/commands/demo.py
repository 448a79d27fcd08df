from __future__ import annotations

import argparse
import dataclasses
import tempfile
import threading
import time
from pathlib import Path

import redis

from .. import keys
from ..config import Settings
from ..daemon import Parts
from ..errors import StoreUnavailable
from ..playscan import artists_of, scan_plays
from ..redisproc import RedisServer, redis_server_path
from ..simulator import SpotifySimulator
from ..simulator.demo_script import demo_script
from ..tokenstore import Tokens, TokenStore

# Well clear of the script's 3 s skip and its 5 s episode, so no play sits on the threshold.
DEMO_MIN_PLAY_MS = 4_000


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=_seconds, default=None, help="stop early (default: the whole script)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    script = demo_script()
    # Past the script, wait out the end grace so the last play closes and shows as finished.
    seconds = args.seconds if args.seconds is not None else script.length_ms / 1000 + 7
    with tempfile.TemporaryDirectory(prefix="spotify-logger-demo-") as tmp:
        server = _start_redis(Path(tmp) / "redis")
        try:
            client = server.client() if server else _in_memory()
            with SpotifySimulator(script, recent_min_ms=DEMO_MIN_PLAY_MS) as sim:
                demo = dataclasses.replace(
                    settings, api_url=sim.api_url, accounts_url=sim.accounts_url, client_id="sim-client",
                    client_secret=None, state_dir=Path(tmp) / "state", poll_interval=0.5, max_poll_interval=3.0,
                    idle_max_interval=3.0, min_play_ms=DEMO_MIN_PLAY_MS, end_grace_s=4.0,
                    # A short window: the budget's pace for a day would stretch the demo's gaps.
                    request_budget_window_s=600.0,
                    redis_url=server.url if server else "redis://in-memory",
                )
                TokenStore(demo.token_file).save(Tokens(refresh_token=sim.current_refresh_token))
                _record(demo, client, seconds)
            print(summary(client))
        finally:
            if server:
                server.stop(save=False)
    return 0


def _start_redis(directory: Path) -> RedisServer | None:
    if redis_server_path() is None:
        print("redis-server not found: using an in-memory store for this demo (nothing is kept)")
        return None
    server = RedisServer(directory).start()
    print(f"throwaway redis-server on 127.0.0.1:{server.port}")
    return server


def _in_memory() -> "redis.Redis[str]":
    try:
        import fakeredis
    except ImportError:
        raise StoreUnavailable("neither redis-server nor fakeredis is installed: run `make demo`") from None
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)


def _record(settings: Settings, client: "redis.Redis[str]", seconds: float) -> None:
    stop = threading.Event()
    parts = Parts.build(settings, stop, redis_client=client)
    poller = parts.poller()
    print(f"recording the simulator's scripted session for {seconds:.0f}s (plays print as they happen)...", flush=True)
    worker = threading.Thread(target=poller.run, daemon=True)
    worker.start()
    deadline = time.monotonic() + seconds
    while worker.is_alive() and time.monotonic() < deadline:
        worker.join(0.25)
    stop.set()
    worker.join(5)


def summary(client: "redis.Redis[str]") -> str:
    rows = ["", f"{'started (UTC)':<20} {'played':>7} {'counted':<8} {'type':<8} item"]
    for started_at, fields in scan_plays(client):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started_at / 1000))
        who = ", ".join(artists_of(fields)) or fields.get("show") or ""
        rows.append(f"{stamp:<20} {int(fields.get('ms_played', 0)) / 1000:>6.1f}s "
                    f"{'yes' if fields.get('counted') == '1' else 'no':<8} {fields.get('type', '?'):<8} "
                    f"{fields.get('name', fields.get('uri', '?'))}{' - ' + who if who else ''}")
    top = client.zrevrange(keys.TRACK_COUNTS, 0, 9, withscores=True)
    rows += ["", "plays:tracks (counted plays per uri):"]
    rows += [f"  {int(score):>3}  {uri}" for uri, score in top] or ["  (none)"]
    rows += ["", "Try it against your own Redis: redis-cli ZREVRANGE plays:tracks 0 9 WITHSCORES"]
    return "\n".join(rows)


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 3600:  # nan and inf too: 1e308 recorded forever, nan not at all
        raise argparse.ArgumentTypeError("must be a number of seconds above 0, at most 3600")
    return value
