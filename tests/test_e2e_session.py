"""The headline test: `python run.py` records a scripted session through token expiry, a 503
burst, a body that is not JSON and a 429 with Retry-After 4, against the simulator and a real
redis-server; every play over the threshold is there exactly once, no skip is counted, nothing
was sent inside the Retry-After window, no secret reached the log, and SIGTERM exits 0."""

from __future__ import annotations

import threading
import time
from typing import Callable

from spotify_logger.config import Settings
from spotify_logger.redisproc import RedisServer
from spotify_logger.simulator import Fault, Idle, Pause, Play, Resume, Script, SpotifySimulator
from spotify_logger.simulator import ad, episode, local_file, track

from conftest import Proc, assert_counter_invariant, env_for, play_hashes, run_py_cmd

T1, T2, T3 = track("One", 6_000, ("A",)), track("Two", 6_000, ("B",)), track("Three", 6_000, ("A", "C"))
T4, T5, T6 = track("Four", 9_000, ("D",)), track("Five", 6_000, ("E",)), track("Six", 7_000, ("F",))
EP, LOCAL = episode("Talk", 20_000, show="Pod"), local_file("Tape", 6_000)

SCRIPT = Script((
    Play(T1, 6_000),                                   # 0.0 - 6.0   counted
    Play(T2, 1_500),                                   # 6.0 - 7.5   skip
    Play(T3, 6_000),                                   # 7.5 - 13.5  counted (503 burst at 10 s)
    Play(T4, 3_000), Pause(2_000), Resume(3_000),      # 13.5 - 21.5 counted, one play
    Play(T3, 6_000),                                   # 21.5 - 27.5 counted again (not-JSON at 23 s)
    Play(ad(2_000), 2_000),                            # 27.5 - 29.5 never recorded
    Play(EP, 5_000),                                   # 29.5 - 34.5 counted (episode)
    Play(LOCAL, 6_000),                                # 34.5 - 40.5 counted (429, Retry-After 4, at 35 s)
    Play(T5, 1_000),                                   # 40.5 - 41.5 skip
    Play(T6, 7_000),                                   # 41.5 - 48.5 counted
    Play(T1, 6_000),                                   # 48.5 - 54.5 counted again
    Idle(4_000),
))
COUNTED = [T1.uri, T3.uri, T4.uri, T3.uri, EP.uri, LOCAL.uri, T6.uri, T1.uri]
SKIPS = {T2.uri, T5.uri}


def test_scripted_session_through_faults(sim_factory: Callable[..., SpotifySimulator], redis_server: RedisServer,
                                         settings_for: Callable[..., Settings], spawn: Callable[..., Proc]) -> None:
    sim = sim_factory(Script(()), client_secret="e2e-client-secret")
    settings = settings_for(sim, redis_server.url, min_play_ms=2_500, poll_interval=0.2, max_poll_interval=1.0,
                            end_grace_s=2.0)
    proc = spawn(run_py_cmd(), env_for(settings))
    proc.wait_for("poller_started")
    # The session starts once the poller is up, so a slow start under load cannot eat the first play.
    started = time.time()
    sim.load_script(SCRIPT, at=started)
    rate_limited_at: list[float] = []

    def faults() -> None:
        at = [(4.0, sim.expire_access_tokens),
              (10.0, lambda: sim.inject(Fault("status", status=503, count=3))),
              (23.0, lambda: sim.inject(Fault("not_json"))),
              (35.0, lambda: (sim.inject(Fault("rate_limit", retry_after=4)), rate_limited_at.append(time.time())))]
        for offset, action in at:
            time.sleep(max(0.0, started + offset - time.time()))
            action()

    injector = threading.Thread(target=faults, daemon=True)
    injector.start()
    client = redis_server.client()
    deadline = started + SCRIPT.length_ms / 1000 + 8
    while time.time() < deadline:
        plays = play_hashes(client)
        if len(plays) >= 10 and all("ended_at" in p for p in plays.values()):
            break
        time.sleep(0.5)
    injector.join(1)

    assert proc.terminate(timeout=10) == 0

    plays = [p for _, p in sorted(play_hashes(client).items())]
    assert [p["uri"] for p in plays if p["counted"] == "1"] == COUNTED
    assert {p["uri"] for p in plays if p["counted"] != "1"} <= SKIPS
    assert all(p["source"] == "poll" for p in plays)
    assert_counter_invariant(client)
    by_name = {p["name"]: p for p in plays if p["counted"] == "1"}
    assert int(by_name["Four"]["ms_played"]) >= 5_500   # paused 2 s, listened 6 s
    assert by_name["Talk"]["type"] == "episode" and by_name["Tape"]["is_local"] == "1"

    # The 401 was followed by exactly one refresh; the faults were all consumed.
    assert sim.issued_access_tokens >= 2 and not sim.faults_pending()
    statuses = [r.status for r in sim.requests_to("/v1/me/player")]
    assert 401 in statuses and statuses.count(503) == 3 and 429 in statuses

    # Nothing reached the API inside the Retry-After window.
    window_start = next(r.t for r in sim.requests if r.status == 429)
    inside = [r for r in sim.requests if r.path.startswith("/v1/") and window_start < r.t < window_start + 4.0]
    assert inside == [] and sim.violations == []
    assert proc.events("rate_limited")

    # No secret in the log.
    log = "\n".join(proc.lines)
    for secret in sim.issued_secrets() | {"e2e-client-secret"}:
        assert secret not in log
    assert proc.events("play_finished") and proc.events("token_refreshed")
