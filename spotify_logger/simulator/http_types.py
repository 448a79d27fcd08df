"""Transport-neutral request/response values shared by the router, handlers and faults."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

HTTP_REASONS = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Service not found",
    405: "Method not allowed", 429: "API rate limit exceeded", 500: "Server error",
    502: "Bad gateway", 503: "Service unavailable", 504: "Gateway timeout",
}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]  # keys lower-cased
    body: bytes = b""
    params: tuple[str, ...] = ()  # groups captured by the route pattern

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(payload).encode("utf-8"), headers=headers or {})


def api_error(status: int, message: str | None = None, reason: str | None = None,
              headers: dict[str, str] | None = None) -> Response:
    """The Web API's error shape: {"error": {"status", "message"[, "reason"]}}."""
    error: dict[str, Any] = {"status": status, "message": message or HTTP_REASONS.get(status, "")}
    if reason:
        error["reason"] = reason
    return json_response(status, {"error": error}, headers)


def oauth_error(status: int, error: str, description: str) -> Response:
    """The accounts service's error shape, which differs from the Web API's."""
    return json_response(status, {"error": error, "error_description": description})


def no_content() -> Response:
    return Response(204, b"", content_type="")
