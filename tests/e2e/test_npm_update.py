"""`update` through the npm channel onto the real Codex (SPEC §2.11, §7.7, §8.4, §8.7).

A fresh home installs @openai/codex@0.166.0 from the real npm registry, starts it, then
`update --yes` makes a one-shot updater (auto-update is off) install `latest` through the
same channel and restart the running real server onto it, validated by the server's
reported version. `latest` moves: the test asks the registry what it is at run time
(`npm view`), never assumes it. npm downloads about 100 MB per version, hence the
generous timeouts. The `network` marker keeps it out of runs that do not select it
(`.ci/run` does); without npm it skips, or fails when `DK_REAL_CODEX_REQUIRED=1` (as in
test_real_codex.py).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from daemonkit import __version__
from tests.harness import is_alive, marked_pids, read_regular, wait_for, write_settings

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = [pytest.mark.real_codex, pytest.mark.network, pytest.mark.timeout(300)]

REQUIRED = os.environ.get("DK_REAL_CODEX_REQUIRED") == "1"
OLD_VERSION = "0.166.0"
NPM_TIMEOUT_S = 140


def npm_latest() -> str:
    """What npm's `latest` tag names right now."""
    done = subprocess.run(
        ["npm", "view", "@openai/codex@latest", "version"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=NPM_TIMEOUT_S,
        check=True,
    )
    return done.stdout.decode().strip()


def host_target() -> str:
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
    machine = platform.machine()
    if platform.system() != "Linux" or machine not in arch:
        pytest.skip(f"no npm build of Codex for {platform.system()} {machine}")
    return f"{arch[machine]}-unknown-linux-musl"


def updater_alive(home: Home) -> bool:
    for pid in marked_pids(home.mark):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:4] == [b"-m", b"updater", b"run"]:
            return True
    return False


def test_update_moves_the_running_server_to_npm_latest(home: Home) -> None:
    if shutil.which("npm") is None:
        if REQUIRED:
            pytest.fail("npm is not on PATH (DK_REAL_CODEX_REQUIRED=1)")
        pytest.skip("npm is not on PATH")
    target = host_target()
    new_version = npm_latest()
    assert new_version != OLD_VERSION
    releases = Path(home.paths.releases)
    old_release = str(releases / f"{OLD_VERSION}-{target}")
    new_release = str(releases / f"{new_version}-{target}")

    installed = home.run(
        "install", "--channel", "npm", "--version", OLD_VERSION, timeout=NPM_TIMEOUT_S
    ).json
    assert installed["status"] == "installed"
    assert installed["releasePath"] == old_release
    assert installed["managedCodexVersion"] == OLD_VERSION
    # No updates and no supervision: no updater until `update` spawns a one-shot one.
    write_settings(
        home,
        {
            "updater": {"channel": "npm", "autoUpdateEnabled": False},
            "supervisor": {"restartOnExit": False},
        },
    )

    started = home.run("start").json
    assert started["status"] == "started"
    assert started["appServerVersion"] == OLD_VERSION
    old_pid = started["pid"]
    assert isinstance(old_pid, int)
    assert read_regular(home.paths.updater.record) is None

    result = home.run("update", "--yes", timeout=2 * NPM_TIMEOUT_S)

    assert result.returncode == 0, result
    assert result.stderr == "", "npm's output goes to the updater log, not the CLI"
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    output = json.loads(lines[0])
    assert list(output) == [
        "status",
        "managedCodexPath",
        "installedVersion",
        "runningVersion",
        "message",
    ]
    assert output["status"] == "updated"
    # npm releases hold `bin/codex` and the `codex` alias: reported as Rust reports it.
    assert output["managedCodexPath"] == home.paths.managed_bin_candidates[1]
    assert output["installedVersion"] == new_version
    assert output["runningVersion"] == new_version

    # The running server moved onto the new release.
    new_pid = home.record_pid()
    assert new_pid is not None
    assert new_pid != old_pid
    assert not is_alive(old_pid)
    assert is_alive(new_pid)
    version = home.run("version").json
    assert version["status"] == "running"
    assert version["backend"] == "pid"
    assert version["appServerVersion"] == new_version
    assert version["managedCodexVersion"] == new_version
    assert os.readlink(home.paths.current) == new_release
    assert os.readlink(home.paths.previous) == old_release
    assert os.path.realpath(Path(f"/proc/{new_pid}/exe")).startswith(new_release + "/")
    assert not [name for name in os.listdir(releases) if name.startswith(".staging")]
    # The one-shot updater answered and left.
    wait_for(lambda: not updater_alive(home), what="the one-shot updater to exit", timeout=10)
    assert read_regular(home.paths.updater.record) is None

    status = home.run("status").json
    assert status["cliVersion"] == __version__
    assert status["updater"]["lastResult"] == "updated"  # type: ignore[index]

    stopped = home.run("stop").json
    assert stopped["status"] == "stopped"
    assert not is_alive(new_pid)
