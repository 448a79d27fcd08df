"""The HTTP session the API client polls through: requests, with a poll's bookkeeping done once.

On a Pi every poll's CPU counts (bench/poll_cost.py measures it), and a poll sends the same GET
with the same token, over the same keep-alive connection, every few seconds. requests redoes
for each one what cannot have changed since the last: it reads proxy and CA-bundle settings
from the environment (walking all of os.environ, twice), prepares the request (URL quoting,
header merging, cookies, netrc), resolves the connection pool, and builds a Response with its
own cookie jar. That was a third of a poll's CPU.

`PollingSession.fast_get` resolves all that once per URL and query, through requests itself
(`_route`), then sends the GET straight through the urllib3 pool requests chose: the same
keep-alive connections, TLS verification and CA bundle. It answers with a small `Reply`. It
stands aside, and requests does the whole work, when a proxy applies to the URL, the session
holds cookies (make_session refuses them: the Web API needs none) or the answer is a redirect.
Proxy and CA settings are read from the environment once per URL and query: a daemon's
environment does not change. urllib3's errors leave here as the requests errors HTTPAdapter
would raise.
"""

from __future__ import annotations

import http.cookiejar
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.utils import select_proxy

def _as_requests_error(exc: urllib3.exceptions.HTTPError) -> requests.RequestException:
    """The error requests' HTTPAdapter.send would have raised for this urllib3 one, so callers
    handle one exception tree whichever way a GET went."""
    reason = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason else exc
    errors = urllib3.exceptions
    if isinstance(reason, errors.NewConnectionError):  # before ConnectTimeoutError: its subclass
        return requests.exceptions.ConnectionError(exc)
    if isinstance(reason, errors.ConnectTimeoutError):
        return requests.exceptions.ConnectTimeout(exc)
    if isinstance(reason, (errors.ReadTimeoutError, errors.TimeoutError, TimeoutError)):
        return requests.exceptions.ReadTimeout(exc)
    if isinstance(reason, errors.SSLError):
        return requests.exceptions.SSLError(exc)
    if isinstance(reason, errors.DecodeError):
        return requests.exceptions.ContentDecodingError(exc)
    return requests.exceptions.ConnectionError(exc)


@dataclass(frozen=True)
class Reply:
    """The parts of a response the API client reads, as requests.Response names them."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


@dataclass(frozen=True)
class _Route:
    pool: Any              # the urllib3 connection pool requests resolved for this origin
    target: str            # what goes on the request line: path and query
    headers: dict[str, str]  # the session's own (User-Agent, Accept-Encoding, ...)
    retries: Any             # the adapter's: none, as for every other request of this session

    def send(self, headers: dict[str, str], timeout: tuple[float, float]) -> Reply:
        resp = self.pool.urlopen(
            "GET", self.target, headers={**self.headers, **headers}, body=None, redirect=False,
            assert_same_host=False, retries=self.retries, preload_content=True, decode_content=True,
            timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
        )
        return Reply(resp.status, resp.headers, resp.data)


class PollingSession(requests.Session):
    _ROUTES_MAX = 16  # recently-played's `before` cursor varies: keep the cache small

    def __init__(self) -> None:
        super().__init__()
        self._routes: dict[tuple[str, Any], _Route | None] = {}

    def fast_get(self, url: str, *, params: dict[str, Any], headers: dict[str, str],
                 timeout: tuple[float, float]) -> Reply | requests.Response:
        key = (url, tuple(params.items()))
        try:
            hash(key)
        except TypeError:  # a list among the params: requests encodes those
            return self.get(url, params=params, headers=headers, timeout=timeout)
        route = self._routes[key] if key in self._routes else self._route(url, params, key)
        if route is None or self.cookies:
            return self.get(url, params=params, headers=headers, timeout=timeout)
        try:
            try:
                reply = route.send(headers, timeout)
            except urllib3.exceptions.ClosedPoolError:
                # requests' pool manager closed this pool to make room for another origin's: the
                # next pool it hands out for this URL is a new one.
                route = self._route(url, params, key)
                assert route is not None
                reply = route.send(headers, timeout)
        except urllib3.exceptions.HTTPError as exc:
            raise _as_requests_error(exc) from exc
        if 300 <= reply.status_code < 400 and "location" in reply.headers:
            # The Web API does not redirect, but something in front of a self-set SPOTIFY_API_URL
            # may: follow it as requests does (it drops Authorization on a change of host).
            return self.get(url, params=params, headers=headers, timeout=timeout)
        return reply

    def _route(self, url: str, params: dict[str, Any], key: tuple[str, Any]) -> _Route | None:
        """The pool requests would send this GET through, and the request line it would send
        (requests encodes the query); None when a proxy applies (requests then does the whole
        work, proxy headers and all)."""
        settings = self.merge_environment_settings(url, {}, None, None, None)
        route = None
        if select_proxy(url, settings["proxies"]) is None:
            prepared = requests.Request("GET", url, params=params).prepare()
            adapter = self.get_adapter(url)
            assert isinstance(adapter, requests.adapters.HTTPAdapter)  # make_session mounts only these
            pool = adapter.get_connection_with_tls_context(prepared, settings["verify"], None, settings["cert"])
            # What HTTPAdapter.send does next: since requests 2.32.5 this is where the pool gets
            # certifi's bundle (or REQUESTS_CA_BUNDLE's); without it urllib3 would trust the
            # system store instead.
            adapter.cert_verify(pool, prepared.url, settings["verify"], settings["cert"])
            parts = urlsplit(str(prepared.url))
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            headers = {str(k): str(v) for k, v in self.headers.items()}
            route = _Route(pool, target, headers, adapter.max_retries)
        if len(self._routes) >= self._ROUTES_MAX:
            self._routes.clear()
        self._routes[key] = route
        return route


def make_session() -> PollingSession:
    session = PollingSession()
    session.headers["User-Agent"] = "spotify-logger"
    # Neither the Web API nor the token endpoint needs a cookie, and a cookie kept from any
    # answer would send every later poll the slow way round (fast_get stands aside for them).
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    # Keep-alive: one TLS handshake per connection, not per poll (a Pi notices the difference).
    # Two pools, the API's and the token endpoint's, so an hourly refresh does not close the API's.
    adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=2, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
