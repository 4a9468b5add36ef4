"""The updater process against the fake codex and a loopback install script (SPEC §8, §13.9-§13.10).

Each test serves its own ``install.sh`` from a ``http.server`` thread on 127.0.0.1; the
script copies a staged fake-codex payload into ``releases/<version>-<target>`` and flips
``current``, as the real standalone installer does. The updater runs either detached
(spawned through the pid backend, as the CLI does) or in the foreground with ``--once``.
Schedules are scaled with ``CODEX_DAEMONKIT_TIME_SCALE``; grace periods and readiness
budgets are not.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from daemonkit.digest import digest_kind, file_digest
from daemonkit.paths import DaemonPaths
from daemonkit.updater_control import notify_updater
from tests.harness import (
    FAKE_SOURCE,
    TARGET,
    holds_for,
    is_alive,
    read_regular,
    updater_pid,
    wait_for,
    write_settings,
)
from tests.updates import ScriptServer, install_script, release_dir, stage_payload

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = pytest.mark.timeout(90)

FAST = "0.001"  # 300 s initial delay -> 0.3 s; one interval minute -> 60 ms
EXIT_AFTER_SIGTERM_S = 2.0  # SPEC §8.9 asks for 200 ms while idle; asserted loosely


# -- a loopback install script ------------------------------------------------------------


def configure(home: Home, server: ScriptServer, **updater: object) -> None:
    settings = {"shutdownGraceSeconds": 2, "updater": {"installScriptUrl": server.url, **updater}}
    write_settings(home, settings)


def use_hooks(home: Home, scale: str | None = FAST) -> None:
    home.extra_env["CODEX_DAEMONKIT_TEST_HOOKS"] = "1"
    if scale is not None:
        home.extra_env["CODEX_DAEMONKIT_TIME_SCALE"] = scale


# -- running the updater --------------------------------------------------------------------

_SPAWN = """
import os, sys
from daemonkit.backend import SpawnRequest, spawn_recorded
from daemonkit.paths import DaemonPaths
paths = DaemonPaths(os.environ["CODEX_HOME"])
spawned = spawn_recorded(SpawnRequest(
    paths=paths.updater, state_dir=paths.state_dir,
    argv=[sys.executable, "-m", "updater", "run"], env=dict(os.environ),
    cwd=os.environ["HOME"], what="updater"))
print(getattr(spawned, "pid", None) or spawned.record.pid)
"""


def spawn_updater(home: Home) -> int:
    """Start a detached updater through the pid backend, as ``ensure-updater`` does."""
    done = subprocess.run(
        [sys.executable, "-c", _SPAWN],
        env=home.env(),
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr.decode()
    pid = int(done.stdout)
    assert updater_pid(home) == pid
    return pid


def foreground_updater(home: Home, *args: str) -> subprocess.Popen[bytes]:
    log = (home.root / "foreground-updater.log").open("ab")
    try:
        return home.spawn_marked(
            [sys.executable, "-m", "updater", "run", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=str(home.user_home),
        )
    finally:
        log.close()


def updater_record(home: Home) -> dict[str, object] | None:
    try:
        value = json.loads(Path(home.paths.updater.record).read_bytes())
    except FileNotFoundError:
        return None
    assert isinstance(value, dict)
    return value


def log_lines(path: Path) -> list[dict[str, object]]:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            value = json.loads(line)
            assert isinstance(value, dict)
            lines.append(value)
    return lines


def events(home: Home) -> list[dict[str, object]]:
    return log_lines(Path(home.paths.updater.log)) + log_lines(home.root / "foreground-updater.log")


def has_event(home: Home, name: str, **details: object) -> bool:
    for line in events(home):
        found = line.get("details")
        if (
            line.get("event") == name
            and isinstance(found, dict)
            and all(found.get(key) == value for key, value in details.items())
        ):
            return True
    return False


def stages(home: Home, name: str) -> list[dict[str, object]]:
    return [line for line in events(home) if line.get("stage") == name]


def state(home: Home) -> dict[str, object]:
    try:
        value = json.loads(Path(home.paths.updater_state).read_bytes())
    except (FileNotFoundError, ValueError):
        return {}
    assert isinstance(value, dict)
    return value


def current_target(home: Home) -> str | None:
    try:
        return os.readlink(home.paths.current)
    except OSError:
        return None


def server_version(home: Home) -> str | None:
    result = home.run("version")
    if result.returncode != 0:
        return None
    version = result.json["appServerVersion"]
    assert isinstance(version, str)
    return version


def answers(path: str) -> bool:
    """True once a listener accepts connections at ``path`` (an empty connection)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
    return True


def binary_digest(path: Path) -> str:
    """The binary's digest as the updater computes it (BLAKE3 with the extra)."""
    return file_digest(str(path), digest_kind())


def rebuild_in_place(binary: Path) -> str:
    """Change the managed binary's bytes (not its version) under a running server.

    Returns the digest of the bytes the server was started from, for the caller to
    save as that server's validated digest: the reference then differs from the
    managed binary whether it comes from the record's executableIdentity (BLAKE3) or
    from the state.
    """
    before = binary_digest(binary)
    with binary.open("a") as f:
        f.write("# rebuilt\n")
    return before


def request(home: Home, data: bytes = b"update\n") -> object:
    """Send one request on the updater socket and decode the single JSON reply."""
    sock_path = home.paths.updater_socket

    def connect() -> socket.socket | None:
        # The file exists from bind() on, but connects are refused until listen().
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(sock_path)
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return None
        return sock

    connected = wait_for(connect, what="the updater request socket to accept")
    assert connected is not None
    with connected as sock:
        sock.settimeout(60)
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return json.loads(b"".join(chunks))


def terminate_updater(home: Home, pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not is_alive(pid), what="the updater to exit", timeout=EXIT_AFTER_SIGTERM_S)


def start_server(home: Home) -> int:
    """`start` through the CLI, minus the updater it spawns: each test runs its own."""
    started = home.run("start").json
    pid = started["pid"]
    assert isinstance(pid, int)
    home.stop_updater()
    return pid


_HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(120)
"""


def hold_operation_lock(home: Home) -> subprocess.Popen[bytes]:
    """Another process holding daemon.lock, as a running lifecycle command would."""
    holder = home.spawn_marked(
        [sys.executable, "-c", _HOLD_LOCK, home.paths.operation_lock], stdout=subprocess.PIPE
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == b"locked\n"
    return holder


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


# -- tests ----------------------------------------------------------------------------------


def test_scheduled_cycle_installs_and_restarts_onto_the_new_version(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    use_hooks(home)
    configure(home, script_server)
    old_pid = start_server(home)
    payload = stage_payload(home, "1.1.0")
    script_server.script = install_script(payload, "1.1.0")

    updater = spawn_updater(home)
    wait_for(lambda: state(home).get("lastResult") == "updated", what="an updated cycle")

    new_pid = home.record_pid()
    assert new_pid is not None
    assert new_pid != old_pid
    assert not is_alive(old_pid)
    assert server_version(home) == "1.1.0"
    assert current_target(home) == str(release_dir(home, "1.1.0"))
    assert os.readlink(home.paths.previous) == str(release_dir(home, "1.0.0"))
    saved = state(home)
    assert saved["lastError"] is None
    assert saved["consecutiveFailures"] == 0
    assert saved["lastValidatedDigest"] == binary_digest(release_dir(home, "1.1.0") / "codex")
    assert [line["outcome"] for line in stages(home, "restart")] == ["succeeded"]
    spawned = [line for line in events(home) if line.get("event") == "process_spawned"]
    assert [line["details"]["pid"] for line in spawned] == [new_pid]  # type: ignore[index]
    # The updater kept running (same pid, its record intact) and stops on SIGTERM.
    assert is_alive(updater)
    assert updater_pid(home) == updater
    status = home.run("status").json
    assert status["updater"]["lastResult"] == "updated"  # type: ignore[index]
    terminate_updater(home, updater)
    assert updater_record(home) is None
    assert not os.path.exists(home.paths.updater_socket)


def test_reinstalling_the_same_release_never_restarts(
    home: Home, script_server: ScriptServer
) -> None:
    # The server reports "v1.0.0", --version says "1.0.0": formatting must not loop.
    home.install_fake("1.0.0", server_version="v1.0.0")
    use_hooks(home)
    configure(home, script_server, updateIntervalMinutes=1)
    pid = start_server(home)
    payload = stage_payload(home, "1.0.0", server_version="v1.0.0")
    script_server.script = install_script(payload, "1.0.0")

    updater = spawn_updater(home)
    wait_for(
        lambda: len(stages(home, "scheduled_update")) >= 3,
        what="three scheduled cycles",
    )
    assert home.record_pid() == pid
    assert is_alive(pid)
    assert stages(home, "restart") == []
    assert all(line["outcome"] == "succeeded" for line in stages(home, "scheduled_update"))
    assert state(home)["lastResult"] == "noUpdate"
    assert script_server.fetches >= 3
    terminate_updater(home, updater)


def test_unready_release_is_rolled_back_and_quarantined(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    use_hooks(home)
    configure(home, script_server, updateIntervalMinutes=1)
    old_pid = start_server(home)
    payload = stage_payload(home, "1.1.0", never_ready=True)
    script_server.script = install_script(payload, "1.1.0")

    updater = spawn_updater(home)
    wait_for(
        lambda: state(home).get("lastResult") == "rolledBack",
        what="a rolled-back cycle",
        timeout=30,
    )
    # The next scheduled cycles reinstall the bad release; it is quarantined, so the
    # flip is undone and nothing restarts (SPEC §8.10).
    wait_for(
        lambda: has_event(home, "deferred", reason="quarantined"),
        what="a cycle deferred by the quarantine",
    )
    assert server_version(home) == "1.0.0"
    # A deferred cycle's installer flips `current` to the reinstalled release for a
    # moment before the updater undoes the flip.
    wait_for(
        lambda: current_target(home) == str(release_dir(home, "1.0.0")),
        what="current to point at the previous release",
    )
    rolled_back_pid = home.record_pid()
    assert rolled_back_pid is not None
    assert rolled_back_pid != old_pid
    saved = state(home)
    assert f"1.1.0-{TARGET}" in saved["quarantine"]  # type: ignore[operator]
    assert saved["consecutiveFailures"] == 1
    assert [line["outcome"] for line in stages(home, "restart")] == ["failed"]
    assert [line["outcome"] for line in stages(home, "rollback")] == ["succeeded"]
    restart_failure = stages(home, "restart")[0]["failure"]
    assert "did not become ready" in restart_failure["message"]  # type: ignore[index]
    terminate_updater(home, updater)
    assert home.record_pid() == rolled_back_pid


def test_wrong_version_is_rolled_back_and_the_request_gets_the_error(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    use_hooks(home)
    configure(home, script_server)
    start_server(home)
    payload = stage_payload(home, "1.1.0", server_version="9.9.9")
    script_server.script = install_script(payload, "1.1.0")

    process = foreground_updater(home, "--once")
    reply = request(home)
    assert isinstance(reply, dict)
    assert list(reply) == ["Err"]
    text = reply["Err"]
    old = release_dir(home, "1.0.0")
    assert text.startswith(f"updated app server 1.1.0 did not become ready; rolled back to {old}")
    assert "app server reported version 9.9.9, expected 1.1.0" in text
    assert process.wait(timeout=30) == 0
    assert server_version(home) == "1.0.0"
    assert current_target(home) == str(release_dir(home, "1.0.0"))
    assert state(home)["lastResult"] == "rolledBack"
    assert updater_record(home) is None


def test_failed_release_without_previous_leaves_the_server_down(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    use_hooks(home)
    configure(home, script_server)
    start_server(home)
    # A release that exits at once became current by hand; nothing to roll back to.
    home.install_fake("1.1.0", exit_early=3)
    script_server.script = "exit 0\n"

    process = foreground_updater(home, "--once")
    reply = request(home)
    assert isinstance(reply, dict)
    assert "app server did not become ready" in reply["Err"]
    assert process.wait(timeout=30) == 0
    assert home.record() is None
    assert server_version(home) is None
    status = home.run("status").json
    assert status["status"] == "notRunning"
    assert status["updater"]["lastResult"] == "failed"  # type: ignore[index]


def test_busy_operation_lock_defers_the_restart_until_released(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    use_hooks(home)
    configure(home, script_server)
    old_pid = start_server(home)
    script_server.script = install_script(stage_payload(home, "1.1.0"), "1.1.0")
    holder = hold_operation_lock(home)

    updater = spawn_updater(home)
    wait_for(
        lambda: has_event(home, "deferred", reason="busy"),
        what="the updater to report the lock busy",
    )
    # Installed, but the server is untouched while the lock is held.
    assert current_target(home) == str(release_dir(home, "1.1.0"))
    assert home.record_pid() == old_pid
    assert is_alive(old_pid)
    holder.kill()
    holder.wait(timeout=10)
    wait_for(lambda: state(home).get("lastResult") == "updated", what="the restart after release")
    assert server_version(home) == "1.1.0"
    terminate_updater(home, updater)


def test_sigterm_while_idle_ends_the_updater(fake_home: Home) -> None:
    home = fake_home
    use_hooks(home, scale=None)  # unscaled: the first cycle is 300 s away
    updater = spawn_updater(home)
    wait_for(lambda: os.path.exists(home.paths.updater_socket), what="the request socket")
    terminate_updater(home, updater)
    assert updater_record(home) is None
    assert not os.path.lexists(home.paths.updater_socket)
    assert [line["event"] for line in events(home) if "event" in line] == ["shutdown_requested"]


def test_sigterm_during_the_installer_ends_updater_and_installer(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    use_hooks(home)
    configure(home, script_server)
    marker = home.root / "installer.pid"
    payload = stage_payload(home, "1.1.0")
    script_server.script = install_script(
        payload, "1.1.0", before=f'echo $$ > "{marker}.tmp"; mv "{marker}.tmp" "{marker}"; sleep 60'
    )
    updater = spawn_updater(home)
    wait_for(marker.exists, what="the installer to start")
    installer = int(marker.read_text())
    assert is_alive(installer)
    # Only the updater's pid is signalled: it must stop its installer itself.
    terminate_updater(home, updater)
    wait_for(lambda: not is_alive(installer), what="the installer to be stopped", timeout=2)
    assert current_target(home) == str(release_dir(home, "1.0.0"))
    assert updater_record(home) is None
    assert any(line.get("event") == "shutdown_requested" for line in events(home))


def test_user_stop_is_never_undone(fake_home: Home, script_server: ScriptServer) -> None:
    home = fake_home
    use_hooks(home)
    configure(home, script_server, updateIntervalMinutes=1)
    pid = start_server(home)
    script_server.script = install_script(stage_payload(home, "1.1.0"), "1.1.0")
    # The intent says stopped while a managed server still runs (a stop that was
    # interrupted after writing it): the updater must not restart it.
    Path(home.paths.desired_state).write_text(
        json.dumps({"desiredState": "stopped", "changedAtMs": 1, "changedBy": "stop"})
    )
    updater = spawn_updater(home)
    wait_for(lambda: len(stages(home, "scheduled_update")) >= 2, what="two scheduled cycles")
    assert home.record_pid() == pid
    assert server_version(home) == "1.0.0"
    assert state(home)["lastResult"] == "notRunning"
    assert stages(home, "restart") == []

    assert home.run("stop").json["status"] == "stopped"
    seen = len(stages(home, "scheduled_update"))
    wait_for(
        lambda: len(stages(home, "scheduled_update")) >= seen + 2,
        what="two more scheduled cycles",
    )
    assert home.record() is None
    assert server_version(home) is None
    assert stages(home, "restart") == []
    assert is_alive(updater)
    terminate_updater(home, updater)


def test_reexec_after_a_binary_change_keeps_the_updater_pid(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    use_hooks(home)
    configure(home, script_server, updateIntervalMinutes=1)
    start_server(home)
    payload = stage_payload(home, "1.1.0")
    script_server.script = install_script(payload, "1.1.0")
    updater = spawn_updater(home)
    record_before = updater_record(home)
    with open(f"/proc/{updater}/cmdline", "rb") as f:
        cmdline = f.read()
    wait_for(lambda: state(home).get("lastResult") == "updated", what="the version update")
    first_pid = home.record_pid()
    assert stages(home, "reexec") == []

    # Same version, different bytes (PR #21853): Always mode, then a re-exec.
    rebuilt = textwrap.dedent(
        f"""\
        R="$CODEX_HOME/packages/standalone/releases/1.1.0-{TARGET}"
        grep -q '^# rebuilt$' "$R/codex" || echo '# rebuilt' >> "$R/codex"
        """
    )
    script_server.script = rebuilt
    wait_for(lambda: stages(home, "reexec"), what="the re-executed updater")
    assert [line["outcome"] for line in stages(home, "reexec")] == ["succeeded"]
    assert is_alive(updater)
    assert updater_record(home) == record_before
    with open(f"/proc/{updater}/cmdline", "rb") as f:
        assert f.read() == cmdline
    second_pid = home.record_pid()
    assert second_pid not in (None, first_pid)
    assert server_version(home) == "1.1.0"
    assert state(home)["lastValidatedDigest"] == binary_digest(release_dir(home, "1.1.0") / "codex")
    # The new image keeps cycling; the unchanged binary causes no further restart.
    seen = len(stages(home, "scheduled_update"))
    wait_for(
        lambda: len(stages(home, "scheduled_update")) >= seen + 3,
        what="cycles after the re-exec",
    )
    assert home.record_pid() == second_pid
    assert [line["outcome"] for line in stages(home, "restart")] == ["succeeded", "succeeded"]
    # The exec released daemon.lock: a lifecycle command gets it.
    fd = os.open(home.paths.operation_lock, os.O_RDWR)
    try:
        wait_for(lambda: _try_flock(fd), what="daemon.lock to be free")
    finally:
        os.close(fd)
    terminate_updater(home, updater)


def test_once_serves_one_update_request_then_exits(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    use_hooks(home)
    configure(home, script_server, autoUpdateEnabled=False)
    start_server(home)
    script_server.script = install_script(stage_payload(home, "1.1.0"), "1.1.0")

    process = foreground_updater(home, "--once")
    assert request(home, b"status\n") == {"Err": "unknown updater request"}
    reply = request(home)
    assert isinstance(reply, dict)
    output = reply["Ok"]
    assert list(output) == [
        "status",
        "managedCodexPath",
        "installedVersion",
        "runningVersion",
        "message",
    ]
    assert output["status"] == "updated"
    assert output["managedCodexPath"] == os.path.join(home.paths.current, "codex")
    assert output["installedVersion"] == "1.1.0"
    assert output["runningVersion"] == "1.1.0"
    assert process.wait(timeout=30) == 0
    assert process.stdout is not None
    assert process.stdout.read() == b""
    assert updater_record(home) is None
    assert not os.path.lexists(home.paths.updater_socket)

    # Asked again with nothing new: noUpdate, and the server keeps its pid.
    pid = home.record_pid()
    script_server.script = "exit 0\n"
    process = foreground_updater(home, "--once")
    reply = request(home)
    assert isinstance(reply, dict)
    assert reply["Ok"]["status"] == "noUpdate"
    assert process.wait(timeout=30) == 0
    assert home.record_pid() == pid


def test_second_updater_exits_zero(fake_home: Home) -> None:
    home = fake_home
    use_hooks(home, scale=None)
    first = spawn_updater(home)
    second = home.spawn_marked(
        [sys.executable, "-m", "updater", "run"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, err = second.communicate(timeout=30)
    assert second.returncode == 0
    assert err.decode() == f"another updater is running (pid {first})\n"
    assert updater_pid(home) == first
    assert is_alive(first)
    terminate_updater(home, first)


def test_current_outside_releases_is_unsupported(home: Home, script_server: ScriptServer) -> None:
    use_hooks(home)
    configure(home, script_server)
    tree = Path(home.paths.current)
    tree.mkdir(parents=True)
    (tree / "codex").write_text(f"#!{sys.executable}\n" + FAKE_SOURCE.read_text())
    (tree / "codex").chmod(0o755)
    script_server.script = "exit 0\n"
    process = foreground_updater(home, "--once")
    reply = request(home)
    assert reply == {
        "Ok": {
            "status": "unsupported",
            "managedCodexPath": str(tree / "codex"),
            "installedVersion": "1.0.0",
            "runningVersion": None,
            "message": (
                "This command requires a daemon package selected from its managed "
                "releases directory."
            ),
        }
    }
    assert process.wait(timeout=30) == 0
    assert script_server.fetches == 0


def test_requested_reexec_replies_first_and_resumes_the_schedule(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    use_hooks(home, scale=None)  # no scheduled cycle during the test
    configure(home, script_server)
    pid = start_server(home)
    Path(home.paths.updater_state).write_text(
        json.dumps(
            {
                "lastValidatedDigest": rebuild_in_place(release_dir(home, "1.0.0") / "codex"),
                "lastValidatedDigestKind": digest_kind(),
                "lastValidatedPid": pid,
            }
        )
    )
    script_server.script = "exit 0\n"
    updater = spawn_updater(home)
    wait_for(lambda: state(home).get("nextCheckAtMs"), what="the schedule to be saved")
    next_check = state(home)["nextCheckAtMs"]
    assert isinstance(next_check, int)

    reply = request(home)
    assert isinstance(reply, dict)
    assert reply["Ok"]["status"] == "updated"
    assert reply["Ok"]["runningVersion"] == "1.0.0"
    wait_for(lambda: stages(home, "reexec"), what="the re-executed updater")
    assert is_alive(updater)
    assert updater_pid(home) == updater
    restarted = home.record_pid()
    assert restarted not in (None, pid)
    # The new image resumed the old schedule instead of waiting 300 s again.
    resumed = state(home)["nextCheckAtMs"]
    assert isinstance(resumed, int)
    assert abs(resumed - next_check) < 5_000
    # It serves requests; the binary it validated causes no further restart.
    again = request(home)
    assert isinstance(again, dict)
    assert again["Ok"]["status"] == "noUpdate"
    assert home.record_pid() == restarted
    terminate_updater(home, updater)


def test_sigterm_while_busy_retrying_ends_the_updater(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    use_hooks(home)
    configure(home, script_server)
    pid = start_server(home)
    script_server.script = install_script(stage_payload(home, "1.1.0"), "1.1.0")
    hold_operation_lock(home)  # released when the test ends
    updater = spawn_updater(home)
    wait_for(lambda: has_event(home, "deferred", reason="busy"), what="the busy retry loop")
    terminate_updater(home, updater)
    assert updater_record(home) is None
    assert home.record_pid() == pid
    assert is_alive(pid)


def test_sigterm_during_a_restart_finishes_it_then_exits(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    use_hooks(home)
    configure(home, script_server)
    old_pid = start_server(home)
    payload = stage_payload(home, "1.1.0", startup_delay=1.5)
    script_server.script = install_script(payload, "1.1.0")
    updater = spawn_updater(home)
    wait_for(lambda: not is_alive(old_pid), what="the restart to stop the old server")
    os.kill(updater, signal.SIGTERM)
    wait_for(lambda: not is_alive(updater), what="the updater to exit after the restart")
    # The step in progress was finished and validated, not abandoned half-way.
    assert [line["outcome"] for line in stages(home, "restart")] == ["succeeded"]
    assert server_version(home) == "1.1.0"
    assert updater_record(home) is None


def test_restart_cap_defers_scheduled_cycles_but_not_requests(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    # 1.5 s to the first cycle, an 18 s restart-cap window: the seeded restarts are
    # still inside it when the cycle looks.
    use_hooks(home, scale="0.005")
    configure(home, script_server)
    pid = start_server(home)
    script_server.script = install_script(stage_payload(home, "1.1.0"), "1.1.0")
    now_ms = int(time.time() * 1000)
    Path(home.paths.updater_state).write_text(json.dumps({"restartsAtMs": [now_ms] * 4}))
    updater = spawn_updater(home)
    wait_for(lambda: has_event(home, "deferred", reason="restartCap"), what="a capped cycle")
    # The loop saves the state once the cycle has returned, after the event is logged.
    wait_for(lambda: state(home).get("lastResult") == "deferred", what="the deferral saved")
    assert script_server.fetches == 0
    assert home.record_pid() == pid
    reply = request(home)
    assert isinstance(reply, dict)
    assert reply["Ok"]["status"] == "updated"
    assert server_version(home) == "1.1.0"
    terminate_updater(home, updater)


def test_foreground_updater_registers_itself_as_a_group_leader(fake_home: Home) -> None:
    home = fake_home
    use_hooks(home, scale=None)
    process = foreground_updater(home)
    # It reserves its record (an empty file, SPEC §4.6) before it publishes it.
    wait_for(
        lambda: read_regular(home.paths.updater.record) not in (None, b""),
        what="the self-published record",
    )
    assert updater_pid(home) == process.pid
    assert os.getpgid(process.pid) == process.pid
    record = updater_record(home)
    assert record is not None
    assert "executableIdentity" not in record
    wait_for(lambda: os.path.exists(home.paths.updater_socket), what="the request socket")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=EXIT_AFTER_SIGTERM_S) == 0
    assert updater_record(home) is None


def test_disabled_auto_update_stops_the_cycles_and_supervision_keeps_the_updater(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    use_hooks(home)
    configure(home, script_server, autoUpdateEnabled=False)  # supervision is on by default
    updater = spawn_updater(home)
    # Many scaled intervals (60 ms each): the updater stays, and never installs.
    holds_for(
        lambda: is_alive(updater) and script_server.fetches == 0,
        1.0,
        what="a supervising updater that runs no update cycles",
    )
    # Supervision off too: nothing is left to do, and the next wake-up ends it.
    settings = json.loads(Path(home.paths.settings).read_text())
    settings["supervisor"] = {"restartOnExit": False}
    write_settings(home, settings)
    notify_updater(home.paths)  # a wake-up, as a command gives after it started a server
    wait_for(lambda: not is_alive(updater), what="the updater to exit")
    assert updater_record(home) is None
    assert script_server.fetches == 0


def test_updater_log_rotates_past_one_mebibyte(fake_home: Home) -> None:
    home = fake_home
    use_hooks(home, scale=None)
    updater = spawn_updater(home)
    wait_for(lambda: os.path.exists(home.paths.updater_socket), what="the request socket")
    log = Path(home.paths.updater.log)
    with log.open("a") as f:
        f.write("filler\n" * 160_000)
    terminate_updater(home, updater)
    previous = Path(home.paths.updater.previous_log)
    assert previous.read_text().count("filler\n") == 160_000
    assert [line["event"] for line in log_lines(log)] == ["shutdown_requested"]
    assert "filler" not in log.read_text()
    assert log.stat().st_mode & 0o777 == 0o600


def test_long_home_serves_requests_through_a_socket_alias(
    home: Home, script_server: ScriptServer
) -> None:
    long_home = home.path / ("x" * 80)
    long_home.mkdir()
    home.path = long_home
    home.paths = DaemonPaths(str(long_home))
    use_hooks(home)
    configure(home, script_server)
    process = foreground_updater(home, "--once")
    alias = home.paths.updater_socket
    assert len(alias) > 107
    wait_for(lambda: os.path.islink(alias), what="the socket alias")
    physical = os.readlink(alias)
    digest = hashlib.sha256(alias.encode()).hexdigest()
    assert physical == f"/tmp/codex-daemon-{os.geteuid()}/{digest}"
    assert os.stat(physical).st_mode & 0o777 == 0o600
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(physical)
        sock.sendall(b"nonsense\n")
        assert json.loads(sock.recv(4096)) == {"Err": "unknown updater request"}
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=EXIT_AFTER_SIGTERM_S) == 0
    assert not os.path.lexists(alias)
    assert not os.path.lexists(physical)


_FOREIGN_CLIENT = """
import socket, sys
data = b""
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
    sock.settimeout(20)
    sock.connect(sys.argv[1])
    try:
        sock.sendall(b"update\\n")
        while chunk := sock.recv(4096):
            data += chunk
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed at once, the request unread: a refusal, like an empty reply
print(repr(data))
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"),
    reason="connecting as another uid needs root",
)
def test_request_from_another_uid_is_refused(fake_home: Home, script_server: ScriptServer) -> None:
    home = fake_home
    use_hooks(home, scale=None)
    configure(home, script_server)
    updater = spawn_updater(home)
    sock_path = home.paths.updater_socket
    wait_for(lambda: os.path.exists(sock_path), what="the request socket")
    # Open this test's own directories and the socket to uid 65534, so that only the
    # SO_PEERCRED check stands between it and an update.
    for directory in (home.root, home.path, Path(home.paths.state_dir)):
        directory.chmod(0o711)
    os.chmod(sock_path, 0o666)
    client = subprocess.run(
        ["/usr/bin/python3", "-c", _FOREIGN_CLIENT, sock_path],
        user=65534,
        group=65534,
        extra_groups=[],
        env={"PATH": "/usr/bin:/bin", "DK_TEST_MARK": home.mark},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert client.returncode == 0, client.stderr.decode()
    assert client.stdout == b"b''\n"
    log = Path(home.paths.updater.log).read_text()
    assert "warning: refused updater request from pid " in log
    assert "of uid 65534" in log
    assert script_server.fetches == 0
    # The updater goes on serving its own user.
    assert is_alive(updater)
    assert request(home, b"hello\n") == {"Err": "unknown updater request"}
    terminate_updater(home, updater)


def test_crash_before_reexec_leaves_a_recoverable_state(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    use_hooks(home, scale=None)
    home.extra_env["CODEX_DAEMONKIT_TEST_CRASH_AT"] = "before-reexec"
    configure(home, script_server)
    pid = start_server(home)
    Path(home.paths.updater_state).write_text(
        json.dumps(
            {
                "lastValidatedDigest": rebuild_in_place(release_dir(home, "1.0.0") / "codex"),
                "lastValidatedDigestKind": digest_kind(),
                "lastValidatedPid": pid,
            }
        )
    )
    script_server.script = "exit 0\n"
    updater = spawn_updater(home)
    reply = request(home)  # answered before the exec point, so before the crash
    assert isinstance(reply, dict)
    assert reply["Ok"]["status"] == "updated"
    wait_for(lambda: not is_alive(updater), what="the crash at before-reexec")
    assert updater_pid(home) == updater  # stale now: nobody removed it
    restarted = home.record_pid()
    assert restarted not in (None, pid)
    assert server_version(home) == "1.0.0"
    fd = os.open(home.paths.operation_lock, os.O_RDWR)
    try:
        assert _try_flock(fd)  # the dead process's lock died with it
    finally:
        os.close(fd)
    # The next updater replaces the stale record and runs normally.
    del home.extra_env["CODEX_DAEMONKIT_TEST_CRASH_AT"]
    replacement = spawn_updater(home)
    assert replacement != updater
    wait_for(lambda: os.path.exists(home.paths.updater_socket), what="the new request socket")
    assert request(home)["Ok"]["status"] == "noUpdate"  # type: ignore[index]
    terminate_updater(home, replacement)


def test_failing_installer_never_leaves_current_flipped(
    fake_home: Home, script_server: ScriptServer
) -> None:
    # SPEC §7.8: a candidate that failed is never left `current`; the script channel
    # flips it back to what `current` was before the script ran (§13.10 row 40).
    home = fake_home
    use_hooks(home)
    configure(home, script_server)
    pid = start_server(home)
    flip_then_fail = install_script(stage_payload(home, "1.1.0"), "1.1.0") + "exit 3\n"
    script_server.script = flip_then_fail
    process = foreground_updater(home, "--once")
    reply = request(home)
    assert reply == {"Err": "standalone Codex updater exited with status exit status: 3"}
    assert process.wait(timeout=30) == 0
    assert current_target(home) == str(release_dir(home, "1.0.0"))
    assert home.record_pid() == pid
    saved = state(home)
    assert saved["lastResult"] == "failed"
    assert saved["consecutiveFailures"] == 1
    assert [line["outcome"] for line in stages(home, "installer_run")] == ["failed"]


def test_request_socket_is_never_stolen_but_stale_ones_are_replaced(fake_home: Home) -> None:
    home = fake_home
    use_hooks(home, scale=None)
    Path(home.paths.state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    sock_path = home.paths.updater_socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(sock_path)
        listener.listen(1)
        inode = os.lstat(sock_path).st_ino
        # Something answers there: another updater's socket, left alone.
        process = foreground_updater(home)
        assert process.wait(timeout=30) == 0
        assert os.lstat(sock_path).st_ino == inode
        assert updater_record(home) is None
    # The listener is gone and its file is stale: the next updater replaces it.
    assert os.path.exists(sock_path)
    process = foreground_updater(home, "--once")
    wait_for(lambda: answers(sock_path), what="a fresh request socket")
    assert request(home, b"?\n") == {"Err": "unknown updater request"}
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=EXIT_AFTER_SIGTERM_S) == 0
    assert not os.path.lexists(sock_path)


_READ_VERSION = """
import os, sys
from daemonkit.errors import ManagedCodexError
from updater.binary import read_version_with_sh
try:
    print("ok:" + read_version_with_sh(sys.argv[1], dict(os.environ)))
except ManagedCodexError as exc:
    print("error:" + str(exc))
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "cat >&2; echo 'codex-cli 1.2.3'; echo noise >&2", "ok:1.2.3", id="stdin-empty"
        ),
        pytest.param(
            "exit 3", "error:managed Codex binary {bin} exited with status exit status: 3"
        ),
        pytest.param(
            "kill -9 $$",
            "error:managed Codex binary {bin} exited with status signal: 9 (SIGKILL)",
            id="killed",
        ),
        pytest.param(
            r"printf 'codex-cli \377\n'", "error:managed Codex version was not utf-8: {bin}"
        ),
        pytest.param("echo codex-cli", "error:managed Codex version output was malformed"),
        pytest.param(None, "error:failed to invoke managed Codex binary {bin}", id="missing"),
    ],
)
def test_version_is_read_through_sh(home: Home, body: str | None, expected: str) -> None:
    binary = home.root / "codex"
    if body is not None:
        binary.write_text(f"#!/bin/sh\n{body}\n")
        binary.chmod(0o755)
    done = subprocess.run(
        [sys.executable, "-c", _READ_VERSION, str(binary)],
        env=home.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == expected.format(bin=binary) + "\n"
