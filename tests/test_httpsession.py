"""The polling session's fast GET against a recording HTTP peer on loopback: it must send what
requests would send, over the same keep-alive connection, trust the same certificates, and stand
aside for proxies, cookies and redirects.

tests/data/tls holds a CA and a server certificate (127.0.0.1, localhost) made with openssl for
these tests only, valid for 100 years; the CA's key was thrown away."""

from __future__ import annotations

import dataclasses
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from spotify_logger.errors import TransientApiError
from spotify_logger.httpsession import PollingSession, Reply, make_session
from spotify_logger.redisproc import free_port
from spotify_logger.simulator import Fault, Script

from helpers import make_client


TLS = Path(__file__).parent / "data" / "tls"


class Peer(ThreadingHTTPServer):
    """Answers every GET with a JSON echo of what it received, and records it. A path under
    /old/ is moved permanently to the same path under /v1/."""

    daemon_threads = True

    def __init__(self, *, tls: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[dict[str, Any]] = []
        self.scheme = "https" if tls else "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(TLS / "server.pem", TLS / "server.key")
            self.socket = context.wrap_socket(self.socket, server_side=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Spotify's front ends
    server: Peer

    def do_GET(self) -> None:
        record = {"target": self.path, "client_port": self.client_address[1],
                  "headers": {k.lower(): v for k, v in self.headers.items()}}
        self.server.seen.append(record)
        if self.path.startswith("/old/"):  # moved to the same server under another name
            self.send_response(301)
            self.send_header("Location", f"http://localhost:{self.server.server_address[1]}/v1/"
                             + self.path.removeprefix("/old/"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"target": self.path}).encode()
        self.send_response(200)
        if self.path.startswith("/api/token"):
            self.send_header("Set-Cookie", "sp_t=abc; Path=/")
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Retry-After", "7")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET  # noqa: N815 - the token endpoint, for the cookie test

    def log_message(self, *args: Any) -> None:
        pass


def serving(server: Peer) -> Iterator[Peer]:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def peer() -> Iterator[Peer]:
    yield from serving(Peer())


@pytest.fixture
def tls_peer() -> Iterator[Peer]:
    yield from serving(Peer(tls=True))


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


PARAMS = {"additional_types": "track,episode"}
AUTH = {"Authorization": "Bearer t0ken"}


def test_fast_get_sends_what_requests_sends(peer: Peer) -> None:
    session = make_session()
    slow = session.get(peer.url + "/v1/me/player", params=PARAMS, headers=AUTH, timeout=(5, 5))
    fast = session.fast_get(peer.url + "/v1/me/player", params=PARAMS, headers=AUTH, timeout=(5, 5))
    assert isinstance(fast, Reply)
    via_requests, via_fast = peer.seen
    assert via_fast["target"] == via_requests["target"] == "/v1/me/player?additional_types=track%2Cepisode"
    assert via_fast["headers"] == via_requests["headers"]
    assert via_fast["headers"]["user-agent"] == "spotify-logger"
    assert via_fast["headers"]["authorization"] == "Bearer t0ken"
    assert (fast.status_code, fast.json(), fast.headers.get("retry-after")) == (200, slow.json(), "7")


def test_fast_gets_share_the_keep_alive_connection_with_requests(peer: Peer) -> None:
    session = make_session()
    session.get(peer.url + "/v1/me", headers=AUTH, timeout=(5, 5))
    for limit in (1, 2, 1):  # a different query is its own route, on the same connection
        session.fast_get(peer.url + "/v1/me/player/recently-played", params={"limit": limit}, headers=AUTH,
                         timeout=(5, 5))
    assert len({seen["client_port"] for seen in peer.seen}) == 1
    assert [seen["target"] for seen in peer.seen][1:] == [
        "/v1/me/player/recently-played?limit=1", "/v1/me/player/recently-played?limit=2",
        "/v1/me/player/recently-played?limit=1"]


def test_a_pool_closed_under_it_is_replaced(peer: Peer) -> None:
    # urllib3 1.26 closes the pool of the least recently used origin when the adapter needs room
    # for another (the token endpoint's, say); 2.x drops it without closing. Close it as 1.26 does.
    session = make_session()
    url = peer.url + "/v1/me/player"
    session.fast_get(url, params=PARAMS, headers=AUTH, timeout=(5, 5))
    pools = session.get_adapter(url).poolmanager.pools  # type: ignore[attr-defined]
    for key in pools.keys():
        evicted = pools[key]
        del pools[key]
        evicted.close()
    assert session.fast_get(url, params=PARAMS, headers=AUTH, timeout=(5, 5)).status_code == 200
    assert len(peer.seen) == 2


def test_https_trusts_the_ca_bundle_requests_trusts_not_the_system_store(
        tls_peer: Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    url = tls_peer.url + "/v1/me/player"
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # as on a stock Pi: requests uses certifi
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS / "ca.pem"))  # the system store trusts the test CA
    with pytest.raises(requests.exceptions.SSLError):
        make_session().get(url, params=PARAMS, headers=AUTH, timeout=(5, 5))
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        make_session().fast_get(url, params=PARAMS, headers=AUTH, timeout=(5, 5))
    assert tls_peer.seen == []

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(TLS / "ca.pem"))  # now requests trusts it too
    session = make_session()
    reply = session.fast_get(url, params=PARAMS, headers=AUTH, timeout=(5, 5))
    assert isinstance(reply, Reply) and reply.json() == {"target": "/v1/me/player?additional_types=track%2Cepisode"}


def test_a_redirect_is_followed_as_requests_follows_it(peer: Peer) -> None:
    reply = make_session().fast_get(peer.url + "/old/me/player", params=PARAMS, headers=AUTH, timeout=(5, 5))
    assert reply.status_code == 200
    assert reply.json() == {"target": "/v1/me/player?additional_types=track%2Cepisode"}
    # fast_get's own GET, requests' GET, and requests following the redirect to another host
    # name, without the Authorization header.
    assert [(seen["target"].split("?")[0], "authorization" in seen["headers"]) for seen in peer.seen] == [
        ("/old/me/player", True), ("/old/me/player", True), ("/v1/me/player", False)]


def test_params_go_out_in_the_order_and_form_requests_sends(peer: Peer) -> None:
    session = make_session()
    params = {"limit": 50, "before": 1732180000000, "market": None}
    session.get(peer.url + "/v1/me/player/recently-played", params=params, headers=AUTH, timeout=(5, 5))
    reply = session.fast_get(peer.url + "/v1/me/player/recently-played", params=params, headers=AUTH, timeout=(5, 5))
    assert isinstance(reply, Reply)
    assert peer.seen[0]["target"] == peer.seen[1]["target"] == "/v1/me/player/recently-played?limit=50&before=1732180000000"


def test_the_session_keeps_no_cookie_so_polls_stay_on_the_fast_path(peer: Peer) -> None:
    session = make_session()
    assert session.post(peer.url + "/api/token", timeout=(5, 5)).headers["Set-Cookie"] == "sp_t=abc; Path=/"
    assert not session.cookies


def test_a_proxy_from_the_environment_is_honoured(peer: Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The peer plays the proxy: a proxied GET carries the absolute URL on its request line.
    monkeypatch.setenv("HTTP_PROXY", peer.url)
    target = f"http://127.0.0.1:{free_port()}/v1/me/player"
    reply = make_session().fast_get(target, params=PARAMS, headers=AUTH, timeout=(5, 5))
    assert reply.status_code == 200
    assert peer.seen[0]["target"] == target + "?additional_types=track%2Cepisode"


def test_cookies_in_the_session_leave_the_work_to_requests(peer: Peer) -> None:
    session = make_session()
    session.cookies.set("sp_t", "abc", domain="127.0.0.1", path="/")
    session.fast_get(peer.url + "/v1/me/player", params={}, headers=AUTH, timeout=(5, 5))
    assert peer.seen[0]["headers"]["cookie"] == "sp_t=abc"


def test_a_refused_connection_is_a_transient_api_error(settings_for: Any, sim_factory: Any) -> None:
    settings = settings_for(sim_factory(Script(())))
    client = make_client(dataclasses.replace(settings, api_url=f"http://127.0.0.1:{free_port()}/v1"), attempts=2)
    assert isinstance(client.session, PollingSession)
    with pytest.raises(TransientApiError, match="/me/player: ConnectionError"):
        client.player()


def test_a_read_timeout_says_so(settings_for: Any, sim_factory: Any) -> None:
    sim = sim_factory(Script(()))
    sim.inject(Fault("slow", delay_s=1.0, count=1))
    client = make_client(settings_for(sim, read_timeout=0.2), attempts=1)
    with pytest.raises(TransientApiError, match="/me/player: timed out"):
        client.player()
