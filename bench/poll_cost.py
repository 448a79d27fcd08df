"""CPU per poll and RSS of the poller process, against the simulator and a real redis-server.

The poller runs in its own process, so its CPU time (utime + stime from /proc/<pid>/stat, all
its threads) leaves out the simulator, which runs here. Two modes:

  daemon (default)  the real `python -m spotify_logger run`, with the poll interval set tiny
                    (1 ms) so that it polls back to back; polls are counted at the simulator.
                    Also prints the CPU per poll of each fifth of the run: a shared machine
                    moves whole runs, and the fifths show whether a run was steady.
  loop              a child that calls Poller.poll_once N times (no sleeps); with --profile it
                    prints the cProfile top of the hot path (CPU time), with --parts the thread
                    CPU time of each part of a poll (HTTP, extract, tracker, mirror, Redis).

The simulator loops through realistic tracks, each `--track-ms` long, so that about one poll in
nine sees a new play, as with smart polling at real track lengths (~9 polls per 3.5 min track).

    python bench/poll_cost.py                     # 10k polls, the real daemon
    python bench/poll_cost.py --polls 50000       # a longer run: does RSS stay flat?
    python bench/poll_cost.py --mode loop --profile
    python bench/poll_cost.py --mode loop --parts
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import _common as common
from spotify_logger.config import MAX_REQUEST_BUDGET

if TYPE_CHECKING:
    from spotify_logger.simulator import SpotifySimulator

PLAYER = "/v1/me/player"
WARMUP_POLLS = 300


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--polls", type=int, default=10_000, help="polls measured after the warm-up (default 10000)")
    p.add_argument("--mode", choices=("daemon", "loop"), default="daemon")
    p.add_argument("--track-ms", type=int, default=40, help="simulated play length (default 40 ms)")
    p.add_argument("--profile", action="store_true", help="loop mode: print the cProfile top 25 (cumulative, own time)")
    p.add_argument("--parts", action="store_true", help="loop mode: print the thread CPU time of each part of a poll")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return _child(Path(args.child), args.polls, args.profile, args.parts)
    if args.mode == "daemon" and (args.profile or args.parts):
        p.error("--profile and --parts measure the loop: add --mode loop")
    from spotify_logger.simulator import Play, Script, SpotifySimulator

    print(f"machine: {common.machine()}")
    script = Script(tuple(Play(item, args.track_ms) for item in common.realistic_items(200)), loop=True)
    with common.redis_server("poll") as (tmp, server):
        with SpotifySimulator(script, access_token_ttl_s=86_400) as sim:
            settings = common.settings_for(
                sim, server.url, tmp / "state", poll_interval=0.001, max_poll_interval=0.001,
                min_play_ms=args.track_ms // 2, end_grace_s=5.0, reconcile_interval_s=86_400.0,
                # CPU per poll, not the call policy: the request budget must not defer the polls.
                request_budget=MAX_REQUEST_BUDGET,
            )
            if args.mode == "daemon":
                result = _measure_daemon(sim, settings, args.polls)
            else:
                result = _measure_loop(settings, tmp, args.polls, args.profile, args.parts)
        result["redis_server"] = common.redis_version(server.client())
    _report(args, result)
    return 0


def _measure_daemon(sim: "SpotifySimulator", settings: object, polls: int) -> dict[str, Any]:
    env = common.env_for(settings)  # type: ignore[arg-type]
    proc = subprocess.Popen([sys.executable, "-m", "spotify_logger", "run"], env=env, cwd=common.ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    errors: list[str] = []
    drain = threading.Thread(target=lambda: errors.extend(proc.stderr or ()), daemon=True)
    drain.start()
    count = lambda: len(sim.requests_to(PLAYER))  # noqa: E731
    try:
        rss_first = _wait_polls(proc, count, 1, errors)
        _wait_polls(proc, count, WARMUP_POLLS, errors)
        polls0, cpu0, rss0, t0 = count(), common.cpu_seconds(proc.pid), common.rss_mb(proc.pid), time.monotonic()
        peak, trail, fifths, mark = rss0, [], [], (polls0, cpu0)
        while (done := count() - polls0) < polls:
            _check_alive(proc, errors)
            time.sleep(0.05)
            peak = max(peak, common.rss_mb(proc.pid))
            if done >= (len(trail) + 1) * polls / 5 and len(trail) < 4:
                trail.append(common.rss_mb(proc.pid))
                now = (count(), common.cpu_seconds(proc.pid))
                fifths.append((now[1] - mark[1]) * 1000 / max(1, now[0] - mark[0]))
                mark = now
        polls1, cpu1, rss1, t1 = count(), common.cpu_seconds(proc.pid), common.rss_mb(proc.pid), time.monotonic()
        fifths.append((cpu1 - mark[1]) * 1000 / max(1, polls1 - mark[0]))
        trail.append(rss1)
    finally:
        proc.terminate()
        proc.wait(10)
    done = polls1 - polls0
    return {"polls": done, "cpu_ms_per_poll": (cpu1 - cpu0) * 1000 / done, "polls_per_s": done / (t1 - t0),
            "rss_first_mb": rss_first, "rss_start_mb": rss0, "rss_end_mb": rss1, "rss_peak_mb": peak,
            "rss_trail_mb": trail, "cpu_fifths_ms": fifths}


def _wait_polls(proc: subprocess.Popen[str], count: object, n: int, errors: list[str]) -> float:
    deadline = time.monotonic() + 60
    while count() < n:  # type: ignore[operator]
        _check_alive(proc, errors)
        if time.monotonic() > deadline:
            raise SystemExit(f"the poller made no {n} polls within 60 s:\n" + "".join(errors[-20:]))
        time.sleep(0.01)
    return common.rss_mb(proc.pid)


def _check_alive(proc: subprocess.Popen[str], errors: list[str]) -> None:
    if proc.poll() is not None:
        raise SystemExit(f"the poller exited with code {proc.returncode}:\n" + "".join(errors[-20:]))


def _measure_loop(settings: object, tmp: Path, polls: int, profile: bool, parts: bool) -> dict[str, Any]:
    config = tmp / "child.json"
    config.write_text(json.dumps(common.env_for(settings)))  # type: ignore[arg-type]
    cmd = ([sys.executable, __file__, "--child", str(config), "--polls", str(polls)]
           + (["--profile"] if profile else []) + (["--parts"] if parts else []))
    out = subprocess.run(cmd, cwd=common.ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    lines = out.stdout.splitlines()
    result: dict[str, Any] = json.loads(lines[-1])
    if profile or parts:
        print("\n".join(lines[:-1]))
    return result


def _child(config: Path, polls: int, profile: bool, parts_cpu: bool) -> int:
    """Runs in the measured process: the real Poller parts, poll_once back to back."""
    import os
    import resource

    from spotify_logger.backfill import ReconcileHook, Reconciler
    from spotify_logger.config import Settings
    from spotify_logger.daemon import Parts
    from spotify_logger.logs import configure

    env = json.loads(config.read_text())
    settings = Settings.from_env(env, isatty=False)
    configure("json", stream=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    parts = Parts.build(settings)
    # Wired as the daemon wires it, reconcile hook included (its start-up pass falls in the warm-up).
    poller = parts.poller(hooks=[ReconcileHook(Reconciler(parts.client, parts.store), settings.reconcile_interval_s)])

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    poller.poll_once()
    rss_first = common.rss_mb(os.getpid())
    for _ in range(WARMUP_POLLS):
        poller.poll_once()
    spent = _time_parts(poller) if parts_cpu else {}
    cpu0, rss0, t0 = cpu(), common.rss_mb(os.getpid()), time.monotonic()
    # CPU time, not wall time: waiting for the simulator's answer costs the poller nothing.
    profiler = cProfile.Profile(time.process_time) if profile else None
    if profiler:
        profiler.enable()
    trail = []
    for done in range(1, polls + 1):
        poller.poll_once()
        if done % max(1, polls // 5) == 0:
            trail.append(common.rss_mb(os.getpid()))
    if profiler:
        profiler.disable()
        for order in ("cumulative", "tottime"):
            pstats.Stats(profiler, stream=sys.stdout).sort_stats(order).print_stats(25)
    cpu1, rss1, t1 = cpu(), common.rss_mb(os.getpid()), time.monotonic()
    for part, seconds in spent.items():
        print(f"{part:>28}: {seconds * 1e6 / polls:6.0f} µs per poll, {100 * seconds / (cpu1 - cpu0):4.1f} % of the CPU")
    print(json.dumps({"polls": polls, "cpu_ms_per_poll": (cpu1 - cpu0) * 1000 / polls, "polls_per_s": polls / (t1 - t0),
                      "rss_first_mb": rss_first, "rss_start_mb": rss0, "rss_end_mb": rss1, "rss_peak_mb": max(trail or [rss1]),
                      "rss_trail_mb": trail}))
    return 0


def _time_parts(poller: Any) -> dict[str, float]:
    """Wrap the parts of a poll so that each adds up its thread CPU time (clock_gettime, exact,
    unlike getrusage, which the kernel may update only at ticks)."""
    from spotify_logger import loop

    spent: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        spent[name] = 0.0

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.thread_time() - started
        return wrapper

    poller.client.player = timed("HTTP GET /me/player", poller.client.player)
    loop.extract = timed("extract", loop.extract)  # type: ignore[attr-defined]
    poller.tracker.observe = timed("tracker", poller.tracker.observe)
    poller.mirror.follow = timed("open-play mirror", poller.mirror.follow)
    poller.writer.write = timed("Redis write (writer, store)", poller.writer.write)
    return spent


def _report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    print(f"mode: {args.mode}{' (cProfile on: CPU figures inflated)' if args.profile else ''}; redis-server {r['redis_server']}")
    print(f"polls measured: {r['polls']} (after {WARMUP_POLLS} warm-up polls), {r['polls_per_s']:.0f} polls/s")
    print(f"poller CPU per poll: {r['cpu_ms_per_poll']:.3f} ms   (target <= 1 ms)")
    if r.get("cpu_fifths_ms"):
        # Other work on a shared machine moves whole stretches of a run: the median fifth shows it.
        fifths = r["cpu_fifths_ms"]
        print("poller CPU per poll, each fifth of the run: " + ", ".join(f"{ms:.3f}" for ms in fifths)
              + f" ms (median {statistics.median(fifths):.3f})")
    print(f"poller RSS: {r['rss_first_mb']:.1f} MB after the first poll, {r['rss_start_mb']:.1f} MB after warm-up, "
          f"{r['rss_end_mb']:.1f} MB after {r['polls']} more polls (peak {r['rss_peak_mb']:.1f} MB)   (target <= 40 MB, flat)")
    print("poller RSS every fifth of the run: " + ", ".join(f"{mb:.1f}" for mb in r["rss_trail_mb"]) + " MB")


if __name__ == "__main__":
    sys.exit(main())
