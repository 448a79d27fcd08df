"""The one-time authorization: Authorization Code with PKCE (S256), or with the client secret.

This module builds the /authorize URL, turns what comes back (a callback query, a pasted URL or
a bare code) into an authorization code, and exchanges that code for tokens. How the answer
arrives (callback server, paste, or both racing) lives in callback.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests

from .auth import Authenticator, expires_in_s
from .config import Settings
from .errors import AuthError, BadInput, ConfigError, InvalidGrant
from .tokenstore import Tokens, TokenStore

DEFAULT_SCOPES = (
    "user-read-playback-state", "user-read-currently-playing", "user-read-recently-played",
    "playlist-modify-private", "playlist-modify-public",
)
REDIRECT_RULE = (
    "Spotify accepts only https:// redirect URIs, or http:// with a loopback IP literal such as "
    "http://127.0.0.1:8888/callback or http://[::1]:8888/callback ('localhost' is rejected). "
    "Register the same URI in your app's settings on https://developer.spotify.com/dashboard"
)
_CODE_CHARS = re.compile(r"^[A-Za-z0-9._~-]+$")


class StateMismatch(BadInput):
    """An answer whose `state` is not ours: from another attempt, or forged. Refused."""


class AuthorizationDenied(AuthError):
    """Spotify redirected back with an error (the user declined, or the request was bad)."""


@dataclass(frozen=True)
class Redirect:
    uri: str
    scheme: str
    host: str      # without the brackets of an IPv6 literal
    port: int
    path: str

    @property
    def listenable(self) -> bool:
        """A local callback server can receive it: plain http on a loopback address."""
        return self.scheme == "http"


def check_redirect_uri(uri: str) -> Redirect:
    """Validate SPOTIFY_REDIRECT_URI against Spotify's rule, so a bad one fails here, not in a browser."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"SPOTIFY_REDIRECT_URI={uri!r} has an invalid port") from None
    if parts.scheme == "https" and host:
        return Redirect(uri, "https", host, port or 443, parts.path or "/")
    if parts.scheme != "http" or not host:
        raise ConfigError(f"SPOTIFY_REDIRECT_URI={uri!r} is not usable: {REDIRECT_RULE}")
    if host.lower() == "localhost":
        raise ConfigError(f"SPOTIFY_REDIRECT_URI={uri!r} is refused: {REDIRECT_RULE}")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"SPOTIFY_REDIRECT_URI={uri!r} is refused: plain http is allowed only on a "
                          f"loopback address. {REDIRECT_RULE}")
    return Redirect(uri, "http", host, port or 80, parts.path or "/")


def parse_scopes(values: Iterable[str] | None) -> tuple[str, ...]:
    """--scope may be given several times, each space- or comma-separated; none means the defaults."""
    scopes: list[str] = []
    for value in values or ():
        scopes.extend(s for s in re.split(r"[\s,]+", value) if s and s not in scopes)
    return tuple(scopes) or DEFAULT_SCOPES


@dataclass(frozen=True)
class AuthRequest:
    url: str
    redirect: Redirect
    scopes: tuple[str, ...]
    state: str
    verifier: str | None = None   # PKCE only

    def __repr__(self) -> str:  # the verifier is a secret until the code is exchanged
        return f"AuthRequest(redirect={self.redirect.uri!r}, scopes={self.scopes!r}, pkce={self.verifier is not None})"


def new_request(settings: Settings, scopes: Iterable[str] = DEFAULT_SCOPES) -> AuthRequest:
    client_id = settings.require_client_id()
    redirect = check_redirect_uri(settings.redirect_uri)
    scopes = tuple(scopes)
    state = secrets.token_urlsafe(24)
    query = {"client_id": client_id, "response_type": "code", "redirect_uri": redirect.uri,
             "scope": " ".join(scopes), "state": state}
    verifier = None
    if settings.uses_pkce:
        # RFC 7636: 43-128 unreserved characters; token_urlsafe(64) gives 86.
        verifier = secrets.token_urlsafe(64)
        query.update(code_challenge_method="S256", code_challenge=s256(verifier))
    url = f"{settings.accounts_url}/authorize?{urlencode(query)}"
    return AuthRequest(url, redirect, scopes, state, verifier)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def code_from_params(params: Mapping[str, str], request: AuthRequest) -> str:
    """The code of a redirect's query, once its state proves it answers our request."""
    if not hmac.compare_digest(params.get("state", ""), request.state):
        raise StateMismatch(
            "refused an answer whose state does not match this authorization attempt "
            "(from an older attempt, or not from Spotify); use the URL printed by this run"
        )
    error = params.get("error")
    if error:
        hint = " (you declined)" if error == "access_denied" else ""
        raise AuthorizationDenied(f"Spotify answered error={error}{hint}: run `spotify-logger auth` again")
    code = params.get("code", "")
    if not code:
        raise BadInput("the redirect carries no code")
    return code


def code_from_paste(text: str, request: AuthRequest) -> str | None:
    """A pasted redirect URL (state checked) or a bare code; None for an empty line."""
    text = text.strip().strip("'\"<>")
    if not text:
        return None
    if "://" in text or "=" in text:
        # A whole URL, or only its query part ("code=...&state=...").
        query = text.split("?", 1)[1] if "?" in text else ("" if "://" in text else text)
        params = dict(parse_qsl(query.split("#", 1)[0], keep_blank_values=True))
        if not params.get("code") and not params.get("error"):
            raise BadInput("that URL carries no code: paste the whole address your browser was sent to")
        return code_from_params(params, request)
    if not _CODE_CHARS.match(text):
        raise BadInput("that is neither the redirected URL nor a code: paste the whole address from the browser")
    # A bare code has no state to check; it was copied by the user, and PKCE binds it to us anyway.
    return text


def exchange_code(settings: Settings, request: AuthRequest, code: str, *,
                  session: requests.Session | None = None,
                  clock: Callable[[], float] = time.time) -> Tokens:
    """POST the code to the token endpoint; the answer becomes a Tokens with authorized_at = now."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": request.redirect.uri}
    if request.verifier is not None:
        form["code_verifier"] = request.verifier
    auth = Authenticator(settings, TokenStore(settings.token_file), session or requests.Session())
    try:
        body = auth.token_request(form)
    except InvalidGrant:
        raise AuthError(
            "Spotify refused the authorization code (it expired, was already used, or the redirect "
            "URI does not match the one registered): run `spotify-logger auth` again"
        ) from None
    refresh, access = body.get("refresh_token"), body.get("access_token")
    if not isinstance(refresh, str) or not refresh or not isinstance(access, str) or not access:
        raise AuthError("the token endpoint answered without a refresh token: run `spotify-logger auth` again")
    now = clock()
    scope = body.get("scope") if isinstance(body.get("scope"), str) else " ".join(request.scopes)
    return Tokens(refresh_token=refresh, access_token=access, expires_at=now + expires_in_s(body.get("expires_in")),
                  scope=scope, authorized_at=now, refreshed_at=now)


def missing_scopes(tokens: Tokens, request: AuthRequest) -> list[str]:
    granted = set((tokens.scope or "").split())
    return [s for s in request.scopes if s not in granted]
