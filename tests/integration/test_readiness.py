"""Start means ready: the readiness wait and the error that explains a failed start.

SPEC §6.4, §4.9 and §13.8 row 31: a server that never answers fails ``start`` at the
10 s deadline; one that exits fails it at once; either way the error names the binary,
its version, the stderr tail and the cause, and nothing is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from tests.harness import UPDATER_OFF, app_servers_alive, is_alive, write_settings

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = pytest.mark.timeout(60)

READY_DEADLINE_S = 10.0
SLACK_S = 8.0  # the failed-start stop (2 s grace), two --version runs, a loaded machine


def install(home: Home, **fake_config: object) -> str:
    """Install the fake with a witness; return its canonical path."""
    write_settings(home, UPDATER_OFF)
    release = home.install_fake(
        "1.0.0", current=True, witness=str(home.root / "witness.jsonl"), **fake_config
    )
    return os.path.realpath(release / "codex")


def witnessed_pids(home: Home) -> list[int]:
    """Pids of the app-servers that started (their witness ``start`` events)."""
    path = home.root / "witness.jsonl"
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    return [entry["pid"] for entry in entries if entry["event"] == "start"]


def assert_nothing_left(home: Home) -> None:
    assert not os.path.exists(home.paths.app_server.record), "a failed start left its record"
    for pid in witnessed_pids(home):
        assert not is_alive(pid), f"a failed start left app-server {pid} running"
    assert app_servers_alive(home) == []


def timed_start(home: Home) -> tuple[subprocess.CompletedProcess[bytes], float]:
    began = time.monotonic()
    done = subprocess.run(
        home.argv("start"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=home.env(),
        timeout=60,
        check=False,
    )
    return done, time.monotonic() - began


def context_block(home: Home, canonical: str) -> str:
    return (
        f"Error: app server did not become ready on {home.paths.socket}\n"
        "\n"
        "Daemon used app-server:\n"
        f"  path: {canonical}\n"
        "  version: 1.0.0\n"
        "\n"
        f"Managed app-server stderr ({home.paths.app_server.log}):\n"
        "  fake codex app-server starting\n"
    )


def test_never_ready_fails_at_the_deadline_with_context(home: Home) -> None:
    canonical = install(home, never_ready=True)
    done, elapsed = timed_start(home)
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert done.stdout == b""
    assert elapsed >= READY_DEADLINE_S, f"gave up before the 10 s deadline ({elapsed:.2f} s)"
    assert elapsed < READY_DEADLINE_S + SLACK_S
    assert stderr.startswith(context_block(home, canonical)), stderr
    cause = stderr.partition("\nCaused by:\n")[2]
    assert f"failed to connect to {home.paths.socket}" in cause, stderr
    assert "No such file or directory (os error 2)" in cause, stderr
    assert "Traceback" not in stderr
    assert len(witnessed_pids(home)) == 1
    assert_nothing_left(home)


def test_server_exiting_early_fails_fast_with_the_exit_as_cause(home: Home) -> None:
    canonical = install(home, exit_early=3)
    done, elapsed = timed_start(home)
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert done.stdout == b""
    assert elapsed < READY_DEADLINE_S / 2, "a child exit must end the readiness wait at once"
    (pid,) = witnessed_pids(home)
    assert stderr.startswith(context_block(home, canonical)), stderr
    assert "  fake codex app-server exiting early (3)\n" in stderr
    assert stderr.endswith(
        f"\nCaused by:\n    app-server process {pid} exited before it became ready\n"
    ), stderr
    assert_nothing_left(home)


def test_invalid_utf8_in_the_stderr_tail_renders_as_replacement(home: Home) -> None:
    install(home, exit_early=1, stderr_hex=(b"bad \xff\xfe bytes\n").hex())
    done, _ = timed_start(home)
    assert done.returncode == 1
    assert b"\xff" not in done.stderr
    assert b"\xfe" not in done.stderr
    assert "\n  bad \ufffd\ufffd bytes\n" in done.stderr.decode("utf-8"), done.stderr
    assert_nothing_left(home)


def test_slow_startup_within_the_deadline_is_started(home: Home) -> None:
    install(home, startup_delay=1.5)
    started = home.run("start").json
    assert started["status"] == "started"
    assert started["appServerVersion"] == "1.0.0"
    assert witnessed_pids(home) == [started["pid"]]
    assert home.record_pid() == started["pid"]
