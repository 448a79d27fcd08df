"""Secrets never reach a log line, whatever field or text they hide in."""

from __future__ import annotations

import io
import json

from hypothesis import given
from hypothesis import strategies as st

from spotify_logger import logs


def render(**fields: object) -> str:
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    logs.get_logger("test").info("some_event", **fields)
    return stream.getvalue()


def test_secret_fields_are_redacted() -> None:
    line = render(access_token="AT-1", refresh_token="RT-2", client_secret="CS-3", authorization="Bearer AT-4",
                  password="pw-5", headers={"Authorization": "Basic Zm9vOmJhcg=="}, token_present=True)
    for secret in ("AT-1", "RT-2", "CS-3", "AT-4", "pw-5", "Zm9vOmJhcg=="):
        assert secret not in line
    event = json.loads(line)
    assert event["event"] == "some_event" and event["token_present"] is True


def test_secrets_inside_free_text_are_redacted() -> None:
    line = render(error="POST failed: refresh_token=RT-9&client_id=x; header Bearer AT-8",
                  url="redis://:hunter2@localhost:6379/0", body='{"access_token": "AT-7", "expires_in": 3600}')
    for secret in ("RT-9", "AT-8", "hunter2", "AT-7"):
        assert secret not in line
    assert "client_id=x" in line and "localhost:6379" in line and "3600" in line


def test_json_lines_have_level_and_timestamp() -> None:
    event = json.loads(render(uri="spotify:track:x"))
    assert event["level"] == "info" and "timestamp" in event and event["uri"] == "spotify:track:x"


FRAGMENTS = ["Bearer ", "bAsIc ", "access_token=", "CODE=", "code_verifier=", '"refresh_token": "', '"client_secret":"',
             "redis://", "rediss://user:", "@", "=", "&", " ", "x", "AT-1", "Token", "secret", "é", '"', ":"]


@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)), max_size=12).map("".join))
def test_the_quick_check_never_lets_through_what_the_patterns_would_redact(text: str) -> None:
    every_pattern = text
    for pattern, replacement in logs._SECRET_TEXT:  # noqa: SLF001 - the reference the shortcut must match
        every_pattern = pattern.sub(replacement, every_pattern)
    assert logs.redact_text(text) == every_pattern
