"""Descriptors and environment that must not leak into spawned processes (SPEC §4.7, §5).

tests/integration/test_spawn_properties.py checks a plain ``start``. This adds what it
does not: descriptors the *caller* leaked into the CLI (not close-on-exec) never reach
the server; the respawn paths (restart, enable-remote-control) that spawn while the
operation lock and the reservation lock are held; the server's own children; the
updater that bootstrap spawns (descriptors and environment); no process the kit
started holds ``daemon.lock``, a reservation lock or the CLI's output pipes (a
``$(codex-daemon start)`` would otherwise never return); and a CLI short of
descriptors fails with a clear error and leaves nothing behind (SPEC §4.10 rule 6).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.faults.figures import Figures
from tests.harness import (
    UPDATER_OFF,
    Result,
    app_servers_alive,
    marked_pids,
    wait_for,
    write_settings,
)

if TYPE_CHECKING:
    from collections.abc import Set as AbstractSet

    from tests.harness import Home

pytestmark = pytest.mark.timeout(90)

LEAKY_ENV = {
    "LISTEN_FDS": "3",
    "LISTEN_PID": "1",
    "LISTEN_FDNAMES": "activation",
    "NOTIFY_SOCKET": "/run/systemd/notify",
    "CODEX_DAEMONKIT_DEBUG": "1",
}


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
def figures(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Figures:
    return Figures.for_test(tmp_path_factory, request)


def witness_path(home: Home) -> Path:
    return home.root / "witness.jsonl"


def witness_start(home: Home, pid: int) -> dict[str, object]:
    """The fake's view of itself right after exec, before it opened anything."""
    for line in witness_path(home).read_text().splitlines():
        entry = json.loads(line)
        if entry["event"] == "start" and entry["pid"] == pid:
            assert isinstance(entry, dict)
            return entry
    pytest.fail(f"no witness start event for pid {pid}")


def fd_targets(pid: int) -> dict[int, str]:
    targets = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue  # closed while listing
    return targets


def pipe_name(fd: int) -> str:
    return f"pipe:[{os.fstat(fd).st_ino}]"


def forbidden_targets(home: Home) -> set[str]:
    """Descriptors only the CLI may hold, and only while it runs."""
    paths = home.paths
    return {
        paths.operation_lock,
        paths.app_server.lock,
        paths.app_server.record,
        paths.app_server.tmp,
        paths.updater.lock,
        paths.settings,
        paths.settings_tmp,
        paths.desired_state,
        paths.binary_cache,
        paths.install_lock,
    }


def assert_no_leaks(home: Home, pid: int, extra: AbstractSet[str] = frozenset()) -> int:
    """``pid`` holds none of the kit's locks, records or the given pipes; returns checks."""
    held = set(fd_targets(pid).values())
    leaked = held & (forbidden_targets(home) | extra)
    assert not leaked, f"pid {pid} inherited {sorted(leaked)}"
    return 1


def lock_is_free(path: str) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def run_with(
    home: Home,
    *args: str,
    pass_fds: tuple[int, ...] = (),
    env: dict[str, str] | None = None,
    max_fds: int | None = None,
) -> tuple[Result, set[str]]:
    """Run the CLI; also return the names of its stdout and stderr pipes.

    ``max_fds`` sets RLIMIT_NOFILE with a shell right before the exec.
    """
    argv = home.argv(*args)
    if max_fds is not None:
        argv = ["sh", "-c", f'ulimit -n {max_fds}; exec "$0" "$@"', *argv]
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env if env is not None else home.env(),
        pass_fds=pass_fds,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    pipes = {pipe_name(process.stdout.fileno()), pipe_name(process.stderr.fileno())}
    out, err = process.communicate(timeout=60)
    return Result(process.returncode, out.decode(), err.decode()), pipes


# -- tests -----------------------------------------------------------------------------


def test_descriptors_leaked_into_the_cli_never_reach_the_server(
    home: Home, figures: Figures
) -> None:
    write_settings(home, UPDATER_OFF)
    home.install_fake(witness=str(witness_path(home)))
    read_end, write_end = os.pipe()  # inheritable: a careless caller's descriptors
    outside = os.open(home.root / "callers-file", os.O_RDWR | os.O_CREAT, 0o600)
    os.set_inheritable(outside, True)
    try:
        result, pipes = run_with(home, "start", pass_fds=(read_end, write_end, outside))
        pid = result.json["pid"]
        assert isinstance(pid, int)
        assert witness_start(home, pid)["fds"] == [0, 1, 2]
        caller = {pipe_name(read_end), str(home.root / "callers-file")}
        figures.add("fd_hygiene_checks", assert_no_leaks(home, pid, pipes | caller))
    finally:
        for fd in (read_end, write_end, outside):
            os.close(fd)


@pytest.mark.parametrize("command", ["restart", "enable-remote-control"])
def test_respawns_under_held_locks_leak_nothing(home: Home, command: str, figures: Figures) -> None:
    write_settings(home, UPDATER_OFF)
    home.install_fake(witness=str(witness_path(home)), children=1)
    first = home.run("start").json["pid"]
    result, pipes = run_with(home, command, env=home.env(**LEAKY_ENV))
    assert result.returncode == 0, result
    (pid,) = app_servers_alive(home)
    assert pid != first
    assert home.record_pid() == pid
    seen = witness_start(home, pid)
    assert seen["fds"] == [0, 1, 2]
    env = seen["env"]
    assert isinstance(env, dict)
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"):
        assert env[name] is None, f"{name} reached the respawned server"
    assert [name for name in env if name.startswith("CODEX_DAEMONKIT_")] == []
    checks = assert_no_leaks(home, pid, pipes)
    # The server's own child inherits from the server only.
    children = [p for p in marked_pids(home.mark) if p != pid and p not in app_servers_alive(home)]
    kids = [p for p in children if Path(f"/proc/{p}/stat").read_text().split()[3] == str(pid)]
    assert kids, "the fake's child is running"
    for kid in kids:
        checks += assert_no_leaks(home, kid, pipes)
    assert lock_is_free(home.paths.operation_lock), "someone still holds daemon.lock"
    assert lock_is_free(home.paths.app_server.lock), "someone still holds the pid lock"
    figures.add("fd_hygiene_checks", checks + 2)
    # The fake reaps its child on SIGTERM; a SIGKILL of the group at teardown could
    # leave the child dying while the leak sweep looks.
    assert home.run("stop").json["status"] == "stopped"
    wait_for(lambda: marked_pids(home.mark) == [], what="the server and its child gone")


def test_bootstrapped_updater_inherits_no_locks_pipes_or_activation_env(
    home: Home, figures: Figures
) -> None:
    write_settings(home, {**UPDATER_OFF, "updater": {"autoUpdateEnabled": True}})
    home.install_fake()
    result, pipes = run_with(home, "bootstrap", env=home.env(**LEAKY_ENV))
    assert result.json["autoUpdateEnabled"] is True, result
    raw = Path(home.paths.updater.record).read_bytes()
    updater = json.loads(raw)["pid"]
    assert isinstance(updater, int)
    checks = assert_no_leaks(home, updater, pipes)
    checks += assert_no_leaks(home, app_servers_alive(home)[0], pipes)
    environ = Path(f"/proc/{updater}/environ").read_bytes().split(b"\0")
    names = {entry.partition(b"=")[0].decode() for entry in environ if entry}
    assert not names & {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"}
    assert "CODEX_DAEMONKIT_DEBUG" not in names
    assert f"CODEX_HOME={home.path}".encode() in environ
    # Every process of this test, the updater's helpers included, is clean.
    for pid in marked_pids(home.mark):
        checks += assert_no_leaks(home, pid, pipes)
    assert lock_is_free(home.paths.operation_lock)
    figures.add("fd_hygiene_checks", checks)
    assert home.run("stop").json["status"] == "stopped"


@pytest.mark.parametrize("limit", [5, 6, 7, 8])
def test_cli_short_of_descriptors_fails_clearly_and_leaves_nothing(
    home: Home, limit: int, figures: Figures
) -> None:
    """EMFILE at each step of a start: a clear error, no reservation, no orphan."""
    write_settings(home, UPDATER_OFF)
    home.install_fake()
    result, _ = run_with(home, "start", max_fds=limit)
    figures.add("descriptor_exhaustion_tried")
    assert "Traceback" not in result.stderr
    if result.returncode == 0:
        assert result.json["status"] == "started"  # enough after all on this Python
    else:
        assert result.returncode == 1, result
        assert result.stdout == ""
        first = result.stderr.split("\n", 1)[0]
        assert first.startswith("Error: "), result.stderr
        assert "Too many open files (os error 24)" in result.stderr
        assert first != "Error: Too many open files (os error 24)", (
            "the error must say what the kit was doing, not only the errno"
        )
        wait_for(lambda: app_servers_alive(home) == [], what="no orphaned server")
        assert not os.path.lexists(home.paths.app_server.record), "a reservation was left"
    assert home.run("stop").json["status"] in {"stopped", "notRunning"}
    figures.add("descriptor_exhaustion_safe")
