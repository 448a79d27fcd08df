"""SpotifySimulator: the Web API and accounts service on one loopback HTTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from types import TracebackType

from .faults import Fault, FaultQueue, RateLimitWindow, fault_response, rate_limited
from .http_types import Request, Response, api_error
from .items import Item
from .oauth import DEFAULT_SCOPE, TokenStore
from .playback import context_uri_for
from .playlists import Playlists
from .quota import AppLimits, QuotaRule
from .recent import FEED_SIZE, History, HistoryEntry, newest_first
from .reqlog import RecordedRequest, RequestLog, redact
from . import routes
from .script import Script
from .server import HttpServer
from .timeline import EndedPlay, PlayerState, Timeline


class SpotifySimulator:
    def __init__(
        self,
        script: Script | None = None,
        *,
        client_id: str = "sim-client",
        client_secret: str | None = None,
        refresh_token: str = "sim-refresh-0",
        access_token_ttl_s: float = 3600,
        rotate_refresh_tokens: bool = False,
        recent_min_ms: int = 30000,
        clock: Callable[[], float] = time.time,
        redirect_uris: Iterable[str] = ("http://127.0.0.1:8888/callback",),
        auto_approve: bool = True,
        port: int = 0,
        quota: QuotaRule | str | None = None,
        burst: QuotaRule | int | None = None,
    ) -> None:
        """quota: the app's rolling request quota (`"1000/86400"`), answered with QUOTA_EXCEEDED;
        burst: requests per rolling 30 s (or a QuotaRule), answered with a plain 429. Both off
        by default; both in simulator-clock seconds (see quota.py for compressed time)."""
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = tuple(redirect_uris)
        self.auto_approve = auto_approve
        self.recent_min_ms = recent_min_ms
        self.clock = clock
        self.tokens = TokenStore(clock, refresh_token, access_token_ttl_s, rotate_refresh_tokens)
        self.playlists = Playlists()  # the user's playlists, for the playlist endpoints and tests
        self._faults = FaultQueue()
        self._window = RateLimitWindow()
        self.limits = AppLimits(quota, burst)
        self._log = RequestLog()
        self._history = History()
        self._lock = threading.Lock()
        self._timeline = Timeline(script or Script())
        self._start_ms: int | None = None
        self._port = port
        self._server: HttpServer | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, port: int | None = None) -> SpotifySimulator:
        """Serve on 127.0.0.1; a restart after stop() reuses the port so clients reconnect."""
        if self._server is None:
            self._server = HttpServer(self._port if port is None else port, self._handle)
            self._port = self._server.port
            self._server.start()
        with self._lock:
            if self._start_ms is None:
                self._start_ms = self._now_ms()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> SpotifySimulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if not self._port:
            raise RuntimeError("the simulator has no port until start()")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def accounts_url(self) -> str:
        return self.base_url

    # --- timeline and history --------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(round(self.clock() * 1000))

    @property
    def script(self) -> Script:
        return self._timeline.script

    def restart_timeline(self, at: float | None = None) -> None:
        """Start the script again at clock time `at` (default now)."""
        self.load_script(self._timeline.script, at)

    def load_script(self, script: Script, at: float | None = None) -> None:
        """Replace the script; plays of the old timeline stay in the recently-played feed."""
        now = self._now_ms()
        with self._lock:
            if self._start_ms is not None:
                self._history.add(*self._ended(self._timeline, self._start_ms, now, cut=True))
            self._timeline = Timeline(script)
            if at is not None:
                self._start_ms = int(round(at * 1000))
            elif self._start_ms is not None:
                self._start_ms = now  # before start() the clock starts with start()

    def playback_now(self) -> tuple[PlayerState, int] | None:
        """The current state and its `timestamp` (epoch ms), or None when nothing is loaded."""
        now = self._now_ms()
        with self._lock:
            timeline, start = self._timeline, self._start_ms
        if start is None:
            return None
        state = timeline.state_at(now - start)
        return None if state is None else (state, start + state.changed_at)

    def _listed(self, play: EndedPlay) -> bool:
        # The real feed lists only tracks heard long enough, and never private sessions.
        return (play.play.item.kind == "track" and not play.play.private
                and play.listened_ms > self.recent_min_ms)

    def _ended(self, timeline: Timeline, start: int, now: int, cut: bool) -> list[HistoryEntry]:
        plays = timeline.ended_plays(now - start, self._listed, FEED_SIZE, cut)
        return [HistoryEntry(p.play.item, start + p.ended_at + p.play.played_at_offset_ms,
                             context_uri_for(p.play, timeline.script.context_uri))
                for p in plays]

    def recently_played(self) -> list[HistoryEntry]:
        """The feed as the API would list it now: newest first, at most FEED_SIZE (50)."""
        now = self._now_ms()
        with self._lock:
            timeline, start = self._timeline, self._start_ms
        live = [] if start is None else self._ended(timeline, start, now, cut=False)
        return newest_first(self._history.entries() + live)

    def add_history(self, item: Item, played_at_ms: int, context_uri: str | None = None) -> None:
        self._history.add(HistoryEntry(item, int(played_at_ms), context_uri))

    # --- accounts ------------------------------------------------------------------------

    def expire_access_tokens(self) -> None:
        self.tokens.expire_access_tokens()

    def revoke_refresh_tokens(self) -> None:
        self.tokens.revoke_refresh_tokens()

    def issue_access_token(self, scope: str = DEFAULT_SCOPE) -> str:
        """A valid token without the token endpoint, for tests of other modules."""
        return self.tokens.issue_access_token(scope)

    @property
    def current_refresh_token(self) -> str:
        return self.tokens.current_refresh_token

    def issued_secrets(self) -> set[str]:
        return self.tokens.issued_secrets()

    @property
    def issued_access_tokens(self) -> int:
        return self.tokens.issued_access_tokens

    @property
    def granted_scope(self) -> str | None:
        return self.tokens.granted_scope

    # --- faults and the request log ------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        self._faults.inject(*faults)

    def faults_pending(self) -> list[Fault]:
        return self._faults.pending()

    def rate_limit_for(self, seconds: float, *, extend_on_violation_s: float = 0.0) -> None:
        self._window.start(self.clock(), seconds, extend_on_violation_s)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._log.requests

    def requests_to(self, path_prefix: str) -> list[RecordedRequest]:
        return [r for r in self._log.requests if r.path.startswith(path_prefix)]

    @property
    def violations(self) -> list[RecordedRequest]:
        return self._log.violations

    @property
    def requests_during_retry_after(self) -> list[RecordedRequest]:
        """Web API requests sent before a Retry-After (any 429's) had passed: 0 for a polite client."""
        return self._log.during_retry_after

    def clear_requests(self) -> None:
        self._log.clear()

    # --- request handling (server threads) -----------------------------------------------

    def _handle(self, request: Request) -> Response | None:
        now = self.clock()
        authorized = self.tokens.bearer_problem(request.header("authorization")) is None
        api = request.path.startswith("/v1/")
        during = api and self.limits.during_retry_after(now)
        response, fault, violation = self._answer(request, now)
        status = 0 if response is None else response.status
        if api and response is not None:
            self.limits.told(response, now)
        record = RecordedRequest(now, request.method, request.path, redact(request.query),
                                 status, authorized, fault, during)
        self._log.add(record, violation)
        return response

    def _answer(self, request: Request, now: float) -> tuple[Response | None, str | None, bool]:
        if request.path.startswith("/v1/"):
            window = self._window.check(now)
            if window is not None:
                return rate_limited(window[0], now), "rate_limit_window", window[1]
            limited = self.limits.check(now)
            if limited is not None:
                return limited[0], limited[1], False
        fault = self._faults.take(request.path)
        if fault is None:
            return self._route(request), None, False
        if fault.kind == "reset":
            return None, fault.kind, False
        if fault.kind == "slow":
            time.sleep(fault.delay_s)
            return self._route(request), fault.kind, False
        return fault_response(fault, now), fault.kind, False

    def _route(self, request: Request) -> Response:
        match = routes.match(request.method, request.path)
        if match.route is None:
            return api_error(405 if match.path_known else 404)
        if match.route.auth:
            problem = self.tokens.bearer_problem(request.header("authorization"))
            if problem is not None:
                challenge = f'Bearer realm="spotify", error="invalid_token", ' \
                            f'error_description="{problem}"'
                return api_error(401, problem, headers={"WWW-Authenticate": challenge})
        try:
            return match.route.handler(self, replace(request, params=match.params))
        except Exception:  # a handler bug must not kill the server thread's connection
            return api_error(500)
