"""Access tokens: hands out a valid one, refreshing ahead of expiry and on demand.

A refresh answer may carry a new refresh token, and for PKCE clients the old one may be
single-use. The new pair is therefore on disk (fsync'd) before the new access token is used:
a crash in between can never leave only a spent refresh token behind.

Refresh tokens die 6 months after the user authorized; from 5 months on, a warning is logged
once a day so the user re-authorizes before the poller stops with `invalid_grant`.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import requests

from .config import Settings
from .errors import InvalidClient, InvalidGrant, TransientApiError
from .logs import get_logger
from .tokenstore import REFRESH_TOKEN_LIFETIME_S, Tokens, TokenStore

if TYPE_CHECKING:
    from .budget import RequestBudget

log = get_logger(__name__)

REFRESH_AHEAD_S = 60.0
OLD_TOKEN_WARN_EVERY_S = 86400.0


class Authenticator:
    def __init__(self, settings: Settings, store: TokenStore, session: requests.Session,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.session = session
        self.clock = clock
        self._tokens: Tokens | None = None
        self._file_id: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._old_warned_at: float | None = None
        self._reauth_logged = False
        # Token endpoint calls are outside the Web API quota, but shown in `status`: counted here.
        self.budget: RequestBudget | None = None

    @property
    def tokens(self) -> Tokens:
        # `spotify-logger auth` may replace the file while we run: adopt the new grant, or the
        # next refresh would overwrite it with the old one (which then dies at 6 months).
        file_id = self.store.file_id()
        if self._tokens is None or (file_id is not None and file_id != self._file_id):
            replaced = self._tokens is not None
            self._tokens = self.store.load()
            self._file_id = file_id
            if replaced:
                self._old_warned_at, self._reauth_logged = None, False
                log.info("token_file_reloaded", authorized_at=self._tokens.authorized_at)
        return self._tokens

    def access_token(self) -> str:
        with self._lock:
            tokens = self.tokens
            self._warn_if_old(tokens)
            if self._fresh(tokens):
                return tokens.access_token  # type: ignore[return-value]
            return self._refresh_locked(rejected=None)

    def refresh(self) -> str:
        """A new access token, because the API rejected the current one (401)."""
        with self._lock:
            return self._refresh_locked(rejected=self.tokens.access_token)

    def _fresh(self, tokens: Tokens) -> bool:
        return bool(tokens.access_token) and tokens.expires_at - self.clock() > REFRESH_AHEAD_S

    def _refresh_locked(self, rejected: str | None) -> str:
        # The poller, `backfill` and `playlist` share the token file. With rotating refresh tokens,
        # two concurrent refreshes would spend the same single-use token and one would get
        # invalid_grant, so refreshes are serialised across processes, and a process that waited
        # adopts the token the other one just saved instead of refreshing again.
        with self.store.refresh_lock():
            tokens = self.tokens
            if tokens.access_token != rejected and self._fresh(tokens):
                return tokens.access_token  # type: ignore[return-value]
            return self._refresh_unlocked(tokens)

    def _refresh_unlocked(self, tokens: Tokens) -> str:
        try:
            body = self.token_request({"grant_type": "refresh_token", "refresh_token": tokens.refresh_token})
        except InvalidGrant:
            if not self._reauth_logged:  # one clear event, however many callers hit it
                self._reauth_logged = True
                log.error("reauthorization_required", reason="invalid_grant",
                          authorized_at=tokens.authorized_at,
                          action="run `spotify-logger auth`, then start the poller again")
            raise
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise TransientApiError("token endpoint answered without an access_token")
        now = self.clock()
        rotated = body.get("refresh_token")
        updated = tokens.with_refresh(
            access_token=access, expires_at=now + expires_in_s(body.get("expires_in")),
            refresh_token=rotated if isinstance(rotated, str) and rotated else None,
            scope=body.get("scope") if isinstance(body.get("scope"), str) else None, now=now,
        )
        if self.store.file_id() != self._file_id:
            # `spotify-logger auth` replaced the file while this refresh was in flight: the new
            # grant wins. Use this access token (it is valid) but never save the old grant over it.
            self._tokens = None
            log.info("token_file_replaced_during_refresh")
            return access
        # Durable first (atomic replace + fsync): if this raises, the new access token is never used.
        self.store.save(updated)
        self._tokens, self._file_id = updated, self.store.file_id()
        log.info("token_refreshed", rotated=bool(rotated), expires_in=int(updated.expires_at - now))
        return access

    def _warn_if_old(self, tokens: Tokens) -> None:
        now = self.clock()
        age = tokens.age_s(now)
        if age is None or not tokens.is_old(now):
            return
        if self._old_warned_at is not None and now - self._old_warned_at < OLD_TOKEN_WARN_EVERY_S:
            return
        self._old_warned_at = now
        log.warning("token_old", age_days=round(age / 86400, 1), authorized_at=tokens.authorized_at,
                    expires_around=tokens.authorized_at + REFRESH_TOKEN_LIFETIME_S if tokens.authorized_at else None,
                    action="run `spotify-logger auth` before Spotify ends it, 6 months after authorization")

    def token_request(self, form: dict[str, str]) -> dict[str, Any]:
        """POST to the accounts token endpoint, with Basic auth or (PKCE) client_id in the form."""
        client_id = self.settings.require_client_id()
        auth = None
        if self.settings.client_secret:
            auth = (client_id, self.settings.client_secret)
        else:
            form = {**form, "client_id": client_id}
        if self.budget is not None:
            self.budget.note()
        try:
            resp = self.session.post(
                f"{self.settings.accounts_url}/api/token", data=form, auth=auth,
                timeout=(self.settings.connect_timeout, self.settings.read_timeout),
            )
        except requests.RequestException as exc:
            raise TransientApiError(f"token endpoint unreachable: {type(exc).__name__}") from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise TransientApiError("token endpoint answered with a body that is not JSON", status=resp.status_code)
        error = body.get("error")
        if resp.status_code >= 500 or resp.status_code == 429:
            raise TransientApiError(f"token endpoint answered {resp.status_code}", status=resp.status_code)
        if error == "invalid_grant":
            raise InvalidGrant(
                "Spotify refused the refresh token (revoked, expired after 6 months, or already "
                "used): run `spotify-logger auth` to authorize again"
            )
        if error == "invalid_client":
            setting = "SPOTIFY_CLIENT_SECRET" if self.settings.client_secret else "SPOTIFY_CLIENT_ID"
            raise InvalidClient(f"Spotify rejected the client credentials: check {setting} (and SPOTIFY_CLIENT_ID)")
        if resp.status_code != 200 or error:
            raise TransientApiError(f"token endpoint answered {resp.status_code} {error or ''}".strip(),
                                    status=resp.status_code)
        return body


def expires_in_s(value: Any) -> float:
    """`expires_in` of a token answer, in seconds; an hour when absent or nonsense."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 3600.0
