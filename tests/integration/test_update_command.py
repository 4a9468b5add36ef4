"""`update [--yes]`: the CLI asks the updater and relays its one answer (SPEC §2.11, §8.3).

SPEC §13.9 row 37. Each test serves its own ``install.sh`` from a ``http.server``
thread on 127.0.0.1 (a loopback ``http://`` URL is allowed, SPEC §3.5); the script
copies a staged fake-codex payload into ``releases/<version>-<target>`` and flips
``current``, as the real standalone installer does. No time scale is set: a scheduled
updater waits 300 s before its first cycle, so only the requests these tests send make
it do anything.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness import (
    is_alive,
    marked_pids,
    read_regular,
    scheduled_updater,
    updater_pid,
    wait_for,
    write_settings,
)
from tests.updates import ScriptServer, install_script, release_dir, stage_payload

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = pytest.mark.timeout(90)

UPDATE_KEYS = ["status", "managedCodexPath", "installedVersion", "runningVersion", "message"]
DIED = "Error: updater exited before answering the update request\n"
PROMPT = (
    "Install the latest Codex and restart the running app server if it changes? "
    "Active or queued work may be interrupted. [y/N] "
)
# The CLI checks the updater's record once per second while it waits (SPEC §2.11 step 6).
DEATH_NOTICED_S = 10.0


# -- a loopback install script (as in test_updater.py) -------------------------------------------


def configure(home: Home, server: ScriptServer, *, auto_update: bool) -> None:
    settings = {
        "shutdownGraceSeconds": 2,
        "updater": {"installScriptUrl": server.url, "autoUpdateEnabled": auto_update},
        # Without updates, no supervision either: no updater until `update` spawns one.
        "supervisor": {"restartOnExit": auto_update},
    }
    write_settings(home, settings)


# -- helpers ------------------------------------------------------------------------------------


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def updaters_alive(home: Home) -> list[int]:
    """Marked processes running the updater, whatever their record says."""
    found = []
    for pid in marked_pids(home.mark):
        try:
            argv = cmdline(pid)
        except OSError:
            continue
        if argv[1:4] == ["-m", "updater", "run"]:
            found.append(pid)
    return found


def start_server(home: Home, server: ScriptServer, *, auto_update: bool) -> int:
    """`start` with auto-update off, so no updater runs, then the settings under test."""
    configure(home, server, auto_update=False)
    started = home.run("start").json
    assert started["status"] == "started"
    pid = started["pid"]
    assert isinstance(pid, int)
    assert updater_pid(home) is None
    configure(home, server, auto_update=auto_update)
    return pid


def update_output(stdout: str) -> dict[str, object]:
    lines = stdout.splitlines()
    assert len(lines) == 1, f"expected one JSON line, got {stdout!r}"
    assert stdout == lines[0] + "\n"
    value = json.loads(lines[0])
    assert isinstance(value, dict)
    assert list(value) == UPDATE_KEYS
    assert isinstance(value["message"], str)
    assert value["message"]
    return value


def assert_update(home: Home, stdout: str, status: str, version: str) -> None:
    output = update_output(stdout)
    assert output["status"] == status
    assert output["managedCodexPath"] == home.paths.managed_bin_candidates[0]
    assert output["installedVersion"] == version
    assert output["runningVersion"] == version


def server_version(home: Home) -> object:
    return home.run("version").json["appServerVersion"]


# -- tests --------------------------------------------------------------------------------------


def test_update_spawns_a_scheduled_updater_that_keeps_running(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    old_server = start_server(home, script_server, auto_update=True)
    script_server.script = install_script(stage_payload(home, "1.1.0"), "1.1.0")

    result = home.run("update", "--yes")

    assert (result.returncode, result.stderr) == (0, ""), result
    assert_update(home, result.stdout, "updated", "1.1.0")
    new_server = home.record_pid()
    assert new_server is not None
    assert new_server != old_server
    assert not is_alive(old_server)
    assert server_version(home) == "1.1.0"
    assert os.readlink(home.paths.current) == str(release_dir(home, "1.1.0"))
    # Auto-update is on: the updater `update` spawned is a scheduled one and stays.
    updater = scheduled_updater(home)

    # Asked again with nothing new: noUpdate from the same updater; nothing restarted.
    again = home.run("update", "--yes")
    assert (again.returncode, again.stderr) == (0, ""), again
    assert_update(home, again.stdout, "noUpdate", "1.1.0")
    assert home.record_pid() == new_server
    assert scheduled_updater(home) == updater
    assert updaters_alive(home) == [updater]
    assert script_server.fetches == 2


def test_update_with_auto_update_off_uses_a_one_shot_updater(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    start_server(home, script_server, auto_update=False)
    script_server.script = install_script(stage_payload(home, "1.1.0"), "1.1.0")

    result = home.run("update", "--yes")

    assert (result.returncode, result.stderr) == (0, ""), result
    assert_update(home, result.stdout, "updated", "1.1.0")
    # `run --once` serves this one request and exits (a scheduled updater would wait
    # 300 s for its first cycle and find auto-update off only then).
    wait_for(lambda: updaters_alive(home) == [], what="the one-shot updater to exit")
    assert updater_pid(home) is None
    assert not os.path.lexists(home.paths.updater_socket)

    again = home.run("update", "--yes")
    assert (again.returncode, again.stderr) == (0, ""), again
    assert_update(home, again.stdout, "noUpdate", "1.1.0")
    wait_for(lambda: updaters_alive(home) == [], what="the second one-shot updater to exit")
    assert script_server.fetches == 2


def test_update_uses_the_running_updater(fake_home: Home, script_server: ScriptServer) -> None:
    home = fake_home
    configure(home, script_server, auto_update=True)
    assert home.run("start").json["status"] == "started"
    updater = scheduled_updater(home)
    script_server.script = install_script(stage_payload(home, "1.1.0"), "1.1.0")

    result = home.run("update", "--yes")

    assert (result.returncode, result.stderr) == (0, ""), result
    assert_update(home, result.stdout, "updated", "1.1.0")
    assert scheduled_updater(home) == updater
    assert updaters_alive(home) == [updater]


def test_installer_failure_is_relayed_as_the_error(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    server = start_server(home, script_server, auto_update=True)
    script_server.script = "echo 'installer broke' >&2\nexit 3\n"

    result = home.run("update", "--yes")

    assert result.returncode == 1, result
    assert result.stdout == ""
    # The updater's `Err` text, relayed unchanged after `Error: `.
    assert result.stderr == "Error: standalone Codex updater exited with status exit status: 3\n"
    assert "installer broke" not in result.stderr, "installer output goes to the updater log"
    assert b"installer broke" in (read_regular(home.paths.updater.log) or b"")
    assert home.record_pid() == server
    assert os.readlink(home.paths.current) == str(release_dir(home, "1.0.0"))
    scheduled_updater(home)


def test_two_concurrent_updates_both_get_an_answer(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    start_server(home, script_server, auto_update=True)
    script_server.script = install_script(stage_payload(home, "1.1.0"), "1.1.0")

    # Both find no updater and race to spawn one; one wins, both are served by it.
    first = home.popen("update", "--yes")
    second = home.popen("update", "--yes")
    answers = [process.communicate(timeout=60) for process in (first, second)]

    assert [first.returncode, second.returncode] == [0, 0], answers
    assert [err for _, err in answers] == [b"", b""]
    outputs = [update_output(out.decode()) for out, _ in answers]
    # Served one at a time: one installs 1.1.0, the other finds it current.
    assert sorted(str(output["status"]) for output in outputs) == ["noUpdate", "updated"]
    assert all(output["runningVersion"] == "1.1.0" for output in outputs)
    updater = scheduled_updater(home)
    assert updaters_alive(home) == [updater]
    assert server_version(home) == "1.1.0"


def test_two_concurrent_updates_with_a_one_shot_updater(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    start_server(home, script_server, auto_update=False)
    script_server.script = install_script(stage_payload(home, "1.1.0"), "1.1.0")

    first = home.popen("update", "--yes")
    second = home.popen("update", "--yes")
    answers = [process.communicate(timeout=60) for process in (first, second)]

    # Both callers asked for an update and nothing failed: each gets an UpdateOutput
    # (one `updated`, one `noUpdate`), not an error because the one-shot updater that
    # served the other request has exited.
    assert [first.returncode, second.returncode] == [0, 0], answers
    assert [err for _, err in answers] == [b"", b""]
    outputs = [update_output(out.decode()) for out, _ in answers]
    assert sorted(str(output["status"]) for output in outputs) == ["noUpdate", "updated"]
    wait_for(lambda: updaters_alive(home) == [], what="the one-shot updaters to exit")
    assert server_version(home) == "1.1.0"


def test_update_without_yes_and_without_a_terminal_never_prompts(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    start_server(home, script_server, auto_update=False)
    script_server.script = install_script(stage_payload(home, "1.1.0"), "1.1.0")

    result = home.run("update")  # stdin /dev/null, stdout and stderr pipes

    assert (result.returncode, result.stderr) == (0, ""), result
    assert_update(home, result.stdout, "updated", "1.1.0")


def _run_on_pty(home: Home, *, stderr_on_pty: bool, answer: bytes) -> tuple[int, bytes, bytes]:
    """Run `update` with stdin (and maybe stderr) on a pty; answer a prompt if shown."""
    master, slave = os.openpty()
    try:
        process = home.spawn_marked(
            home.argv("update"),
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=slave if stderr_on_pty else subprocess.PIPE,
        )
    finally:
        os.close(slave)
    shown = b""
    try:
        deadline = time.monotonic() + 30
        answered = False
        while process.poll() is None and time.monotonic() < deadline:
            readable, _, _ = select.select([master], [], [], 0.1)
            if master in readable:
                try:
                    shown += os.read(master, 4096)
                except OSError:  # EIO: the child closed its side
                    break
            if not answered and shown.endswith(PROMPT.encode()):
                os.write(master, answer)
                answered = True
        out, err = process.communicate(timeout=60)
        while True:
            readable, _, _ = select.select([master], [], [], 0)
            if master not in readable:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
    return process.returncode, out, shown if stderr_on_pty else err


def test_a_person_at_a_terminal_is_asked_and_can_cancel(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    server = start_server(home, script_server, auto_update=False)
    script_server.script = install_script(stage_payload(home, "1.1.0"), "1.1.0")

    code, out, shown = _run_on_pty(home, stderr_on_pty=True, answer=b"n\n")

    assert code == 1
    assert out == b""
    text = shown.decode().replace("\r\n", "\n")
    assert text.startswith(PROMPT)
    assert text.endswith("Error: update cancelled\n")
    # Cancelled before anything was asked of an updater.
    assert script_server.fetches == 0
    assert updater_pid(home) is None
    assert updaters_alive(home) == []
    assert home.record_pid() == server


def test_stdin_on_a_terminal_but_stderr_piped_is_not_prompted(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    start_server(home, script_server, auto_update=False)
    script_server.script = install_script(stage_payload(home, "1.1.0"), "1.1.0")

    code, out, err = _run_on_pty(home, stderr_on_pty=False, answer=b"n\n")

    assert (code, err) == (0, b""), (out, err)
    assert_update(home, out.decode(), "updated", "1.1.0")


def test_updater_dying_mid_request_fails_the_update(
    fake_home: Home, script_server: ScriptServer
) -> None:
    home = fake_home
    server = start_server(home, script_server, auto_update=True)
    marker = home.root / "installer-running"
    script_server.script = f'touch "{marker}"\nsleep 60\n'

    client = home.popen("update", "--yes")
    wait_for(marker.exists, what="the installer to run")
    updater = updater_pid(home)
    assert updater is not None
    assert home.carries_mark(updater)
    try:
        os.kill(updater, signal.SIGKILL)
        out, err = client.communicate(timeout=DEATH_NOTICED_S)
    finally:
        # The installer (`sh`, `sleep`) runs in the updater's process group and
        # outlives it; stop it by that group, which this test's updater leads.
        try:
            os.killpg(updater, signal.SIGKILL)
        except ProcessLookupError:
            pass

    assert (client.returncode, out, err.decode()) == (1, b"", DIED)
    assert home.record_pid() == server
    assert is_alive(server)
