"""Checkout wrappers and lazy imports (SPEC §12.2, §11, §13.11 row 45).

`bin/codex-daemon` must work from a checkout without installation, also through a
symlink elsewhere, with no PYTHONPATH help. The read-only and lifecycle paths that do
not spawn (`version`, `status`, `stop`, `logs`) must not import python-daemon, sh,
packaging or urllib.request: those cost start-up time (SPEC §11) and may be missing
(SPEC §12.2). `start` does import `daemon`, which shows the import parser sees it.
"""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.harness import REPO, Result

if TYPE_CHECKING:
    from pathlib import Path

    from tests.harness import Home

pytestmark = pytest.mark.timeout(60)

WRAPPER = REPO / "bin" / "codex-daemon"
UPDATER_WRAPPER = REPO / "bin" / "codex-daemon-updater"
HEAVY = ("daemon", "sh", "packaging", "urllib.request")


def _clean_env(home: Home) -> dict[str, str]:
    env = home.env()
    del env["PYTHONPATH"]
    return env


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> Result:
    done = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=30,
        check=False,
    )
    return Result(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


@pytest.fixture(params=["direct", "symlink"])
def wrapper(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "direct":
        return WRAPPER
    link = tmp_path / "elsewhere" / "codex-daemon"
    link.parent.mkdir()
    link.symlink_to(WRAPPER)
    return link


def test_wrapper_help(wrapper: Path, home: Home, tmp_path: Path) -> None:
    result = _run([str(wrapper), "--help"], _clean_env(home), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: codex-daemon ")
    for command in ("start", "restart", "stop", "version", "status", "install", "logs"):
        assert f"\n    {command} " in result.stdout
    assert result.stderr == ""


def test_wrapper_status_not_running(wrapper: Path, home: Home, tmp_path: Path) -> None:
    status = _run([str(wrapper), "status"], _clean_env(home), tmp_path).json
    assert status["status"] == "notRunning"
    assert status["socketPath"] == str(home.path / "app-server-control" / "app-server-control.sock")
    assert "backend" not in status


def test_wrapper_status_running(wrapper: Path, fake_home: Home, tmp_path: Path) -> None:
    pid = fake_home.run("start").json["pid"]
    status = _run([str(wrapper), "status"], _clean_env(fake_home), tmp_path).json
    assert status["status"] == "running"
    assert status["backend"] == "pid"
    assert status["pid"] == pid
    assert status["appServerVersion"] == "1.0.0"
    assert fake_home.run("stop").json["status"] == "stopped"


def test_updater_wrapper_help_through_symlink(home: Home, tmp_path: Path) -> None:
    link = tmp_path / "codex-daemon-updater"
    link.symlink_to(UPDATER_WRAPPER)
    result = _run([str(link), "--help"], _clean_env(home), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: codex-daemon-updater ")


def _imported_modules(stderr: str) -> set[str]:
    """Module names from `-X importtime` lines: `import time: self | cumulative | name`."""
    modules = set()
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        name = line.rsplit("|", 1)[-1].strip()
        if name != "imported package":
            modules.add(name)
    return modules


def _heavy(modules: set[str]) -> set[str]:
    return {name for name in modules if any(name == h or name.startswith(f"{h}.") for h in HEAVY)}


def _importtime(home: Home, *args: str) -> tuple[dict[str, object], set[str]]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "daemonkit", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=home.env(),
        timeout=30,
        check=False,
    )
    stderr = done.stderr.decode("utf-8", "replace")
    output = Result(done.returncode, done.stdout.decode("utf-8", "replace"), stderr).json
    modules = _imported_modules(stderr)
    # The parse must have seen the CLI itself, or an empty set would pass vacuously.
    assert {"daemonkit", "daemonkit.cli"} <= modules, sorted(modules)
    return output, modules


@pytest.mark.parametrize("command", ["version", "status", "logs", "stop"])
def test_non_spawning_commands_import_no_heavy_modules(fake_home: Home, command: str) -> None:
    assert fake_home.run("start").json["status"] == "started"
    output, modules = _importtime(fake_home, command)
    assert _heavy(modules) == set()
    if command == "stop":
        assert output["status"] == "stopped"
    else:
        assert fake_home.run("stop").json["status"] == "stopped"


def test_start_imports_python_daemon_to_spawn(fake_home: Home) -> None:
    output, modules = _importtime(fake_home, "start")
    assert output["status"] == "started"
    assert "daemon" in modules
    assert fake_home.run("stop").json["status"] == "stopped"
