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


MAX_SCRIPT_BYTES = 16 * 1024 * 1024  # a timeline is a few kB; /dev/zero must not fill the memory


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=_port, default=8765, help="on 127.0.0.1, 1 to 65535, or 0 for any free one (default 8765)")
    p.add_argument("--script", type=Path, help="a JSON timeline (default: the demo session, looped)")
    p.add_argument("--client-id", default="sim-client")
    p.add_argument("--client-secret", default=None)
    p.add_argument("--rotate", action="store_true", help="make refresh tokens single-use, like PKCE clients")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    script = _load_script(args.script) if args.script else Script(demo_script().segments, loop=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sim = SpotifySimulator(script, client_id=args.client_id, client_secret=args.client_secret,
                           rotate_refresh_tokens=args.rotate, port=args.port)
    try:
        sim.start()
    except OSError as exc:  # the port is taken, or a privileged one
        raise BadInput(f"--port {args.port}: cannot listen on 127.0.0.1: {exc.strerror or exc}") from None
    with sim:
        print(f"Spotify simulator on {sim.base_url} (Ctrl-C stops it). Point spotify-logger at it with:")
        print(f"  export SPOTIFY_API_URL={sim.api_url} SPOTIFY_ACCOUNTS_URL={sim.accounts_url}")
        print(f"  export SPOTIFY_CLIENT_ID={args.client_id}")
        print(f"  spotify-logger auth --refresh-token {sim.current_refresh_token}", flush=True)
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


def _load_script(path: Path) -> Script:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_SCRIPT_BYTES + 1)
        if len(data) > MAX_SCRIPT_BYTES:
            raise ValueError(f"larger than {MAX_SCRIPT_BYTES // (1024 * 1024)} MB")
        return Script.from_json(json.loads(data.decode("utf-8")))
    except RecursionError:  # json.loads, or a repr() in a message, of [[[[...]]]]
        raise BadInput(f"{path}: not a usable timeline script (nested too deeply)") from None
    except (OSError, ValueError, KeyError, TypeError, OverflowError) as exc:
        raise BadInput(f"{path}: not a usable timeline script ({_short(exc)})") from None


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())  # one line, whatever the file held
    return text if len(text) <= 200 else text[:200] + "..."
