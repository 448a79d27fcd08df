"""The request log tests assert on. It must never hold a secret: no tokens, codes or headers."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

# Query keys whose values are credentials, should a client ever put them in a URL.
SECRET_KEYS = frozenset({"access_token", "refresh_token", "code", "code_verifier",
                         "client_secret", "token"})
REDACTED = "<redacted>"


@dataclass(frozen=True)
class RecordedRequest:
    t: float  # simulator clock time when received
    method: str
    path: str  # without the query
    query: dict[str, str] = field(default_factory=dict)
    status: int = 0  # 0: the connection was reset without an answer
    authorized: bool = False  # a valid, unexpired Bearer token was presented
    fault: str | None = None  # the injected fault, "rate_limit_window", "quota" or "burst" that answered
    during_retry_after: bool = False  # sent before a Retry-After the simulator had told has passed


def redact(query: dict[str, str]) -> dict[str, str]:
    return {k: (REDACTED if k.lower() in SECRET_KEYS else v) for k, v in query.items()}


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._violations: list[RecordedRequest] = []
        self._during_retry_after: list[RecordedRequest] = []

    def add(self, request: RecordedRequest, violation: bool = False) -> None:
        with self._lock:
            self._requests.append(request)
            if violation:
                self._violations.append(request)
            if request.during_retry_after:
                self._during_retry_after.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def violations(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._violations)

    @property
    def during_retry_after(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._during_retry_after)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._violations.clear()
            self._during_retry_after.clear()
