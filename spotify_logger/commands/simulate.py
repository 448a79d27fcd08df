from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

from ..config import Settings
from ..errors import BadInput
from ..simulator import Script, SpotifySimulator
from ..simulator.demo_script import demo_script
from ..simulator.quota import QuotaRule


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--script", type=Path, help="a JSON timeline (default: the demo session, looped)")
    p.add_argument("--client-id", default="sim-client")
    p.add_argument("--client-secret", default=None)
    p.add_argument("--rotate", action="store_true", help="make refresh tokens single-use, like PKCE clients")
    p.add_argument("--quota", type=_quota, default=None, metavar="LIMIT/SECONDS",
                   help="the app's rolling request quota, answered with QUOTA_EXCEEDED, such as 1000/86400 "
                        "(default: a script's \"quota\", else none)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    quota = args.quota
    if args.script:
        try:
            raw = json.loads(args.script.read_text(encoding="utf-8"))
            script = Script.from_json(raw)
            if quota is None and isinstance(raw, dict) and raw.get("quota") is not None:
                quota = QuotaRule.parse(str(raw["quota"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BadInput(f"{args.script}: not a usable timeline script ({exc})") from None
    else:
        script = Script(demo_script().segments, loop=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sim = SpotifySimulator(script, client_id=args.client_id, client_secret=args.client_secret,
                           rotate_refresh_tokens=args.rotate, port=args.port, quota=quota)
    with sim:
        print(f"Spotify simulator on {sim.base_url} (Ctrl-C stops it). Point spotify-logger at it with:")
        print(f"  export SPOTIFY_API_URL={sim.api_url} SPOTIFY_ACCOUNTS_URL={sim.accounts_url}")
        print(f"  export SPOTIFY_CLIENT_ID={args.client_id}")
        print(f"  spotify-logger auth --refresh-token {sim.current_refresh_token}", flush=True)
        if quota is not None:
            print(f"The app's request quota: {quota.limit} calls per rolling {quota.window_s:g} s", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


def _quota(raw: str) -> QuotaRule:
    try:
        return QuotaRule.parse(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
