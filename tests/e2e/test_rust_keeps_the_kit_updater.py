"""A Rust `start` or `restart` in a kit home leaves the kit's supervising updater alone
(issue 13, SPEC §14.1, §16).

Rust 0.169's `start` and `restart` stop any updater of a standalone install that has no
`<P>/auto-update-version` (they consider it ineligible for auto-update); with a marker
that does not name the current release they leave the running updater alone and start
none. The kit writes such a marker when it starts its updater. Against the pinned Codex
and npm's latest (the `real_codex` fixture), with the real Rust daemon of each.

Rust also stops the updater when `updater.autoUpdateEnabled` is false (it reads the same
settings), whatever the marker says: these homes keep updates on (the first cycle is
300 s away, so none runs during a test).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from daemonkit.updater_control import RUST_UPDATE_MARKER
from tests.harness import (
    is_alive,
    read_regular,
    rust_daemon,
    scheduled_updater,
    updater_pid,
    wait_for,
    write_settings,
)

if TYPE_CHECKING:
    from tests.harness import Home, RealCodex

pytestmark = [pytest.mark.real_codex, pytest.mark.timeout(180)]

# Updates on (Rust stops the updater otherwise), no health check, a short grace.
SETTINGS: dict[str, object] = {
    "shutdownGraceSeconds": 2,
    "supervisor": {"healthCheckIntervalSeconds": 0},
}


def recorded_server(home: Home) -> int:
    pid = home.record_pid()
    assert pid is not None
    return pid


@pytest.mark.parametrize("command", ["start", "restart"])
def test_a_rust_command_in_a_kit_home_leaves_the_supervising_updater_alone(
    home: Home, real_codex: RealCodex, command: str
) -> None:
    home.install_real(real_codex)
    write_settings(home, SETTINGS)
    started = home.run("start").json
    assert started["status"] == "started"
    updater = scheduled_updater(home)
    marker = Path(home.paths.package_root) / "auto-update-version"
    assert marker.read_text() == RUST_UPDATE_MARKER

    rust_daemon(home, real_codex.binary, command)

    assert is_alive(updater), f"Rust {command} stopped the kit's updater"
    assert scheduled_updater(home) == updater
    assert home.run("status").json["supervisor"]["state"] == "watching"  # type: ignore[index]
    assert marker.read_text() == RUST_UPDATE_MARKER
    # Still supervising. A server a Rust command started is watched at the updater's
    # next wake-up (SPEC §14.2); any kit command gives one: `start` says alreadyRunning
    # and tells the updater to watch. Then a kill is repaired.
    assert home.run("start").json["status"] == "alreadyRunning"
    assert scheduled_updater(home) == updater
    server = recorded_server(home)
    os.kill(server, signal.SIGKILL)

    def replaced() -> bool:
        raw = read_regular(home.paths.app_server.record)
        pid = json.loads(raw)["pid"] if raw else None  # empty: a spawn in progress
        return (
            isinstance(pid, int)
            and pid != server
            and is_alive(pid)
            and home.run("version").returncode == 0
        )

    wait_for(replaced, what="the kit's updater to restart the server after the Rust command")
    assert home.run("stop").json["status"] == "stopped"


def test_the_marker_of_an_existing_install_is_never_changed(
    home: Home, real_codex: RealCodex
) -> None:
    home.install_real(real_codex)
    write_settings(home, SETTINGS)
    marker = Path(home.paths.package_root) / "auto-update-version"
    marker.write_text("0.169.0-x86_64-unknown-linux-musl")
    os.chmod(marker, 0o644)
    assert home.run("start").json["status"] == "started"
    scheduled_updater(home)
    assert marker.read_text() == "0.169.0-x86_64-unknown-linux-musl"
    assert marker.stat().st_mode & 0o777 == 0o644
    assert home.run("stop").json["status"] == "stopped"


def supervisor(home: Home) -> dict[str, object]:
    value = home.run("status").json["supervisor"]
    assert isinstance(value, dict)
    return value


def assert_supervision_repairs_a_kill(home: Home) -> None:
    server = recorded_server(home)
    os.kill(server, signal.SIGKILL)

    def replaced() -> bool:
        raw = read_regular(home.paths.app_server.record)
        pid = json.loads(raw)["pid"] if raw else None  # empty: a spawn in progress
        return pid not in (None, server) and home.run("version").returncode == 0

    wait_for(replaced, what="the kit's updater to restart the killed server")


def test_a_rust_bootstrap_stops_the_kit_updater_until_the_next_start(
    home: Home, real_codex: RealCodex
) -> None:
    """Rust's bootstrap always stops whatever updater runs; finding the kit's marker,
    which names no release, it starts no updater of its own (and reports
    ``autoUpdateEnabled: false``), keeping the kit's settings. ``status`` says
    supervision was interrupted, and the kit's next start restores it."""
    home.install_real(real_codex)
    write_settings(home, SETTINGS)
    assert home.run("start").json["status"] == "started"
    kit_updater = scheduled_updater(home)

    bootstrapped = rust_daemon(home, real_codex.binary, "bootstrap")
    assert bootstrapped["status"] == "bootstrapped"
    assert bootstrapped["autoUpdateEnabled"] is False

    assert not is_alive(kit_updater)
    assert updater_pid(home) is None
    assert json.loads(Path(home.paths.settings).read_text()) == {
        **SETTINGS,
        "remoteControlEnabled": False,
    }
    report = supervisor(home)
    assert report["state"] == "interrupted", report
    assert "no updater is running" in str(report["reason"])
    assert "`codex-daemon start` restores supervision" in str(report["reason"])

    assert home.run("start").json["status"] == "alreadyRunning"
    scheduled_updater(home)
    assert supervisor(home)["state"] == "watching"
    assert_supervision_repairs_a_kill(home)
    assert home.run("stop").json["status"] == "stopped"


def test_a_rust_update_migrates_a_kit_home_and_the_kit_manages_it_there(
    home: Home, real_codex: RealCodex
) -> None:
    """``update --from-cli`` (offline: it copies the CLI's own package) moves a legacy
    home to the dedicated layout and pins it, stopping the kit's updater; Rust starts
    none for a pinned package. The kit then finds the server under Rust's names,
    ``status`` says supervision was interrupted, and the next start restores it."""
    home.install_real(real_codex)
    write_settings(home, SETTINGS)
    assert home.run("start").json["status"] == "started"
    kit_updater = scheduled_updater(home)

    updated = rust_daemon(home, real_codex.binary, "update", "--from-cli", "--yes")
    assert updated["status"] == "updated", updated

    assert not is_alive(kit_updater)
    paths = home.follow_layout()
    assert os.path.basename(paths.app_server.record) == "daemon.pid"
    migrated_server = recorded_server(home)
    status = home.run("status").json
    assert status["status"] == "running"
    assert status["pid"] == migrated_server
    report = status["supervisor"]
    assert isinstance(report, dict)
    assert report["state"] == "interrupted", report
    assert "no updater is running" in str(report["reason"])

    assert home.run("start").json["status"] == "alreadyRunning"
    scheduled_updater(home)
    assert supervisor(home)["state"] == "watching"
    assert_supervision_repairs_a_kill(home)
    assert recorded_server(home) != migrated_server
    assert home.run("stop").json["status"] == "stopped"
