"""Hostile objects at every state path: refused clearly or recovered from safely.

SPEC §3.2-§3.4, §4.10 rules 3-5, §13.6 rows 22-23. For each state file the kit opens
or replaces, the test plants a symlink to a file outside the state directory, a FIFO,
a directory, an empty file, a 50 MB sparse file, non-UTF-8 bytes, or (as root) a file
owned by another uid, then runs start, status, stop (plus enable-remote-control for
the settings files and logs for the logs). Every command must return (never hang) with
either one JSON line or a clear error (exit 1, ``Error:`` naming the path, never a
traceback); status and logs never fail (SPEC §2.12, §2.14). And nothing is lost:

- the symlink's outside target keeps its bytes, mode, mtime, owner and inode;
- another user's file is never deleted or replaced (SPEC §4.10 rule 5): its inode is
  still in the state directory with its bytes and owner (log rotation may move it);
- a planted directory survives with its contents;
- nothing the test started survives ``stop``.

Files of our own with bad contents (empty, huge, garbage, a FIFO, a symlink itself)
may be refused or replaced: replacing a temp, a log or a cache is recovery (SPEC §3.4).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.faults.figures import Figures
from tests.harness import (
    UPDATER_OFF,
    Result,
    app_servers_alive,
    read_regular,
    wait_for,
    write_settings,
)

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = pytest.mark.timeout(120)

FOREIGN_UID = 65534
IS_ROOT = os.geteuid() == 0
CLI_TIMEOUT_S = 30.0
HUGE_BYTES = 50 * 1024 * 1024
TARGET_MTIME_NS = 1_000_000_000 * 1_000_000_000
NAMES = (
    "app-server.pid",
    "app-server.pid.lock",
    "app-server.pid.tmp",
    "daemon.lock",
    "settings.json",
    "settings.tmp",
    "desired-state.json",
    "app-server.stderr.log",
    "app-server.stderr.log.previous",
    "managed-codex-version.json",
    "managed-codex-cache.json",
)
KINDS = ("symlink", "fifo", "directory", "empty", "huge", "non-utf8", "foreign-owner")
LOG_NAMES = ("app-server.stderr.log", "app-server.stderr.log.previous")
SETTINGS = {**UPDATER_OFF, "shutdownGraceSeconds": 2}


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
def figures(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Figures:
    return Figures.for_test(tmp_path_factory, request)


def run_cli(home: Home, *args: str) -> Result:
    try:
        return home.run(*args, timeout=CLI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`codex-daemon {' '.join(args)}` hung for {CLI_TIMEOUT_S} s")


@dataclass(frozen=True)
class Snapshot:
    """What must not change about a file the kit must not touch."""

    ino: int
    uid: int
    mode: int
    mtime_ns: int
    data: bytes

    @classmethod
    def of(cls, path: Path) -> Snapshot:
        info = path.lstat()
        return cls(info.st_ino, info.st_uid, info.st_mode, info.st_mtime_ns, path.read_bytes())


@dataclass(frozen=True)
class Planted:
    path: Path
    kind: str
    ino: int
    outside: Path
    outside_before: Snapshot
    foreign_before: Snapshot | None


def plant(home: Home, name: str, kind: str) -> Planted:
    """A used home (settings, an old log) with the hostile object at ``name``."""
    write_settings(home, SETTINGS)
    state_dir = Path(home.paths.state_dir)
    log = state_dir / "app-server.stderr.log"
    log.write_text("an old server's log\n")
    log.chmod(0o600)

    outside = home.root / "outside.txt"
    outside.write_text("precious, outside the state directory\n")
    outside.chmod(0o644)
    os.utime(outside, ns=(TARGET_MTIME_NS, TARGET_MTIME_NS))

    path = state_dir / name
    if os.path.lexists(path):
        path.unlink()
    foreign: Snapshot | None = None
    match kind:
        case "symlink":
            path.symlink_to(outside)
        case "fifo":
            os.mkfifo(path, 0o600)
        case "directory":
            path.mkdir(mode=0o700)
            (path / "sentinel").write_text("inside a planted directory\n")
        case "empty":
            path.write_bytes(b"")
        case "huge":
            with path.open("wb") as f:
                f.truncate(HUGE_BYTES)
        case "non-utf8":
            path.write_bytes(b'{"pid": \xff\xfe\x80 garbage \xc3(')
        case "foreign-owner":
            path.write_bytes(b'{"owner": "someone else"}')
            path.chmod(0o644)
            os.chown(path, FOREIGN_UID, FOREIGN_UID)
            foreign = Snapshot.of(path)
        case _:
            raise AssertionError(kind)
    if kind in ("empty", "huge", "non-utf8"):
        path.chmod(0o600)
    return Planted(
        path=path,
        kind=kind,
        ino=path.lstat().st_ino,
        outside=outside,
        outside_before=Snapshot.of(outside),
        foreign_before=foreign,
    )


def inodes_in(directory: Path) -> dict[int, Path]:
    return {entry.lstat().st_ino: entry for entry in directory.iterdir()}


def assert_clear(result: Result, command: str, path: Path) -> None:
    """One JSON line, or exit 1 with an ``Error:`` that names the hostile path."""
    assert "Traceback" not in result.stderr, result
    assert result.returncode in (0, 1), f"{command}: exit {result.returncode}: {result}"
    if result.returncode == 0:
        lines = result.stdout.splitlines()
        assert len(lines) == 1, f"{command}: {result}"
        assert isinstance(json.loads(lines[0]), dict)
        for line in result.stderr.splitlines():
            assert line.startswith("warning: "), f"{command}: stray stderr {line!r}"
            assert str(path.parent) in line, f"{command}: a warning without a path: {line!r}"
        return
    assert result.stdout == "", f"{command} printed output and failed"
    assert result.stderr.startswith("Error: "), f"{command}: {result.stderr!r}"
    error = result.stderr[result.stderr.index("Error: ") :]
    assert str(path) in error or path.name in error, (
        f"{command}: the error does not say which file is wrong: {result.stderr!r}"
    )


def assert_nothing_lost(home: Home, planted: Planted) -> None:
    after = Snapshot.of(planted.outside)
    assert after == planted.outside_before, (
        f"the file outside the state directory changed: {planted.outside_before} -> {after}"
    )
    found = inodes_in(planted.path.parent).get(planted.ino)
    if planted.foreign_before is not None:
        # Compare contents and owner too: a freed inode number is soon reused.
        survived = (
            found is not None
            and found.lstat().st_uid == FOREIGN_UID
            and read_regular(str(found)) == planted.foreign_before.data
        )
        assert survived, (
            f"another user's file {planted.path} was deleted or replaced (SPEC §4.10 rule 5)"
        )
    if planted.kind == "directory":
        assert found is not None, f"the planted directory {planted.path} vanished"
        assert (found / "sentinel").read_text() == "inside a planted directory\n"


def hostile_cases() -> list[tuple[str, str]]:
    return [(name, kind) for name in NAMES for kind in KINDS]


# -- the matrix ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), hostile_cases())
def test_hostile_state_file(fake_home: Home, name: str, kind: str, figures: Figures) -> None:
    if kind == "foreign-owner" and not IS_ROOT:
        pytest.skip("needs root to create another user's file")
    figures.add("hostile_files_tried")
    planted = plant(fake_home, name, kind)
    commands: list[tuple[str, ...]] = [("start",), ("status",)]
    if name.startswith("settings"):
        commands.append(("enable-remote-control",))
    if name in LOG_NAMES:
        commands.append(("logs",))
    commands.append(("stop",))

    results: dict[str, Result] = {}
    for args in commands:
        result = run_cli(fake_home, *args)
        results[args[0]] = result
        assert_clear(result, args[0], planted.path)
    assert results["status"].returncode == 0, "status never fails (SPEC §2.12)"
    if "logs" in results:
        assert results["logs"].returncode == 0, "logs never fails (SPEC §2.14)"
    if results["start"].returncode == 0:
        stop = results["stop"]
        assert stop.returncode == 0, f"start succeeded but stop cannot stop it: {stop}"
        assert json.loads(stop.stdout)["status"] == "stopped"
    wait_for(lambda: app_servers_alive(fake_home) == [], what="no app-server left")
    assert_nothing_lost(fake_home, planted)
    figures.add("hostile_files_safe")


# -- the state directory itself (SPEC §3.2) -----------------------------------------------------


def test_world_writable_state_dir_is_tightened_by_stop(fake_home: Home, figures: Figures) -> None:
    figures.add("hostile_files_tried")
    assert json.loads(run_cli(fake_home, "start").stdout)["status"] == "started"
    state_dir = fake_home.paths.state_dir
    os.chmod(state_dir, 0o777)
    stopped = run_cli(fake_home, "stop")
    assert stopped.returncode == 0, stopped
    assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
    figures.add("hostile_files_safe")


def test_state_dir_that_is_a_file_is_refused_and_kept(fake_home: Home, figures: Figures) -> None:
    figures.add("hostile_files_tried")
    state_dir = Path(fake_home.paths.state_dir)
    state_dir.write_text("not a directory\n")
    for command in ("start", "stop"):
        result = run_cli(fake_home, command)
        assert result.returncode == 1, result
        assert result.stdout == ""
        assert f"Error: failed to create daemon state directory {state_dir}\n" in result.stderr
        assert "Not a directory (os error 20)" in result.stderr
    for command in ("status", "logs"):
        result = run_cli(fake_home, command)
        assert_clear(result, command, state_dir / "app-server.pid")
        assert result.returncode == 0, result
    assert state_dir.read_text() == "not a directory\n"
    figures.add("hostile_files_safe")


@pytest.mark.skipif(not IS_ROOT, reason="needs root to create another user's directory")
@pytest.mark.parametrize("via_symlink", [False, True], ids=["directory", "symlink-to-it"])
def test_foreign_state_dir_is_refused_by_every_writer(
    fake_home: Home, via_symlink: bool, figures: Figures
) -> None:
    figures.add("hostile_files_tried")
    state_dir = Path(fake_home.paths.state_dir)
    foreign = fake_home.root / "someone-elses" if via_symlink else state_dir
    foreign.mkdir(mode=0o755)
    (foreign / "their-file").write_text("theirs\n")
    os.chown(foreign / "their-file", FOREIGN_UID, FOREIGN_UID)
    os.chown(foreign, FOREIGN_UID, FOREIGN_UID)
    os.chmod(foreign, 0o777)
    if via_symlink:
        state_dir.symlink_to(foreign)
    refusal = (
        f"Error: refusing to use daemon state directory {state_dir}: owned by uid "
        f"{FOREIGN_UID}, expected {os.geteuid()}\n"
    )
    for command in ("start", "restart", "stop", "enable-remote-control", "bootstrap"):
        result = run_cli(fake_home, command)
        assert (result.returncode, result.stdout) == (1, ""), result
        assert result.stderr.endswith(refusal), result.stderr
    assert run_cli(fake_home, "status").returncode == 0
    assert stat.S_IMODE(foreign.stat().st_mode) == 0o777, "not ours: never chmodded"
    assert sorted(p.name for p in foreign.iterdir()) == ["their-file"], "nothing written"
    assert app_servers_alive(fake_home) == []
    figures.add("hostile_files_safe")
