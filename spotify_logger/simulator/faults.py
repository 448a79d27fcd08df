"""Injected faults and the rate-limit penalty window: what makes a client's error paths run."""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, replace
from email.utils import formatdate, parsedate_to_datetime
from typing import Any, Literal, get_args

from .http_types import Response, api_error, json_response

FaultKind = Literal["status", "rate_limit", "not_json", "slow", "reset"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

PREMIUM_REQUIRED_BODY = {"error": {"status": 403,
                                   "message": "Player command failed: Premium required",
                                   "reason": "PREMIUM_REQUIRED"}}
USER_NOT_REGISTERED_BODY = {"error": {"status": 403, "message": (
    "Check settings on developer.spotify.com/dashboard, the user may not be registered.")}}
NOT_JSON_BODY = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
                 b"<body><h1>Bad Gateway</h1><p>upstream connect error</p></body></html>")


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    path: str = "/v1/"  # prefix of the request paths it applies to
    count: int = 1  # how many matching requests it affects
    status: int = 503
    retry_after: float = 1
    retry_after_http_date: bool = False
    delay_s: float = 0.0
    body: bytes | str | dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.count < 1:
            raise ValueError("count must be at least 1")

    @classmethod
    def premium_required(cls, path: str = "/v1/", count: int = 1) -> Fault:
        return cls("status", path, count, status=403, body=PREMIUM_REQUIRED_BODY)

    @classmethod
    def user_not_registered(cls, path: str = "/v1/", count: int = 1) -> Fault:
        return cls("status", path, count, status=403, body=USER_NOT_REGISTERED_BODY)


class FaultQueue:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Fault] = []

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self._pending.extend(faults)

    def take(self, path: str) -> Fault | None:
        """The first queued fault matching `path`, using up one of its count."""
        with self._lock:
            for index, fault in enumerate(self._pending):
                if path.startswith(fault.path):
                    if fault.count == 1:
                        del self._pending[index]
                    else:
                        self._pending[index] = replace(fault, count=fault.count - 1)
                    return fault
        return None

    def pending(self) -> list[Fault]:
        """Faults not yet used up, with their remaining counts."""
        with self._lock:
            return list(self._pending)


class RateLimitWindow:
    """A penalty window: every API request inside it gets 429.

    The first 429 tells the client; requests after that, while the penalty lasts, are
    violations (a well-behaved client waits out Retry-After).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = float("-inf")
        self._told = False
        self._extend_s = 0.0

    def start(self, now: float, seconds: float, extend_on_violation_s: float = 0.0) -> None:
        with self._lock:
            self._until = now + seconds
            self._told = False
            self._extend_s = extend_on_violation_s

    def check(self, now: float) -> tuple[float, bool] | None:
        """(seconds left, is a violation) inside the window, else None."""
        with self._lock:
            if now >= self._until:
                return None
            violation = self._told
            if violation:
                # Real Spotify lengthens the penalty for clients that keep calling.
                self._until += self._extend_s
            self._told = True
            return self._until - now, violation


def retry_after_header(seconds: float, now: float, http_date: bool) -> str:
    if http_date:
        return formatdate(now + seconds, usegmt=True)
    return str(max(0, math.ceil(seconds)))


def retry_after_deadline(header: str | None, now: float) -> float:
    """The instant a Retry-After header (delta-seconds or HTTP-date) told the client to wait for."""
    if not header:
        return now
    try:
        return now + float(header)
    except ValueError:
        try:
            return parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError):
            return now


def rate_limited(seconds: float, now: float, http_date: bool = False) -> Response:
    return api_error(429, headers={"Retry-After": retry_after_header(seconds, now, http_date)})


def _override(fault: Fault, status: int) -> Response:
    body = fault.body
    if isinstance(body, dict):
        return json_response(status, body)
    raw = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    try:
        json.loads(raw)
        content_type = "application/json; charset=utf-8"
    except ValueError:
        content_type = "text/plain; charset=utf-8"
    return Response(status, raw, content_type=content_type)


def fault_response(fault: Fault, now: float) -> Response | None:
    """The canned answer for a fault; None for kinds that only alter the normal answer."""
    if fault.kind == "status":
        if fault.body is not None:
            return _override(fault, fault.status)
        return api_error(fault.status)
    if fault.kind == "rate_limit":
        response = rate_limited(fault.retry_after, now, fault.retry_after_http_date)
        if fault.body is not None:
            response = replace(_override(fault, 429), headers=response.headers)
        return response
    if fault.kind == "not_json":
        raw = fault.body if isinstance(fault.body, (bytes, str)) else NOT_JSON_BODY
        raw = raw.encode("utf-8") if isinstance(raw, str) else raw
        return Response(200, raw, content_type="text/html; charset=utf-8")
    return None
