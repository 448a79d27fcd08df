"""A realistic day of listening through the simulator: the API calls it costs and what it records.

The day (seeded): 4 hours of listening in 4 sessions, 20 hours idle. Tracks of 2.5-5.5 min;
20 % quick skips (2-20 s), often in runs of 2-4; 8 % partial listens of 35-90 s; pauses of
1-10 min; a 45-minute episode; a track on repeat (three plays); a private session (three
tracks, never recorded). Every duration of the day and every time setting of the poller (the
defaults), of the budget's window and of the simulator's quota is divided by --scale, so the
day runs in 86400 / scale seconds; figures are reported scaled back. The package's fixed
allowances (the tracker's progress jitter, the feed's match slack, retry delays) are divided
too, in this process only (scale_constants), so the run is the real day with a faster clock; what
cannot be scaled is HTTP and Redis latency, about 1-3 ms, i.e. 0.1-0.4 s of the day at 120.

Scenarios, each with its own simulator and redis-server, run at the same time:
- new:       this schedule, default settings (budget 1000 a day);
- today:     the schedule before issue 12 (idle cap 30 s, MAX_POLL_INTERVAL 30 s, recently-played
             every 15 min whether or not anything played, no budget);
- new-quota: this schedule, the simulator's quota at 500 a day, the budget left at 1000;
- today-quota: today's schedule against that quota.

Recall = counted plays of the day (heard >= MIN_PLAY_MS, not private) that have a counted play
recorded with the same uri starting or ending within 60 s of it. ms_played error = |recorded -
heard| / heard, over the matched plays the poller recorded (the feed's plays have no
ms_played).

    python bench/api_day.py                   # scale 120: 12 minutes
    python bench/api_day.py --scale 120 --seed 3
    python bench/api_day.py --only new        # one scenario
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import json
import logging
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _common as common
from spotify_logger.simulator import Idle, Pause, Play, Resume, Script, SpotifySimulator, episode
from spotify_logger.simulator.quota import QuotaRule
from spotify_logger.simulator.timeline import Timeline

S, MIN, H = 1_000, 60_000, 3_600_000
DAY_MS = 24 * H
THRESHOLD_MS = 30_000
MATCH_MS = 60_000
# (start, length) of the listening sessions: 4 hours in all.
SESSIONS = ((7 * H, 55 * MIN), (12 * H + 15 * MIN, 50 * MIN), (17 * H + 30 * MIN, 80 * MIN), (21 * H, 55 * MIN))
SCENARIOS = ("new", "today", "new-quota", "today-quota")


def the_day(seed: int) -> list[Any]:
    """Segments in real milliseconds, 24 hours long."""
    rng = random.Random(seed)
    tracks = [dataclasses.replace(i, duration_ms=rng.randint(150, 330) * S)
              for i in common.realistic_items(800, seed) if i.kind == "track"]
    rng.shuffle(tracks)
    picks = iter(tracks)
    segments: list[Any] = []
    clock = 0
    for index, (start, length) in enumerate(SESSIONS):
        segments.append(Idle(start - clock))
        session = _session(rng, picks, length, index)
        segments += session
        clock = start + sum(_ms(s) for s in session)
    segments.append(Idle(DAY_MS - clock))
    return segments


def _session(rng: random.Random, picks: Any, length: int, index: int) -> list[Any]:
    out: list[Any] = []
    elapsed, skips_left, special_done = 0, 0, False

    def add(*segs: Any) -> None:
        nonlocal elapsed
        out.extend(segs)
        elapsed += sum(_ms(s) for s in segs)

    while elapsed < length:
        if not special_done and elapsed > length / 3:
            special_done = True
            if index == 1:  # a private session: three tracks nobody records
                for _ in range(3):
                    item = next(picks)
                    add(Play(item, item.duration_ms, private=True))
                continue
            if index == 2:
                add(Play(episode("A Long Talk", 45 * MIN, show="Some Podcast"), 45 * MIN))
                continue
            if index == 3:  # a track on repeat
                item = next(picks)
                add(*(Play(item, item.duration_ms) for _ in range(3)))
                continue
        item = next(picks)
        roll = rng.random()
        if skips_left or roll < 0.20:
            if not skips_left and rng.random() < 0.4:
                skips_left = rng.randint(2, 4)  # a run of skips
            skips_left = max(0, skips_left - 1)
            add(Play(item, rng.randint(2, 20) * S))
        elif roll < 0.28:
            add(Play(item, rng.randint(35, 90) * S))
        elif roll < 0.36:  # paused once, then played to the end
            first = rng.randint(20 * S, item.duration_ms - 20 * S)
            add(Play(item, first), Pause(rng.randint(1, 10) * MIN), Resume(item.duration_ms - first))
        else:
            add(Play(item, item.duration_ms))
    return out


def _ms(seg: Any) -> int:
    return getattr(seg, "ms", 0)


def scaled(segments: list[Any], scale: float) -> Script:
    def ms(value: int) -> int:
        return max(1, round(value / scale))

    items: dict[str, Any] = {}
    out: list[Any] = []
    for seg in segments:
        if isinstance(seg, Play):
            item = items.setdefault(seg.item.uri, dataclasses.replace(seg.item, duration_ms=ms(seg.item.duration_ms)))
            out.append(dataclasses.replace(seg, item=item, ms=min(ms(seg.ms), item.duration_ms)))
        else:
            out.append(type(seg)(ms(seg.ms)))
    return Script(tuple(out))


class TodaysHook:
    """The recently-played policy before issue 12: at start-up, after a gap of over 2 minutes
    between polls, and every interval whether or not anything played."""

    def __init__(self, reconciler: Any, interval_s: float, gap_s: float) -> None:
        self.reconciler, self.interval_s, self.gap_s = reconciler, interval_s, gap_s
        self.next_at: float | None = None

    def __call__(self, event: Any) -> None:
        previous = event.previous_poll_at
        gap = previous is not None and event.polled_at - previous > self.gap_s
        if gap or self.next_at is None or time.time() >= self.next_at:
            try:
                self.reconciler.run_once()
            except Exception:  # noqa: BLE001 - as the old hook: never into the poller
                pass
            self.next_at = time.time() + self.interval_s

    def before_resume(self, now: float) -> None:
        pass

    def while_deferred(self, now: float) -> None:
        pass


def scale_constants(scale: float) -> None:
    """The package's fixed allowances, in real time, divided by `scale` like everything else
    (this process only). Without it the tracker's 1 s progress jitter would be 2 minutes of
    the scaled day, and a track on repeat would look like one play; the feed's 2-minute match
    slack would be 4 hours of it."""
    from spotify_logger import backfill, loop, overlap, reconcile, tracker

    tracker._JITTER_MS = round(tracker._JITTER_MS / scale)
    tracker._RESTART_SLACK_MS = round(tracker._RESTART_SLACK_MS / scale)
    for module in (overlap, reconcile, backfill):
        module.MATCH_SLACK_MS = round(overlap.MATCH_SLACK_MS / scale)  # type: ignore[attr-defined]
    backfill.LOOKBACK_MS = round(backfill.LOOKBACK_MS / scale)
    backfill.RETRY_S /= scale
    loop.COOLDOWN_RECHECK_S /= scale


def run_one(name: str, scale: float, seed: int) -> dict[str, Any]:
    """One scenario: the day through a simulator into a redis-server; what it cost and recorded."""
    from spotify_logger.backfill import REREAD_WINDOW_MS, ReconcileHook, Reconciler
    from spotify_logger.config import Settings
    from spotify_logger.daemon import Parts

    scale_constants(scale)

    script = scaled(the_day(seed), scale)
    d = Settings()
    today = name.startswith("today")
    overrides: dict[str, Any] = dict(
        poll_interval=d.poll_interval / scale,
        max_poll_interval=(30 if today else d.max_poll_interval) / scale,
        idle_max_interval=(30 if today else d.idle_max_interval) / scale,
        min_play_ms=round(d.min_play_ms / scale), end_grace_s=d.end_grace_s / scale,
        reconcile_interval_s=d.reconcile_interval_s / scale,
        request_budget=100_000 if today else d.request_budget,
        request_budget_window_s=d.request_budget_window_s / scale)
    quota = QuotaRule(500, 86_400).scaled(scale) if name.endswith("quota") else None
    with common.redis_server(f"day-{name}") as (tmp, server):
        with SpotifySimulator(access_token_ttl_s=10 * 86_400, recent_min_ms=overrides["min_play_ms"],
                              quota=quota) as sim:
            settings = common.settings_for(sim, server.url, tmp / "state", **overrides)
            parts = Parts.build(settings)
            # As Parts.reconcile_hook() builds it, with the re-read window scaled too.
            reconciler = Reconciler(parts.client, parts.store, reread_window_ms=round(REREAD_WINDOW_MS / scale))
            if today:
                hook: Any = TodaysHook(reconciler, settings.reconcile_interval_s, 120 / scale)
                poller = parts.poller(hooks=[hook], budget=lambda: None)  # type: ignore[arg-type, return-value]
            else:
                hook = ReconcileHook(reconciler, settings.reconcile_interval_s, min_play_s=settings.min_play_ms / 1000)
                poller = parts.poller(hooks=[hook])
            worker = threading.Thread(target=poller.run, daemon=True)
            t0 = time.time() + 0.5
            sim.load_script(script, at=t0)
            worker.start()
            t_end = t0 + script.length_ms / 1000
            # The last play closes once the player has been stopped for END_GRACE.
            time.sleep(max(0.0, t_end - time.time()) + settings.end_grace_s + 2 * settings.idle_max_interval)
            parts.stop.set()
            worker.join(10)
            client = server.client()
            plays = [client.hgetall(f"listening:{m}") for m in client.zrange("listening:index", 0, -1)]
            requests = [r for r in sim.requests if t0 - 1 <= r.t]
            return _measure(script, t0, scale, plays, requests, len(sim.requests_during_retry_after),
                            settings.min_play_ms)


def _measure(script: Script, t0: float, scale: float, plays: list[dict[str, str]], requests: list[Any],
             during_retry_after: int, min_play_ms: int) -> dict[str, Any]:
    timeline = Timeline(script)
    heard = {id(p.play): p.listened_ms for p in timeline.ended_plays(timeline.length, lambda _: True, 10**9)}
    start = round(t0 * 1000)
    truth = [(r.play.item.uri, start + r.start, start + r.end, heard[id(r.play)]) for r in timeline.runs
             if not r.play.private and heard[id(r.play)] >= min_play_ms]
    counted = [p for p in plays if p.get("counted") == "1"]
    tolerance = MATCH_MS / scale
    used: set[int] = set()
    errors: list[float] = []
    missed: list[str] = []
    for uri, begin, end, ms in truth:
        best = None
        for i, p in enumerate(counted):
            if i in used or p.get("uri") != uri:
                continue
            off = min(abs(int(p["started_at"]) - begin), abs(int(p.get("ended_at") or 0) - end))
            if off <= tolerance and (best is None or off < best[0]):
                best = (off, i)
        if best is None:
            missed.append(f"{uri[-6:]} at {(begin - start) * scale / H:.3f} h, heard {ms * scale / S:.0f} s")
        else:
            used.add(best[1])
            p = counted[best[1]]
            if p.get("source") == "poll":
                errors.append(100 * abs(int(p.get("ms_played") or 0) - ms) / ms)
    api = [r for r in requests if r.path.startswith("/v1/")]
    by_endpoint = Counter(r.path for r in api)
    token = sum(1 for r in requests if r.path == "/api/token")
    quota_hits = [r for r in api if r.fault == "quota"]
    errors.sort()
    idle_max, hour_max = _busiest(script, t0, scale, sorted(r.t for r in api))
    extra = [f"{p.get('uri', '')[-6:]} at {(int(p['started_at']) - start) * scale / H:.3f} h, {p.get('source')}, "
             f"ms_played {int(p.get('ms_played') or 0) * scale / S:.0f} s" for i, p in enumerate(counted) if i not in used]
    return {
        "missed": missed, "extra_plays": extra, "idle_14min_max": idle_max, "listening_hour_max": hour_max,
        "calls": len(api), "by_endpoint": dict(by_endpoint.most_common()), "token_refreshes": token,
        "truth": len(truth), "matched": len(used), "extra": len(counted) - len(used),
        "by_source": dict(Counter(p.get("source") for p in counted)),
        "median_error_pct": statistics.median(errors) if errors else None,
        "p90_error_pct": errors[int(0.9 * (len(errors) - 1))] if errors else None,
        "polled_matched": len(errors),
        "quota_exceeded_met": _episodes(quota_hits), "quota_refusals": len(quota_hits),
        "during_retry_after": during_retry_after,
    }


def _busiest(script: Script, t0: float, scale: float, times: list[float]) -> tuple[int, int]:
    """The most API calls in any 14 minutes inside an idle stretch, and in any hour that starts
    while listening (it may run into the idle time after a session: that only adds calls)."""
    idle, listening, at = [], [], t0
    for seg in script.segments:
        length = getattr(seg, "ms", 0) / 1000
        (idle if isinstance(seg, Idle) else listening).append((at, at + length))
        at += length
    fourteen, hour = 14 * 60 / scale, 3600 / scale

    def most(spans: list[tuple[float, float]], width: float, inside: bool) -> int:
        best = 0
        for lo, hi in spans:
            for i in range(bisect.bisect_left(times, lo), bisect.bisect_right(times, hi)):
                end = times[i] + width  # the busiest window starts at a call
                if inside and end > hi:
                    break
                best = max(best, bisect.bisect_left(times, end) - i)
        return best

    return most(idle, fourteen, True), most(listening, hour, False)


def _episodes(hits: list[Any]) -> int:
    """Separate QUOTA_EXCEEDED episodes: refusals more than a minute of the run apart."""
    times = sorted(r.t for r in hits)
    return sum(1 for i, t in enumerate(times) if i == 0 or t - times[i - 1] > 60)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=120.0, help="divide every duration by this (default 120)")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--only", choices=SCENARIOS, action="append", help="run only these scenarios")
    p.add_argument("--one", choices=SCENARIOS, help=argparse.SUPPRESS)  # a child: one scenario, JSON out
    args = p.parse_args()
    if args.one:
        from spotify_logger.logs import configure
        configure("json", stream=sys.stderr, level=logging.WARNING)  # stdout is for the figures only
        print(json.dumps(run_one(args.one, args.scale, args.seed)))
        return 0
    names = args.only or list(SCENARIOS)
    script = the_day(args.seed)
    runs = [r for r in Timeline(Script(tuple(script))).runs]
    print(f"machine: {common.machine()}")
    print(f"day (seed {args.seed}): {len(runs)} plays, {sum(1 for r in runs if r.play.private)} private; "
          f"run at 1/{args.scale:g} speed: {DAY_MS / args.scale / 1000:.0f} s")
    with tempfile.TemporaryDirectory(prefix="spotify-logger-bench-day-") as tmp:
        # Files, not pipes: a child must never block on a pipe the parent is not reading yet.
        outs = {n: (Path(tmp) / f"{n}.out", Path(tmp) / f"{n}.err") for n in names}
        children = {}
        for n, (out, err) in outs.items():
            with out.open("w") as o, err.open("w") as e:
                children[n] = subprocess.Popen([sys.executable, __file__, "--one", n, "--scale", str(args.scale),
                                                "--seed", str(args.seed)], stdout=o, stderr=e, cwd=common.ROOT)
        results = {}
        for name, child in children.items():
            child.wait()
            out, err = outs[name]
            if child.returncode != 0:
                raise SystemExit(f"{name} failed ({child.returncode}):\n{err.read_text()[-3000:]}")
            warnings = err.read_text().splitlines()
            if warnings:
                print(f"{name}: {len(warnings)} warnings, e.g. {warnings[0][:300]}")
            results[name] = json.loads(out.read_text().strip().splitlines()[-1])
    _report(results)
    return 0


def _report(results: dict[str, dict[str, Any]]) -> None:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} %"

    print("| scenario | calls a day | by endpoint | most in 14 idle min | most in a listening hour | "
          "recall of counted plays | recorded by | not in the script | ms_played error, median / p90 | "
          "QUOTA_EXCEEDED met | sent during Retry-After |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        endpoints = ", ".join(f"{k.removeprefix('/v1')} {v}" for k, v in r["by_endpoint"].items())
        sources = ", ".join(f"{k} {v}" for k, v in r["by_source"].items())
        print(f"| {name} | {r['calls']} | {endpoints} | {r['idle_14min_max']} | {r['listening_hour_max']} | "
              f"{r['matched']}/{r['truth']} = "
              f"{100 * r['matched'] / max(1, r['truth']):.1f} % | {sources} | {r['extra']} | {pct(r['median_error_pct'])} / "
              f"{pct(r['p90_error_pct'])} | {r['quota_exceeded_met']} ({r['quota_refusals']} refusals) | "
              f"{r['during_retry_after']} |")
    for name, r in results.items():
        for what in ("missed", "extra_plays"):
            if r[what]:
                print(f"{name}: {what.replace('_', ' ')}: " + "; ".join(r[what]))


if __name__ == "__main__":
    sys.exit(main())
