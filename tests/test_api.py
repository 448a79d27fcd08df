"""The API client against the simulator over loopback: every status code and fault."""

from __future__ import annotations

import json
import time
from typing import Callable

import pytest

from spotify_logger.api import SpotifyClient
from spotify_logger.config import Settings
from spotify_logger.cooldown import Cooldown, parse_retry_after
from spotify_logger.errors import (ApiError, Forbidden, InvalidClient, InvalidGrant, NotFound, RateLimited,
                                   TransientApiError)
from spotify_logger.simulator import Fault, Play, Script, SpotifySimulator, track

from helpers import make_client

SONG = track("Song", 60_000, ("Band",))


@pytest.fixture
def sim(sim_factory: Callable[..., SpotifySimulator]) -> SpotifySimulator:
    return sim_factory(Script((Play(SONG, 60_000),)))


@pytest.fixture
def client(sim: SpotifySimulator, settings_for: Callable[..., Settings]) -> SpotifyClient:
    return make_client(settings_for(sim))


def test_200_returns_the_body_with_episodes_requested(client: SpotifyClient, sim: SpotifySimulator) -> None:
    body = client.player()
    assert body is not None and body["item"]["uri"] == SONG.uri and body["is_playing"] is True
    assert sim.requests_to("/v1/me/player")[-1].query["additional_types"] == "track,episode"


def test_204_means_nothing_playing(sim_factory: Callable[..., SpotifySimulator],
                                   settings_for: Callable[..., Settings]) -> None:
    idle = sim_factory(Script(()))
    assert make_client(settings_for(idle)).player() is None


def test_keep_alive_reuses_one_connection(client: SpotifyClient) -> None:
    for _ in range(5):
        client.player()
    pool = client.session.get_adapter(client.settings.api_url).poolmanager
    assert sum(p.num_connections for p in pool.pools._container.values()) <= 2  # token + API hosts share one


def test_401_refreshes_once_then_retries(client: SpotifyClient, sim: SpotifySimulator) -> None:
    client.player()
    issued = sim.issued_access_tokens
    sim.expire_access_tokens()
    assert client.player() is not None
    assert sim.issued_access_tokens == issued + 1
    statuses = [r.status for r in sim.requests_to("/v1/me/player")]
    assert statuses[-2:] == [401, 200]


def test_401_after_a_fresh_token_is_an_error_not_a_loop(client: SpotifyClient, sim: SpotifySimulator) -> None:
    sim.inject(Fault("status", status=401, count=2, body={"error": {"status": 401, "message": "Invalid access token"}}))
    with pytest.raises(ApiError) as info:
        client.player()
    assert info.value.status == 401
    assert len(sim.requests_to("/v1/me/player")) == 2


@pytest.mark.parametrize("fault", [Fault.premium_required(), Fault.user_not_registered()])
def test_403_names_the_likely_cause(client: SpotifyClient, sim: SpotifySimulator, fault: Fault) -> None:
    sim.inject(fault)
    with pytest.raises(Forbidden) as info:
        client.player()
    assert "Premium" in str(info.value) and "allowlist" in str(info.value)
    assert info.value.exit_code == 78


def test_404_is_not_found(client: SpotifyClient, sim: SpotifySimulator) -> None:
    sim.inject(Fault("status", status=404))
    with pytest.raises(NotFound):
        client.player()


@pytest.mark.parametrize("http_date", [False, True])
def test_429_honours_retry_after_and_sends_nothing_before_it(client: SpotifyClient, sim: SpotifySimulator,
                                                             http_date: bool) -> None:
    sim.inject(Fault("rate_limit", retry_after=2, retry_after_http_date=http_date))
    with pytest.raises(RateLimited) as info:
        client.player()
    hit = time.time()
    assert 0.5 <= info.value.until - hit <= 2.6   # an HTTP date has 1 s resolution
    sent = len(sim.requests)
    with pytest.raises(RateLimited):
        client.player()                                   # gated locally: no request goes out
    assert len(sim.requests) == sent
    time.sleep(max(0.0, info.value.until - time.time()) + 0.05)
    assert client.player() is not None
    assert not sim.violations


@pytest.mark.parametrize("fault", [
    Fault("status", status=503, count=2), Fault("status", status=500, count=1), Fault("status", status=502, count=3),
    Fault("not_json", count=2), Fault("reset", count=2), Fault("slow", delay_s=1.5, count=1),
], ids=["503x2", "500", "502x3", "not-json", "reset", "slow"])
def test_transient_faults_are_retried(client: SpotifyClient, sim: SpotifySimulator, fault: Fault) -> None:
    sim.inject(fault)
    assert client.player() is not None
    assert not sim.faults_pending()


@pytest.mark.parametrize("fault", [Fault("status", status=503, count=10), Fault("not_json", count=10)])
def test_persistent_transient_faults_give_up_for_this_cycle(client: SpotifyClient, sim: SpotifySimulator,
                                                            fault: Fault) -> None:
    sim.inject(fault)
    with pytest.raises(TransientApiError):
        client.player()
    assert len(sim.requests_to("/v1/me/player")) == client.attempts  # bounded


def test_refresh_persists_a_rotated_token_before_using_it(sim_factory: Callable[..., SpotifySimulator],
                                                         settings_for: Callable[..., Settings]) -> None:
    sim = sim_factory(Script((Play(SONG, 60_000),)), rotate_refresh_tokens=True)
    settings = settings_for(sim)
    client = make_client(settings)
    old = sim.current_refresh_token
    client.player()
    stored = json.loads(settings.token_file.read_text())
    assert stored["refresh_token"] == sim.current_refresh_token != old
    assert settings.token_file.stat().st_mode & 0o777 == 0o600
    # A restart reads the rotated token from disk; the spent one would be invalid_grant.
    assert make_client(settings).auth.refresh()


def test_pkce_refresh_sends_client_id_and_secret_refresh_uses_basic_auth(
        sim_factory: Callable[..., SpotifySimulator], settings_for: Callable[..., Settings]) -> None:
    secret_sim = sim_factory(Script(()), client_secret="s3cret")
    assert make_client(settings_for(secret_sim)).auth.refresh()
    with pytest.raises(InvalidClient, match="SPOTIFY_CLIENT_SECRET"):
        make_client(settings_for(secret_sim, client_secret="wrong")).auth.refresh()
    pkce_sim = sim_factory(Script(()))
    assert make_client(settings_for(pkce_sim)).auth.refresh()
    with pytest.raises(InvalidClient, match="SPOTIFY_CLIENT_ID"):
        make_client(settings_for(pkce_sim, client_id="someone-else")).auth.refresh()


def test_revoked_refresh_token_is_invalid_grant(client: SpotifyClient, sim: SpotifySimulator) -> None:
    sim.revoke_refresh_tokens()
    with pytest.raises(InvalidGrant, match="spotify-logger auth") as info:
        client.player()
    assert info.value.exit_code == 78


def test_token_endpoint_outage_is_transient(client: SpotifyClient, sim: SpotifySimulator) -> None:
    sim.inject(Fault("status", path="/api/token", status=503, count=1))
    assert client.player() is not None


def test_access_token_is_refreshed_ahead_of_expiry(sim_factory: Callable[..., SpotifySimulator],
                                                  settings_for: Callable[..., Settings]) -> None:
    sim = sim_factory(Script((Play(SONG, 60_000),)), access_token_ttl_s=45)
    client = make_client(settings_for(sim))
    client.player()
    client.player()
    assert sim.issued_access_tokens == 2     # 45 s left is inside the 60 s margin: refresh first
    assert [r.status for r in sim.requests_to("/v1/")] == [200, 200]


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("4", now) == 4.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:30 GMT", now) == pytest.approx(10.0)
    assert parse_retry_after("garbage", now) == 5.0 and parse_retry_after(None, now) == 5.0
    assert parse_retry_after("-3", now) == 0.0




@pytest.mark.parametrize("header", ["999999999999", "inf", "1e400", "nan", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_an_absurd_retry_after_is_capped_not_a_crash(header: str) -> None:
    seconds = parse_retry_after(header, 1_700_000_000.0)
    assert 0 <= seconds <= 86_400
    cooldown = Cooldown(clock=lambda: 1_700_000_000.0)
    assert cooldown.start(seconds) <= 1_700_000_000.0 + 86_400
