"""Stop semantics against real, misbehaving processes (SPEC §4.8, §13.7 row 26, §13.4 row 15).

SIGTERM first, SIGKILL when the effective grace (``shutdownGraceSeconds``) runs out.
Timing bounds are behaviour here (killed *at* grace, not before, not at the 60 s
default) and are asserted loosely.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness import UPDATER_OFF, is_alive, wait_for, write_settings

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = pytest.mark.timeout(60)

GENEROUS_S = 8.0  # far below the 60 s default grace, far above any grace used here


def witness_path(home: Home) -> Path:
    return home.root / "witness.jsonl"


LIFECYCLE_EVENTS = ("start", "ready", "sigterm", "exit")


def events(home: Home, pid: int) -> list[str]:
    """The lifecycle events (not requests) the fake with ``pid`` wrote, in order."""
    path = witness_path(home)
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if entry["pid"] == pid and entry["event"] in LIFECYCLE_EVENTS:
            found.append(entry["event"])
    return found


def start_fake(home: Home, *, grace_s: int, **fake_config: object) -> int:
    write_settings(home, {**UPDATER_OFF, "shutdownGraceSeconds": grace_s})
    home.install_fake("1.0.0", current=True, witness=str(witness_path(home)), **fake_config)
    started = home.run("start").json
    assert started["status"] == "started"
    pid = started["pid"]
    assert isinstance(pid, int)
    return pid


def timed_stop(home: Home) -> tuple[dict[str, object], float]:
    began = time.monotonic()
    result = home.run("stop")
    elapsed = time.monotonic() - began
    return result.json, elapsed


def assert_stopped(home: Home, output: dict[str, object], pid: int) -> None:
    assert output["status"] == "stopped"
    assert output["backend"] == "pid"
    assert "pid" not in output
    assert "appServerVersion" not in output
    assert home.record() is None
    # The server is init's child now; init reaps it shortly after it dies.
    wait_for(lambda: not is_alive(pid), what=f"app-server {pid} to be gone")


def test_sigterm_ignoring_server_is_killed_at_grace(home: Home) -> None:
    pid = start_fake(home, grace_s=1, ignore_sigterm=True)
    output, elapsed = timed_stop(home)
    assert_stopped(home, output, pid)
    assert elapsed >= 1.0, f"SIGKILL came before the 1 s grace ran out ({elapsed:.3f} s)"
    assert elapsed < GENEROUS_S
    assert "exit" not in events(home, pid), "the server must have been killed, not exited"


def test_grace_zero_kills_at_once(home: Home) -> None:
    pid = start_fake(home, grace_s=0, ignore_sigterm=True)
    output, elapsed = timed_stop(home)
    assert_stopped(home, output, pid)
    assert elapsed < GENEROUS_S
    assert "exit" not in events(home, pid)


def test_slow_sigterm_within_grace_exits_without_escalation(home: Home) -> None:
    pid = start_fake(home, grace_s=2, term_delay=0.5)
    output, _ = timed_stop(home)
    assert_stopped(home, output, pid)
    assert events(home, pid) == ["start", "ready", "sigterm", "exit"]


def test_sigstopped_server_is_killed_at_grace(home: Home) -> None:
    pid = start_fake(home, grace_s=1)
    os.kill(pid, signal.SIGSTOP)
    wait_for(
        lambda: Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"T",
        what="the server to be stopped",
    )
    output, elapsed = timed_stop(home)
    assert_stopped(home, output, pid)
    assert elapsed >= 1.0
    assert elapsed < GENEROUS_S
    assert events(home, pid) == ["start", "ready"], "a stopped process runs no handler"


def test_sigkilled_server_reads_as_gone(home: Home) -> None:
    pid = start_fake(home, grace_s=5)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not is_alive(pid), what=f"app-server {pid} to die")

    version = home.run("version")
    assert version.returncode == 1
    assert version.stdout == ""
    assert version.stderr.startswith(f"Error: failed to connect to {home.paths.socket}\n")
    assert (
        "Connection refused (os error 111)" in version.stderr
        or "No such file or directory (os error 2)" in version.stderr
    ), version.stderr

    stopped = home.run("stop").json
    assert stopped["status"] == "notRunning"
    assert "backend" not in stopped
    assert home.record() is None

    started = home.run("start").json
    assert started["status"] == "started"
    assert started["pid"] != pid
    assert home.record_pid() == started["pid"]
    assert home.run("version").json["status"] == "running"
