"""Updater faults: whatever the install goes through, the running service is kept or restored.

Issue 7, SPEC §7.5-§7.8, §8.4-§8.10, §13.9-§13.10 rows 38, 40, 42. A fake app-server runs
1.0.0 from ``releases/1.0.0-<target>``; a loopback HTTP server hands out the install
script (as in tests/integration/test_updater.py). Each fault is driven twice:

- ``update``: ``codex-daemon update --yes`` (it spawns a scheduled updater whose first
  cycle is 300 s away, so only the request acts) must answer with the fault's text;
- ``scheduled``: ``start`` spawns the updater with ``CODEX_DAEMONKIT_TIME_SCALE`` small,
  so its scheduled cycles meet the fault on their own.

Faults: the script exits non-zero after flipping ``current``; it installs a broken
binary (``--version`` exits 1, not executable, zero bytes); the download is cut (a
``Content-Length`` larger than the body, a chunked body cut mid-chunk); the new
release's server exits at start (rolled back and quarantined); the script hangs and
the updater is stopped with SIGTERM (its installer's process group must die with it).

After each: the updater is stopped, then ``current`` names 1.0.0, exactly one app-server
runs, it is the recorded one (identity checked against /proc), ``version`` reports
1.0.0, the server was not touched unless a rollback had to replace it, and nothing else
this test started is alive. Figures: ``updater_faults_tried`` / ``updater_faults_safe``.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.faults.figures import Figures
from tests.harness import (
    TARGET,
    app_servers_alive,
    is_alive,
    marked_pids,
    read_regular,
    start_ticks,
    updater_pid,
    wait_for,
    write_settings,
)
from tests.updates import ScriptServer, install_script, release_dir, stage_payload

if TYPE_CHECKING:
    import subprocess

    from tests.harness import Home

pytestmark = pytest.mark.timeout(90)

FAST = "0.001"  # the first scheduled cycle 0.3 s after start, one interval minute 60 ms
DIED = "Error: updater exited before answering the update request\n"
# SPEC §8.9: the installer gets SIGTERM, then SIGKILL after a short wait; asserted loosely.
INSTALLER_GONE_S = 10.0


# -- figures ----------------------------------------------------------------------------------


@pytest.fixture
def figures(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Figures:
    return Figures.for_test(tmp_path_factory, request)


# -- a loopback install-script server that can also cut its answers ---------------------------


# -- releases and scripts ---------------------------------------------------------------------


def configure(home: Home, server: ScriptServer, *, auto_update: bool) -> None:
    settings = {
        "shutdownGraceSeconds": 2,
        "updater": {
            "installScriptUrl": server.url,
            "autoUpdateEnabled": auto_update,
            "updateIntervalMinutes": 1,
        },
        # Without updates, no supervision either: no updater until `update` spawns one.
        "supervisor": {"restartOnExit": auto_update},
    }
    write_settings(home, settings)


# -- observing the home -----------------------------------------------------------------------


def current_target(home: Home) -> str | None:
    try:
        return os.readlink(home.paths.current)
    except OSError:
        return None


def updater_state(home: Home) -> dict[str, object]:
    raw = read_regular(home.paths.updater_state)
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}  # caught between a truncate and a write would be a bug elsewhere
    assert isinstance(value, dict)
    return value


def log_events(home: Home) -> list[dict[str, object]]:
    raw = read_regular(home.paths.updater.log) or b""
    found = []
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.startswith("{"):
            value = json.loads(line)
            assert isinstance(value, dict)
            found.append(value)
    return found


def pgid_members(pgid: int, mark: str) -> list[int]:
    members = []
    for pid in marked_pids(mark):
        try:
            if os.getpgid(pid) == pgid:
                members.append(pid)
        except ProcessLookupError:
            continue
    return members


def quarantined(home: Home, version: str) -> bool:
    quarantine = updater_state(home).get("quarantine")
    return isinstance(quarantine, dict) and f"{version}-{TARGET}" in quarantine


def start_server(home: Home, server: ScriptServer, *, driver: str) -> int:
    """Start 1.0.0; for ``scheduled`` with the updater (time-scaled), else without one."""
    if driver == "scheduled":
        home.extra_env["CODEX_DAEMONKIT_TEST_HOOKS"] = "1"
        home.extra_env["CODEX_DAEMONKIT_TIME_SCALE"] = FAST
    configure(home, server, auto_update=driver == "scheduled")
    started = home.run("start").json
    assert started["status"] == "started"
    pid = started["pid"]
    assert isinstance(pid, int)
    if driver == "update":
        assert updater_pid(home) is None
        # `update` finds no updater and spawns a scheduled one (first cycle in 300 s).
        configure(home, server, auto_update=True)
    else:
        assert updater_pid(home) is not None
    return pid


def assert_service_kept(home: Home, old_pid: int, *, replaced: bool = False) -> int:
    """The updater stopped, 1.0.0 is current and serving, recorded, and alone."""
    home.stop_updater()
    wait_for(lambda: updater_pid(home) is None, what="the updater record to go")
    assert current_target(home) == str(release_dir(home, "1.0.0"))
    record = home.record()
    assert record is not None, "no app-server record"
    pid = record["pid"]
    assert isinstance(pid, int)
    if replaced:
        assert pid != old_pid
        assert not is_alive(old_pid)
    else:
        assert pid == old_pid, "the running server was touched"
    assert app_servers_alive(home) == [pid]
    identity = record["processIdentity"]
    assert isinstance(identity, dict)
    assert identity["startTicks"] == start_ticks(pid)
    version = home.run("version").json
    assert version["appServerVersion"] == "1.0.0"
    # The installer, its children and `--version` runs are gone; only the server is left.
    wait_for(lambda: marked_pids(home.mark) == [pid], what="only the app-server to be left")
    package = Path(home.paths.current).parent
    assert [p.name for p in Path(home.paths.releases).iterdir() if p.name.startswith(".")] == []
    assert [p.name for p in package.iterdir() if ".tmp" in p.name] == []
    return pid


# -- the faults -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    name: str
    error: str  # the first line of the Err text, after "Error: "
    result: str  # the scheduled cycle's lastResult
    replaced: bool = False  # a rollback replaces the server


def fault_setup(home: Home, server: ScriptServer, fault: str) -> Fault:
    release = release_dir(home, "1.1.0")
    match fault:
        case "script-exits-3":
            server.script = install_script(stage_payload(home, "1.1.0"), "1.1.0", after="exit 3")
            return Fault(
                fault, "standalone Codex updater exited with status exit status: 3", "failed"
            )
        case "version-exits-1" | "not-executable" | "zero-bytes":
            if fault == "version-exits-1":
                payload = stage_payload(home, "1.1.0", version_exit=1)
            else:
                payload = stage_payload(home, "1.1.0", fault)
            server.script = install_script(payload, "1.1.0")
            return Fault(fault, f"installed Codex {release}/codex failed verification", "failed")
        case "short-body" | "chunked-cut":
            witness = home.root / "partial-script-ran"
            server.script = install_script(
                stage_payload(home, "1.1.0"), "1.1.0", before=f'touch "{witness}"'
            )
            server.cut = fault
            return Fault(fault, "failed to fetch standalone Codex updater: ", "failed")
        case "new-server-exits-at-start":
            server.script = install_script(stage_payload(home, "1.1.0", exit_early=3), "1.1.0")
            old = release_dir(home, "1.0.0")
            return Fault(
                fault,
                f"updated app server 1.1.0 did not become ready; rolled back to {old}",
                "rolledBack",
                replaced=True,
            )
    raise AssertionError(fault)


FAULTS = [
    "script-exits-3",
    "version-exits-1",
    "not-executable",
    "zero-bytes",
    "short-body",
    "chunked-cut",
    "new-server-exits-at-start",
]


@pytest.mark.parametrize("driver", ["update", "scheduled"])
@pytest.mark.parametrize("fault_name", FAULTS)
def test_updater_fault_keeps_or_restores_the_service(
    fake_home: Home,
    script_server: ScriptServer,
    figures: Figures,
    fault_name: str,
    driver: str,
) -> None:
    home = fake_home
    figures.add("updater_faults_tried")
    if driver == "scheduled":
        fault = fault_setup(home, script_server, fault_name)
        old_pid = start_server(home, script_server, driver=driver)
        wait_for(
            lambda: updater_state(home).get("lastResult") is not None,
            what="the first scheduled cycle to end",
            timeout=30,
        )
        assert updater_state(home)["lastResult"] == fault.result, updater_state(home)
        last_error = updater_state(home).get("lastError")
        assert isinstance(last_error, str)
        assert last_error.startswith(fault.error), last_error
    else:
        old_pid = start_server(home, script_server, driver=driver)
        fault = fault_setup(home, script_server, fault_name)
        result = home.run("update", "--yes")
        assert "Traceback" not in result.stderr
        assert (result.returncode, result.stdout) == (1, ""), result
        assert result.stderr.startswith(f"Error: {fault.error}"), result.stderr
    assert script_server.fetches >= 1
    if fault_name in ("short-body", "chunked-cut"):
        # A cut download is never run, not even the part that arrived.
        assert not (home.root / "partial-script-ran").exists(), "the cut script was run"
        assert not release_dir(home, "1.1.0").exists()
    if fault.replaced:
        assert quarantined(home, "1.1.0"), updater_state(home)
        rollbacks = [e for e in log_events(home) if e.get("stage") == "rollback"]
        assert rollbacks
        assert all(e["outcome"] == "succeeded" for e in rollbacks)
    assert_service_kept(home, old_pid, replaced=fault.replaced)
    figures.add("updater_faults_safe")


# -- a hanging installer, stopped by SIGTERM --------------------------------------------------


@pytest.mark.parametrize("driver", ["update", "scheduled"])
@pytest.mark.parametrize("flipped", [False, True], ids=["hangs-before-flip", "hangs-after-flip"])
def test_sigterm_while_the_installer_hangs_kills_its_group_and_keeps_the_service(
    fake_home: Home,
    script_server: ScriptServer,
    figures: Figures,
    driver: str,
    flipped: bool,
) -> None:
    """SPEC §7.5, §8.9: the updater's 15 min installer timeout is not waited for."""
    home = fake_home
    figures.add("updater_faults_tried")
    marker = home.root / "installer"
    hang = textwrap.dedent(
        f"""\
        sleep 300 &
        echo $! > "{marker}.bg"
        echo $$ > "{marker}.tmp"
        mv "{marker}.tmp" "{marker}"
        sleep 300
        """
    )
    payload = stage_payload(home, "1.1.0")
    if flipped:
        script = install_script(payload, "1.1.0", after=hang)
    else:
        script = install_script(payload, "1.1.0", before=hang)
    client: subprocess.Popen[bytes] | None = None
    if driver == "scheduled":
        script_server.script = script
        old_pid = start_server(home, script_server, driver=driver)
    else:
        old_pid = start_server(home, script_server, driver=driver)
        script_server.script = script
        client = home.popen("update", "--yes")
    wait_for(marker.exists, what="the installer to hang", timeout=30)
    installer = int(marker.read_text())
    background = int(Path(f"{marker}.bg").read_text())
    updater = updater_pid(home)
    assert updater is not None
    assert home.carries_mark(updater)
    group = pgid_members(updater, home.mark)
    assert {updater, installer, background} <= set(group), group
    if flipped:
        assert current_target(home) == str(release_dir(home, "1.1.0"))
    if client is not None:
        assert client.poll() is None, "update answered before the installer ended"

    os.kill(updater, signal.SIGTERM)  # only the updater: it must stop its installer
    wait_for(
        lambda: not any(is_alive(pid) for pid in group),
        what=f"the updater's process group {group} to exit",
        timeout=INSTALLER_GONE_S,
    )
    assert pgid_members(updater, home.mark) == []
    if client is not None:
        out, err = client.communicate(timeout=INSTALLER_GONE_S)
        assert (client.returncode, out, err.decode()) == (1, b"", DIED)
    assert updater_pid(home) is None
    assert not os.path.lexists(home.paths.updater_socket)
    assert any(e.get("event") == "shutdown_requested" for e in log_events(home))
    # `current` untouched, or flipped back: a candidate never stays current unverified.
    assert current_target(home) == str(release_dir(home, "1.0.0"))
    assert_service_kept(home, old_pid)
    figures.add("updater_faults_safe")


def test_release_failing_verification_is_quarantined(
    fake_home: Home, script_server: ScriptServer
) -> None:
    """SPEC §8.10: a release that failed verification is quarantined like one that failed
    readiness, so scheduled cycles stop installing it for 24 h (scaled here)."""
    home = fake_home
    payload = stage_payload(home, "1.1.0", version_exit=1)
    script_server.script = install_script(payload, "1.1.0")
    old_pid = start_server(home, script_server, driver="scheduled")
    wait_for(
        lambda: updater_state(home).get("lastResult") is not None,
        what="the first scheduled cycle to end",
        timeout=30,
    )
    assert updater_state(home)["lastResult"] == "failed"
    assert quarantined(home, "1.1.0"), updater_state(home)
    assert any(e.get("event") == "quarantined" for e in log_events(home))
    assert_service_kept(home, old_pid)
