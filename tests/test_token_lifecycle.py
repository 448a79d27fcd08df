"""Token lifecycle against the simulator: refresh ahead of expiry and on 401, rotated refresh tokens
persisted (fsync'd) before use and across a restart, invalid_grant / invalid_client as exit 78
without a restart, the 5-month warning, the 0600 check, and what `status` shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
from conftest import env_for, poller_cmd, run_py_cmd
from simdata import FakeClock
from structlog.testing import capture_logs

from spotify_logger import cli
from spotify_logger.auth import OLD_TOKEN_WARN_EVERY_S, Authenticator
from spotify_logger.config import Settings
from spotify_logger.daemon import Parts
from spotify_logger.errors import ConfigError, InvalidClient, InvalidGrant
from spotify_logger.simulator import Play, Script, SpotifySimulator, track
from spotify_logger.tokenstore import TOKEN_OLD_AFTER_S, Tokens, TokenStore

DAY = 86400.0


SONG = track("Lifecycle Song", 120_000)


def _auth(settings: Any, clock: Callable[[], float] = time.time, store: TokenStore | None = None) -> Authenticator:
    return Authenticator(settings, store or TokenStore(settings.token_file), requests.Session(), clock=clock)


def _save(settings: Any, **fields: Any) -> None:
    TokenStore(settings.token_file).save(Tokens(**fields))


def test_refresh_happens_when_less_than_60s_are_left(sim_factory: Any, settings_for: Any) -> None:
    sim, clock = sim_factory(), FakeClock(time.time())
    settings = settings_for(sim, token=False)
    held = sim.issue_access_token()
    _save(settings, refresh_token=sim.current_refresh_token, access_token=held, expires_at=clock.now + 61)
    auth = _auth(settings, clock)
    issued = sim.issued_access_tokens
    assert auth.access_token() == held and sim.issued_access_tokens == issued
    clock.now += 2  # 59 s left
    fresh = auth.access_token()
    assert fresh != held and sim.issued_access_tokens == issued + 1
    assert TokenStore(settings.token_file).load().access_token == fresh


def test_a_401_refreshes_once_and_the_call_succeeds(sim_factory: Any, settings_for: Any, fake_redis: Any) -> None:
    sim = sim_factory(Script((Play(SONG, 60_000),)))
    settings = settings_for(sim)
    parts = Parts.build(settings, redis_client=fake_redis)
    assert parts.client.player() is not None
    sim.expire_access_tokens()
    assert parts.client.player()["item"]["name"] == SONG.name
    statuses = [r.status for r in sim.requests_to("/v1/me/player")]
    assert statuses == [200, 401, 200]


def test_a_rotated_refresh_token_is_on_disk_and_fsynced_before_the_new_access_token_is_used(
        sim_factory: Any, settings_for: Any, fake_redis: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sim = sim_factory(Script((Play(SONG, 60_000),)), rotate_refresh_tokens=True)
    settings = settings_for(sim)
    spent = sim.current_refresh_token
    order: list[tuple[str, Any]] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (order.append(("fsync", fd)), real_fsync(fd))[1])

    class Watched(requests.Session):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            if "/v1/" in url:
                on_disk = json.loads(settings.token_file.read_text())
                order.append(("api", (kwargs["headers"]["Authorization"][7:], on_disk)))
            return super().request(method, url, *args, **kwargs)

    parts = Parts.build(settings, redis_client=fake_redis)
    parts.auth.session = parts.client.session = Watched()
    parts.client.player()
    api = [entry for kind, entry in order if kind == "api"]
    assert len(api) == 1
    token_used, on_disk = api[0]
    assert on_disk["access_token"] == token_used  # the token sent was already on disk ...
    assert on_disk["refresh_token"] == sim.current_refresh_token != spent  # ... with the rotated one
    first_api = next(i for i, (kind, _) in enumerate(order) if kind == "api")
    assert sum(1 for kind, _ in order[:first_api] if kind == "fsync") >= 2  # the file, then its directory


def test_a_failed_save_means_the_new_access_token_is_never_used(sim_factory: Any, settings_for: Any,
                                                                fake_redis: Any) -> None:
    sim = sim_factory(Script((Play(SONG, 60_000),)), rotate_refresh_tokens=True)
    settings = settings_for(sim)
    before = settings.token_file.read_bytes()

    class FullDisk(TokenStore):
        def save(self, tokens: Tokens) -> None:
            raise ConfigError("cannot write the token file: No space left on device")

    parts = Parts.build(settings, redis_client=fake_redis)
    parts.auth.store = FullDisk(settings.token_file)
    with pytest.raises(ConfigError):
        parts.client.player()
    assert sim.requests_to("/v1/") == []
    assert settings.token_file.read_bytes() == before


def test_a_new_authorization_replacing_the_file_is_adopted_not_overwritten(sim_factory: Any,
                                                                          settings_for: Any) -> None:
    sim = sim_factory(rotate_refresh_tokens=True)
    settings = settings_for(sim)
    auth = _auth(settings)
    auth.access_token()  # the running poller holds the old grant in memory
    # `spotify-logger auth` runs meanwhile and writes a new grant:
    fresh_access, reauthorized_at = sim.issue_access_token(), time.time()
    _save(settings, refresh_token=sim.current_refresh_token, access_token=fresh_access,
          expires_at=time.time() + 3600, authorized_at=reauthorized_at)
    with capture_logs() as logs:
        assert auth.access_token() == fresh_access
        auth.refresh()
    assert "token_file_reloaded" in [e["event"] for e in logs]
    assert TokenStore(settings.token_file).load().authorized_at == reauthorized_at


def test_an_unwritable_token_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    with pytest.raises(ConfigError, match="cannot write the token file"):
        TokenStore(tmp_path / "not-a-dir" / "token.json").save(Tokens(refresh_token="AQx"))


def test_rotation_survives_a_restart(sim_factory: Any, settings_for: Any, redis_server: Any, spawn: Any) -> None:
    sim = sim_factory(Script((Play(SONG, 60_000),)), rotate_refresh_tokens=True)
    settings = settings_for(sim, redis_server.url)
    original = sim.current_refresh_token
    env = env_for(settings, SPOTIFY_LOGGER_LOG_LEVEL="debug")

    first = spawn(poller_cmd(), env)
    assert first.wait_for("token_refreshed")[0]["rotated"] is True
    first.wait_for("poll_ok", count=2)
    assert first.terminate() == 0
    rotated = TokenStore(settings.token_file).load().refresh_token
    assert rotated == sim.current_refresh_token != original
    spent = settings_for(sim, token=False, state_dir=settings.state_dir / "spent")
    _save(spent, refresh_token=original)
    with pytest.raises(InvalidGrant):  # single-use: only the persisted token can go on
        _auth(spent).refresh()

    sim.expire_access_tokens()  # the restart must refresh, with the token the first run stored
    second = spawn(poller_cmd(), env)
    assert second.wait_for("token_refreshed")[0]["rotated"] is True
    second.wait_for("poll_ok", count=2)
    assert second.terminate() == 0
    assert not second.events("poller_failed")
    assert TokenStore(settings.token_file).load().refresh_token == sim.current_refresh_token != rotated


def test_invalid_grant_exits_78_and_run_py_does_not_restart(sim_factory: Any, settings_for: Any,
                                                            redis_server: Any, spawn: Any) -> None:
    sim = sim_factory(Script((Play(SONG, 60_000),)))
    settings = settings_for(sim, redis_server.url)
    sim.revoke_refresh_tokens()
    proc = spawn(run_py_cmd(), env_for(settings, SPOTIFY_LOGGER_RESTART_DELAY="0.1"))
    assert proc.wait(timeout=30) == 78
    assert len(proc.events("child_started")) == 1
    assert [e["exit_code"] for e in proc.events("child_fatal")] == [78]
    told = proc.events("reauthorization_required")
    assert len(told) == 1 and "spotify-logger auth" in told[0]["action"]
    assert sim.current_refresh_token not in "\n".join(proc.lines)


def test_invalid_client_exits_78_naming_the_setting(sim_factory: Any, settings_for: Any,
                                                    redis_server: Any, spawn: Any) -> None:
    sim = sim_factory(Script((Play(SONG, 60_000),)))
    settings = settings_for(sim, redis_server.url)
    proc = spawn(poller_cmd(), env_for(settings, SPOTIFY_CLIENT_ID="not-the-client"))
    assert proc.wait(timeout=20) == 78
    assert "SPOTIFY_CLIENT_ID" in proc.wait_for("poller_failed")[0]["error"]


def test_invalid_client_with_a_secret_names_the_secret(sim_factory: Any, settings_for: Any) -> None:
    sim = sim_factory(client_secret="the-real-secret")
    settings = settings_for(sim, client_secret="a-wrong-secret")
    with pytest.raises(InvalidClient, match="SPOTIFY_CLIENT_SECRET") as info:
        _auth(settings).refresh()
    assert info.value.exit_code == 78 and "a-wrong-secret" not in str(info.value)


def test_invalid_grant_is_logged_once(sim_factory: Any, settings_for: Any) -> None:
    sim = sim_factory()
    settings = settings_for(sim)
    sim.revoke_refresh_tokens()
    auth = _auth(settings)
    with capture_logs() as logs:
        for _ in range(3):
            with pytest.raises(InvalidGrant) as info:
                auth.refresh()
    assert info.value.exit_code == 78
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["reauthorization_required"]


def test_an_old_token_is_warned_about_once_a_day(sim_factory: Any, settings_for: Any) -> None:
    sim, clock = sim_factory(), FakeClock(time.time())
    settings = settings_for(sim, token=False)
    _save(settings, refresh_token=sim.current_refresh_token, access_token=sim.issue_access_token(),
          expires_at=clock.now + 10 * DAY, authorized_at=clock.now - TOKEN_OLD_AFTER_S + 3600)
    auth = _auth(settings, clock)
    with capture_logs() as logs:
        auth.access_token()               # 5 months minus an hour: quiet
        clock.now += 2 * 3600
        for _ in range(3):
            auth.access_token()           # over 5 months: one warning, not one per poll
        clock.now += OLD_TOKEN_WARN_EVERY_S - 60
        auth.access_token()
        clock.now += 120                  # a day after the first warning: the next one
        auth.access_token()
    warned = [e for e in logs if e["event"] == "token_old"]
    assert len(warned) == 2
    assert warned[0]["log_level"] == "warning" and warned[0]["age_days"] >= 150
    assert "spotify-logger auth" in warned[0]["action"]


def test_a_group_readable_token_file_refuses_to_start(sim_factory: Any, settings_for: Any, spawn: Any) -> None:
    sim = sim_factory()
    settings = settings_for(sim)
    settings.token_file.chmod(0o640)
    proc = spawn(poller_cmd(), env_for(settings))
    assert proc.wait(timeout=20) == 78
    error = proc.wait_for("startup_failed")[0]["error"]
    assert "readable by group or others" in error and f"chmod 600 {settings.token_file}" in error
    assert sim.requests == []  # refused before any network
    settings.token_file.chmod(0o600)
    TokenStore(settings.token_file).load()


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "human"])
def test_status_shows_the_token_and_its_age_never_the_secret(tmp_path: Path, as_json: bool,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    env = {"SPOTIFY_CLIENT_ID": "cid", "SPOTIFY_CLIENT_SECRET": "client-secret-xyz", "HOME": str(tmp_path),
           "SPOTIFY_LOGGER_STATE_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:1/0"}
    now = time.time()
    TokenStore(tmp_path / "token.json").save(Tokens(
        refresh_token="AQrefresh-secret", access_token="BQaccess-secret", expires_at=now + 1800,
        authorized_at=now - 151 * DAY))
    code = cli.main(["status", "--json"] if as_json else ["status"], env=env)
    out = capsys.readouterr().out
    assert code == 69
    for secret in ("AQrefresh-secret", "BQaccess-secret", "client-secret-xyz"):
        assert secret not in out
    if as_json:
        body = json.loads(out)
        assert body["token_present"] is True and body["token_old"] is True
        assert 1790 <= body["token_expires_in_s"] <= 1800
        assert body["authorized_at"] == pytest.approx(now - 151 * DAY, abs=1)
        assert body["token_age_days"] == pytest.approx(151, abs=0.1)
        assert any("over 5 months old" in p for p in body["problems"])
    else:
        assert "token:         present" in out and "expires in 1" in out and "(151d ago)" in out
        assert "over 5 months old" in out


def test_status_without_authorized_at_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {"SPOTIFY_CLIENT_ID": "cid", "HOME": str(tmp_path), "SPOTIFY_LOGGER_STATE_DIR": str(tmp_path),
           "REDIS_URL": "redis://127.0.0.1:1/0"}
    TokenStore(tmp_path / "token.json").save(Tokens(refresh_token="AQx"))
    cli.main(["status"], env=env)
    out = capsys.readouterr().out
    assert "authorized_at unknown" in out and "over 5 months" not in out


def test_concurrent_refreshes_across_processes_spend_a_rotating_token_once(
        sim_factory: Callable[..., SpotifySimulator], settings_for: Callable[..., Settings]) -> None:
    """Two processes (the poller and `playlist`, say) refresh at once: the second adopts the
    token the first saved instead of spending the single-use refresh token again."""
    sim = sim_factory(Script(()), rotate_refresh_tokens=True)
    settings = settings_for(sim)
    code = textwrap.dedent("""
        import sys
        from spotify_logger.httpsession import make_session
        from spotify_logger.auth import Authenticator
        from spotify_logger.config import Settings
        from spotify_logger.tokenstore import TokenStore
        settings = Settings.from_env()
        auth = Authenticator(settings, TokenStore(settings.token_file), make_session())
        sys.stdin.readline()          # start together
        print(auth.access_token()[:8], flush=True)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env_for(settings), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    time.sleep(1.0)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [proc.communicate(timeout=20) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], [err for _, err in results]
    assert sim.issued_access_tokens == 1
    assert len({out.strip().splitlines()[-1] for out, _ in results}) == 1   # one token, adopted by all


def test_a_reauthorization_during_a_refresh_is_never_overwritten(tmp_path: Path) -> None:
    """`auth` replaces the token file while the poller's refresh request is in flight: the new
    grant must survive, not be overwritten by the answer built on the old one."""
    settings = Settings(client_id="cid", state_dir=tmp_path)
    store = TokenStore(settings.token_file)
    store.save(Tokens(refresh_token="OLD-GRANT", access_token="a", expires_at=0, authorized_at=time.time()))

    class Answer:
        status_code = 200

        def json(self) -> dict[str, Any]:
            return {"access_token": "new-access", "expires_in": 3600, "refresh_token": "OLD-ROTATED"}

    class ReauthorizingSession:
        def post(self, *args: Any, **kwargs: Any) -> Answer:
            TokenStore(store.path).save(Tokens(refresh_token="NEW-GRANT", authorized_at=time.time()))
            return Answer()

    auth = Authenticator(settings, store, ReauthorizingSession())  # type: ignore[arg-type]
    assert auth.access_token() == "new-access"
    assert json.loads(settings.token_file.read_text())["refresh_token"] == "NEW-GRANT"
    assert auth.tokens.refresh_token == "NEW-GRANT"


def test_a_temp_file_left_by_a_power_cut_does_not_block_saves(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "token.json")
    for pid in range(os.getpid() - 2, os.getpid() + 3):
        (tmp_path / f".token.json.{pid}.tmp").write_text("torn")
    store.save(Tokens(refresh_token="r"))
    assert store.load().refresh_token == "r"
