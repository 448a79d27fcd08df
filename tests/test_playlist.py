"""`spotify-logger playlist` against the simulator over loopback HTTP, with plays in a real
redis-server: creation, replacement, the /tracks fallback, 401/429/5xx, what is left out, the
local-hours window, --dry-run; and the simulator's playlist endpoints. (Its systemd timer and
unit are tested in test_systemd_unit.py.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
import requests

from spotify_logger import keys
from spotify_logger.batch import Batch, PlayWrite
from spotify_logger.cli import main
from spotify_logger.config import Settings
from spotify_logger.redisproc import RedisServer
from spotify_logger.simulator import Fault, SpotifySimulator, episode, local_file, track
from spotify_logger.store import Store

from conftest import ROOT, Proc, env_for

MIN = 60_000
HOUR = 60 * MIN
TODAY = int(datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)
A, B, C, D = (track(n, 200_000, (f"{n} Singer",)) for n in ("Alpha", "Bravo", "Charlie", "Delta"))
EVENING, OLD, SKIPPED = track("Evening", 200_000), track("Old", 200_000), track("Skipped", 200_000)
LOCAL, EPISODE = local_file("Home Demo", 180_000), episode("Morning News", 900_000)
Play = tuple[Any, int, int, bool]  # item, days ago, UTC hour, counted


def morning_week() -> list[Play]:
    """Plays of the last days (UTC): the top three Spotify tracks of the mornings are A, B, C.
    More played, but left out: a local file, an episode, an evening track, uncounted plays and
    plays older than 7 days."""
    plays: list[Play] = []
    for item, times in ((A, 5), (B, 4), (C, 3), (D, 2), (LOCAL, 9), (EPISODE, 8), (EVENING, 7)):
        plays += [(item, 1 + i % 5, 20 if item is EVENING else 7 + i % 5, True) for i in range(times)]
    plays += [(SKIPPED, 2, 9, False)] * 6 + [(OLD, 10, 8, True)] * 7
    return plays


def store_plays(client: Any, plays: list[Play]) -> None:
    store = Store(client)
    for n, (item, days_ago, hour, counted) in enumerate(plays):
        started = TODAY - days_ago * 86_400_000 + hour * HOUR + n * 1_000  # distinct starts
        ms = 120_000 if counted else 10_000
        fields = {"started_at": started, "ended_at": started + ms, "ms_played": ms, "uri": item.uri,
                  "name": item.name, "type": "episode" if item.kind == "episode" else "track",
                  "artists": json.dumps(list(item.artists)), "counted": "1" if counted else "0", "source": "poll",
                  "is_local": "1" if item.kind == "local" else "0"}
        store.apply(Batch(polled_at=started + ms, keep_current=True, writes=(
            PlayWrite(started, fields, item.uri, item.artists, counted=counted, create_only=True),)))


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def sim(sim_factory: Callable[..., SpotifySimulator]) -> SpotifySimulator:
    return sim_factory()


@pytest.fixture
def settings(sim: SpotifySimulator, settings_for: Callable[..., Settings], redis_server: RedisServer) -> Settings:
    return settings_for(sim, redis_server.url)


@pytest.fixture
def run(settings: Settings, capsys: pytest.CaptureFixture[str]) -> Run:
    """`spotify-logger playlist ARGS --tz UTC` in-process: (exit code, stdout, stderr)."""
    def invoke(*args: str, tz: str = "UTC") -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["playlist", *args, "--tz", tz], env=env_for(settings))
        out, err = capsys.readouterr()
        return code, out, err
    return invoke


def message_lines(err: str) -> list[str]:
    """stderr without the JSON log events: what a person reads."""
    return [line for line in err.splitlines() if line.strip() and not line.startswith("{")]


def writes(sim: SpotifySimulator) -> list[tuple[str, str, int]]:
    return [(r.method, r.path, r.status) for r in sim.requests if r.method in ("POST", "PUT") and r.path.startswith("/v1/")]


def only_playlist(sim: SpotifySimulator) -> Any:
    [playlist] = sim.playlists.all()
    return playlist


def test_first_run_creates_the_playlist_and_a_second_replaces_it(sim: SpotifySimulator, real_redis: Any,
                                                                  run: Run) -> None:
    store_plays(real_redis, morning_week())
    code, out, _ = run("--limit", "3")
    assert code == 0
    playlist = only_playlist(sim)
    assert playlist.name == "Top 10 this week" and playlist.public is False
    assert playlist.uris == [A.uri, B.uri, C.uri]
    assert real_redis.hgetall(keys.PLAYLISTS) == {"Top 10 this week": playlist.id}
    assert writes(sim) == [("POST", "/v1/me/playlists", 201), ("PUT", f"/v1/playlists/{playlist.id}/items", 200)]
    assert "created" in out and f"spotify:playlist:{playlist.id}" in out and "Alpha" in out

    store_plays(real_redis, [(D, 1, 11, True)] * 5)  # Delta now leads with 7 plays
    sim.clear_requests()
    code, out, _ = run("--limit", "3")
    assert code == 0
    assert only_playlist(sim) is playlist and playlist.replaced == 2
    assert playlist.uris == [D.uri, A.uri, B.uri]
    assert writes(sim) == [("PUT", f"/v1/playlists/{playlist.id}/items", 200)]
    assert "replaced" in out


def test_local_files_and_episodes_are_left_out(sim: SpotifySimulator, real_redis: Any, run: Run) -> None:
    store_plays(real_redis, morning_week())
    code, out, _ = run("--public", "--name", "Mornings")
    assert code == 0
    playlist = only_playlist(sim)
    # The local file (9 plays) and the episode (8) outrank everything, and neither is written.
    assert playlist.uris == [A.uri, B.uri, C.uri, D.uri]
    assert LOCAL.uri not in out and EPISODE.uri not in out
    assert playlist.public is True and playlist.name == "Mornings"


def test_expired_access_token_is_refreshed(sim: SpotifySimulator, real_redis: Any, run: Run) -> None:
    store_plays(real_redis, morning_week())
    assert run()[0] == 0
    sim.expire_access_tokens()  # the token saved by the first run is still "valid" locally
    sim.clear_requests()
    assert run()[0] == 0
    seen = [(r.method, r.path, r.status) for r in sim.requests]
    playlist_id = only_playlist(sim).id
    assert seen == [("PUT", f"/v1/playlists/{playlist_id}/items", 401), ("POST", "/api/token", 200),
                    ("PUT", f"/v1/playlists/{playlist_id}/items", 200)]


def test_short_rate_limit_is_waited_out(sim: SpotifySimulator, real_redis: Any, run: Run) -> None:
    store_plays(real_redis, morning_week())
    sim.inject(Fault("rate_limit", path="/v1/me/playlists", retry_after=1))
    code, _, err = run()
    assert code == 0, err
    posts = [r for r in sim.requests if r.path == "/v1/me/playlists"]
    assert [r.status for r in posts] == [429, 201]
    assert posts[1].t - posts[0].t >= 1.0
    assert sim.violations == [] and len(sim.playlists.all()) == 1


def test_long_rate_limit_exits_75_naming_the_deadline(sim: SpotifySimulator, real_redis: Any, run: Run) -> None:
    store_plays(real_redis, morning_week())
    sim.inject(Fault("rate_limit", path="/v1/me/playlists", retry_after=3600))
    code, _, err = run()
    deadline = datetime.now(timezone.utc) + timedelta(seconds=3600)
    assert code == 75
    [message] = message_lines(err)
    shown = re.search(r"^spotify-logger: .*no request before (\S+) \(in (\d+) s\)", message)
    assert shown, err
    assert abs((datetime.fromisoformat(shown.group(1)) - deadline).total_seconds()) < 5
    assert sim.playlists.all() == [] and keys.PLAYLISTS not in real_redis.keys("*")
    # The deadline is persisted: a re-run exits 75 at once, without calling Spotify.
    sim.clear_requests()
    assert run()[0] == 75
    assert [r for r in sim.requests if r.path.startswith("/v1/")] == [] and sim.violations == []


def test_server_errors_are_retried(sim: SpotifySimulator, real_redis: Any, run: Run) -> None:
    store_plays(real_redis, morning_week())
    sim.inject(Fault("status", path="/v1/me/playlists", status=503),
               Fault("status", path="/v1/playlists/", status=500))
    code, _, err = run()
    assert code == 0, err
    playlist_id = only_playlist(sim).id
    assert writes(sim) == [("POST", "/v1/me/playlists", 503), ("POST", "/v1/me/playlists", 201),
                           ("PUT", f"/v1/playlists/{playlist_id}/items", 500),
                           ("PUT", f"/v1/playlists/{playlist_id}/items", 200)]


def test_falls_back_to_tracks_when_items_answers_404(sim: SpotifySimulator, real_redis: Any, run: Run) -> None:
    store_plays(real_redis, morning_week())
    sim.playlists.retire_items_endpoint()
    assert run("--limit", "2")[0] == 0
    playlist = only_playlist(sim)
    assert playlist.uris == [A.uri, B.uri]
    assert writes(sim)[1:] == [("PUT", f"/v1/playlists/{playlist.id}/items", 404),
                               ("PUT", f"/v1/playlists/{playlist.id}/tracks", 200)]


def test_a_deleted_playlist_is_created_again(sim: SpotifySimulator, real_redis: Any, run: Run) -> None:
    store_plays(real_redis, morning_week())
    assert run()[0] == 0
    first = only_playlist(sim)
    sim.playlists.delete(first.id)
    sim.clear_requests()
    assert run()[0] == 0
    second = only_playlist(sim)
    assert second.id != first.id and second.uris == [A.uri, B.uri, C.uri, D.uri]
    assert real_redis.hget(keys.PLAYLISTS, "Top 10 this week") == second.id
    assert [(m, s) for m, _, s in writes(sim)] == [("PUT", 404), ("PUT", 404), ("POST", 201), ("PUT", 200)]


def test_dry_run_prints_the_tracks_and_writes_nothing(sim: SpotifySimulator, settings: Settings, real_redis: Any,
                                                      run: Run) -> None:
    store_plays(real_redis, morning_week())
    settings.token_file.unlink()  # a dry run needs no authorization
    code, out, _ = run("--dry-run", "--limit", "3")
    assert code == 0
    lines = out.strip().splitlines()
    assert "nothing written" in lines[0]
    assert [line.split("(")[-1].rstrip(")") for line in lines[1:]] == [A.uri, B.uri, C.uri]
    assert sim.requests == [] and sim.playlists.all() == []
    assert real_redis.exists(keys.PLAYLISTS) == 0


def test_hours_are_local_time(real_redis: Any, run: Run) -> None:
    # 23:00 UTC is 08:00 the next day in Tokyo (UTC+9, no DST): a morning there, not in UTC.
    store_plays(real_redis, [(EVENING, 2, 23, True)] * 3 + [(A, 2, 8, True)])
    _, utc, _ = run("--dry-run")
    _, tokyo, _ = run("--dry-run", tz="Asia/Tokyo")
    assert EVENING.uri not in utc and A.uri in utc
    assert EVENING.uri in tokyo and A.uri not in tokyo  # 08:00 UTC is 17:00 in Tokyo
    _, all_day, _ = run("--dry-run", "--hours", "0-24")
    assert EVENING.uri in all_day and A.uri in all_day


def test_an_empty_period_leaves_the_playlist_alone(sim: SpotifySimulator, real_redis: Any, run: Run) -> None:
    store_plays(real_redis, [(A, 10, 8, True)])
    code, out, _ = run()
    assert code == 0 and "left unchanged" in out
    assert writes(sim) == [] and sim.playlists.all() == []


@pytest.mark.parametrize("args, code", [(["--hours", "9"], 65), (["--hours", "7-7"], 65),
                                        (["--since", "soon"], 65), (["--limit", "0"], 64),
                                        (["--limit", "101"], 64)])
def test_bad_options_are_one_line_errors(args: list[str], code: int, sim: SpotifySimulator, run: Run) -> None:
    got, out, err = run(*args)
    assert got == code
    assert "Traceback" not in err and sim.requests == []
    if code == 65:
        [message] = message_lines(err)
        assert message.startswith("spotify-logger: ")


def test_real_process_writes_the_playlist(sim: SpotifySimulator, settings: Settings, real_redis: Any) -> None:
    store_plays(real_redis, morning_week())
    done = subprocess.run([sys.executable, "-m", "spotify_logger", "playlist", "--tz", "UTC", "--limit", "1"],
                          env=env_for(settings), cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert only_playlist(sim).uris == [A.uri] and A.uri in done.stdout
    assert all(secret not in done.stderr for secret in sim.issued_secrets())


def test_sigterm_cuts_a_rate_limit_wait_short(sim: SpotifySimulator, settings: Settings, real_redis: Any,
                                             spawn: Callable[..., Proc]) -> None:
    store_plays(real_redis, morning_week())
    sim.inject(Fault("rate_limit", path="/v1/me/playlists", retry_after=50))  # short enough to wait out
    proc = spawn([sys.executable, "-m", "spotify_logger", "playlist", "--tz", "UTC"], env_for(settings))
    proc.wait_for("rate_limit_wait")
    assert proc.terminate(timeout=5) == 75
    assert any("stopped while waiting out a rate limit" in line for line in proc.lines)
    assert sim.playlists.all() == [] and sim.violations == []


# --- the simulator's playlist endpoints ----------------------------------------------------

def api(sim: SpotifySimulator, method: str, path: str, body: Any = None, token: str | None = "") -> requests.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token or sim.issue_access_token()}"}
    return requests.request(method, sim.api_url + path, json=body, headers=headers, timeout=5)


def test_simulator_creates_reads_and_replaces(sim: SpotifySimulator) -> None:
    created = api(sim, "POST", "/me/playlists", {"name": "Mine", "public": False, "description": "d"})
    assert created.status_code == 201
    body = created.json()
    assert {"id", "name", "public", "uri", "snapshot_id", "owner", "items"} <= body.keys()
    assert body["uri"] == f"spotify:playlist:{body['id']}" and body["public"] is False
    replaced = api(sim, "PUT", f"/playlists/{body['id']}/items", {"uris": [A.uri, EPISODE.uri]})
    assert replaced.status_code == 200 and replaced.json()["snapshot_id"] != body["snapshot_id"]
    got = api(sim, "GET", f"/playlists/{body['id']}").json()
    assert [i["item"]["uri"] for i in got["items"]["items"]] == [A.uri, EPISODE.uri]
    assert api(sim, "PUT", "/playlists/unknown/tracks", {"uris": []}).status_code == 404
    assert api(sim, "POST", "/me/playlists", {"public": True}).status_code == 400


@pytest.mark.parametrize("uris", [[LOCAL.uri], ["spotify:track:short"], ["spotify:album:" + "a" * 22],
                                  "spotify:track:x", [A.uri] * 101])
def test_simulator_refuses_what_spotify_refuses(sim: SpotifySimulator, uris: Any) -> None:
    playlist = sim.playlists.create("P")
    answer = api(sim, "PUT", f"/playlists/{playlist.id}/items", {"uris": uris})
    assert answer.status_code == 400 and answer.json()["error"]["status"] == 400
    assert playlist.uris == [] and playlist.replaced == 0


class _BudgetRefuses:
    """A client whose every request our own request budget refuses."""

    def __init__(self) -> None:
        import threading

        self.stop = threading.Event()
        self.sent = 0

    def request(self, method: str, path: str, *, params: Any = None, json: Any = None) -> Any:
        from spotify_logger.errors import BudgetExhausted

        self.sent += 1
        raise BudgetExhausted("PUT /playlists/{id}/items: the request budget is spent; the next call fits at "
                              "2026-12-04T06:00:00Z", until=9e9)


def test_a_spent_budget_mid_publish_says_so_and_does_not_wait_as_for_spotify() -> None:
    import fakeredis

    from spotify_logger import playlist
    from spotify_logger.errors import BudgetExhausted

    client = _BudgetRefuses()
    with pytest.raises(BudgetExhausted, match="request budget") as refused:
        playlist.Publisher(client, fakeredis.FakeRedis(decode_responses=True), max_wait_s=3600).publish(  # type: ignore[arg-type]
            "Top", ["spotify:track:" + "a" * 22], public=False, description="")
    assert "Spotify rate limit" not in str(refused.value)
    assert client.sent == 1  # no wait and retry: the budget's own deadline is in its message
