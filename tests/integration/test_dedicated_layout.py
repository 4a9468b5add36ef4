"""Every command in a home of the Rust dedicated layout uses Rust's names (SPEC §9, §16).

The home is arranged as ``codex app-server daemon start`` of 0.169 leaves it:
``packages/app-server-daemon/current -> releases/<release>`` with ``bin/codex`` (here
the fake), records ``daemon.pid``/``daemon-updater.pid`` and logs ``daemon.stderr.log``/
``daemon-updater.stderr.log`` in <S>. Nothing of the standalone names may appear.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from daemonkit.paths import DaemonPaths, Layout
from tests.harness import is_alive, wait_for

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = pytest.mark.timeout(60)

STANDALONE_NAMES = (
    "app-server.pid",
    "app-server.pid.lock",
    "app-server.stderr.log",
    "app-server-updater.pid",
    "app-server-updater.pid.lock",
    "app-server-updater.stderr.log",
    "app-server-updater.sock",
)


@pytest.fixture
def dedicated_home(home: Home) -> Home:
    """The fake as the dedicated layout's ``current/bin/codex``; no standalone current."""
    fake = home.install_fake("1.0.0", current=False)
    root = Path(home.path) / "packages" / "app-server-daemon"
    release = root / "releases" / "1.0.0-x86_64-unknown-linux-musl"
    (release / "bin").mkdir(parents=True)
    # The fake reads its configuration next to its real path.
    (release / "bin" / "codex").symlink_to(fake / "codex")
    (root / "current").symlink_to(release)
    home.paths = DaemonPaths(str(home.path), Layout.DEDICATED)
    return home


def assert_no_standalone_names(home: Home) -> None:
    present = set(os.listdir(home.paths.state_dir))
    assert present.isdisjoint(STANDALONE_NAMES), sorted(present)


def test_every_command_uses_the_dedicated_names(dedicated_home: Home) -> None:
    home = dedicated_home
    s = home.paths.state_dir
    bin_path = str(Path(home.path) / "packages/app-server-daemon/current/bin/codex")

    started = home.run("start").json
    assert started["status"] == "started"
    assert started["managedCodexPath"] == bin_path
    pid = started["pid"]
    assert home.record_pid() == pid
    assert home.paths.app_server.record == f"{s}/daemon.pid"
    assert os.path.isfile(f"{s}/daemon.stderr.log")
    updater = wait_for(
        lambda: (
            os.path.exists(f"{s}/daemon-updater.pid") and os.path.getsize(f"{s}/daemon-updater.pid")
        ),
        what="the updater's record under daemon-updater.pid",
    )
    assert updater

    status = home.run("status").json
    assert (status["status"], status["backend"], status["pid"]) == ("running", "pid", pid)
    assert home.run("version").json["managedCodexPath"] == bin_path

    logs = home.run("logs")
    assert logs.returncode == 0, logs
    assert f"{s}/daemon.stderr.log" in logs.stdout

    assert home.run("adopt").json["status"] == "alreadyRunning"

    enabled = home.run("enable-remote-control").json
    assert enabled["remoteControlEnabled"] is True
    assert home.run("disable-remote-control").json["remoteControlEnabled"] is False

    restarted = home.run("restart").json
    assert restarted["status"] == "restarted"
    new_pid = restarted["pid"]
    assert isinstance(new_pid, int)
    assert home.record_pid() == new_pid

    assert_no_standalone_names(home)
    stopped = home.run("stop").json
    assert stopped["status"] == "stopped"
    assert not is_alive(new_pid)
    assert not os.path.exists(f"{s}/daemon.pid")
    home.stop_updater()
    assert_no_standalone_names(home)


def test_bootstrap_finds_the_dedicated_binary(dedicated_home: Home) -> None:
    # It failed with the missing-install error before: it looked only at standalone.
    home = dedicated_home
    bootstrapped = home.run("bootstrap").json
    assert bootstrapped["status"] == "bootstrapped"
    assert bootstrapped["managedCodexPath"] == str(
        Path(home.path) / "packages/app-server-daemon/current/bin/codex"
    )
    assert home.record_pid() is not None
    assert home.run("stop").json["status"] == "stopped"
    home.stop_updater()
    assert_no_standalone_names(home)
