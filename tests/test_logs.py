"""Secrets never reach a log line, whatever field or text they hide in."""

from __future__ import annotations

import io
import json

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
