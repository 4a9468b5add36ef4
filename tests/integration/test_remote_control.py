"""bootstrap, enable/disable-remote-control and the updater they start (SPEC §2.9, §2.10, §2.4).

SPEC §13.2 rows 6-8, against the fake codex. The fake's witness file shows what the
kit did to the server: the argv and the remote-control environment variable of every
spawned server (``start`` events), and every JSON-RPC request it received (``request``
events), so the remote-control re-assert (SPEC §6.6) is observed on the server side.
Updaters are found through their record and ``/proc``; nothing here waits on an
updater's schedule (its initial delay is 300 s, never reached by these tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from daemonkit import __version__
from tests.harness import (
    is_alive,
    marked_pids,
    read_regular,
    remote_control_status,
    scheduled_updater,
    updater_pid,
    wait_for,
    write_settings_text,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from tests.harness import Home

pytestmark = pytest.mark.timeout(60)

RC_ENV = "CODEX_INTERNAL_APP_SERVER_REMOTE_CONTROL_DISABLED"
# What Rust 0.169.0's daemon spawns for Codex >= 0.169 (SPEC §4.7), read off a real one.
SERVER_ARGS = [
    "app-server",
    "--listen",
    "unix://",
    "--analytics-default-enabled",
    "--managed-daemon",
]
RC_SERVER_ARGS = ["app-server", "--remote-control", *SERVER_ARGS[1:]]
# The seed's form, only for binaries older than 0.169.
SEED_ARGS = ["app-server", "--listen", "unix://"]
SEED_RC_ARGS = ["--enable", "remote_control", *SEED_ARGS]
UNMANAGED_ERROR = "Error: app server is running but is not managed by codex app-server daemon\n"
# Keys a client already had in settings.json; every write must keep them and their order.
PRE_EXISTING: dict[str, object] = {
    "custom": 1,
    "shutdownGraceSeconds": 5,
    "updater": {"updateIntervalMinutes": 30, "channel": "script"},
}
CONNECT_DELAY_S = 1.0


# -- helpers ------------------------------------------------------------------------------------


def install(home: Home, **config: object) -> Path:
    """The fake 1.0.0 as the managed Codex, with a witness file."""
    release = home.install_fake("1.0.0", witness=str(home.root / "witness.jsonl"))
    if config:
        home.configure_fake(release, **config)
    return release


def witness(home: Home) -> list[dict[str, object]]:
    raw = read_regular(str(home.root / "witness.jsonl")) or b""
    events = []
    for line in raw.decode().splitlines():
        value = json.loads(line)
        assert isinstance(value, dict)
        events.append(value)
    return events


def start_event(home: Home, pid: int) -> dict[str, object]:
    found = [e for e in witness(home) if e["event"] == "start" and e["pid"] == pid]
    assert len(found) == 1, f"start events of {pid}: {found}"
    return found[0]


def server_starts(home: Home) -> list[int]:
    pids = [e["pid"] for e in witness(home) if e["event"] == "start"]
    assert all(isinstance(pid, int) for pid in pids)
    return pids  # type: ignore[return-value]


def rc_requests(home: Home, pid: int) -> list[tuple[object, object]]:
    """The remote-control requests server ``pid`` received, as (method, params)."""
    return [
        (e["method"], e["params"])
        for e in witness(home)
        if e["event"] == "request"
        and e["pid"] == pid
        and str(e["method"]).startswith("remoteControl/")
    ]


def assert_server_mode(home: Home, pid: int, *, remote_control: bool) -> None:
    """argv and environment of the server as the kit spawned it (SPEC §4.7)."""
    seen = start_event(home, pid)
    argv = seen["argv"]
    assert isinstance(argv, list)
    assert argv[0] == os.path.realpath(home.paths.managed_bin_candidates[0])
    assert argv[1:] == (RC_SERVER_ARGS if remote_control else SERVER_ARGS)
    env = seen["env"]
    assert isinstance(env, dict)
    # 1 when off; removed when on, even though the caller's environment set it.
    assert env[RC_ENV] == (None if remote_control else "1")
    assert seen["remote_control"] is remote_control


def compact(settings: Mapping[str, object]) -> str:
    """settings.json as a client might have left it: compact, not the kit's format."""
    return json.dumps(settings, separators=(",", ":"))


def settings_bytes(home: Home) -> bytes | None:
    return read_regular(home.paths.settings)


def kit_settings(settings: Mapping[str, object]) -> bytes:
    """SPEC §3.7's format: two-space indentation, no trailing newline."""
    return json.dumps(settings, indent=2, ensure_ascii=False).encode()


def caller_env(home: Home) -> dict[str, str]:
    # A caller whose environment already carries the variable: the kit must set it to 1
    # for a disabled server and remove it for an enabled one.
    return home.env(**{RC_ENV: "caller"})


def assert_no_updater(home: Home, *gone: int) -> None:
    assert updater_pid(home) is None
    # The stop waited for the exit; only init's reaping may lag behind.
    wait_for(
        lambda: not any(is_alive(pid) for pid in gone), what=f"updaters {gone} to exit", timeout=5
    )


def desired_state(home: Home) -> bytes | None:
    return read_regular(home.paths.desired_state)


def expected_line(fields: dict[str, object]) -> str:
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False) + "\n"


def start(home: Home) -> int:
    started = home.run("start").json
    assert started["status"] == "started"
    pid = started["pid"]
    assert isinstance(pid, int)
    return pid


# -- remote control as the server reports it (SPEC §4.7) ----------------------------------------


@pytest.mark.parametrize(
    ("version", "args", "rc_args"),
    [
        ("0.169.0", SERVER_ARGS, RC_SERVER_ARGS),
        ("0.171.0", SERVER_ARGS, RC_SERVER_ARGS),
        ("0.168.0", SEED_ARGS, SEED_RC_ARGS),
    ],
)
def test_remote_control_really_turns_on_and_off(
    home: Home, version: str, args: list[str], rc_args: list[str]
) -> None:
    """What a mobile client sees after each command: the server's own status notification.

    The fake follows the real contract: from 0.169 on the seed's `--enable remote_control`
    leaves remote control `disabled`, and older binaries reject the newer flags.
    """
    home.install_fake(version, witness=str(home.root / "witness.jsonl"))
    write_settings_text(home, compact({"updater": {"autoUpdateEnabled": False}}))
    canonical = os.path.realpath(home.paths.managed_bin_candidates[0])

    assert home.run("bootstrap", "--remote-control").json["remoteControlEnabled"] is True
    first = home.record_pid()
    assert first is not None
    assert start_event(home, first)["argv"] == [canonical, *rc_args]
    assert remote_control_status(home.paths.socket) != "disabled"

    assert home.run("disable-remote-control").json["status"] == "disabled"
    second = home.record_pid()
    assert second is not None
    assert start_event(home, second)["argv"] == [canonical, *args]
    assert remote_control_status(home.paths.socket) == "disabled"

    assert home.run("enable-remote-control").json["status"] == "enabled"
    third = home.record_pid()
    assert third is not None
    assert start_event(home, third)["argv"] == [canonical, *rc_args]
    assert remote_control_status(home.paths.socket) != "disabled"
    assert home.run("stop").json["status"] == "stopped"


# -- bootstrap (row 6) --------------------------------------------------------------------------


@pytest.mark.parametrize("remote_control", [False, True], ids=["plain", "remote-control"])
def test_bootstrap_spawns_server_and_updater_and_merges_settings(
    home: Home, remote_control: bool
) -> None:
    install(home)
    write_settings_text(home, compact(PRE_EXISTING))
    args = ["bootstrap", "--remote-control"] if remote_control else ["bootstrap"]

    result = home.run(*args, env=caller_env(home))

    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout == expected_line(
        {
            "status": "bootstrapped",
            "backend": "pid",
            "autoUpdateEnabled": True,
            "remoteControlEnabled": remote_control,
            "managedCodexPath": home.paths.managed_bin_candidates[0],
            "managedCodexVersion": "1.0.0",
            "socketPath": home.paths.socket,
            "cliVersion": __version__,
            "appServerVersion": "1.0.0",
        }
    )
    pid = home.record_pid()
    assert pid is not None
    assert is_alive(pid)
    assert server_starts(home) == [pid]
    assert_server_mode(home, pid, remote_control=remote_control)
    # Settings: every key kept in order, the new one appended, the kit's format.
    assert settings_bytes(home) == kit_settings(
        {**PRE_EXISTING, "remoteControlEnabled": remote_control}
    )
    intent = json.loads(desired_state(home) or b"null")
    assert intent["desiredState"] == "running"
    assert intent["changedBy"] == "bootstrap"
    # autoUpdateEnabled:true means an updater is running now.
    scheduled_updater(home)


def test_bootstrap_keeps_the_position_of_an_existing_remote_control_key(home: Home) -> None:
    install(home)
    write_settings_text(home, compact({"remoteControlEnabled": False, **PRE_EXISTING}))
    assert home.run("bootstrap", "--remote-control").json["remoteControlEnabled"] is True
    assert settings_bytes(home) == kit_settings({"remoteControlEnabled": True, **PRE_EXISTING})


def test_bootstrap_with_updates_and_supervision_off_starts_no_updater(home: Home) -> None:
    install(home)
    settings = {"updater": {"autoUpdateEnabled": False}, "supervisor": {"restartOnExit": False}}
    write_settings_text(home, compact(settings))

    output = home.run("bootstrap").json

    assert output["status"] == "bootstrapped"
    assert output["autoUpdateEnabled"] is False
    assert output["remoteControlEnabled"] is False
    assert updater_pid(home) is None
    pid = home.record_pid()
    assert pid is not None
    # The server is the only process the command left behind.
    assert marked_pids(home.mark) == [pid]
    assert settings_bytes(home) == kit_settings({**settings, "remoteControlEnabled": False})


def test_bootstrap_over_a_running_server_replaces_server_and_updater(home: Home) -> None:
    install(home)
    old_server = start(home)
    old_updater = scheduled_updater(home)
    assert_server_mode(home, old_server, remote_control=False)

    output = home.run("bootstrap", "--remote-control").json

    assert output["status"] == "bootstrapped"
    assert output["autoUpdateEnabled"] is True
    new_server = home.record_pid()
    assert new_server is not None
    assert new_server != old_server
    assert not is_alive(old_server)
    assert_server_mode(home, new_server, remote_control=True)
    # The updater was stopped (SPEC §2.9 step 6) and a new one spawned (step 9).
    assert not is_alive(old_updater)
    new_updater = scheduled_updater(home)
    assert new_updater != old_updater

    # And back: bootstrap without the flag turns remote control off again.
    again = home.run("bootstrap").json
    assert again["remoteControlEnabled"] is False
    last = home.record_pid()
    assert last is not None
    assert last != new_server
    assert_server_mode(home, last, remote_control=False)
    assert json.loads(settings_bytes(home) or b"") == {"remoteControlEnabled": False}


def test_bootstrap_refuses_an_unmanaged_server(home: Home) -> None:
    release = install(home)
    server = home.spawn_marked(
        [str(release / "codex"), *SERVER_ARGS],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: os.path.exists(home.paths.socket), what="the unmanaged fake's socket")
    wait_for(lambda: server.pid in server_starts(home), what="the unmanaged fake's start")
    assert home.run("version").returncode == 0

    result = home.run("bootstrap", "--remote-control")

    assert (result.returncode, result.stdout, result.stderr) == (1, "", UNMANAGED_ERROR)
    assert is_alive(server.pid)
    assert server_starts(home) == [server.pid]
    assert home.record() is None
    # Refused before saving anything (SPEC §2.9 steps 4-5) or starting an updater.
    assert settings_bytes(home) is None
    assert desired_state(home) is None
    assert updater_pid(home) is None


# -- enable / disable (row 7) -------------------------------------------------------------------


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
@pytest.mark.parametrize("changed", [True, False], ids=["changed", "unchanged"])
@pytest.mark.parametrize("enable", [True, False], ids=["enable", "disable"])
def test_remote_control_mode_switch(home: Home, enable: bool, changed: bool, running: bool) -> None:
    install(home)
    before = not enable if changed else enable
    settings = {**PRE_EXISTING, "remoteControlEnabled": before}
    written = write_settings_text(home, compact(settings))
    old_pid = start(home) if running else None
    old_updater = scheduled_updater(home) if running else None
    intent = desired_state(home)
    command = "enable-remote-control" if enable else "disable-remote-control"

    result = home.run(command, env=caller_env(home))

    assert (result.returncode, result.stderr) == (0, ""), result
    status = (
        ("enabled" if enable else "disabled")
        if changed
        else ("alreadyEnabled" if enable else "alreadyDisabled")
    )
    expected: dict[str, object] = {"status": status}
    if running:
        expected["backend"] = "pid"
    expected |= {
        "remoteControlEnabled": enable,
        "socketPath": home.paths.socket,
        "cliVersion": __version__,
    }
    if running:
        expected["appServerVersion"] = "1.0.0"
    assert result.stdout == expected_line(expected)

    if changed:
        assert settings_bytes(home) == kit_settings({**settings, "remoteControlEnabled": enable})
    else:
        assert settings_bytes(home) == written, "an unchanged setting is not rewritten"
    # desiredState is not an enable/disable concern (SPEC §2.10).
    assert desired_state(home) == intent

    if not running:
        assert server_starts(home) == []
        assert home.record() is None
        # Nor is the updater: none was running and none was started.
        assert updater_pid(home) is None
        return
    assert old_pid is not None
    new_pid = home.record_pid()
    assert new_pid is not None
    if changed:
        assert new_pid != old_pid
        assert not is_alive(old_pid)
        assert_server_mode(home, new_pid, remote_control=enable)
        # The new argv carries the mode; no RPC to either server.
        assert rc_requests(home, old_pid) == []
        assert rc_requests(home, new_pid) == []
    else:
        assert new_pid == old_pid
        assert is_alive(old_pid)
        # 0.169.0 re-asserts the mode on the live server (SPEC §2.10 step 4, §6.6).
        method = "remoteControl/enable" if enable else "remoteControl/disable"
        assert rc_requests(home, old_pid) == [(method, {"ephemeral": True})]
    # The updater is neither started nor stopped by enable/disable.
    assert updater_pid(home) == old_updater
    assert old_updater is not None
    assert is_alive(old_updater)


def test_rpc_initialize_carries_the_remote_control_capabilities(home: Home) -> None:
    install(home)
    write_settings_text(home, compact({"remoteControlEnabled": True}))
    pid = start(home)
    assert home.run("enable-remote-control").json["status"] == "alreadyEnabled"
    requests = [e for e in witness(home) if e["event"] == "request" and e["pid"] == pid]
    # The RPC's own connection: initialize with capabilities, initialized, then id 2.
    rpc = [e for e in requests if isinstance(e["params"], dict) and "capabilities" in e["params"]]
    assert len(rpc) == 1
    assert rpc[0]["id"] == 1
    assert rpc[0]["params"] == {
        "clientInfo": {
            "name": "codex_app_server_daemon",
            "title": "Codex App Server Daemon",
            "version": __version__,
        },
        "capabilities": {
            "experimentalApi": True,
            "requestAttestation": False,
            "optOutNotificationMethods": None,
        },
    }
    after = requests[requests.index(rpc[0]) + 1 :]
    assert [(e["method"], e["id"]) for e in after][:2] == [
        ("initialized", None),
        ("remoteControl/enable", 2),
    ]


def test_enable_retries_without_params_when_the_server_rejects_them(home: Home) -> None:
    install(home, remote_control_params_rejected=True)
    write_settings_text(home, compact({"remoteControlEnabled": True}))
    pid = start(home)

    result = home.run("enable-remote-control")

    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.json["status"] == "alreadyEnabled"
    assert rc_requests(home, pid) == [
        ("remoteControl/enable", {"ephemeral": True}),
        ("remoteControl/enable", None),
    ]


def test_disable_with_rejected_params_warns_and_succeeds(home: Home) -> None:
    install(home, remote_control_params_rejected=True)
    write_settings_text(home, compact({"remoteControlEnabled": False}))
    pid = start(home)

    result = home.run("disable-remote-control")

    assert result.returncode == 0, result
    assert result.stderr == "warning: remoteControl/disable rejected ephemeral params\n"
    assert result.json["status"] == "alreadyDisabled"
    assert result.json["appServerVersion"] == "1.0.0"
    assert rc_requests(home, pid) == [("remoteControl/disable", {"ephemeral": True})]
    assert home.record_pid() == pid


def test_enable_waits_while_the_server_is_connecting(home: Home) -> None:
    # The fake answers `connecting` and reports `connected` one second later.
    install(home, remote_control_connect_delay=CONNECT_DELAY_S)
    write_settings_text(home, compact({"remoteControlEnabled": True}))
    pid = start(home)

    began = time.monotonic()
    result = home.run("enable-remote-control")
    elapsed = time.monotonic() - began

    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.json["status"] == "alreadyEnabled"
    assert rc_requests(home, pid) == [("remoteControl/enable", {"ephemeral": True})]
    # Not a speed check: the command kept reading until the status left `connecting`
    # (SPEC §6.6), so it cannot have returned before the fake reported `connected`.
    assert elapsed >= CONNECT_DELAY_S


# -- the updater follows the settings (row 8) ---------------------------------------------------


def set_auto_update(home: Home, enabled: bool) -> None:
    """Updates and supervision both on or both off: an updater is wanted or not."""
    write_settings_text(
        home,
        compact(
            {"updater": {"autoUpdateEnabled": enabled}, "supervisor": {"restartOnExit": enabled}}
        ),
    )


def test_bootstrap_with_updates_off_keeps_an_updater_to_supervise(home: Home) -> None:
    install(home)
    write_settings_text(home, compact({"updater": {"autoUpdateEnabled": False}}))

    output = home.run("bootstrap").json

    assert output["status"] == "bootstrapped"
    # No updates will happen, though an updater runs: it supervises (SPEC §14.1).
    assert output["autoUpdateEnabled"] is False
    scheduled_updater(home)
    assert home.run("status").json["supervisor"]["state"] == "watching"  # type: ignore[index]


def test_start_starts_the_updater_when_enabled_and_stops_it_when_disabled(home: Home) -> None:
    install(home)
    pid = start(home)
    updater = scheduled_updater(home)

    # alreadyRunning with auto-update on: the same updater, not a second one.
    assert home.run("start").json["status"] == "alreadyRunning"
    assert scheduled_updater(home) == updater

    set_auto_update(home, False)
    again = home.run("start")
    assert (again.returncode, again.stderr) == (0, ""), again
    assert again.json["status"] == "alreadyRunning"
    assert_no_updater(home, updater)
    assert home.record_pid() == pid

    set_auto_update(home, True)
    assert home.run("start").json["status"] == "alreadyRunning"
    replacement = scheduled_updater(home)
    assert replacement != updater


def test_restart_starts_the_updater_when_enabled_and_stops_it_when_disabled(home: Home) -> None:
    install(home)
    set_auto_update(home, False)
    start(home)
    assert updater_pid(home) is None

    set_auto_update(home, True)
    assert home.run("restart").json["status"] == "restarted"
    updater = scheduled_updater(home)

    set_auto_update(home, False)
    restarted = home.run("restart")
    assert (restarted.returncode, restarted.stderr) == (0, ""), restarted
    assert restarted.json["status"] == "restarted"
    assert_no_updater(home, updater)


def test_stop_leaves_the_updater_alone(home: Home) -> None:
    install(home)
    server = start(home)
    updater = scheduled_updater(home)

    assert home.run("stop").json["status"] == "stopped"
    assert not is_alive(server)
    assert scheduled_updater(home) == updater
    assert home.run("stop").json["status"] == "notRunning"
    assert scheduled_updater(home) == updater
