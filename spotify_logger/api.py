"""The Spotify Web API client. requests errors stop here and become ApiError subclasses.

Policy, in order: the rate-limit cooldown gates every request; the request budget (budget.py)
counts every HTTP send, retries and the 401 retry included, and refuses one it cannot afford
(BudgetExhausted, nothing sent); a 401 refreshes the token once; transient failures (5xx,
connection errors, timeouts, bodies that are not JSON) are retried by tenacity with bounded
exponential backoff and jitter, then given up for this cycle.

A 429 whose body says `reason: QUOTA_EXCEEDED` is the app's daily quota, not the burst limit:
its deadline goes to the app's shared cooldown with that reason, the budget learns the quota
from it, and QuotaExceeded (a RateLimited) is raised. Any other 429 is the burst limit.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any, Callable

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_when_event_set
from tenacity import wait_exponential, wait_random

from .auth import Authenticator
from .config import Settings
from .cooldown import QUOTA_EXCEEDED, Cooldown, parse_retry_after
from .errors import ApiError, Forbidden, NotFound, QuotaExceeded, RateLimited, TransientApiError, Unauthorized
from .extract import dict_get
from .httpsession import PollingSession, Reply
from .logs import get_logger
from .timeutil import utc_iso

if TYPE_CHECKING:
    from .budget import RequestBudget

log = get_logger(__name__)

PLAYER_PATH = "/me/player"
FORBIDDEN_HINT = (
    "Spotify answered 403 Forbidden: the app's owner needs Spotify Premium, and in development "
    "mode the user must be on the app's allowlist (Dashboard > your app > User Management)"
)
QUOTA_REASON = "QUOTA_EXCEEDED"
# Path segments that are ids (base62 ids, playlist ids): an endpoint's name must not hold them,
# or every playlist would be an endpoint of its own in `status`.
_ID_SEGMENT = re.compile(r"/[0-9A-Za-z]{16,}(?=/|$)")


class SpotifyClient:
    def __init__(self, settings: Settings, auth: Authenticator, cooldown: Cooldown, *,
                 session: requests.Session | None = None, stop: threading.Event | None = None,
                 attempts: int = 4, initial_backoff_s: float = 0.5, max_backoff_s: float = 8.0,
                 budget: RequestBudget | None = None) -> None:
        self.settings = settings
        self.auth = auth
        self.cooldown = cooldown
        self.budget = budget
        self.session = session or auth.session
        self.stop = stop or threading.Event()
        self.attempts = attempts
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.sleep: Callable[[float], Any] = self.stop.wait  # a stop request cuts a backoff short

    def player(self, *, reserve: int = 0) -> dict[str, Any] | None:
        """GET /me/player; None when nothing is playing (204). `reserve`: see request()."""
        return self.request("GET", PLAYER_PATH, params={"additional_types": "track,episode"}, reserve=reserve)

    def recently_played(self, *, limit: int = 50, before: int | None = None, reserve: int = 0) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        return self.request("GET", "/me/player/recently-played", params=params, reserve=reserve) or {}

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json: Any = None, reserve: int = 0) -> Any:
        """`reserve`: refuse (BudgetExhausted, nothing sent) unless this many calls of the budget
        are left after it, so the caller keeps them for something that matters more."""
        retrying = Retrying(
            retry=retry_if_exception_type(TransientApiError),
            stop=stop_after_attempt(self.attempts) | stop_when_event_set(self.stop),
            # Exponential plus jitter, composed from two small strategies (works on tenacity 8 and 9).
            wait=wait_exponential(multiplier=self.initial_backoff_s, max=self.max_backoff_s)
            + wait_random(0, self.initial_backoff_s),
            sleep=self.sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        return retrying(self._send_authorized, method, path, params, json, reserve)

    def _send_authorized(self, method: str, path: str, params: Any, body: Any, reserve: int) -> Any:
        resp = self._send(method, path, params, body, reserve)
        if resp.status_code == 401:
            # The token expired early or was revoked server-side: one refresh, one retry.
            self.auth.refresh()
            resp = self._send(method, path, params, body, reserve)
            if resp.status_code == 401:
                raise Unauthorized(f"401 from {path} even after a token refresh", status=401)
        return self._interpret(path, resp)

    def _send(self, method: str, path: str, params: Any, body: Any, reserve: int = 0) -> requests.Response | Reply:
        self.cooldown.check()
        token = self.auth.access_token()
        if self.budget is not None:
            # After the token: a refusal must not have cost a refresh; before the send: every
            # send, retries included, is a call Spotify counts.
            self.budget.spend(endpoint_name(method, path), reserve=reserve)
        url = f"{self.settings.api_url}{path}"
        headers = {"Authorization": f"Bearer {token}"}
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        try:
            if method == "GET" and body is None and isinstance(self.session, PollingSession):
                return self.session.fast_get(url, params=params or {}, headers=headers, timeout=timeout)
            return self.session.request(method, url, params=params, json=body, headers=headers, timeout=timeout)
        except requests.Timeout:
            raise TransientApiError(f"{path}: timed out") from None
        except requests.RequestException as exc:
            raise TransientApiError(f"{path}: {type(exc).__name__}") from None

    def _interpret(self, path: str, resp: requests.Response | Reply) -> Any:
        status = resp.status_code
        if status == 204:
            return None
        if status == 429:
            seconds = parse_retry_after(resp.headers.get("Retry-After"), self.cooldown.clock())
            if _error_reason(resp) == QUOTA_REASON:
                until = self.cooldown.start(seconds, reason=QUOTA_EXCEEDED)
                if self.budget is not None:
                    self.budget.learn()
                raise QuotaExceeded(f"{path}: Spotify's request quota is spent (QUOTA_EXCEEDED): no call "
                                    f"before {utc_iso(until)}", until=until)
            until = self.cooldown.start(seconds)
            raise RateLimited(f"{path}: rate-limited, Retry-After {seconds:g}s", until=until)
        if status >= 500:
            raise TransientApiError(f"{path}: server error {status}", status=status)
        if status == 403:
            raise Forbidden(f"{FORBIDDEN_HINT} ({_error_message(resp)})", status=403)
        if status == 404:
            raise NotFound(f"{path}: not found", status=404)
        if status >= 400:
            raise ApiError(f"{path}: {status} {_error_message(resp)}", status=status)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise TransientApiError(f"{path}: body is not JSON", status=status) from None


def endpoint_name(method: str, path: str) -> str:
    """How `status` names an endpoint: `GET /me/player`, `PUT /playlists/{id}/items`."""
    return f"{method} {_ID_SEGMENT.sub('/{id}', path)}"


def _error_reason(resp: requests.Response | Reply) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    reason = dict_get(body, "error.reason")
    return str(reason) if reason else None


def _error_message(resp: requests.Response | Reply) -> str:
    try:
        body = resp.json()
    except ValueError:
        return "no error body"
    message = dict_get(body, "error.message")
    return str(message) if message else "no error message"


def _log_retry(state: Any) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("api_retry", attempt=state.attempt_number, error=str(exc),
                sleep_s=round(state.next_action.sleep, 2) if state.next_action else None)
