"""The play rules hold with smart polling on: the real Poller (near-end polls, a max gap, backoff
while idle or paused) records a scripted session from the simulator into a real redis-server,
and every play has the right counted flag and ms_played, while far fewer polls are made than a
fixed interval would make."""

from __future__ import annotations

import threading
import time
from typing import Callable

from spotify_logger.config import Settings
from spotify_logger.daemon import Parts
from spotify_logger.redisproc import RedisServer
from spotify_logger.simulator import Idle, Pause, Play, Resume, Script, Seek, SpotifySimulator
from spotify_logger.simulator import ad, episode, local_file, track

from conftest import assert_counter_invariant, play_hashes, wait_until

OPENER, SKIPPED = track("Opener", 2_000, ("A",)), track("Skipped", 6_000, ("B",))
PAUSED, SEEKER = track("Paused", 2_500, ("A", "C")), track("Seeker", 8_000, ("D",))
EPISODE, TAPE = episode("Talk", 60_000, show="Pod"), local_file("Tape", 2_000)
SECRET, CLOSER = track("Secret", 4_000, ("E",)), track("Closer", 2_000, ("F",))

SCRIPT = Script((
    Play(OPENER, 2_000),                             # 0.0 - 2.0   played to the end
    Play(SKIPPED, 1_000),                            # 2.0 - 3.0   skipped
    Play(PAUSED, 1_000), Pause(1_000), Resume(1_500),  # 3.0 - 6.5   paused, resumed, finished
    Play(PAUSED, 2_500),                             # 6.5 - 9.0   the same track again (repeat)
    Play(ad(1_000), 1_000),                          # 9.0 - 10.0  an ad: never recorded
    Play(SEEKER, 1_200), Seek(5_000), Resume(1_500),  # 10.0 - 12.7 a seek forward is not listening
    Play(EPISODE, 2_000),                            # 12.7 - 14.7 a podcast episode
    Play(TAPE, 2_000),                               # 14.7 - 16.7 a local file
    Play(SECRET, 1_500, private=True),               # 16.7 - 18.2 a private session: never recorded
    Idle(1_000),                                     # 18.2 - 19.2 nothing playing
    Play(CLOSER, 2_000),                             # 19.2 - 21.2 then stopped: ends after END_GRACE
))
# uri -> (counted, ms_played) for each play, in order.
EXPECTED = [
    (OPENER.uri, True, 2_000), (SKIPPED.uri, False, 1_000), (PAUSED.uri, True, 2_500),
    (PAUSED.uri, True, 2_500), (SEEKER.uri, True, 2_700), (EPISODE.uri, True, 2_000),
    (TAPE.uri, True, 2_000), (CLOSER.uri, True, 2_000),
]
TOLERANCE_MS = 300


def test_play_rules_hold_with_smart_polling(sim_factory: Callable[..., SpotifySimulator], redis_server: RedisServer,
                                            settings_for: Callable[..., Settings]) -> None:
    sim = sim_factory()
    settings = settings_for(sim, redis_server.url, poll_interval=0.2, max_poll_interval=1.0, min_play_ms=1_500,
                            end_grace_s=2.0)
    client = redis_server.client()
    stop = threading.Event()
    poller = Parts.build(settings, stop).poller()
    worker = threading.Thread(target=poller.run, daemon=True)
    worker.start()
    try:
        wait_until(lambda: sim.requests_to("/v1/me/player"), "the first poll", timeout=10)
        started = time.time()
        sim.load_script(SCRIPT, at=started)
        time.sleep(SCRIPT.length_ms / 1000)
        during_script = [r for r in sim.requests_to("/v1/me/player") if r.t >= started]
        # The last play closes once the player has been stopped for END_GRACE.
        wait_until(lambda: client.get("listening:current") is None, "the last play to close",
                   timeout=settings.end_grace_s + 5)
    finally:
        stop.set()
        worker.join(5)

    plays = [fields for _, fields in sorted(play_hashes(client).items())]
    got = [(p["uri"], p["counted"] == "1", int(p["ms_played"])) for p in plays]
    assert [g[:2] for g in got] == [e[:2] for e in EXPECTED], got
    for (uri, _, ms), (_, _, expected_ms) in zip(got, EXPECTED):
        assert abs(ms - expected_ms) <= TOLERANCE_MS, (uri, ms, expected_ms)
    assert all("ended_at" in p and p.get("playing") == "0" for p in plays)
    by_uri = {p["uri"]: p for p in plays}
    assert by_uri[EPISODE.uri]["type"] == "episode" and by_uri[EPISODE.uri]["show"] == "Pod"
    assert by_uri[TAPE.uri]["is_local"] == "1" and "id" not in by_uri[TAPE.uri]
    # Each play ends where the next began, so consecutive plays never overlap.
    for before, after in zip(plays, plays[1:]):
        assert int(before["ended_at"]) <= int(after["started_at"])
    assert_counter_invariant(client)
    # Polling every 0.2 s would have made SCRIPT.length_ms / 200 calls: smart polling makes far fewer.
    fixed_interval_calls = SCRIPT.length_ms / 200
    assert len(during_script) < 0.6 * fixed_interval_calls, len(during_script)
