"""Issue 12's "Done when", at real speed: the daemon (`python -m spotify_logger run`) with the
default settings against the simulator, through an idle stretch and then a listening stretch.

bench/api_day.py runs a whole day with every duration divided by one factor; this runs the real
clock, so nothing is scaled: HTTP and Redis latency, whole-second Retry-Afters and the package's
fixed allowances are all what a user gets. It is shorter than an hour of listening (a session's
time is limited), so calls per listening hour are the stretch's calls over its length.

    python bench/real_speed.py                          # 14 min idle, then 16 min of listening
    python bench/real_speed.py --idle-min 14 --listen-min 60
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as common
import api_day
from spotify_logger.simulator import Idle, Script, SpotifySimulator
from spotify_logger.simulator.timeline import Timeline

MIN_S = 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle-min", type=float, default=14.0)
    parser.add_argument("--listen-min", type=float, default=16.0)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tracks = iter([i for i in common.realistic_items(800, args.seed) if i.kind == "track"])
    idle_ms, listen_ms = round(args.idle_min * MIN_S * 1000), round(args.listen_min * MIN_S * 1000)
    session = api_day._session(rng, tracks, listen_ms, 0)
    script = Script((Idle(idle_ms), *session, Idle(60_000)))
    listened_ms = sum(api_day._ms(s) for s in session)
    print(f"running {script.length_ms / 60_000:.1f} min of real time ({listened_ms / 60_000:.1f} min listening, "
          "pauses included)", file=sys.stderr, flush=True)
    with common.redis_server("real-speed") as (tmp, server):
        with SpotifySimulator(access_token_ttl_s=10 * 86_400) as sim:
            settings = common.settings_for(sim, server.url, Path(tmp) / "state")  # every default
            t0 = time.time() + 2.0
            sim.load_script(script, at=t0)
            proc = subprocess.Popen([sys.executable, "-m", "spotify_logger", "run"], env=common.env_for(settings),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(max(0.0, t0 + script.length_ms / 1000 - time.time()))
            finally:
                proc.terminate()
                proc.wait(15)
            calls = sorted(r.t for r in sim.requests if r.path.startswith("/v1/") and r.t >= t0 - 2)
            client = server.client()
            plays = [client.hgetall(f"listening:{m}") for m in client.zrange("listening:index", 0, -1)]
    idle_end, listen_end = t0 + idle_ms / 1000, t0 + (idle_ms + listened_ms) / 1000
    in_idle = [t for t in calls if t < idle_end]
    in_listening = [t for t in calls if idle_end <= t < listen_end]
    report: dict[str, Any] = {
        "idle_minutes": args.idle_min, "calls_in_idle_stretch": len(in_idle),
        "listening_minutes": round(listened_ms / 60_000, 1), "calls_while_listening": len(in_listening),
        "calls_per_listening_hour": round(len(in_listening) * 3_600_000 / listened_ms, 1),
        "counted_plays_in_script": _counted_in(script),
        "counted_plays_recorded": sum(1 for p in plays if p.get("counted") == "1"),
        "by_endpoint": {path: sum(1 for r in sim.requests if r.path == path and r.t >= t0 - 2)
                        for path in sorted({r.path for r in sim.requests if r.path.startswith("/v1/")})},
    }
    print(json.dumps(report, indent=2))


def _counted_in(script: Script) -> int:
    """The plays of the script heard for at least MIN_PLAY_MS (30 s), as api_day counts them."""
    timeline = Timeline(script)
    heard = {id(p.play): p.listened_ms for p in timeline.ended_plays(timeline.length, lambda _: True, 10**9)}
    return sum(1 for r in timeline.runs if not r.play.private and heard[id(r.play)] >= api_day.THRESHOLD_MS)


if __name__ == "__main__":
    main()
