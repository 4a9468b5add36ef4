"""A home the Rust daemon set up in its dedicated layout, managed by the kit (SPEC §9, §16).

``codex app-server daemon start`` of Codex >= 0.169 in a fresh home creates
``packages/app-server-daemon/current`` and names its records ``daemon.pid`` and
``daemon-updater.pid``. The kit then manages that server, and spawns its own from the
dedicated binary with the same names, so that each CLI sees the other's server as
managed. Runs against the pinned and the latest real Codex.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from typing import TYPE_CHECKING

import pytest

from tests.harness import (
    assert_no_kit_only_files,
    is_alive,
    marked_pids,
    rust_daemon,
    scheduled_updater,
    wait_for,
    write_settings,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.harness import Home, RealCodex

pytestmark = [pytest.mark.real_codex, pytest.mark.timeout(180)]

SERVER_ARGV_TAIL = ["app-server", "--listen", "unix://", "--analytics-default-enabled"]


def rust(codex: RealCodex, home: Home, command: str) -> dict[str, object]:
    return rust_daemon(home, codex.binary, command)


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [arg.decode() for arg in f.read().split(b"\0")[:-1]]


def modes(state_dir: str) -> dict[str, int]:
    """The mode of every regular file in <S>."""
    found = {}
    for name in os.listdir(state_dir):
        info = os.lstat(os.path.join(state_dir, name))
        if stat.S_ISREG(info.st_mode):
            found[name] = stat.S_IMODE(info.st_mode)
    return found


def servers(home: Home) -> list[int]:
    """Live app-servers this test started (Rust's or the kit's), by the test's mark."""
    return [
        pid
        for pid in marked_pids(home.mark)
        if is_alive(pid) and cmdline(pid)[1:3] == ["app-server", "--listen"]
    ]


def record_pid(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            pid = json.loads(f.read())["pid"]
    except FileNotFoundError:
        return None
    assert isinstance(pid, int)
    return pid


def stop_updater_group(home: Home) -> None:
    """Stop the recorded updater's group (Rust's loop, or the kit's updater with Rust's
    loop as its child) by the recorded pid; first, so nothing restarts the servers."""
    pid = record_pid(os.path.join(home.paths.state_dir, "daemon-updater.pid"))
    if pid is not None and home.carries_mark(pid):
        os.killpg(pid, signal.SIGTERM)
        wait_for(lambda: not is_alive(pid), what=f"updater {pid} to exit")


def rust_update_loops(home: Home) -> dict[int, int]:
    """{pid: parent pid} of the live ``pid-update-loop`` processes this test started."""
    found = {}
    for pid in marked_pids(home.mark):
        if is_alive(pid) and cmdline(pid)[1:] == ["app-server", "daemon", "pid-update-loop"]:
            with open(f"/proc/{pid}/stat", "rb") as f:
                found[pid] = int(f.read().rsplit(b")", 1)[1].split()[1])
        # Anything else this test started is a server or a kit updater.
    return found


def assert_the_kit_updater_runs_rusts_loop(home: Home) -> int:
    """Exactly one recorded updater, the kit's, with Rust's loop as its only child."""
    home.follow_layout()
    updater = scheduled_updater(home)
    wait_for(
        lambda: list(rust_update_loops(home).values()) == [updater],
        what="the kit's updater to run Rust's update loop",
    )
    return updater


def assert_leaves_rust_home_alone(home: Home) -> None:
    assert_no_kit_only_files(home)
    assert not os.path.exists(os.path.join(home.path, "packages", "standalone"))


@pytest.fixture
def rust_home(home: Home, real_codex: RealCodex) -> Iterator[Home]:
    """A fresh home (no install) that Rust's ``start`` sets up in its dedicated layout."""
    try:
        yield home
    finally:
        stop_updater_group(home)
        for pid in servers(home):
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not servers(home), what="the servers this test started to exit")


def test_kit_manages_a_home_rust_set_up_in_the_dedicated_layout(
    rust_home: Home, real_codex: RealCodex
) -> None:
    home = rust_home
    state_dir = home.paths.state_dir
    dedicated_bin = os.path.join(
        home.path, "packages", "app-server-daemon", "current", "bin", "codex"
    )

    started = rust(real_codex, home, "start")
    assert started["status"] == "started"
    rust_pid = started["pid"]
    assert isinstance(rust_pid, int)
    assert os.path.isfile(dedicated_bin)
    assert record_pid(os.path.join(state_dir, "daemon.pid")) == rust_pid
    rust_modes = modes(state_dir)
    assert rust_modes["daemon.lock"] == 0o644

    # The kit sees Rust's server as managed, with Rust's record and binary.
    status = home.run("status").json
    assert status["status"] == "running"
    assert status["backend"] == "pid"
    assert status["pid"] == rust_pid
    version = home.run("version").json
    assert version["status"] == "running"
    assert version["backend"] == "pid"
    assert version["managedCodexPath"] == dedicated_bin
    assert version["managedCodexPath"] == rust(real_codex, home, "version")["managedCodexPath"]

    stopped = home.run("stop").json
    assert stopped["status"] == "stopped"
    assert stopped["backend"] == "pid"
    assert not is_alive(rust_pid)
    assert not os.path.exists(os.path.join(state_dir, "daemon.pid"))

    # The kit's own server comes from the dedicated binary, with 0.169's argv, and is
    # recorded under Rust's name.
    rust_updater = record_pid(os.path.join(state_dir, "daemon-updater.pid"))
    kit_start = home.run("start")
    kit_started = kit_start.json
    assert kit_started["status"] == "started"
    assert f"replacing the Codex daemon's updater (pid {rust_updater})" in kit_start.stderr
    kit_pid = kit_started["pid"]
    assert isinstance(kit_pid, int)
    # Rust's updater, which does not supervise, gave way to the kit's, which runs
    # Rust's update loop as its child: one recorded updater, and updates stay Rust's.
    updater = assert_the_kit_updater_runs_rusts_loop(home)
    assert record_pid(os.path.join(state_dir, "daemon.pid")) == kit_pid
    assert cmdline(kit_pid) == [
        os.path.realpath(dedicated_bin),
        *SERVER_ARGV_TAIL,
        "--managed-daemon",
    ]
    # 0.169's daemon has no `status`: its `version` and an idempotent `start` say.
    rust_version = rust(real_codex, home, "version")
    assert rust_version["status"] == "running", rust_version
    assert rust_version["backend"] == "pid", rust_version
    rust_start = rust(real_codex, home, "start")
    assert rust_start["status"] == "alreadyRunning", rust_start
    assert rust_start["backend"] == "pid", rust_start
    assert servers(home) == [kit_pid]

    assert scheduled_updater(home) == updater, "a Rust start replaced the kit's updater"
    restarted = home.run("restart").json
    assert restarted["status"] == "restarted"
    new_pid = restarted["pid"]
    assert isinstance(new_pid, int)
    assert new_pid != kit_pid
    assert not is_alive(kit_pid)
    assert record_pid(os.path.join(state_dir, "daemon.pid")) == new_pid
    assert servers(home) == [new_pid]

    # Files Rust created keep their modes; the server's record and log are replaced
    # by files the kit created (0600, SPEC §3.2). No standalone names appeared.
    after = modes(state_dir)
    replaced = {
        "daemon.pid",
        "daemon.stderr.log",
        "daemon-updater.pid",
        "daemon-updater.stderr.log",
    }
    for name, mode in rust_modes.items():
        if name not in replaced:
            assert after.get(name) == mode, name
    assert after["daemon.lock"] == 0o644
    assert not any(name.startswith("app-server.") for name in after), sorted(after)
    assert_leaves_rust_home_alone(home)
    assert os.path.isfile(home.paths.updater_state)  # the kit's, outside the home

    # Rust restarts the kit's server in place; the kit's updater stays the one updater.
    rust_restarted = rust(real_codex, home, "restart")
    assert rust_restarted["status"] == "restarted", rust_restarted
    rust_pid = rust_restarted["pid"]
    assert isinstance(rust_pid, int)
    assert not is_alive(new_pid)
    assert servers(home) == [rust_pid]
    assert scheduled_updater(home) == updater, "a Rust restart replaced the kit's updater"
    assert home.run("status").json["pid"] == rust_pid

    assert rust(real_codex, home, "stop")["status"] == "stopped"
    assert not is_alive(rust_pid)
    assert servers(home) == []


def test_update_in_the_dedicated_layout_is_rusts_own(
    rust_home: Home, real_codex: RealCodex
) -> None:
    """The kit installs nothing there: ``update`` reaches Rust's loop, whose answer,
    offline here, is its failure to fetch its installer, relayed unchanged."""
    home = rust_home
    assert rust(real_codex, home, "start")["status"] == "started"
    assert home.run("start").json["status"] == "alreadyRunning"
    assert_the_kit_updater_runs_rusts_loop(home)

    done = home.run("update", "--yes")
    assert done.returncode == 1
    assert "chatgpt.com/codex/install.sh" in done.stderr, done.stderr
    assert_leaves_rust_home_alone(home)

    # With auto-update off the kit's updater runs no loop, and says who updates.
    write_settings(home, {"updater": {"autoUpdateEnabled": False}})
    assert home.run("restart").json["status"] == "restarted"
    wait_for(lambda: not rust_update_loops(home), what="Rust's loop to stop with updates off")
    done = home.run("update", "--yes")
    assert done.returncode == 1
    assert "is updated by the Codex daemon's own update loop" in done.stderr, done.stderr
    assert_leaves_rust_home_alone(home)
