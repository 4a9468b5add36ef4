"""The kit against the real Codex CLI (SPEC §13.2 row 5, §13.10 row 41, §13.1 row 4).

The lifecycle tests run against the pinned release and against npm's latest, both
installed by `.ci/run` (the `real_codex` fixture in tests/conftest.py). Without them these
tests skip, unless `DK_REAL_CODEX_REQUIRED=1` (set by `.ci/run`), when they fail: CI must
not turn a broken Codex install into a green run. The network test installs the pinned
release from the real npm registry; it carries the `network` marker, which runs only when
selected (`.ci/run` selects it).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from daemonkit import __version__
from tests.harness import REAL_CODEX_VERSION, is_alive, marked_pids, wait_for

if TYPE_CHECKING:
    from tests.harness import Home, RealCodex

pytestmark = [pytest.mark.real_codex, pytest.mark.timeout(120)]

REQUIRED = os.environ.get("DK_REAL_CODEX_REQUIRED") == "1"
NPM_TIMEOUT_S = 110


def _unavailable(why: str) -> None:
    """Skip, or fail when CI requires the real Codex."""
    if REQUIRED:
        pytest.fail(f"{why} (DK_REAL_CODEX_REQUIRED=1)")
    pytest.skip(why)


@pytest.fixture
def real_home(home: Home, real_codex: RealCodex) -> Home:
    home.install_real(real_codex)
    return home


def _host_target() -> str:
    machine = platform.machine()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
    if machine not in arch:
        pytest.skip(f"Codex {REAL_CODEX_VERSION} has no npm build for {machine}")
    return f"{arch[machine]}-unknown-linux-musl"


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _start_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    # Field 22; the fields after comm start at field 3.
    return int(stat[stat.rfind(b")") + 2 :].split()[19])


def _assert_record_matches_proc(home: Home, pid: int) -> None:
    record = home.record()
    assert record is not None
    assert record["pid"] == pid
    assert isinstance(record["processStartTime"], str)
    assert record["processStartTime"]
    identity = record["processIdentity"]
    assert identity == {"bootId": _boot_id(), "startTicks": _start_ticks(pid)}


def _owned_pids(home: Home) -> list[int]:
    """Processes carrying this test's mark, other than the helpers the test itself holds."""
    helpers = {process.pid for process in home.started}
    return [pid for pid in marked_pids(home.mark) if pid not in helpers]


def _updater_pid(home: Home) -> int | None:
    try:
        record = json.loads(Path(home.paths.updater.record).read_bytes())
    except FileNotFoundError:
        return None
    pid = record["pid"]
    assert isinstance(pid, int)
    return pid


def test_lifecycle_against_real_codex(real_home: Home, real_codex: RealCodex) -> None:
    home = real_home
    expected_version = real_codex.version
    sock = str(home.path / "app-server-control" / "app-server-control.sock")

    started = home.run("start").json
    assert started["status"] == "started"
    assert started["backend"] == "pid"
    assert started["appServerVersion"] == expected_version
    assert started["managedCodexVersion"] == expected_version
    assert started["socketPath"] == sock
    assert started["cliVersion"] == __version__
    pid = started["pid"]
    assert isinstance(pid, int)
    assert is_alive(pid)
    _assert_record_matches_proc(home, pid)

    version = home.run("version").json
    assert version["status"] == "running"
    assert version["backend"] == "pid"
    assert version["appServerVersion"] == expected_version
    assert "pid" not in version

    status = home.run("status").json
    assert status["status"] == "running"
    assert status["backend"] == "pid"
    assert status["pid"] == pid
    assert status["appServerVersion"] == expected_version
    assert status["warnings"] == []

    restarted = home.run("restart").json
    assert restarted["status"] == "restarted"
    assert restarted["appServerVersion"] == expected_version
    new_pid = restarted["pid"]
    assert isinstance(new_pid, int)
    assert new_pid != pid
    # restart returns after the old server exited (SPEC §2.6 step 6).
    assert not is_alive(pid)
    assert is_alive(new_pid)
    _assert_record_matches_proc(home, new_pid)

    stopped = home.run("stop").json
    assert stopped["status"] == "stopped"
    assert stopped["backend"] == "pid"
    assert "pid" not in stopped
    assert "appServerVersion" not in stopped
    assert not is_alive(new_pid)
    assert home.record() is None
    # Nothing the server started may outlive it; only the updater that start may have
    # spawned stays, because stop never stops the updater (SPEC §2.7).
    allowed = {pid for pid in [_updater_pid(home)] if pid is not None}
    assert wait_for(
        lambda: set(_owned_pids(home)) <= allowed,
        what=f"no marked processes left but the updater {allowed}",
        timeout=5,
    )

    assert home.run("stop").json["status"] == "notRunning"
    failed = home.run("version")
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.startswith(f"Error: failed to connect to {sock}\n")


def test_start_twice_names_the_same_real_server(real_home: Home, real_codex: RealCodex) -> None:
    home = real_home
    expected_version = real_codex.version
    pid = home.run("start").json["pid"]
    again = home.run("start").json
    assert again["status"] == "alreadyRunning"
    assert again["backend"] == "pid"
    assert "pid" not in again
    assert again["appServerVersion"] == expected_version
    assert home.record_pid() == pid
    assert home.run("stop").json["status"] == "stopped"
    assert isinstance(pid, int)
    assert not is_alive(pid)


@pytest.mark.network
def test_install_from_npm_registry_then_start(home: Home) -> None:
    if shutil.which("npm") is None:
        _unavailable("npm is not on PATH")
    target = _host_target()
    root = home.path / "packages" / "standalone"
    release = f"{root}/releases/{REAL_CODEX_VERSION}-{target}"

    first = home.run(
        "install", "--channel", "npm", "--version", REAL_CODEX_VERSION, timeout=NPM_TIMEOUT_S
    )
    # `.json` asserts that stdout is exactly one JSON line: npm's chatter went to stderr.
    installed = first.json
    assert installed == {
        "status": "installed",
        "channel": "npm",
        # The release has both `codex` and `bin/codex`: reported as Rust reports it.
        "managedCodexPath": f"{root}/current/bin/codex",
        "managedCodexVersion": REAL_CODEX_VERSION,
        "releasePath": release,
        "previousReleasePath": None,
        "cliVersion": __version__,
    }
    assert os.readlink(root / "current") == release
    # The payload is the platform package's vendor directory plus the `codex` alias (§7.7).
    assert (Path(release) / "bin" / "codex").is_file()
    assert (Path(release) / "codex-package.json").is_file()
    assert os.readlink(Path(release) / "codex") == "bin/codex"
    assert not [name for name in os.listdir(root / "releases") if name.startswith(".staging")]

    second = home.run(
        "install", "--channel", "npm", "--version", REAL_CODEX_VERSION, timeout=NPM_TIMEOUT_S
    ).json
    assert second["status"] == "alreadyInstalled"
    assert second["releasePath"] == release
    assert second["managedCodexVersion"] == REAL_CODEX_VERSION

    started = home.run("start").json
    assert started["status"] == "started"
    assert started["managedCodexPath"] == f"{root}/current/bin/codex"
    assert started["appServerVersion"] == REAL_CODEX_VERSION
    pid = started["pid"]
    assert isinstance(pid, int)
    _assert_record_matches_proc(home, pid)
    stopped = home.run("stop").json
    assert stopped["status"] == "stopped"
    assert not is_alive(pid)
    assert home.record() is None
