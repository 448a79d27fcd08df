"""structlog set-up: JSON lines off a TTY, a readable console on one, secrets always redacted."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, MutableMapping, TextIO

import structlog

REDACTED = "[redacted]"

# Keys whose values are secrets wherever they appear in an event.
_SECRET_KEY = re.compile(r"(token|secret|password|authorization|auth_header|verifier|^code$)", re.I)
# Secrets embedded in free text: bearer tokens, basic auth, form fields, the user:password of
# any URL (REDIS_URL's, and SPOTIFY_API_URL's in poller_started).
_SECRET_TEXT = [
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    (re.compile(r"(?i)((?:access_token|refresh_token|client_secret|code_verifier|code)=)[^&\s\"']+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(\"(?:access_token|refresh_token|client_secret)\"\s*:\s*\")[^\"]*"), r"\1" + REDACTED),
    # user:password@, up to the last @ (a password may hold an unescaped / or @: better to hide a
    # host with it than to show half a password), then a bare user@, which is often a token.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@:\"'<>]*:[^\s\"'<>]*@"), r"\1" + REDACTED + "@"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@\"'<>]+@"), r"\1" + REDACTED + "@"),
]


# Every pattern above needs one of these to match: text without any (most of it: event names,
# uris, titles, timestamps) skips the substitutions, two thirds of a log line's cost.
_MIGHT_HOLD_SECRET = re.compile(r"(?i)bearer|basic|=|token|secret|@")


def redact_text(text: str) -> str:
    if not _MIGHT_HOLD_SECRET.search(text):
        return text
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key) and value not in (None, "", False):
        # `token_present: true` style flags are fine; anything else under a secret name is not.
        return value if isinstance(value, bool) else REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(key, v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    # An exception, a Path, a URL object: the renderer would print its str() unredacted.
    text = str(value)
    redacted = redact_text(text)
    return value if redacted == text else redacted


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the last line of defence, so a careless field cannot leak a token."""
    for key in list(event_dict):
        event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def configure(log_format: str = "json", *, stream: TextIO | None = None, level: int = logging.INFO) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # One write() per line: with PYTHONUNBUFFERED, print() writes the text and the newline
        # separately, and lines of run.py and the poller sharing a journal could interleave.
        logger_factory=structlog.WriteLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
