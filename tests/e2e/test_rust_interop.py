"""Side by side with the Rust daemon: each recognises and stops the other's server (SPEC §9).

Both manage the same CODEX_HOME in the legacy standalone layout: same record names,
same schema, same locks. The Rust daemon is the pinned real Codex CLI's
``codex app-server daemon``.
"""

from __future__ import annotations

import json
import os
import signal
from typing import TYPE_CHECKING

import pytest

from tests.harness import is_alive, real_codex_binary, rust_daemon, wait_for

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = [pytest.mark.real_codex, pytest.mark.timeout(120)]


def rust(home: Home, command: str) -> dict[str, object]:
    binary = real_codex_binary()
    assert binary is not None
    return rust_daemon(home, binary, command)


@pytest.fixture
def real_home(home: Home) -> Home:
    if real_codex_binary() is None and os.environ.get("DK_REAL_CODEX_REQUIRED") != "1":
        pytest.skip("the real Codex CLI is not installed (bash .ci/run installs it)")
    home.install_real()
    return home


@pytest.fixture
def legacy_home(real_home: Home) -> Home:
    """A home where the kit has run: Rust 0.169.0 then picks the legacy standalone
    layout, because <S> holds launch artifacts (app-server.stderr.log), SPEC §9."""
    assert real_home.run("start").json["status"] == "started"
    assert real_home.run("stop").json["status"] == "stopped"
    return real_home


def test_rust_recognises_and_stops_a_kit_started_server(real_home: Home) -> None:
    started = real_home.run("start").json
    pid = started["pid"]
    assert isinstance(pid, int)
    reported = rust(real_home, "version")
    assert reported["status"] == "running"
    assert reported["backend"] == "pid"
    assert reported["appServerVersion"] == started["appServerVersion"]
    stopped = rust(real_home, "stop")
    assert stopped["status"] == "stopped"
    assert stopped["backend"] == "pid"
    assert not is_alive(pid)
    assert real_home.record() is None
    assert real_home.run("status").json["status"] == "notRunning"


def test_kit_recognises_restarts_and_stops_a_rust_started_server(legacy_home: Home) -> None:
    real_home = legacy_home
    started = rust(real_home, "start")
    assert started["status"] == "started"
    rust_pid = started["pid"]
    assert isinstance(rust_pid, int)
    record = real_home.record()
    assert record is not None
    assert record["pid"] == rust_pid
    assert "processIdentity" in record
    version = real_home.run("version").json
    assert version["status"] == "running"
    assert version["backend"] == "pid"
    assert real_home.run("status").json["pid"] == rust_pid
    restarted = real_home.run("restart").json
    assert restarted["status"] == "restarted"
    assert restarted["pid"] != rust_pid
    assert not is_alive(rust_pid)
    stopped = real_home.run("stop").json
    assert stopped["status"] == "stopped"
    assert real_home.record() is None


def test_kit_stops_a_rust_started_server_directly(legacy_home: Home) -> None:
    real_home = legacy_home
    started = rust(real_home, "start")
    pid = started["pid"]
    assert isinstance(pid, int)
    stopped = real_home.run("stop").json
    assert stopped["status"] == "stopped"
    assert stopped["backend"] == "pid"
    assert not is_alive(pid)
    assert rust(real_home, "stop")["status"] == "notRunning"


def test_kit_stops_a_server_of_the_rust_dedicated_layout(real_home: Home) -> None:
    """In a fresh home Rust 0.169.0 uses its dedicated layout (daemon.pid): the kit
    manages it with Rust's names (SPEC §9, §16)."""
    started = rust(real_home, "start")
    assert started["status"] == "started"
    pid = started["pid"]
    assert isinstance(pid, int)
    stopped = real_home.run("stop").json
    assert stopped["status"] == "stopped"
    assert stopped["backend"] == "pid"
    assert not is_alive(pid)
    assert rust(real_home, "stop")["status"] == "notRunning"
    _stop_rust_updater(real_home)


def _stop_rust_updater(home: Home) -> None:
    """Rust's start also spawned its updater (daemon-updater.pid); stop it by its pid."""
    path = os.path.join(home.paths.state_dir, "daemon-updater.pid")
    try:
        with open(path, "rb") as f:
            pid = json.loads(f.read())["pid"]
    except FileNotFoundError:
        return
    if isinstance(pid, int) and home.carries_mark(pid):
        os.killpg(pid, signal.SIGTERM)
        wait_for(lambda: not is_alive(pid), what=f"rust updater {pid} to exit")


def test_both_write_the_same_record_for_the_same_binary(legacy_home: Home) -> None:
    """Same keys in the same order, and the same executableIdentity (SPEC §4.2)."""
    pytest.importorskip("blake3", reason="executableIdentity needs the blake3 extra")
    real_home = legacy_home
    assert real_home.run("start").json["status"] == "started"
    kit_record = real_home.record()
    assert real_home.run("stop").json["status"] == "stopped"
    assert rust(real_home, "start")["status"] == "started"
    rust_record = real_home.record()
    assert rust(real_home, "stop")["status"] == "stopped"
    assert kit_record is not None
    assert rust_record is not None
    assert list(kit_record) == list(rust_record)
    assert list(kit_record) == ["pid", "processStartTime", "processIdentity", "executableIdentity"]
    assert kit_record["executableIdentity"] == rust_record["executableIdentity"]


@pytest.mark.parametrize("flat_too", [False, True], ids=["tarball", "flat-and-tarball"])
def test_managed_codex_path_agrees_with_rust(legacy_home: Home, flat_too: bool) -> None:
    """A release with `bin/codex` (and maybe `codex` too): both report `bin/codex`."""
    real_home = legacy_home
    if flat_too:
        release = os.path.realpath(real_home.paths.current)
        os.symlink(os.path.join(release, "bin", "codex"), os.path.join(release, "codex"))
    started = rust(real_home, "start")
    assert started["status"] == "started"
    kit = real_home.run("version").json["managedCodexPath"]
    assert kit == rust(real_home, "version")["managedCodexPath"]
    assert kit == os.path.join(real_home.paths.current, "bin", "codex")
    assert real_home.run("stop").json["status"] == "stopped"
