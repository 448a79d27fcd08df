"""API calls per listening hour, and the recall of counted plays, over a scripted 2-hour session.

The real daemon (`python -m spotify_logger run`, smart polling and the recently-played
reconciler on) records a seeded, realistic session from the simulator: real track lengths,
skips (early and late), pauses of up to 4 minutes, a few seeks, a repeat and two breaks.
To finish in about two minutes, every duration of the session is divided by --scale (60), and
so are the daemon's time settings: POLL_INTERVAL 5 s, MAX_POLL_INTERVAL 30 s, MIN_PLAY_MS 30 s,
END_GRACE 300 s and RECONCILE_INTERVAL 900 s. Call rates are reported scaled back.

Recall = counted plays recorded / plays of the script heard for at least MIN_PLAY_MS. Skips are
never drawn within 5 s of the 30 s threshold (none lasts 25-35 s): a play that close to it can be
counted or not by a few milliseconds of scheduling (x60 here), which says nothing about the
polling rules.

    python bench/api_budget.py                 # 2 hours at 1/60: ~2.5 minutes
    python bench/api_budget.py --naive         # the same with a fixed 5 s interval, for comparison
    python bench/api_budget.py --hours 6 --seed 7
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import _common as common
from spotify_logger.config import MAX_REQUEST_BUDGET
from spotify_logger.simulator import Idle, Pause, Play, Resume, Script, Seek, SpotifySimulator
from spotify_logger.simulator.timeline import Timeline

MIN = 60_000
THRESHOLD_MS = 30_000


def listening_session(hours: float, seed: int) -> list[Any]:
    """Segments in real milliseconds: what someone might do in `hours` of listening."""
    rng = random.Random(seed)
    items = [i for i in common.realistic_items(600, seed) if i.kind == "track"]
    rng.shuffle(items)
    target = int(hours * 3600_000)
    breaks = [int(target * 0.35), int(target * 0.7)]
    segments: list[Any] = []
    elapsed, index, repeated = 0, 0, False
    while elapsed < target:
        if breaks and elapsed >= breaks[0]:
            breaks.pop(0)
            idle = rng.randint(3, 8) * MIN  # stopped listening for a while
            segments.append(Idle(idle))
            elapsed += idle
        item = items[index % len(items)]
        index += 1
        length = item.duration_ms
        roll = rng.random()
        if roll < 0.25:  # a skip: mostly early, sometimes after a while
            heard = rng.randint(2_000, 25_000) if rng.random() < 0.6 else rng.randint(35_000, min(150_000, length - 5_000))
            segments.append(Play(item, heard))
            elapsed += heard
        elif roll < 0.33:  # paused once, then played to the end
            first = rng.randint(20_000, length - 20_000)
            pause = rng.randint(20_000, 4 * MIN)
            segments += [Play(item, first), Pause(pause), Resume(length - first)]
            elapsed += length + pause
        elif roll < 0.37:  # a seek forward after a while, then played to the end
            first = rng.randint(40_000, length // 2)
            to = rng.randint(first + 10_000, length - 10_000)
            segments += [Play(item, first), Seek(to), Resume(length - to)]
            elapsed += first + length - to
        else:
            segments.append(Play(item, length))
            elapsed += length
            if not repeated and elapsed > target / 2:  # one track on repeat, once
                repeated = True
                segments.append(Play(item, length))
                elapsed += length
    return segments


def scaled(segments: list[Any], scale: float) -> Script:
    def ms(value: int) -> int:
        return max(1, round(value / scale))

    out: list[Any] = []
    items: dict[str, Any] = {}
    for seg in segments:
        if isinstance(seg, Play):
            item = items.setdefault(seg.item.uri, dataclasses.replace(seg.item, duration_ms=ms(seg.item.duration_ms)))
            out.append(Play(item, min(ms(seg.ms), item.duration_ms)))
        elif isinstance(seg, Seek):
            out.append(Seek(ms(seg.to_ms)))
        else:
            out.append(type(seg)(ms(seg.ms)))
    return Script(tuple(out))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=2.0, help="length of the listening session (default 2)")
    p.add_argument("--scale", type=float, default=60.0, help="divide every duration by this (default 60)")
    p.add_argument("--seed", type=int, default=6)
    p.add_argument("--naive", action="store_true", help="poll every POLL_INTERVAL whatever plays (the baseline)")
    args = p.parse_args()
    script = scaled(listening_session(args.hours, args.seed), args.scale)
    s = args.scale
    # The settings this bench measured before issue 12 (idle polls capped like playing ones);
    # bench/api_day.py measures today's defaults.
    overrides = dict(poll_interval=5 / s, max_poll_interval=(5 if args.naive else 30) / s,
                     idle_max_interval=(5 if args.naive else 30) / s,
                     min_play_ms=round(THRESHOLD_MS / s), end_grace_s=300 / s, reconcile_interval_s=900 / s,
                     # What the schedule spends when nothing holds it back (the naive baseline
                     # would pass the default budget): bench/api_day.py measures it with the budget.
                     request_budget=MAX_REQUEST_BUDGET, request_budget_window_s=86_400 / s)
    print(f"machine: {common.machine()}")
    print(f"session: {args.hours:g} h (seed {args.seed}), run at 1/{s:g} speed: {script.length_ms / 1000:.0f} s; "
          f"{'naive fixed interval' if args.naive else 'smart polling'}")
    with common.redis_server("budget") as (tmp, server):
        with SpotifySimulator(access_token_ttl_s=86_400, recent_min_ms=overrides["min_play_ms"]) as sim:
            settings = common.settings_for(sim, server.url, tmp / "state", **overrides)
            t0, t_end = _record(sim, settings, script)
            plays = _plays(server.client())
            _report(args, script, sim, plays, t0, t_end, settings.min_play_ms)
    return 0


def _record(sim: SpotifySimulator, settings: Any, script: Script) -> tuple[float, float]:
    """Start the daemon on an idle player, then play the script; stop once the last play closed."""
    proc = subprocess.Popen([sys.executable, "-m", "spotify_logger", "run"], env=common.env_for(settings),
                            cwd=common.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(proc.stderr or ()), daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while not sim.requests_to("/v1/me/player") and time.monotonic() < deadline:
            _alive(proc, log)
            time.sleep(0.05)
        t0 = time.time()
        sim.load_script(script, at=t0)
        length_s = script.length_ms / 1000
        while time.time() < t0 + length_s:
            _alive(proc, log)
            print(f"\r  {time.time() - t0:5.0f} / {length_s:.0f} s", end="", flush=True)
            time.sleep(1)
        # The last play closes once the player has been stopped for END_GRACE.
        time.sleep(settings.end_grace_s + 3 * settings.max_poll_interval)
        print()
        return t0, t0 + length_s
    finally:
        proc.terminate()
        proc.wait(15)


def _alive(proc: subprocess.Popen[str], log: list[str]) -> None:
    if proc.poll() is not None:
        raise SystemExit(f"the daemon exited with {proc.returncode}:\n" + "".join(log[-20:]))


def _plays(client: Any) -> list[dict[str, str]]:
    return [client.hgetall(f"listening:{m}") for m in client.zrange("listening:index", 0, -1)]


def _truth(script: Script, t0: float) -> list[tuple[str, int, int]]:
    """(uri, started_at epoch ms, ms heard) for every play of the script."""
    timeline = Timeline(script)
    heard = {id(p.play): p.listened_ms for p in timeline.ended_plays(timeline.length, lambda _: True, 10**9)}
    start = round(t0 * 1000)
    return [(run.play.item.uri, start + run.start, heard[id(run.play)]) for run in timeline.runs]


def _report(args: argparse.Namespace, script: Script, sim: SpotifySimulator, plays: list[dict[str, str]],
            t0: float, t_end: float, min_play_ms: int) -> None:
    s = args.scale
    truth = _truth(script, t0)
    should = [t for t in truth if t[2] >= min_play_ms]
    counted = [p for p in plays if p.get("counted") == "1"]
    tolerance = 30_000 / s  # the longest gap: a first sighting can come no later
    matched, errors, used = 0, [], set()
    for uri, started, heard in should:
        for i, p in enumerate(counted):
            if i not in used and p.get("uri") == uri and abs(int(p["started_at"]) - started) <= tolerance:
                used.add(i)
                matched += 1
                errors.append(abs(int(p.get("ms_played", 0)) - heard) * s / 1000)
                break
    extra = [p for i, p in enumerate(counted) if i not in used]
    missed = len(should) - matched
    by_source = Counter(p.get("source") for p in counted)
    calls = [r for r in sim.requests if r.path.startswith("/v1/") and t0 <= r.t <= t_end]
    paths = Counter(r.path for r in calls)
    session_h = (t_end - t0) * s / 3600
    playing_h = sum(t[2] for t in truth) * s / 3600_000
    window = 30 / s
    times = sorted(r.t for r in calls)
    peak, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] < t - window:
            lo += 1
        peak = max(peak, hi - lo + 1)
    print(f"plays in the script: {len(truth)}, of which heard >= 30 s: {len(should)}; "
          f"audio actually playing {playing_h:.2f} h of {session_h:.2f} h")
    print(f"API calls: {len(calls)} ({', '.join(f'{k} {v}' for k, v in paths.most_common())})")
    print(f"API calls per listening hour: {len(calls) / session_h:.0f} per hour of the session, "
          f"{len(calls) / playing_h:.0f} per hour of audio playing   (target <= 360; naive 5 s polling: 720)")
    print(f"busiest rolling 30 s window: {peak} calls")
    print(f"recall of counted plays: {matched}/{len(should)} = {100 * matched / max(1, len(should)):.1f} %   (target 100 %)")
    if missed:
        print(f"  missed: {missed} counted plays of the script have no counted play recorded near their start")
    print(f"counted plays recorded: {len(counted)} (by source: {dict(by_source)}); not in the script: {len(extra)}")
    if errors:
        errors.sort()
        print(f"ms_played error of matched plays (scaled back): median {errors[len(errors) // 2]:.2f} s, "
              f"max {errors[-1]:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
