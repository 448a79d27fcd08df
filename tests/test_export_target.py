"""`export -o PATH` writes a regular file or stdout, and refuses anything else it would replace
(issue 17, items 7 and 12): real symlinks, FIFOs, device nodes and a read-only filesystem."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import IN_CI, ROOT
from helpers import MON, A, add_play, run_cli


@pytest.fixture
def url(real_redis: Any, redis_server: Any) -> str:
    add_play(real_redis, MON, 200_000, A)
    return str(redis_server.url)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A folder of the test's own (tmp_path holds the redis-server's files too)."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def refused(capsys: pytest.CaptureFixture[str], url: str, target: Path, kind: str) -> None:
    code, out, err = run_cli(capsys, url, "export", "-o", str(target))
    assert code == 65 and out == "", err
    assert err.count("\n") == 1 and kind in err and "Traceback" not in err, err


def test_a_symlink_is_refused_and_its_target_untouched(url: str, out: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    real = out / "real.csv"
    real.write_text("keep me\n")
    link = out / "link.csv"
    link.symlink_to(real)
    refused(capsys, url, link, "symbolic link")
    assert link.is_symlink() and os.readlink(link) == str(real) and real.read_text() == "keep me\n"
    assert sorted(p.name for p in out.iterdir()) == ["link.csv", "real.csv"]  # no temporary left


def test_a_fifo_is_refused_and_stays_a_fifo(url: str, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = out / "pipe"
    os.mkfifo(fifo)
    refused(capsys, url, fifo, "FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_device_is_refused_and_never_replaced(url: str, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:  # as root the old code replaced a device node: try it on one of our own first
        node = out / "null"
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        refused(capsys, url, node, "a device")
        assert stat.S_ISCHR(os.lstat(node).st_mode)
    before = os.lstat("/dev/null")
    refused(capsys, url, Path("/dev/null"), "a device")
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


def test_a_folder_is_refused(url: str, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, url, out, "a folder")


def test_dash_writes_stdout(url: str, out: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(out)
    code, stdout, err = run_cli(capsys, url, "export", "-o", "-")
    assert code == 0 and stdout.startswith("started_at,") and len(stdout.splitlines()) == 2 and err == ""
    assert not list(out.iterdir())


def test_a_regular_file_is_replaced_whole(url: str, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = out / "plays.csv"
    target.write_text("old\n" * 100)
    code, _, err = run_cli(capsys, url, "export", "-o", str(target))
    assert code == 0 and "exported 1 plays" in err
    assert target.read_text().startswith("started_at,") and len(target.read_text().splitlines()) == 2


@pytest.mark.parametrize("old_mode", [0o600, 0o640, 0o604])
def test_a_replaced_file_keeps_its_mode(url: str, out: Path, capsys: pytest.CaptureFixture[str],
                                        old_mode: int) -> None:
    """chmod 600 ok.csv, then export -o ok.csv: it was 644 afterwards."""
    target = out / "ok.csv"
    target.write_text("old\n")
    target.chmod(old_mode)
    assert run_cli(capsys, url, "export", "-o", str(target))[0] == 0
    assert stat.S_IMODE(target.stat().st_mode) == old_mode and target.read_text().startswith("started_at,")


def test_a_new_file_is_private(url: str, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old_umask = os.umask(0o022)
    try:
        assert run_cli(capsys, url, "export", "-o", str(out / "new.csv"))[0] == 0
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((out / "new.csv").stat().st_mode) == 0o600, "a listening history is private"


def test_an_empty_file_name_is_not_called_a_folder(url: str, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, err = run_cli(capsys, url, "export", "-o", "")
    assert code == 65 and stdout == "" and err.count("\n") == 1, err
    assert "empty" in err and "folder" not in err


@pytest.mark.parametrize("where", ["missing/plays.csv", "a-file/plays.csv"])
def test_an_unwritable_place_is_one_line_and_65(url: str, out: Path, capsys: pytest.CaptureFixture[str],
                                               where: str) -> None:
    (out / "a-file").write_text("x")
    refused(capsys, url, out / where, "cannot write")


def test_a_read_only_filesystem_is_one_line_and_65(url: str, tmp_path: Path) -> None:
    """A real read-only tmpfs, mounted in a mount namespace of its own (nothing outside sees it).
    unlink() there fails with EROFS even for a file that never existed: that cleanup was exit 70."""
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "--user", "--map-root-user", "--mount", "true"],
                           capture_output=True) if unshare else None
    if probe is None or probe.returncode != 0:
        message = "unshare --user --mount is unavailable: cannot mount a read-only filesystem"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    ro = tmp_path / "ro"
    ro.mkdir()
    script = (f'mount -t tmpfs -o ro tmpfs "{ro}" && exec "{sys.executable}" -m spotify_logger export '
              f'-o "{ro}/plays.csv"')
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "REDIS_URL": url,
           "SPOTIFY_LOGGER_STATE_DIR": str(tmp_path / "state")}
    result = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 65, result.stderr
    assert result.stderr.strip() == f"spotify-logger: -o {ro}/plays.csv: cannot write: Read-only file system"
