"""A CLI killed at every named step leaves a state the next plain command converges from.

SPEC §13 (test hooks) and §13.4 row 14: with ``CODEX_DAEMONKIT_TEST_HOOKS=1`` and
``CODEX_DAEMONKIT_TEST_CRASH_AT=<point>`` the CLI ``_exit(99)``s at that point, as a
SIGKILL would leave it. Then, without hooks, the next command must converge: exactly
one app-server (recorded, identity matching /proc) or none, a stale reservation
removed, an orphan found or reported (SPEC §2.4: ``start`` says alreadyRunning without
``backend``, ``stop`` refuses as unmanaged), settings.json old or new but valid,
``current`` old or new and never broken. ``before-reexec`` belongs to the updater and is
covered by tests/integration/test_updater.py.

The npm channel's points (after-stage, after-flip) run offline: a fake ``npm`` first on
PATH "installs" the fake codex in 0.169.0's package layout (SPEC §7.7).
"""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from daemonkit.errors import ProbeError
from daemonkit.install import host_targets
from daemonkit.probe import probe
from tests.faults.figures import Figures
from tests.harness import (
    UPDATER_OFF,
    app_servers_alive,
    boot_id,
    is_alive,
    start_ticks,
    wait_for,
    write_settings_text,
)
from tests.updates import put_fake_npm_on_path

if TYPE_CHECKING:
    from tests.harness import Home, Result

pytestmark = pytest.mark.timeout(90)

CRASHED = 99
NEW_VERSION = "2.0.0"
UNMANAGED_ERROR = "Error: app server is running but is not managed by codex app-server daemon\n"


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
def figures(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Figures:
    return Figures.for_test(tmp_path_factory, request)


def settings_text(**settings: object) -> str:
    """settings.json with a client's own key and the updater off (so only the app-server
    is in play), indented as the kit writes it."""
    return json.dumps({"custom": [1, "kept"], **UPDATER_OFF, **settings}, indent=2)


@pytest.fixture
def fake(home: Home) -> Home:
    write_settings_text(home, settings_text(shutdownGraceSeconds=2))
    home.install_fake()
    return home


def crash(home: Home, point: str, *args: str) -> None:
    """Run the CLI with the crash hook armed at ``point``; it must die there."""
    env = home.env(CODEX_DAEMONKIT_TEST_HOOKS="1", CODEX_DAEMONKIT_TEST_CRASH_AT=point)
    result = home.run(*args, env=env, timeout=60)
    assert result.returncode == CRASHED, f"{args} did not reach {point}: {result}"
    assert result.stdout == "", "a crashed command printed output"


def proc_identity(pid: int) -> tuple[str, int]:
    return boot_id(), start_ticks(pid)


def socket_answers(home: Home) -> bool:
    try:
        probe(home.paths.socket)
    except ProbeError:
        return False
    return True


def ok(result: Result) -> dict[str, object]:
    assert "Traceback" not in result.stderr, result
    return result.json


def assert_converged(home: Home, *, running: bool) -> int | None:
    """One recorded app-server whose identity matches /proc, or none and no record."""
    if running:
        servers = wait_for(lambda: app_servers_alive(home), what="the app-server")
        assert len(servers) == 1, f"expected one app-server, found {servers}"
        record = home.record()
        assert record is not None, "a running server has no record"
        assert record["pid"] == servers[0]
        identity = record["processIdentity"]
        assert isinstance(identity, dict)
        assert (identity["bootId"], identity["startTicks"]) == proc_identity(servers[0])
        pid: int | None = servers[0]
    else:
        wait_for(lambda: app_servers_alive(home) == [], what="no app-server alive")
        assert not os.path.lexists(home.paths.app_server.record), "a record outlived its server"
        pid = None
    assert_settings_valid(home)
    assert_current_runs(home)
    leftovers = [n for n in os.listdir(home.paths.state_dir) if n.endswith(".tmp")]
    assert leftovers == [], f"temporary files left behind: {leftovers}"
    return pid


def assert_settings_valid(home: Home) -> dict[str, object] | None:
    if not os.path.exists(home.paths.settings):
        return None
    value = json.loads(Path(home.paths.settings).read_bytes())
    assert isinstance(value, dict), value
    return value


def assert_current_runs(home: Home) -> Path:
    """``current`` is a symlink to a release whose binary is an executable file."""
    current = Path(home.paths.current)
    assert current.is_symlink(), "current is not a symlink"
    release = Path(os.path.realpath(current))
    assert release.parent == Path(home.paths.releases), release
    binary = release / "codex"
    assert binary.is_file(), f"current points at {release}, which has no codex"
    assert os.access(binary, os.X_OK)
    return release


def kill_by_pid(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not is_alive(pid), what=f"pid {pid} to die")


# -- the pid backend's points: after-reserve, after-spawn, after-publish ------------------


@pytest.mark.parametrize("command", ["start", "restart"])
def test_crash_after_reserve_leaves_debris_that_the_next_start_clears(
    fake: Home, command: str, figures: Figures
) -> None:
    """SPEC §4.4: an empty record whose lock is free is a dead reservation."""
    figures.add("crash_points_tried")
    old = ok(fake.run("start"))["pid"] if command == "restart" else None
    crash(fake, "after-reserve", command)
    assert Path(fake.paths.app_server.record).read_bytes() == b"", "the reservation"
    assert app_servers_alive(fake) == []
    if isinstance(old, int):
        assert not is_alive(old), "restart stopped the old server before reserving"

    status = ok(fake.run("status"))
    assert status["status"] == "notRunning"
    assert status["warnings"] == []
    started = ok(fake.run("start"))
    assert started["status"] == "started"
    assert assert_converged(fake, running=True) == started["pid"]
    assert ok(fake.run("stop"))["status"] == "stopped"
    assert_converged(fake, running=False)
    figures.add("crash_points_recovered")


@pytest.mark.parametrize("command", ["start", "restart"])
def test_crash_after_spawn_leaves_a_recorded_managed_server(
    fake: Home, command: str, figures: Figures
) -> None:
    """A SIGKILL between the spawn and the CLI's own bookkeeping leaves no orphan.

    The launched process publishes its record before exec (SPEC §4.6 steps 5-6), so
    row 14's "orphan found" holds in the strongest form: the next commands manage it.
    """
    figures.add("crash_points_tried")
    old = ok(fake.run("start"))["pid"] if command == "restart" else None
    crash(fake, "after-spawn", command)
    (server,) = wait_for(lambda: app_servers_alive(fake), what="the spawned app-server")
    assert server != old
    if isinstance(old, int):
        assert not is_alive(old)
    assert fake.record_pid() == server, "the record was published by the launched process"

    started = ok(fake.run("start"))
    assert started["status"] == "alreadyRunning"
    assert started["backend"] == "pid"
    status = ok(fake.run("status"))
    assert status["status"] == "running"
    assert status["pid"] == server
    stopped = ok(fake.run("stop"))
    assert stopped["status"] == "stopped"
    assert not is_alive(server)
    assert fake.record() is None
    assert ok(fake.run("start"))["status"] == "started"
    assert_converged(fake, running=True)
    figures.add("crash_points_recovered")


def test_crash_after_spawn_with_a_slow_orphan_never_doubles_the_server(
    home: Home, figures: Figures
) -> None:
    """The same crash, but the next start comes before the orphan answers.

    Row 14 asks for the orphan to be found or reported; a second server next to an
    unrecorded first one is neither (and the orphan then takes over the socket path).
    """
    figures.add("crash_points_tried")
    write_settings_text(home, settings_text(shutdownGraceSeconds=2))
    home.install_fake(startup_delay=1.5)
    crash(home, "after-spawn", "start")
    (orphan,) = app_servers_alive(home)
    try:
        result = home.run("start")
        assert "Traceback" not in result.stderr
        reported = str(orphan) in result.stderr
        alive = app_servers_alive(home)
        assert reported or len(alive) == 1, (
            f"the orphan {orphan} was neither found nor reported; app-servers now: {alive}; "
            f"start said {result.stdout.strip()} {result.stderr.strip()}"
        )
    finally:
        if is_alive(orphan):
            kill_by_pid(orphan)
    figures.add("crash_points_recovered")


@pytest.mark.parametrize("command", ["start", "restart"])
def test_crash_after_publish_leaves_a_managed_server(
    fake: Home, command: str, figures: Figures
) -> None:
    figures.add("crash_points_tried")
    old = ok(fake.run("start"))["pid"] if command == "restart" else None
    crash(fake, "after-publish", command)
    pid = fake.record_pid()
    assert pid is not None, "the record was published"
    assert pid != old
    if isinstance(old, int):
        assert not is_alive(old)

    # No wait for readiness first: start must wait for a recorded server itself.
    again = ok(fake.run("start"))
    assert again["status"] == "alreadyRunning"
    assert again["backend"] == "pid"
    assert assert_converged(fake, running=True) == pid
    stopped = ok(fake.run("stop"))
    assert stopped["status"] == "stopped"
    assert_converged(fake, running=False)
    figures.add("crash_points_recovered")


# -- stop's point: after-sigterm ------------------------------------------------------------


@pytest.mark.parametrize("command", ["stop", "restart"])
def test_crash_after_sigterm_leaves_a_stale_record_that_is_cleaned(
    fake: Home, command: str, figures: Figures
) -> None:
    figures.add("crash_points_tried")
    pid = ok(fake.run("start"))["pid"]
    assert isinstance(pid, int)
    crash(fake, "after-sigterm", command)
    assert fake.record_pid() == pid, "the record is still present"
    wait_for(lambda: not is_alive(pid), what="the server to exit on SIGTERM")

    if command == "stop":
        stopped = ok(fake.run("stop"))
        assert stopped["status"] == "notRunning"
        assert "backend" not in stopped
        assert_converged(fake, running=False)
    else:
        started = ok(fake.run("start"))
        assert started["status"] == "started"
        assert started["pid"] != pid
        assert assert_converged(fake, running=True) == started["pid"]
    figures.add("crash_points_recovered")


def test_crash_after_sigterm_to_a_server_ignoring_it_is_finished_by_the_next_stop(
    home: Home, figures: Figures
) -> None:
    figures.add("crash_points_tried")
    write_settings_text(home, settings_text(shutdownGraceSeconds=1))
    home.install_fake(ignore_sigterm=True)
    pid = ok(home.run("start"))["pid"]
    crash(home, "after-sigterm", "stop")
    assert isinstance(pid, int)
    assert is_alive(pid), "SIGTERM is ignored"
    assert home.record_pid() == pid

    stopped = ok(home.run("stop"))
    assert stopped["status"] == "stopped"
    assert stopped["backend"] == "pid"
    assert_converged(home, running=False)
    figures.add("crash_points_recovered")


# -- settings: after-settings-tmp ---------------------------------------------------------------


def test_crash_after_settings_tmp_keeps_the_old_settings(home: Home, figures: Figures) -> None:
    figures.add("crash_points_tried")
    before = write_settings_text(home, settings_text())
    home.install_fake()
    crash(home, "after-settings-tmp", "enable-remote-control")
    assert Path(home.paths.settings).read_bytes() == before, "settings.json must be untouched"
    staged = json.loads(Path(home.paths.settings_tmp).read_bytes())
    assert staged["remoteControlEnabled"] is True, "the temp holds the complete new file"

    started = ok(home.run("start"))
    assert started["status"] == "started"
    argv = Path(f"/proc/{started['pid']}/cmdline").read_bytes().split(b"\0")
    assert b"--remote-control" not in argv, "the old settings (remote control off) apply"
    enabled = ok(home.run("enable-remote-control"))
    assert enabled["status"] == "enabled"
    settings = assert_settings_valid(home)
    assert settings is not None
    assert list(settings) == ["custom", "updater", "supervisor", "remoteControlEnabled"]
    assert settings["custom"] == [1, "kept"]
    assert settings["remoteControlEnabled"] is True
    pid = assert_converged(home, running=True)
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"--remote-control" in argv
    figures.add("crash_points_recovered")


def test_crash_after_settings_tmp_during_bootstrap(home: Home, figures: Figures) -> None:
    figures.add("crash_points_tried")
    before = write_settings_text(home, settings_text())
    home.install_fake()
    crash(home, "after-settings-tmp", "bootstrap", "--remote-control")
    assert Path(home.paths.settings).read_bytes() == before
    assert app_servers_alive(home) == [], "bootstrap crashed before spawning"

    done = ok(home.run("bootstrap", "--remote-control"))
    assert done["status"] == "bootstrapped"
    assert done["remoteControlEnabled"] is True
    assert done["autoUpdateEnabled"] is False
    settings = assert_settings_valid(home)
    assert settings is not None
    assert settings["remoteControlEnabled"] is True
    assert settings["custom"] == [1, "kept"]
    assert_converged(home, running=True)
    assert ok(home.run("stop"))["status"] == "stopped"
    assert_converged(home, running=False)
    figures.add("crash_points_recovered")


# -- the npm channel: after-stage, after-flip ------------------------------------------------------


@pytest.fixture
def npm_home(fake: Home) -> Home:
    """The fake 1.0.0 is current; a fake npm on PATH installs 2.0.0."""
    put_fake_npm_on_path(fake, latest=NEW_VERSION)
    return fake


def new_release(home: Home) -> Path:
    return Path(home.paths.releases) / f"{NEW_VERSION}-{host_targets()[0]}"


def staging_dirs(home: Home) -> list[str]:
    return [n for n in os.listdir(home.paths.releases) if n.startswith(".staging.")]


def test_fake_npm_installs_offline(npm_home: Home) -> None:
    """The fake npm is good enough for the real install path (a control for the crashes)."""
    old = assert_current_runs(npm_home)
    installed = ok(npm_home.run("install", "--channel", "npm", "--version", NEW_VERSION))
    assert installed["status"] == "installed"
    assert installed["managedCodexVersion"] == NEW_VERSION
    assert assert_current_runs(npm_home) == new_release(npm_home)
    assert os.path.realpath(npm_home.paths.previous) == str(old)
    assert staging_dirs(npm_home) == []


def test_crash_after_stage_keeps_current_and_the_next_install_cleans_up(
    npm_home: Home, figures: Figures
) -> None:
    figures.add("crash_points_tried")
    old = assert_current_runs(npm_home)
    crash(npm_home, "after-stage", "install", "--channel", "npm", "--version", NEW_VERSION)
    assert assert_current_runs(npm_home) == old, "current must not move before verification"
    assert not new_release(npm_home).exists(), "the payload is not a release yet"
    assert len(staging_dirs(npm_home)) == 1, "the staged payload is left behind"

    # The old release still serves.
    started = ok(npm_home.run("start"))
    assert started["appServerVersion"] == "1.0.0"
    installed = ok(npm_home.run("install", "--channel", "npm", "--version", NEW_VERSION))
    assert installed["status"] == "installed"
    assert staging_dirs(npm_home) == [], "leftover staging is removed under the install lock"
    assert assert_current_runs(npm_home) == new_release(npm_home)
    assert os.path.realpath(npm_home.paths.previous) == str(old)
    restarted = ok(npm_home.run("restart"))
    assert restarted["appServerVersion"] == NEW_VERSION
    assert_converged(npm_home, running=True)
    figures.add("crash_points_recovered")


def test_crash_after_flip_leaves_a_working_current(npm_home: Home, figures: Figures) -> None:
    figures.add("crash_points_tried")
    crash(npm_home, "after-flip", "install", "--channel", "npm", "--version", NEW_VERSION)
    release = assert_current_runs(npm_home)
    assert release == new_release(npm_home), "current was flipped to the verified release"
    assert staging_dirs(npm_home) == []
    leftovers = [n for n in os.listdir(npm_home.paths.package_root) if ".tmp" in n]
    assert leftovers == [], f"a flip left a temporary link behind: {leftovers}"

    again = ok(npm_home.run("install", "--channel", "npm", "--version", NEW_VERSION))
    assert again["status"] == "alreadyInstalled"
    started = ok(npm_home.run("start"))
    assert started["appServerVersion"] == NEW_VERSION
    assert started["managedCodexVersion"] == NEW_VERSION
    assert_converged(npm_home, running=True)
    figures.add("crash_points_recovered")


# -- the hooks are inert without CODEX_DAEMONKIT_TEST_HOOKS=1 ---------------------------------


@pytest.mark.parametrize("hooks", [None, "0", "true"])
def test_crash_point_is_ignored_without_the_hooks_switch(fake: Home, hooks: str | None) -> None:
    extra = {"CODEX_DAEMONKIT_TEST_CRASH_AT": "after-reserve"}
    if hooks is not None:
        extra["CODEX_DAEMONKIT_TEST_HOOKS"] = hooks
    started = fake.run("start", env=fake.env(**extra))
    assert started.returncode == 0, started
    assert json.loads(started.stdout)["status"] == "started"
    assert_converged(fake, running=True)


def test_every_crashed_state_dir_stays_private(fake: Home) -> None:
    """Crash debris is created like every other state file: 0600 in a 0700 directory."""
    crash(fake, "after-settings-tmp", "enable-remote-control")
    crash(fake, "after-reserve", "start")
    assert stat.S_IMODE(os.stat(fake.paths.state_dir).st_mode) == 0o700
    for name in ("app-server.pid", "settings.tmp", "daemon.lock", "app-server.pid.lock"):
        mode = stat.S_IMODE(os.stat(os.path.join(fake.paths.state_dir, name)).st_mode)
        assert mode == 0o600, f"{name} is {mode:o}"
