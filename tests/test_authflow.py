"""`spotify-logger auth` against the simulator over loopback: a real HTTP client (requests) plays
the browser, following the simulator's 302 to the real callback server, or its Location is pasted."""

from __future__ import annotations

import io
import os
import queue
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from conftest import ROOT, env_for

from spotify_logger import cli
from spotify_logger.auth import Authenticator
from spotify_logger.authflow import (DEFAULT_SCOPES, AuthorizationDenied, StateMismatch, check_redirect_uri,
                                     code_from_paste, exchange_code, new_request, parse_scopes, s256)
from spotify_logger.callback import AuthorizationTimeout, Outcome, listen, wait_for_code
from spotify_logger.commands.auth import authorize
from spotify_logger.config import Settings
from spotify_logger.errors import AuthError, BadInput, ConfigError
from spotify_logger.redisproc import free_port
from spotify_logger.simulator import SpotifySimulator
from spotify_logger.tokenstore import TokenStore

SECRET = "sim-secret-0123"


@pytest.fixture
def callback_uri() -> str:
    return f"http://127.0.0.1:{free_port()}/callback"


@pytest.fixture
def auth_setup(sim_factory: Callable[..., SpotifySimulator], settings_for: Callable[..., Settings],
               callback_uri: str) -> Callable[..., tuple[SpotifySimulator, Settings]]:
    def make(*, secret: str | None = None, **sim_kwargs: Any) -> tuple[SpotifySimulator, Settings]:
        sim = sim_factory(client_secret=secret, redirect_uris=(callback_uri,), **sim_kwargs)
        return sim, settings_for(sim, token=False, redirect_uri=callback_uri, read_timeout=3.0)
    return make


class AuthProcess:
    """`python -m spotify_logger auth --no-browser` as a real process, stdin a pipe we can paste into."""

    def __init__(self, settings: Settings, *args: str) -> None:
        env = env_for(settings, SPOTIFY_REDIRECT_URI=settings.redirect_uri)
        self.popen = subprocess.Popen([sys.executable, "-m", "spotify_logger", "auth", "--no-browser",
                                       "--timeout", "20", *args], env=env, cwd=ROOT, text=True,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._killer = threading.Timer(30, self.popen.kill)  # a hung run must fail, not hang the suite
        self._killer.start()
        self.printed: list[str] = []
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.printed.append(line)
            if line.strip().startswith("http"):
                break
        self.url = self.printed[-1].strip() if self.printed else ""

    def finish(self) -> tuple[int, str, str]:
        try:
            out, err = self.popen.communicate(timeout=20)
        finally:
            self._killer.cancel()
        return self.popen.returncode, "".join(self.printed) + out, err


def _stored(settings: Settings) -> Any:
    return TokenStore(settings.token_file).load()


def _assert_authorized(sim: SpotifySimulator, settings: Settings, before: float) -> None:
    tokens = _stored(settings)
    assert tokens.refresh_token == sim.current_refresh_token
    assert tokens.authorized_at is not None and before <= tokens.authorized_at <= time.time()
    assert stat.S_IMODE(settings.token_file.stat().st_mode) == 0o600
    # The stored token really works: a refresh with it succeeds.
    Authenticator(settings, TokenStore(settings.token_file), requests.Session()).refresh()


@pytest.mark.parametrize("secret", [None, SECRET], ids=["pkce", "secret"])
def test_flow_end_to_end_through_the_callback_server(auth_setup: Any, secret: str | None) -> None:
    sim, settings = auth_setup(secret=secret)
    before = time.time()
    proc = AuthProcess(settings)
    query = parse_qs(urlsplit(proc.url).query)
    assert query["redirect_uri"] == [settings.redirect_uri] and len(query["state"][0]) >= 32
    if secret is None:
        assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    else:
        assert "code_challenge" not in query  # the secret proves the client instead

    page = requests.get(proc.url, allow_redirects=True, timeout=5)  # the browser's part

    assert page.status_code == 200 and "You can close this page" in page.text
    assert page.url.startswith(settings.redirect_uri)
    code, out, err = proc.finish()
    assert code == 0, err
    assert "Authorized" in out and str(settings.token_file) in out
    assert sim.granted_scope == " ".join(DEFAULT_SCOPES)
    tokens = _stored(settings)
    for secret_value in (tokens.refresh_token, tokens.access_token, SECRET):
        assert secret_value not in out + err
    _assert_authorized(sim, settings, before)
    # One-shot: the callback server is gone once the process is.
    with pytest.raises(requests.ConnectionError):
        requests.get(settings.redirect_uri, timeout=2)


def test_paste_flow_through_stdin(auth_setup: Any) -> None:
    sim, settings = auth_setup()
    before = time.time()
    proc = AuthProcess(settings)
    # The browser is on another machine: its redirect goes nowhere, the user copies the address.
    redirect = requests.get(proc.url, allow_redirects=False, timeout=5)
    assert redirect.status_code == 302
    assert proc.popen.stdin is not None
    proc.popen.stdin.write("\n  not a url at all!  \n" + redirect.headers["Location"] + "\n")
    proc.popen.stdin.flush()
    code, out, err = proc.finish()
    assert code == 0, err
    assert "neither the redirected URL nor a code" in err  # the junk line was explained, then skipped
    _assert_authorized(sim, settings, before)


def test_paste_of_the_bare_code_through_a_stream(auth_setup: Any) -> None:
    sim, settings = auth_setup()
    request = new_request(settings)
    location = requests.get(request.url, allow_redirects=False, timeout=5).headers["Location"]
    bare_code = parse_qs(urlsplit(location).query)["code"][0]
    out, notes = io.StringIO(), io.StringIO()
    tokens = authorize(settings, request, stdin=io.StringIO(bare_code + "\n"), out=out, notes=notes,
                       timeout_s=10, listen_for_callback=False)
    assert tokens.refresh_token == sim.current_refresh_token
    assert request.url in out.getvalue()


def test_state_mismatch_is_refused_at_the_callback_and_the_wait_goes_on(auth_setup: Any) -> None:
    sim, settings = auth_setup()
    request = new_request(settings)
    outcomes: queue.Queue[Outcome] = queue.Queue()
    notes = io.StringIO()
    server = listen(request, outcomes, notes)
    assert server is not None and server.httpd.server_address[0] == "127.0.0.1"
    forged = requests.get(settings.redirect_uri, params={"code": "AQforged", "state": "not-ours"}, timeout=5)
    assert forged.status_code == 400 and "state does not match" in forged.text
    assert requests.get(settings.redirect_uri.replace("/callback", "/favicon.ico"), timeout=5).status_code == 404
    assert outcomes.empty()

    threading.Thread(target=requests.get, args=(request.url,), kwargs={"timeout": 5}, daemon=True).start()
    outcome = wait_for_code(request, outcomes, server=server, stdin=None, notes=notes, timeout_s=10)
    assert outcome.via == "callback"
    assert exchange_code(settings, request, outcome.code or "").refresh_token == sim.current_refresh_token
    assert "state does not match" in notes.getvalue()


def test_state_mismatch_is_refused_in_a_paste(auth_setup: Any) -> None:
    _, settings = auth_setup()
    older = new_request(settings)
    location = requests.get(older.url, allow_redirects=False, timeout=5).headers["Location"]
    current = new_request(settings)  # a second attempt: the first one's answer must not count
    with pytest.raises(StateMismatch):
        code_from_paste(location, current)
    notes = io.StringIO()
    with pytest.raises(AuthError, match="stdin is closed"):
        authorize(settings, current, stdin=io.StringIO(location + "\n"), out=io.StringIO(), notes=notes,
                  timeout_s=10, listen_for_callback=False)
    assert "state does not match" in notes.getvalue()
    assert not settings.token_file.exists()


@pytest.mark.parametrize("uri, fragment", [
    ("http://localhost:8888/callback", "'localhost' is rejected"),
    ("http://LOCALHOST/callback", "'localhost' is rejected"),
    ("http://192.168.1.20:8888/callback", "only on a loopback address"),
    ("http://pi.local:8888/callback", "only on a loopback address"),
    ("myapp://callback", "not usable"),
])
def test_bad_redirect_uris_are_refused(uri: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        check_redirect_uri(uri)
    assert "SPOTIFY_REDIRECT_URI" in str(info.value) and "127.0.0.1" in str(info.value)
    assert info.value.exit_code == 78


def test_loopback_and_https_redirect_uris_are_accepted() -> None:
    assert check_redirect_uri("http://127.0.0.1:8888/callback").listenable
    six = check_redirect_uri("http://[::1]:9000/cb")
    assert (six.host, six.port, six.path, six.listenable) == ("::1", 9000, "/cb", True)
    assert not check_redirect_uri("https://example.org/spotify").listenable


def test_auth_command_refuses_localhost_with_one_line(sim_factory: Any, settings_for: Any,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    settings = settings_for(sim_factory(), token=False)
    env = env_for(settings, SPOTIFY_REDIRECT_URI="http://localhost:8888/callback")
    assert cli.main(["auth", "--no-browser"], env=env) == 78
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "localhost" in err and "127.0.0.1" in err
    assert not settings.token_file.exists()


def test_a_declined_authorization_ends_the_attempt(auth_setup: Any) -> None:
    _, settings = auth_setup(auto_approve=False)
    request = new_request(settings)
    outcomes: queue.Queue[Outcome] = queue.Queue()
    server = listen(request, outcomes, io.StringIO())
    threading.Thread(target=requests.get, args=(request.url,), kwargs={"timeout": 5}, daemon=True).start()
    with pytest.raises(AuthorizationDenied, match="access_denied") as info:
        wait_for_code(request, outcomes, server=server, stdin=None, notes=io.StringIO(), timeout_s=10)
    assert info.value.exit_code == 78


def test_a_wrong_pkce_verifier_is_refused_by_the_token_endpoint(auth_setup: Any) -> None:
    _, settings = auth_setup()
    request = new_request(settings)
    assert request.verifier is not None and 43 <= len(request.verifier) <= 128
    assert parse_qs(urlsplit(request.url).query)["code_challenge"] == [s256(request.verifier)]
    location = requests.get(request.url, allow_redirects=False, timeout=5).headers["Location"]
    code = code_from_paste(location, request) or ""
    forged = type(request)(request.url, request.redirect, request.scopes, request.state, "x" * 64)
    with pytest.raises(AuthError, match="refused the authorization code"):
        exchange_code(settings, forged, code)
    assert request.verifier not in repr(request)


def test_no_answer_times_out(auth_setup: Any) -> None:
    _, settings = auth_setup()
    request = new_request(settings)
    outcomes: queue.Queue[Outcome] = queue.Queue()
    server = listen(request, outcomes, io.StringIO())
    with pytest.raises(AuthorizationTimeout):
        wait_for_code(request, outcomes, server=server, stdin=None, notes=io.StringIO(), timeout_s=0.3)
    with pytest.raises(requests.ConnectionError):  # stopped on the way out
        requests.get(settings.redirect_uri, timeout=2)


def test_a_busy_port_leaves_the_paste_way_open(auth_setup: Any) -> None:
    sim, settings = auth_setup()
    request = new_request(settings)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", request.redirect.port))
        squatter.listen()
        notes = io.StringIO()
        assert listen(request, queue.Queue(), notes) is None
        assert "cannot listen" in notes.getvalue()
        location = requests.get(request.url, allow_redirects=False, timeout=5).headers["Location"]
        tokens = authorize(settings, request, stdin=io.StringIO(location + "\n"), out=io.StringIO(),
                           notes=io.StringIO(), timeout_s=10)
    assert tokens.refresh_token == sim.current_refresh_token


def test_paste_parsing() -> None:
    settings = Settings(client_id="cid", redirect_uri="http://127.0.0.1:8888/callback")
    request = new_request(settings)
    state = request.state
    assert code_from_paste(f"http://127.0.0.1:8888/callback?code=AQabc&state={state}", request) == "AQabc"
    assert code_from_paste(f"  '127.0.0.1:8888/callback?code=AQabc&state={state}#_=_'\n", request) == "AQabc"
    assert code_from_paste(f"code=AQabc&state={state}", request) == "AQabc"
    assert code_from_paste("   ", request) is None
    with pytest.raises(BadInput, match="carries no code"):
        code_from_paste("http://127.0.0.1:8888/callback", request)
    with pytest.raises(AuthorizationDenied):
        code_from_paste(f"http://127.0.0.1:8888/callback?error=access_denied&state={state}", request)


def test_scopes_default_and_override() -> None:
    assert parse_scopes(None) == DEFAULT_SCOPES
    assert "playlist-modify-public" in DEFAULT_SCOPES and "user-read-playback-state" in DEFAULT_SCOPES
    assert parse_scopes(["user-read-playback-state, user-read-recently-played", "user-read-playback-state"]) == (
        "user-read-playback-state", "user-read-recently-played")


def test_refresh_token_option_still_stores_a_token(tmp_path: Path) -> None:
    env = {"SPOTIFY_CLIENT_ID": "cid", "SPOTIFY_LOGGER_STATE_DIR": str(tmp_path), "HOME": str(tmp_path)}
    assert cli.main(["auth", "--refresh-token", "AQsomething"], env=env) == 0
    tokens = TokenStore(tmp_path / "token.json").load()
    assert tokens.refresh_token == "AQsomething" and tokens.authorized_at is None
    assert stat.S_IMODE(os.stat(tmp_path / "token.json").st_mode) == 0o600
