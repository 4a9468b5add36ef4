"""Every command in a home of the Rust dedicated layout uses Rust's names (SPEC §9, §16).

The home is arranged as ``codex app-server daemon start`` of 0.169 leaves it:
``packages/app-server-daemon/current -> releases/<release>`` with ``bin/codex`` (here
the fake), records ``daemon.pid``/``daemon-updater.pid`` and logs ``daemon.stderr.log``/
``daemon-updater.stderr.log`` in <S>. Nothing of the standalone names may appear.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from daemonkit.paths import Layout
from daemonkit.pidrecord import PidRecord
from daemonkit.procinfo import inspect_process
from tests.fakes.fake_codex import OFFLINE_UPDATE_ERR
from tests.harness import (
    TARGET,
    assert_no_kit_only_files,
    is_alive,
    read_regular,
    scheduled_updater,
    wait_for,
    write_settings,
)

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
    assert home.follow_layout().layout is Layout.DEDICATED
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


# -- the dedicated layout is Rust's to update (SPEC §16) -----------------------------------------

RUST_SERVER_ARGV = [
    "app-server",
    "--listen",
    "unix://",
    "--analytics-default-enabled",
    "--managed-daemon",
]


def witness(home: Home) -> list[dict[str, object]]:
    raw = read_regular(str(home.root / "witness.jsonl")) or b""
    return [json.loads(line) for line in raw.splitlines()]


def update_loops(home: Home) -> list[int]:
    """Pids of the fake ``pid-update-loop`` runs that started and have not exited."""
    events = witness(home)
    exited = {e["pid"] for e in events if e["event"] == "exit"}
    return [
        pid
        for e in events
        if e["event"] == "update_loop_start"
        and (pid := e["pid"]) not in exited
        and isinstance(pid, int)
        and is_alive(pid)
    ]


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[1])


@pytest.fixture
def witnessed(dedicated_home: Home) -> Home:
    release = Path(dedicated_home.paths.releases) / f"1.0.0-{TARGET}"
    dedicated_home.configure_fake(release, witness=str(dedicated_home.root / "witness.jsonl"))
    write_settings(dedicated_home, {"supervisor": {"healthCheckIntervalSeconds": 0}})
    return dedicated_home


def test_the_kit_updater_runs_rusts_update_loop_and_installs_nothing(witnessed: Home) -> None:
    home = witnessed
    releases_before = sorted(os.listdir(home.paths.releases))
    assert home.run("start").json["status"] == "started"
    updater = scheduled_updater(home)
    loop = wait_for(lambda: update_loops(home), what="the updater to start Rust's loop")[0]
    assert parent_of(loop) == updater
    assert os.getpgid(loop) == updater  # one group: stopping the recorded updater stops both
    starts = [e for e in witness(home) if e["event"] == "update_loop_start"]
    assert starts[0]["socket"] == os.path.join(home.paths.state_dir, "daemon-updater.sock")

    # `update` reaches Rust's loop on the request socket and relays its answer.
    done = home.run("update", "--yes")
    assert done.returncode == 1
    assert done.stderr == f"Error: {OFFLINE_UPDATE_ERR}\n"
    assert sorted(os.listdir(home.paths.releases)) == releases_before
    assert not os.path.lexists(home.paths.current)

    # A loop that dies is started again; the server is untouched.
    server = home.record_pid()
    os.kill(loop, signal.SIGKILL)
    wait_for(
        lambda: [p for p in update_loops(home) if p != loop],
        what="the updater to start Rust's loop again",
    )
    log = read_regular(home.paths.updater.log) or b""
    assert b'"event":"rust_update_loop_exited"' in log
    assert home.record_pid() == server

    # The kit's own files are outside the home.
    assert_no_kit_only_files(home)
    assert os.path.isfile(home.paths.updater_state)
    assert home.paths.updater_state.startswith(str(home.user_home))
    assert os.path.isfile(home.paths.binary_cache)

    # Updates off: the loop stops, supervision goes on, and `update` says who updates.
    write_settings(
        home,
        {"updater": {"autoUpdateEnabled": False}, "supervisor": {"healthCheckIntervalSeconds": 0}},
    )
    assert home.run("start").json["status"] == "alreadyRunning"
    wait_for(lambda: not update_loops(home), what="Rust's loop to stop with updates off")
    assert scheduled_updater(home) == updater
    done = home.run("update", "--yes")
    assert done.returncode == 1
    assert "is updated by the Codex daemon's own update loop" in done.stderr
    assert home.paths.settings in done.stderr
    assert home.run("stop").json["status"] == "stopped"
    home.stop_updater()
    assert_no_kit_only_files(home)


def test_stopping_the_recorded_updater_stops_rusts_loop_too(witnessed: Home) -> None:
    home = witnessed
    assert home.run("start").json["status"] == "started"
    updater = scheduled_updater(home)
    loop = wait_for(lambda: update_loops(home), what="the updater to start Rust's loop")[0]
    # As Rust stops an updater it considers ineligible: SIGTERM to the recorded group.
    os.killpg(updater, signal.SIGTERM)
    wait_for(lambda: not is_alive(updater) and not is_alive(loop), what="both to exit")
    status = home.run("status").json
    supervisor = status["supervisor"]
    assert isinstance(supervisor, dict)
    assert supervisor["state"] == "interrupted"
    assert "`codex-daemon start` restores supervision" in str(supervisor["reason"])
    assert home.run("start").json["status"] == "alreadyRunning"
    scheduled_updater(home)
    wait_for(lambda: update_loops(home), what="the restored updater to start Rust's loop")
    assert home.run("stop").json["status"] == "stopped"
    home.stop_updater()


def test_a_captured_migrated_home_is_managed(home: Home) -> None:
    """The tree Rust 0.169's ``update --from-cli`` leaves in a home the kit had set up
    (recorded from a real run): the dedicated root next to the old standalone one,
    whose ``current`` is left in place, and in <S> the kit's old files next to Rust's
    new ones. The running server is recorded only in ``daemon.pid``."""
    standalone = home.install_fake("1.0.0", witness=str(home.root / "witness.jsonl"))
    root = Path(home.path) / "packages" / "app-server-daemon"
    release = root / "releases" / f"local-{'5a' * 32}-x86_64-unknown-linux-musl"
    (release / "bin").mkdir(parents=True)
    (release / "bin" / "codex").symlink_to(standalone / "codex")
    (root / "current").symlink_to(release)
    (root / "install.lock").touch()
    (root / "selection-history").write_text(f"{release.name}\n")
    (Path(home.paths.package_root) / "auto-update-version").write_text("codex-daemonkit")
    state = Path(home.paths.state_dir)
    state.mkdir(mode=0o700)
    for name in (
        "app-server.pid.lock",
        "app-server.stderr.log",
        "app-server-updater.pid.lock",
        "app-server-updater.stderr.log",
        "app-server-updater.state.json",
        "managed-codex-version.json",
        "daemon-updater.pid.lock",
        "daemon.lock",
        "daemon.pid.lock",
    ):
        (state / name).touch()
    (state / "desired-state.json").write_text('{"state":"running"}')
    # Rust's restart after the migration: the server from the dedicated binary, with
    # 0.169's argv, recorded by Rust's record (same schema as the kit's).
    argv = [str(root / "current" / "bin" / "codex"), *RUST_SERVER_ARGV]
    server = home.spawn_marked(argv, group=True, stdin=subprocess.DEVNULL)
    wait_for(lambda: home.run("version").returncode == 0, what="the migrated server")
    snapshot = inspect_process(server.pid)
    assert snapshot is not None
    record = PidRecord(
        pid=server.pid, process_start_time=snapshot.lstart, identity=snapshot.identity
    )
    (state / "daemon.pid").write_text(json.dumps(record.to_json(), separators=(",", ":")))

    paths = home.follow_layout()
    assert paths.layout is Layout.DEDICATED
    status = home.run("status").json
    assert (status["status"], status["backend"], status["pid"]) == ("running", "pid", server.pid)
    assert status["managedCodexPath"] == str(root / "current" / "bin" / "codex")
    restarted = home.run("restart").json
    assert restarted["status"] == "restarted"
    assert server.wait(10) is not None
    assert home.record_pid() == restarted["pid"]
    assert not (state / "app-server.pid").exists()
    assert home.run("stop").json["status"] == "stopped"
    home.stop_updater()


def test_install_refuses_in_the_dedicated_layout(dedicated_home: Home) -> None:
    """It would install into packages/standalone, which a Rust home does not run."""
    home = dedicated_home
    releases = sorted(os.listdir(home.paths.releases))
    done = home.run("install", "--channel", "npm", "--version", "2.0.0")
    assert done.returncode == 1
    bin_path = Path(home.path) / "packages/app-server-daemon/current/bin/codex"
    assert done.stderr.startswith(f"Error: this CODEX_HOME runs {bin_path}; the dedicated package")
    assert "`codex app-server daemon update --from-cli`" in done.stderr
    assert sorted(os.listdir(home.paths.releases)) == releases
    assert not os.path.lexists(home.paths.current)
