"""The Spotify Web API simulator, over real loopback HTTP, against the shared reference data."""

from __future__ import annotations

import time

import pytest
import requests
from simdata import (CB, ERROR_BODY, FAULT_CASES, LOCAL_NULLS, OTHER, SONG, T0_MS, TIMELINE,
                     TIMELINE_CASES, FakeClock, api_session, authorize, feed, key_problems,
                     parse_time, pkce_code, pkce_pair, player, recorded, redirect_query, refresh,
                     schema, token, validate)

from spotify_logger.simulator import (Fault, Idle, Item, Pause, Play, Resume, Script, Seek,
                                      SpotifySimulator, ad, episode, local_file, track)
from spotify_logger.simulator.demo_script import demo_script


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make(clock, request):
    def factory(*segments, loop=False, **kwargs) -> SpotifySimulator:
        sim = SpotifySimulator(Script(segments, loop=loop), clock=clock, **kwargs).start()
        request.addfinalizer(sim.stop)
        return sim
    return factory


@pytest.mark.parametrize("at, expected", TIMELINE_CASES)
def test_timeline_states(make, clock, at, expected) -> None:
    body = player(make(*TIMELINE), clock, at)
    if expected == 204:
        assert body == 204
        return
    name, progress, playing, changed = expected
    got = body["item"]["name"] if body["item"] else body["currently_playing_type"]
    assert (got, body["progress_ms"], body["is_playing"]) == (name, progress, playing)
    assert body["timestamp"] == T0_MS + changed
    assert body["actions"]["disallows"]["resuming" if playing else "pausing"] is True


def test_episode_local_private_and_loop(make, clock) -> None:
    sim = make(Play(episode("Ep", 60000, show="Pod"), 5000), Play(local_file("Tape Hiss", 9500,
               "Me & You", "Demos"), 5000), Play(SONG, 5000, private=True),
               Play(Item("unknown", "spotify:unknown:x", "?", 9000), 1000), loop=True)
    hidden, shown = player(sim, clock, 1), player(sim, clock, 1, additional_types="track,episode")
    assert hidden["item"] is None and hidden["currently_playing_type"] == "episode"
    assert shown["item"]["show"]["name"] == "Pod" and shown["context"]["type"] == "show"
    local = player(sim, clock, 6)["item"]
    assert (local["is_local"], local["id"]) == (True, None)
    assert local["uri"] == "spotify:local:Me+%26+You:Demos:Tape+Hiss:9"
    private = player(sim, clock, 11)
    assert private["item"] is None and private["device"]["is_private_session"] is True
    unknown = player(sim, clock, 15.5)
    assert unknown["item"] is None and unknown["currently_playing_type"] == "unknown"
    assert player(sim, clock, 16 + 6)["item"]["is_local"] is True  # second loop iteration
    assert "device" not in player(sim, clock, 16, "/me/player/currently-playing")
    devices = api_session(sim).get(sim.api_url + "/me/player/devices").json()["devices"]
    assert [d["name"] for d in devices] == ["Sim Speaker"] and devices[0]["is_active"]


def test_script_json_roundtrip_and_validation() -> None:
    script = Script.from_json([
        {"play": {"kind": "track", "name": "A", "duration_ms": 8000}, "ms": 8000},
        {"pause": 2000}, {"resume": 3000}, {"seek": 5000}, {"idle": 4000},
        {"play": {"kind": "episode", "name": "E", "duration_ms": 9000}, "ms": 10, "private": True}])
    assert script.length_ms == 17010 and script.segments[-1].private
    assert Script.from_json(script.to_json()) == script
    assert script.segments[0] == Play(track("A", 8000), 8000)
    with pytest.raises(ValueError):
        Script.from_json([{"resume": 1000}])
    demo = demo_script()
    kinds = {s.item.kind for s in demo.segments if isinstance(s, Play)}
    assert kinds == {"track", "episode", "local", "ad"} and 55000 <= demo.length_ms <= 70000
    assert {Pause, Resume, Seek, Idle} <= {type(s) for s in demo.segments}
    assert any(s.private for s in demo.segments if isinstance(s, Play))


@pytest.mark.parametrize("name, path, params, item", [
    ("playback_1.json", "/me/player", {}, SONG),
    ("playback_episode_1.json", "/me/player", {"additional_types": "episode"}, episode("E", 9000)),
    ("current_playing_track.json", "/me/player/currently-playing", {}, SONG)])
def test_bodies_cover_recorded_keys_and_spec(make, clock, name, path, params, item) -> None:
    body = player(make(Play(item, 9000)), clock, 1, path, **params)
    assert key_problems(recorded(name), body) == []
    assert validate(body, schema("CurrentlyPlayingContextObject")) == []
    assert validate(recorded(name), schema("CurrentlyPlayingContextObject")) == []


def test_feed_covers_recorded_keys_and_spec(make, clock) -> None:
    sim = make(*[Play(track(f"T{i}", 40000), 40000) for i in range(3)], Idle(1000))
    clock.at(200)
    body = feed(sim, limit=2)
    real = recorded("recently_played_tracks.json")
    assert key_problems(real, body) == [] and "total" not in body and "total" not in real
    assert validate(body, schema("CursorPagingPlayHistoryObject")) == []
    assert validate(real, schema("CursorPagingPlayHistoryObject")) == []
    assert validate({"items": [{"track": 1}]}, schema("CursorPagingPlayHistoryObject"))


def test_local_file_and_error_bodies_follow_spec(make, clock) -> None:
    sim = make(Play(local_file("L", 9000), 9000))
    local = player(sim, clock, 1)["item"]
    assert validate(local, schema("TrackObject"), LOCAL_NULLS) == []
    assert validate(local, schema("TrackObject"))  # the nulls are a documented difference
    sim.inject(Fault("status", status=502), Fault("rate_limit"), Fault.premium_required())
    for _ in range(3):
        assert validate(api_session(sim).get(sim.api_url + "/me/player").json(), ERROR_BODY) == []
    assert validate(requests.get(sim.api_url + "/me/player").json(), ERROR_BODY) == []


def test_recently_played_from_timeline(make, clock) -> None:
    sim = make(Play(OTHER, 1000), Play(track("Long", 90000), 40000, played_at_offset_ms=-1500),
               Play(track("Short", 90000), 20000), Play(ad(50000), 40000),
               Play(episode("E", 90000), 40000), Play(local_file("L", 90000), 40000),
               Play(track("Priv", 90000), 40000, private=True),
               Play(track("Paused", 90000), 20000), Pause(60000), Resume(15000),
               Play(track("Cut", 90000), 35000))
    clock.at(30)
    assert feed(sim)["items"] == [] and feed(sim)["cursors"] is None
    clock.at(500)
    items = feed(sim)["items"]
    assert [i["track"]["name"] for i in items] == ["Cut", "Paused", "Long"]
    assert items[0]["played_at"] == "2023-11-14T22:19:11.000Z"  # T0 + 351 s, the script end
    assert parse_time(items[2]["played_at"]) == T0_MS + 41000 - 1500
    sim.restart_timeline()  # the old timeline's plays stay listed
    assert len(feed(sim)["items"]) == 3


def test_recently_played_paging(make, clock) -> None:
    sim = make()
    for index in range(60):
        sim.add_history(track(f"H{index}", 90000), T0_MS - 1000 * (60 - index))
    first = feed(sim)
    assert len(first["items"]) == 20 and first["limit"] == 20
    assert first["cursors"] == {"after": str(T0_MS - 1000), "before": str(T0_MS - 20000)}
    pages, url = [], first["next"]
    while url:
        pages.append(api_session(sim).get(url).json())
        url = pages[-1]["next"]
    assert sum(len(p["items"]) for p in pages) == 30  # the feed keeps the last 50 only
    after = feed(sim, after=T0_MS - 40000, limit=5)
    assert [i["track"]["name"] for i in after["items"]] == [f"H{i}" for i in (25, 24, 23, 22, 21)]
    assert "after=" + str(T0_MS - 35000) in after["next"]
    assert feed(sim, before=T0_MS - 5000, limit=50)["items"][0]["track"]["name"] == "H54"
    for bad in ({"limit": 0}, {"limit": 51}, {"limit": "x"}, {"before": 1, "after": 2}):
        response = feed(sim, **bad)
        assert response.status_code == 400 and response.json()["error"]["status"] == 400


def test_refresh_tokens_rotation_revocation_and_clients(make, clock) -> None:
    sim = make(rotate_refresh_tokens=True)
    first = refresh(sim).json()
    assert first["token_type"] == "Bearer" and first["expires_in"] == 3600
    assert first["refresh_token"] == sim.current_refresh_token != "sim-refresh-0"
    reused = refresh(sim)
    assert (reused.status_code, reused.json()) == (400, {
        "error": "invalid_grant", "error_description": "Invalid refresh token"})
    current = sim.current_refresh_token
    assert refresh(sim, current, "nope").json()["error"] == "invalid_client"
    assert refresh(sim, None).json()["error"] == "invalid_request"
    sim.revoke_refresh_tokens()
    assert refresh(sim, current).json()["error"] == "invalid_grant"
    api = {"Authorization": "Bearer " + first["access_token"]}
    assert requests.get(sim.api_url + "/me/player", headers=api).status_code == 204
    sim.expire_access_tokens()
    for headers, message in ((api, "The access token expired"), ({}, "No token provided"),
                             ({"Authorization": "Bearer forged"}, "Invalid access token")):
        response = requests.get(sim.api_url + "/me/player", headers=headers)
        assert response.json()["error"] == {"status": 401, "message": message}
    assert sim.issued_access_tokens == 1


def test_secret_client_uses_basic_auth(make) -> None:
    sim = make(client_secret="s3cret")
    form = {"grant_type": "refresh_token", "refresh_token": "sim-refresh-0"}
    assert token(sim, ("sim-client", "s3cret"), **form).ok
    bad = token(sim, ("sim-client", "wrong"), **form)
    assert (bad.status_code, bad.json()["error"]) == (401, "invalid_client")
    assert "refresh_token" not in token(sim, ("sim-client", "s3cret"), **form).json()


def test_pkce_authorization_code_flow(make) -> None:
    sim = make()
    verifier, challenge = pkce_pair()
    redirect = authorize(sim, code_challenge_method="S256", code_challenge=challenge)
    assert redirect.status_code == 302 and redirect.headers["Location"].startswith(CB + "?")
    query = redirect_query(redirect)
    assert query["state"] == "xyz" and sim.granted_scope == "user-read-recently-played"
    form = {"grant_type": "authorization_code", "code": query["code"], "redirect_uri": CB,
            "client_id": "sim-client", "code_verifier": verifier}
    answer = token(sim, **form).json()
    assert answer["scope"] == "user-read-recently-played"
    assert answer["refresh_token"] == sim.current_refresh_token and answer["access_token"]
    assert token(sim, **form).json()["error"] == "invalid_grant"  # a code works once
    for change in ({"code_verifier": "wrong"}, {"redirect_uri": CB + "2"}):
        failed = token(sim, **{**form, "code": pkce_code(sim, challenge), **change})
        assert (failed.status_code, failed.json()["error"]) == (400, "invalid_grant")
    unregistered = authorize(sim, redirect_uri="http://localhost:8888/callback")
    assert unregistered.status_code == 400 and "text/html" in unregistered.headers["Content-Type"]
    assert "INVALID_CLIENT: Invalid redirect URI" in unregistered.text
    assert "error=invalid_request" in authorize(sim).headers["Location"]  # PKCE is required


@pytest.mark.parametrize("fault, status, check", FAULT_CASES)
def test_fault_answers(make, fault, status, check) -> None:
    sim = make(Play(SONG, 20000))
    session = api_session(sim)
    sim.inject(Fault("status", path="/api/token"), fault)
    response = session.get(sim.api_url + "/me/player")
    assert response.status_code == status and check(response)
    assert session.get(sim.api_url + "/me/player").status_code == 200  # count=1 used up
    assert [f.path for f in sim.faults_pending()] == ["/api/token"]
    assert sim.requests[0].fault == fault.kind


def test_slow_reset_and_counts(make) -> None:
    sim = make(Play(SONG, 20000))
    session = api_session(sim)
    sim.inject(Fault("slow", delay_s=0.3), Fault("reset", count=2))
    started = time.monotonic()
    assert session.get(sim.api_url + "/me/player").status_code == 200
    assert time.monotonic() - started >= 0.3
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            session.get(sim.api_url + "/me/player", timeout=5)
    assert session.get(sim.api_url + "/me/player").ok and sim.faults_pending() == []
    assert [r.status for r in sim.requests] == [200, 0, 0, 200]


def test_rate_limit_window_and_violations(make, clock) -> None:
    sim = make(Play(SONG, 20000))
    session = api_session(sim)
    sim.rate_limit_for(10)
    told = session.get(sim.api_url + "/me/player")
    assert (told.status_code, told.headers["Retry-After"]) == (429, "10")
    assert refresh(sim).ok  # the window covers the Web API, not the accounts service
    clock.advance(3.5)
    again = session.get(sim.api_url + "/me/player/recently-played")
    assert (again.status_code, again.headers["Retry-After"]) == (429, "7")
    assert [v.path for v in sim.violations] == ["/v1/me/player/recently-played"]
    clock.advance(7)
    assert session.get(sim.api_url + "/me/player").status_code == 200
    sim.rate_limit_for(5, extend_on_violation_s=10)
    session.get(sim.api_url + "/me/player")
    assert session.get(sim.api_url + "/me/player").headers["Retry-After"] == "15"
    assert len(sim.violations) == 2


def test_playlist_routes_need_a_token_and_obey_faults(make) -> None:
    sim = make()
    url, session = sim.api_url + "/me/playlists", api_session(sim)
    assert requests.post(url, json={"name": "x"}, timeout=5).status_code == 401
    sim.inject(Fault("status", path="/v1/me/playlists", status=502))
    assert session.post(url, json={"name": "x"}, timeout=5).status_code == 502
    sim.rate_limit_for(30)
    assert session.post(url, json={"name": "x"}, timeout=5).status_code == 429
    assert sim.playlists.all() == []


def test_request_log_keeps_no_secrets(make) -> None:
    sim = make(client_secret="s3cret", rotate_refresh_tokens=True)
    answer = token(sim, ("sim-client", "s3cret"), grant_type="refresh_token",
                   refresh_token="sim-refresh-0").json()
    api = requests.Session()
    api.headers["Authorization"] = "Bearer " + answer["access_token"]
    api.get(sim.api_url + "/me/player", params={"access_token": answer["access_token"]})
    code = pkce_code(sim, pkce_pair()[1])
    log = repr(sim.requests) + repr(sim.requests_to("/v1/"))
    for secret in ("s3cret", "sim-refresh-0", answer["access_token"], answer["refresh_token"],
                   code, "Basic", "Bearer"):
        assert secret not in log
    assert sim.requests_to("/v1/")[0].authorized and not sim.requests_to("/api/")[0].authorized


def test_keep_alive_stop_and_restart(make, clock) -> None:
    sim = make(Play(SONG, 20000))
    session = api_session(sim)
    replies = [session.get(sim.api_url + "/me/player") for _ in range(3)]
    assert replies[0].raw.version == 11 and replies[0].headers.get("Connection") != "close"
    pools = session.get_adapter(sim.api_url).poolmanager.pools
    assert [pools[k].num_connections for k in pools.keys()] == [1]  # noqa: SIM118
    assert session.get(sim.api_url + "/nope").status_code == 404
    assert session.post(sim.api_url + "/me/player").status_code == 405
    url = sim.api_url
    sim.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(url + "/me/player", timeout=2)
    assert sim.start().api_url == url and session.get(url + "/me/player").status_code == 200
    with SpotifySimulator(clock=clock) as other:
        assert api_session(other).get(other.api_url + "/me/player").status_code == 204
