"""The README's run command (`demo`) and `simulate`, as a person would run them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from spotify_logger.redisproc import free_port

from conftest import ROOT
from helpers import run_command


def test_demo_records_the_scripted_session(tmp_path: Path) -> None:
    result = run_command(["demo"], tmp_path, timeout=110)  # the whole ~70 s session, as `make demo` runs it
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "throwaway redis-server" in out
    # 0-8 s: Neon Drive played through; 8-11 s: Paper Planes skipped after 3 s.
    neon = next(line for line in out.splitlines() if "Neon Drive" in line)
    paper = next(line for line in out.splitlines() if "Paper Planes" in line)
    assert " yes " in neon and " no " in paper
    assert "plays:tracks" in out and "Traceback" not in result.stderr
    # Every case of the script, as the README promises: the repeat is two counted plays, the
    # episode and the local file count, the ad and the private session never appear.
    rows = [line for line in out.splitlines() if line[:4].isdigit()]
    assert [r.split()[4] for r in rows if " yes " in r].count("track") == 6
    assert any("episode" in r and " yes " in r for r in rows) and any("Garage Tape" in r and " yes " in r for r in rows)
    assert sum("Slow Tide" in r for r in rows) == 2
    assert not any("Guilty Pleasure" in r or "Advertisement" in r for r in rows)


def test_demo_without_redis_server_falls_back_to_memory_and_says_so(tmp_path: Path) -> None:
    result = run_command(["demo", "--seconds", "3"], tmp_path, PATH=str(tmp_path))  # no redis-server on PATH
    assert result.returncode == 0, result.stderr
    assert "in-memory store" in result.stdout and "Neon Drive" in result.stdout


def test_simulate_serves_the_api_and_stops_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "spotify_logger", "simulate", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HOME": str(tmp_path)})
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in first
        lines = [proc.stdout.readline() for _ in range(3)]  # the exports, then the auth command
        refresh = lines[-1].split("--refresh-token ")[1].strip()
        token = requests.post(f"http://127.0.0.1:{port}/api/token", timeout=5,
                              data={"grant_type": "refresh_token", "refresh_token": refresh,
                                    "client_id": "sim-client"}).json()["access_token"]
        assert requests.get(f"http://127.0.0.1:{port}/v1/me/player", timeout=5).status_code == 401
        player = requests.get(f"http://127.0.0.1:{port}/v1/me/player", timeout=5,
                              headers={"Authorization": f"Bearer {token}"})
        assert player.status_code == 200 and player.json()["item"]["name"] == "Neon Drive"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0


def test_simulate_with_a_bad_script_is_one_line_and_exit_65(tmp_path: Path) -> None:
    bad = tmp_path / "script.json"
    bad.write_text(json.dumps([{"dance": 5}]))
    result = run_command(["simulate", "--script", str(bad)], tmp_path)
    assert result.returncode == 65
    assert len(result.stderr.strip().splitlines()) == 1 and "script.json" in result.stderr
