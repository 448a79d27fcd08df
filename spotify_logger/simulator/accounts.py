"""Handlers for the accounts service: POST /api/token and GET /authorize."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from .http_types import Request, Response, json_response, oauth_error
from .oauth import OAuthError

if TYPE_CHECKING:
    from .simulator import SpotifySimulator


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.header("authorization") or ""
    if not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ("", "")
    client_id, _, secret = decoded.partition(":")
    return client_id, secret


def _check_client(sim: SpotifySimulator, request: Request, form: dict[str, str]) -> None:
    basic = _basic_credentials(request)
    status = 401 if basic is not None else 400
    if sim.client_secret is None:
        # A PKCE (public) client names itself in the body and has no secret to check.
        ok = basic is None and hmac.compare_digest(form.get("client_id", ""), sim.client_id)
    else:
        client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        ok = hmac.compare_digest(client_id, sim.client_id) \
            and hmac.compare_digest(secret, sim.client_secret)
    if not ok:
        raise OAuthError(status, "invalid_client", "Invalid client")


def _required(form: dict[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise OAuthError(400, "invalid_request", f"{name} must be supplied")
    return value


def post_token(sim: SpotifySimulator, request: Request) -> Response:
    form = request.form()
    try:
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError(400, "unsupported_grant_type", "grant_type parameter is missing")
        if grant_type == "refresh_token":
            token = _required(form, "refresh_token")
            _check_client(sim, request, form)
            answer = sim.tokens.refresh(token)
        elif grant_type == "authorization_code":
            code = _required(form, "code")
            redirect_uri = _required(form, "redirect_uri")
            _check_client(sim, request, form)
            answer = sim.tokens.exchange_code(code, redirect_uri, form.get("code_verifier"))
        else:
            raise OAuthError(400, "unsupported_grant_type",
                             "grant_type must be client_credentials, authorization_code "
                             "or refresh_token")
    except OAuthError as exc:
        return oauth_error(exc.status, exc.error, exc.description)
    return json_response(200, answer)


def _html(status: int, text: str) -> Response:
    page = f"<!DOCTYPE html><html><body><p>{text}</p></body></html>"
    return Response(status, page.encode("utf-8"), content_type="text/html; charset=utf-8")


def _redirect(redirect_uri: str, params: dict[str, str]) -> Response:
    separator = "&" if "?" in redirect_uri else "?"
    location = redirect_uri + separator + urlencode(params)
    return Response(302, b"", content_type="", headers={"Location": location})


def get_authorize(sim: SpotifySimulator, request: Request) -> Response:
    query = request.query
    if query.get("client_id") != sim.client_id:
        return _html(400, "INVALID_CLIENT: Invalid client")
    redirect_uri = query.get("redirect_uri", "")
    if redirect_uri not in sim.redirect_uris:
        return _html(400, "INVALID_CLIENT: Invalid redirect URI")
    state = {"state": query["state"]} if "state" in query else {}
    if query.get("response_type") != "code":
        return _redirect(redirect_uri, {"error": "unsupported_response_type", **state})
    challenge = query.get("code_challenge")
    if challenge is not None and query.get("code_challenge_method") != "S256":
        return _redirect(redirect_uri, {"error": "invalid_request", **state})
    if challenge is None and sim.client_secret is None:
        # Without a secret the only proof of the client is PKCE, so Spotify requires it.
        return _redirect(redirect_uri, {"error": "invalid_request", **state})
    if not sim.auto_approve:
        return _redirect(redirect_uri, {"error": "access_denied", **state})
    scope = query.get("scope", "")  # granted as asked; no scope means public data only
    code = sim.tokens.create_code(redirect_uri, scope, challenge)
    return _redirect(redirect_uri, {"code": code, **state})
