"""Redis's errors by what they mean, however they arrive: "cannot write now" (spool and retry),
a setting that is wrong (exit 78, naming REDIS_URL, never its password), or a bug (exit 70).
Real redis-server and real processes where the error comes from one."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from typing import Any, Callable, Iterator

import pytest
import redis

from conftest import Proc, env_for, run_py_cmd, wait_until
from helpers import run_cli
from spotify_logger.errors import StoreFull, StoreUnavailable
from spotify_logger.redisproc import RedisServer, free_port
from spotify_logger.simulator import Idle, Play, Script, track
from spotify_logger.store import StoreError, translate_redis_errors

SCRIPT = "Error running script (call to f_1e425abae7742271750e349b8193843c38f20b29): @user_script:17: "


def translated(exc: Exception) -> Exception:
    with pytest.raises(Exception) as caught:
        with translate_redis_errors():
            raise exc
    return caught.value


@pytest.mark.parametrize("exc", [
    redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'. script: 1e42, on "
                                      "@user_script:17."),
    redis.ResponseError(SCRIPT + "@user_script: 17: -OOM command not allowed when used memory > 'maxmemory'."),
    redis.ResponseError("command not allowed when used memory > 'maxmemory'."),
], ids=["redis-py-class", "wrapped-in-a-script-error", "code-stripped"])
def test_oom_however_wrapped_is_a_full_store(exc: Exception) -> None:
    assert isinstance(translated(exc), StoreFull)


@pytest.mark.parametrize("exc", [
    redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
    redis.ResponseError(SCRIPT + "-READONLY You can't write against a read only replica."),
    redis.ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist"),
    redis.ResponseError(SCRIPT + "-MISCONF Redis is configured to save RDB snapshots"),
    redis.ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."),
    redis.exceptions.MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    redis.ResponseError(SCRIPT + "-MASTERDOWN Link with MASTER is down"),
    redis.ResponseError(SCRIPT + "-LOADING Redis is loading the dataset in memory"),
    redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
    redis.ResponseError("NOREPLICAS Not enough good replicas to write."),
], ids=lambda e: type(e).__name__ + ":" + str(e)[:40])
def test_other_cannot_write_now_replies_are_an_outage(exc: Exception) -> None:
    found = translated(exc)
    assert isinstance(found, StoreUnavailable) and not isinstance(found, StoreFull)


@pytest.mark.parametrize("exc", [
    redis.ResponseError("ERR unknown command 'FOO'"),
    redis.ResponseError("BUSYKEY Target key name already exists."),
    redis.ResponseError(SCRIPT + "user_script:3: Script attempted to access nonexistent global variable 'x'"),
])
def test_other_replies_stay_bugs(exc: Exception) -> None:
    assert type(translated(exc)) is StoreError


# --- REDIS_URL that reaches something unusable: exit 78, naming REDIS_URL -----------------------

@pytest.fixture
def locked_redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    redis_server.client().config_set("requirepass", "s3cret-pass")
    yield redis_server
    redis.Redis(port=redis_server.port, password="s3cret-pass").config_set("requirepass", "")


@pytest.fixture
def http_port() -> Iterator[int]:
    """A service that is not Redis: it answers every connection with an HTTP 400, as web servers do."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def one_line_naming_redis_url(err: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "REDIS_URL" in lines[0], err
    assert "s3cret" not in err and "wr0ng" not in err and "Traceback" not in err


def test_a_wrong_password_is_a_setting(locked_redis: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    for url in (f"redis://:wr0ng@127.0.0.1:{locked_redis.port}/0", locked_redis.url,   # wrong, and none
                f"redis://someone:wr0ng@127.0.0.1:{locked_redis.port}/0"):
        for argv in (["stats", "top", "tracks"], ["check"], ["export"]):
            code, _, err = run_cli(capsys, url, *argv)
            assert code == 78, (url, argv, err)
            one_line_naming_redis_url(err)


def test_a_service_that_is_not_redis_is_a_setting(http_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["stats", "top", "tracks"], ["check"], ["export"]):
        code, _, err = run_cli(capsys, f"redis://127.0.0.1:{http_port}/0", *argv)
        assert code == 78, (argv, err)
        one_line_naming_redis_url(err)
        assert "not point to a Redis server" in err


def test_a_database_redis_does_not_have_is_a_setting(redis_server: RedisServer,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["stats", "top", "tracks"], ["check"], ["export"]):
        code, _, err = run_cli(capsys, f"redis://127.0.0.1:{redis_server.port}/99999", *argv)
        assert code == 78, (argv, err)
        one_line_naming_redis_url(err)


def test_status_says_redis_refused_not_unreachable(locked_redis: RedisServer, sim_factory: Callable[..., Any],
                                                   settings_for: Callable[..., Any],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from spotify_logger.cli import main

    settings = settings_for(sim_factory(), f"redis://:wr0ng@127.0.0.1:{locked_redis.port}/0")
    assert main(["status"], env=env_for(settings)) == 69
    out = capsys.readouterr().out
    assert "UNREACHABLE" not in out and "REFUSED" in out and "REDIS_URL" in out and "wr0ng" not in out
    assert main(["status", "--json"], env=env_for(settings)) == 69
    health = json.loads(capsys.readouterr().out)
    assert health["redis_error"] and "REDIS_URL" in health["redis_error"] and not health["healthy"]


@pytest.mark.slow
def test_the_poller_with_a_wrong_password_stops_for_good(locked_redis: RedisServer, sim_factory: Callable[..., Any],
                                                         settings_for: Callable[..., Any],
                                                         spawn: Callable[..., Proc]) -> None:
    settings = settings_for(sim_factory(), f"redis://:wr0ng@127.0.0.1:{locked_redis.port}/0")
    proc = spawn(run_py_cmd(), env_for(settings, SPOTIFY_LOGGER_RESTART_DELAY="0.2"))
    assert proc.wait(timeout=20) == 78, "\n".join(proc.lines)
    assert len(proc.events("child_started")) == 1, "a wrong password is no reason to restart"
    failed = proc.events("startup_failed")
    assert len(failed) == 1 and "REDIS_URL" in failed[0]["error"]
    assert "wr0ng" not in "\n".join(proc.lines)
    assert not settings.state_dir.joinpath("spool.jsonl").exists(), "nothing to spool forever"


@pytest.mark.slow
def test_a_password_set_while_the_poller_runs_stops_it_and_keeps_the_play(
        redis_server: RedisServer, sim_factory: Callable[..., Any], settings_for: Callable[..., Any],
        spawn: Callable[..., Proc]) -> None:
    sim = sim_factory(Script())
    settings = settings_for(sim, redis_server.url)
    client = redis_server.client()
    proc = spawn(run_py_cmd(), env_for(settings, SPOTIFY_LOGGER_RESTART_DELAY="0.2"))
    proc.wait_for("poller_started")
    sim.load_script(Script((Play(track("Locked", 30_000), 30_000), Idle(60_000))))
    wait_until(lambda: client.get("listening:current"), "the play in Redis")
    client.config_set("requirepass", "s3cret-pass")
    client.client_kill_filter(_type="normal", skipme=False)   # the poller must log in again
    assert proc.wait(timeout=20) == 78, "\n".join(proc.lines[-20:])
    failed = proc.events("poller_failed")
    assert len(failed) == 1 and failed[0]["exit_code"] == 78 and "REDIS_URL" in failed[0]["error"]
    assert len(proc.events("child_started")) == 1
    # Whichever write met the password first (the budget's count before a call, or the poll's
    # write after it, which then spools the poll in hand), the play is not lost: a restart with
    # the right password continues it and counts it once.
    redis.Redis(port=redis_server.port, password="s3cret-pass").config_set("requirepass", "")
    again = spawn(run_py_cmd(), env_for(settings, SPOTIFY_LOGGER_RESTART_DELAY="0.2"))
    wait_until(lambda: client.zscore("plays:tracks", track("Locked", 30_000).uri) == 1, "the play counted once",
               timeout=20)
    assert again.terminate() == 0
    plays = [k for k in client.scan_iter("listening:[0-9]*")]
    assert len(plays) == 1, plays


def test_an_option_redis_py_cannot_read_is_a_setting(redis_server: RedisServer,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, f"redis://:s3cret@127.0.0.1:{redis_server.port}/0?socket_timeout=abc", "export")
    assert code == 78, err
    one_line_naming_redis_url(err)


def test_a_client_name_redis_refuses_is_a_setting(redis_server: RedisServer,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # redis-py sends CLIENT SETNAME on connect; Redis refused "a b" at the first command: exit 70.
    code, _, err = run_cli(capsys, f"redis://127.0.0.1:{redis_server.port}/0?client_name=a%20b", "stats", "top",
                           "tracks")
    assert code == 78, err
    one_line_naming_redis_url(err)
    assert "client_name" in err


def test_redis_refusing_the_client_name_is_translated_as_a_setting(redis_server: RedisServer) -> None:
    """The reply itself, for a name that reached Redis some other way (a caller's own client)."""
    from spotify_logger.errors import StoreMisconfigured

    client = redis.Redis(port=redis_server.port, client_name="a b")
    with pytest.raises(StoreMisconfigured, match="REDIS_URL.*client_name"):
        with translate_redis_errors(client):
            client.ping()


@pytest.mark.slow
def test_the_poller_with_a_refused_client_name_stops_for_good(redis_server: RedisServer,
                                                              sim_factory: Callable[..., Any],
                                                              settings_for: Callable[..., Any],
                                                              spawn: Callable[..., Proc]) -> None:
    settings = settings_for(sim_factory(), redis_server.url)
    url = f"redis://127.0.0.1:{redis_server.port}/0?client_name=a%20b"
    proc = spawn(run_py_cmd(), {**env_for(settings, SPOTIFY_LOGGER_RESTART_DELAY="0.2"), "REDIS_URL": url})
    assert proc.wait(timeout=20) == 78, "\n".join(proc.lines)
    assert len(proc.events("child_started")) <= 1, "a bad option is no reason to restart"
    assert "REDIS_URL" in "\n".join(proc.lines)


@pytest.fixture
def http_server(tmp_path: Any) -> Iterator[int]:
    """A real web server (python -m http.server): it answers the first line and closes, so
    redis-py only ever saw 'Connection closed by server'."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _accepts(port), "http.server listening", timeout=10)
        yield port
    finally:
        proc.kill()
        proc.wait()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_a_real_web_server_at_redis_url_is_a_setting(http_server: int, sim_factory: Callable[..., Any],
                                                    settings_for: Callable[..., Any],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from spotify_logger.cli import main

    for argv in (["stats", "top", "tracks"], ["check"], ["export"]):
        code, _, err = run_cli(capsys, f"redis://127.0.0.1:{http_server}/0", *argv)
        assert code == 78, (argv, err)
        one_line_naming_redis_url(err)
        assert "not point to a Redis server" in err
    settings = settings_for(sim_factory(), f"redis://127.0.0.1:{http_server}/0")
    assert main(["status"], env=env_for(settings)) == 69
    out = capsys.readouterr().out
    assert "REFUSED" in out and "UNREACHABLE" not in out and "not point to a Redis server" in out


def test_a_redis_that_went_away_is_still_an_outage(redis_server: RedisServer,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The probe asks only after a connection closed on us; a Redis that is down stays exit 75."""
    url = redis_server.url
    redis_server.stop(save=False)
    code, _, err = run_cli(capsys, url, "stats", "top", "tracks")
    assert code == 75 and "unreachable" in err, err


@pytest.mark.slow
def test_the_poller_with_a_web_server_at_redis_url_stops_for_good(http_server: int, sim_factory: Callable[..., Any],
                                                                  settings_for: Callable[..., Any],
                                                                  spawn: Callable[..., Proc]) -> None:
    settings = settings_for(sim_factory(), f"redis://127.0.0.1:{http_server}/0")
    proc = spawn(run_py_cmd(), env_for(settings, SPOTIFY_LOGGER_RESTART_DELAY="0.2"))
    assert proc.wait(timeout=30) == 78, "\n".join(proc.lines)
    assert len(proc.events("child_started")) == 1, "no restart loop, no spooling forever"
    assert not settings.state_dir.joinpath("spool.jsonl").exists()
