"""run.py, the supervisor: a real run.py starting the real poller, killed and signalled with
os.kill. (The crash-loop backoff and the 5 s shutdown are in test_faults.py.)"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import sysconfig
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest
from conftest import ROOT, Proc, env_for, pid_gone, run_py_cmd, wait_until

from spotify_logger.simulator import Fault, Play, Script, SpotifySimulator, track

pytestmark = pytest.mark.slow

LONG = Script((Play(track("Supervised", 60_000), 60_000),))


def load_run_py() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_py", ROOT / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while exec runs
    spec.loader.exec_module(module)
    return module


def start(spawn: Callable[..., Proc], settings: Any, *args: str, **env: str) -> Proc:
    return spawn([*run_py_cmd(), *args], env_for(settings, **{"SPOTIFY_LOGGER_RESTART_DELAY": "0.2", **env}))


def last_child(proc: Proc) -> int:
    return int(proc.events("child_started")[-1]["pid"])


def test_policy_defaults_and_environment() -> None:
    run_py = load_run_py()
    assert run_py.Policy.from_env({}) == run_py.Policy(1.0, 60.0, 60.0, 10.0)
    assert run_py.Policy.from_env({"SPOTIFY_LOGGER_RESTART_DELAY": "0.5", "SPOTIFY_LOGGER_STOP_TIMEOUT": "3"}) \
        == run_py.Policy(0.5, 60.0, 60.0, 3.0)


def test_run_py_needs_nothing_beyond_the_standard_library() -> None:
    # It must start even when the package's own imports are broken.
    source = (ROOT / "run.py").read_text()
    imported = {line.split()[1].split(".")[0] for line in source.splitlines()
                if line.startswith(("import ", "from ")) and not line.startswith("from __future__")}
    assert "spotify_logger" not in imported
    assert not {name for name in imported if not _in_stdlib(name)}, imported


def _in_stdlib(name: str) -> bool:
    names = getattr(sys, "stdlib_module_names", None)  # Python 3.10+
    if names is not None:
        return name in names
    spec = importlib.util.find_spec(name)  # 3.9: where the module comes from
    return spec is not None and spec.origin is not None and (
        spec.origin in ("built-in", "frozen") or spec.origin.startswith(sysconfig.get_paths()["stdlib"]))


def test_invalid_tunable_is_one_line_and_exit_78(spawn, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPOTIFY_")}
    proc = spawn(run_py_cmd(), {**env, "SPOTIFY_LOGGER_RESTART_DELAY": "soon"})
    assert proc.wait() == 78
    assert [e["event"] for e in proc.events()] == ["supervisor_config_invalid"]
    assert "SPOTIFY_LOGGER_RESTART_DELAY" in proc.events()[0]["error"]


def test_exit_78_from_the_child_is_not_restarted(sim_factory, settings_for, spawn) -> None:
    sim = sim_factory(LONG)
    proc = start(spawn, settings_for(sim, token=False))  # no token file: `spotify-logger auth` first
    assert proc.wait() == 78
    assert len(proc.events("child_started")) == 1
    assert proc.events("child_exited")[0]["exit_code"] == 78
    assert proc.events("child_fatal")
    assert not proc.events("restart_scheduled")


def test_a_usage_error_from_the_child_is_not_restarted(spawn, tmp_path: Path) -> None:
    """Arguments pass through to `run`, which takes none: exit 64 is final, not a restart loop."""
    env = {**os.environ, "SPOTIFY_LOGGER_RESTART_DELAY": "0.05", "SPOTIFY_LOGGER_STATE_DIR": str(tmp_path)}
    proc = spawn([*run_py_cmd(), "--bogus"], env)
    assert proc.wait() == 64
    assert len(proc.events("child_started")) == 1
    assert proc.events("child_fatal") and not proc.events("restart_scheduled")


def test_backoff_doubles_and_resets_after_a_healthy_run(sim_factory, settings_for, redis_server, spawn) -> None:
    sim = sim_factory(LONG)
    proc = start(spawn, settings_for(sim, redis_server.url), SPOTIFY_LOGGER_HEALTHY_AFTER="1.0")

    proc.wait_for("poller_started")
    time.sleep(1.2)  # healthy
    os.kill(last_child(proc), signal.SIGKILL)
    proc.wait_for("poller_started", count=2)
    os.kill(last_child(proc), signal.SIGKILL)  # at once: a crash loop
    proc.wait_for("poller_started", count=3)
    time.sleep(1.2)  # healthy again: the next failure starts from the initial delay
    os.kill(last_child(proc), signal.SIGKILL)
    proc.wait_for("child_started", count=4)

    assert [e["delay_s"] for e in proc.events("restart_scheduled")] == [0.2, 0.4, 0.2]
    assert [e["signal"] for e in proc.events("child_exited")] == ["SIGKILL"] * 3
    assert proc.terminate() == 0


def test_a_signal_during_the_backoff_stops_without_a_restart(sim_factory, settings_for, redis_server, spawn) -> None:
    sim = sim_factory(LONG)
    # A damaged poll time fails the store script's comparison: the poller exits 70 at its first write.
    redis_server.client().hset("spotify-logger:status", "last_poll_at", "not a number")
    proc = start(spawn, settings_for(sim, redis_server.url), SPOTIFY_LOGGER_RESTART_DELAY="30")
    proc.wait_for("restart_scheduled")
    assert proc.terminate(timeout=3) == 0
    assert len(proc.events("child_started")) == 1
    assert proc.events("supervisor_stopped")[0]["signal"] == "SIGTERM"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP])
def test_sigint_and_sighup_are_forwarded_and_stop_cleanly(sim_factory, settings_for, redis_server, spawn,
                                                          signum: int) -> None:
    sim = sim_factory(LONG)
    proc = start(spawn, settings_for(sim, redis_server.url))
    proc.wait_for("poller_started")
    child = last_child(proc)
    proc.popen.send_signal(signum)
    assert proc.wait() == 0
    assert [e["signal"] for e in proc.events("signal_forwarded")] == [signal.Signals(signum).name], proc.lines
    assert proc.events("poller_stopped")[-1]["exit_code"] == 0
    assert pid_gone(child)
    assert len(proc.events("child_started")) == 1


def _stuck_in_a_request(sim: SpotifySimulator, proc: Proc) -> None:
    proc.wait_for("poller_started")
    sim.inject(Fault("slow", path="/v1/me/player", delay_s=3.0))
    # The fault is taken when the request arrives, before the slow answer.
    wait_until(lambda: not sim.faults_pending(), "a request stuck in the slow answer", timeout=10)


def test_a_child_that_does_not_stop_in_time_is_killed(sim_factory, settings_for, redis_server, spawn) -> None:
    sim = sim_factory(LONG)
    # The poller waits 1.5 s for a request in flight before it gives up on it: longer than 0.3 s.
    proc = start(spawn, settings_for(sim, redis_server.url, read_timeout=5.0), SPOTIFY_LOGGER_STOP_TIMEOUT="0.3")
    _stuck_in_a_request(sim, proc)
    child = last_child(proc)
    assert proc.terminate() == 0
    assert proc.events("child_killed")[0]["pid"] == child
    assert proc.events("child_exited")[-1]["signal"] == "SIGKILL"
    assert pid_gone(child)
    assert len(proc.events("child_started")) == 1


def test_a_second_signal_is_forwarded_and_the_child_exits_at_once(sim_factory, settings_for, redis_server,
                                                                 spawn) -> None:
    sim = sim_factory(LONG)
    proc = start(spawn, settings_for(sim, redis_server.url, read_timeout=5.0))
    _stuck_in_a_request(sim, proc)
    proc.popen.send_signal(signal.SIGTERM)
    proc.wait_for("signal_forwarded")
    assert proc.terminate() == 0
    assert len(proc.events("signal_forwarded")) == 2
    assert proc.events("poller_stopped")[-1]["cold"] is True
    assert not proc.events("child_killed")


def test_arguments_pass_through_to_the_poller(sim_factory, settings_for, spawn) -> None:
    sim = sim_factory(LONG)
    proc = start(spawn, settings_for(sim), "--help")
    assert proc.wait() == 0
    assert proc.popen.stdout is not None
    assert "usage: spotify-logger run" in proc.popen.stdout.read()
    assert proc.events("supervisor_stopped")[0]["reason"] == "child exited cleanly"
