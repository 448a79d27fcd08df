"""Token and authorization-code bookkeeping of the simulated accounts service (thread-safe)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_SCOPE = "user-read-playback-state user-read-currently-playing user-read-recently-played"


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def invalid_grant(description: str) -> OAuthError:
    return OAuthError(400, "invalid_grant", description)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class _Code:
    redirect_uri: str
    scope: str
    challenge: str | None
    used: bool = False


class TokenStore:
    def __init__(self, clock: Callable[[], float], refresh_token: str, ttl_s: float,
                 rotate: bool, scope: str = DEFAULT_SCOPE) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._rotate = rotate
        self._lock = threading.Lock()
        self._access: dict[str, float] = {}  # token -> expiry (clock seconds)
        self._refresh: dict[str, str] = {refresh_token: scope}  # valid token -> scope
        self._current_refresh = refresh_token
        self._ever: set[str] = {refresh_token}  # every token handed out, for leak checks
        self._codes: dict[str, _Code] = {}
        self.issued_access_tokens = 0
        self.granted_scope: str | None = None

    @property
    def current_refresh_token(self) -> str:
        with self._lock:
            return self._current_refresh

    def bearer_problem(self, authorization: str | None) -> str | None:
        """None when the header carries a valid token, else the real API's 401 message."""
        if not authorization or not authorization.startswith("Bearer ") \
                or not authorization[7:].strip():
            return "No token provided"
        with self._lock:
            expiry = self._access.get(authorization[7:].strip())
        if expiry is None:
            return "Invalid access token"
        if self._clock() >= expiry:
            return "The access token expired"
        return None

    def _new_access(self, scope: str) -> dict[str, Any]:
        # Caller holds the lock.
        token = "BQ" + secrets.token_urlsafe(48)
        self._access[token] = self._clock() + self._ttl_s
        self._ever.add(token)
        self.issued_access_tokens += 1
        return {"access_token": token, "token_type": "Bearer", "expires_in": int(self._ttl_s),
                "scope": scope}

    def _new_refresh(self, scope: str) -> str:
        token = "AQ" + secrets.token_urlsafe(64)
        self._refresh[token] = scope
        self._current_refresh = token
        self._ever.add(token)
        return token

    def issued_secrets(self) -> set[str]:
        """Every access and refresh token this server ever handed out (none may reach a log)."""
        with self._lock:
            return set(self._ever)

    def issue_access_token(self, scope: str = DEFAULT_SCOPE) -> str:
        with self._lock:
            return str(self._new_access(scope)["access_token"])

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        with self._lock:
            scope = self._refresh.get(refresh_token)
            if scope is None:
                raise invalid_grant("Invalid refresh token")
            answer = self._new_access(scope)
            if self._rotate:
                # Rotated refresh tokens are single-use, like Spotify's PKCE tokens.
                del self._refresh[refresh_token]
                answer["refresh_token"] = self._new_refresh(scope)
            return answer

    def create_code(self, redirect_uri: str, scope: str, challenge: str | None) -> str:
        code = "AQ" + secrets.token_urlsafe(96)
        with self._lock:
            self._codes[code] = _Code(redirect_uri, scope, challenge)
            self.granted_scope = scope
        return code

    def exchange_code(self, code: str, redirect_uri: str, verifier: str | None) -> dict[str, Any]:
        with self._lock:
            grant = self._codes.get(code)
            if grant is None or grant.used:
                raise invalid_grant("Invalid authorization code")
            # A failed attempt burns the code too, as real authorization servers do.
            grant.used = True
            if redirect_uri != grant.redirect_uri:
                raise invalid_grant("Invalid redirect URI")
            if grant.challenge is not None and (not verifier or s256(verifier) != grant.challenge):
                raise invalid_grant("code_verifier was incorrect")
            answer = self._new_access(grant.scope)
            answer["refresh_token"] = self._new_refresh(grant.scope)
            return answer

    def expire_access_tokens(self) -> None:
        with self._lock:
            self._access = dict.fromkeys(self._access, float("-inf"))

    def revoke_refresh_tokens(self) -> None:
        with self._lock:
            self._refresh.clear()
