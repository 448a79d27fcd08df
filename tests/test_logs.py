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


def test_userinfo_of_every_url_is_redacted_whatever_the_field() -> None:
    """poller_started logged SPOTIFY_API_URL with its user:password (issue 17, item 8)."""
    line = render(api_url="http://user:pw-1@api.example:8080/v1", nested={"to": ["https://TOKEN-2@host/x"]},
                  error=ValueError("GET http://u:pw-3@h/v1 failed"), note="see ftp://anon:p@ss-4@files/x and more",
                  redis="redis://:pa/ss-5@localhost:6379/0")
    for secret in ("pw-1", "TOKEN-2", "pw-3", "ss-4", "ss-5"):
        assert secret not in line
    event = json.loads(line)
    assert event["api_url"] == "http://[redacted]@api.example:8080/v1" and "and more" in event["note"]
    plain = "https://api.spotify.com/v1/me/player?market=from_token"
    assert json.loads(render(url=plain))["url"] == plain  # a URL without userinfo is left alone


@given(st.sampled_from(["http", "https", "redis", "rediss", "unix", "git+ssh"]),
       st.text(alphabet="abcxyz019._-", max_size=8),
       st.text(alphabet=st.characters(blacklist_characters="\"'<>", blacklist_categories=("Zs", "Zl", "Zp", "Cc")),
               max_size=12),
       st.sampled_from(["", "prefix ", "error: ", "{'url': '"]), st.sampled_from(["", "/v1", ":6379/0", " then text"]))
def test_no_password_of_a_url_survives(scheme: str, user: str, password: str, before: str, after: str) -> None:
    text = f"{before}{scheme}://{user}:SECRET{password}@example.org{after}"
    redacted = logs.redact_text(text)
    assert "SECRET" not in redacted and redacted == f"{before}{scheme}://{logs.REDACTED}@example.org{after}"
