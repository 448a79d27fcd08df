from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import BadInput
from ..simulator import Script, SpotifySimulator
from ..simulator.demo_script import demo_script
from ..simulator.quota import QuotaRule


MAX_SCRIPT_BYTES = 16 * 1024 * 1024  # a timeline is a few kB; /dev/zero must not fill the memory


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=_port, default=8765, help="on 127.0.0.1, 1 to 65535, or 0 for any free one (default 8765)")
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
        script, raw = _load_script(args.script)
        if quota is None and isinstance(raw, dict) and raw.get("quota") is not None:
            try:
                quota = QuotaRule.parse(str(raw["quota"]))
            except ValueError as exc:
                raise BadInput(f"{args.script}: not a usable timeline script ({_short(exc)})") from None
    else:
        script = Script(demo_script().segments, loop=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sim = SpotifySimulator(script, client_id=args.client_id, client_secret=args.client_secret,
                           rotate_refresh_tokens=args.rotate, port=args.port, quota=quota)
    try:
        sim.start()
    except OSError as exc:  # the port is taken, or a privileged one
        raise BadInput(f"--port {args.port}: cannot listen on 127.0.0.1: {exc.strerror or exc}") from None
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


def _port(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be from 0 to 65535 (0: any free port)")
    return value


def _load_script(path: Path) -> tuple[Script, Any]:
    """The script, and the JSON it came from (which may name a quota)."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_SCRIPT_BYTES + 1)
        if len(data) > MAX_SCRIPT_BYTES:
            raise ValueError(f"larger than {MAX_SCRIPT_BYTES // (1024 * 1024)} MB")
        raw = json.loads(data.decode("utf-8"))
        return Script.from_json(raw), raw
    except RecursionError:  # json.loads, or a repr() in a message, of [[[[...]]]]
        raise BadInput(f"{path}: not a usable timeline script (nested too deeply)") from None
    except (OSError, ValueError, KeyError, TypeError, OverflowError) as exc:
        raise BadInput(f"{path}: not a usable timeline script ({_short(exc)})") from None


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())  # one line, whatever the file held
    return text if len(text) <= 200 else text[:200] + "..."


def _quota(raw: str) -> QuotaRule:
    try:
        return QuotaRule.parse(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
