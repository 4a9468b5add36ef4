"""The systemd testbed itself: it boots, it keeps off the host, logins and user managers
work as the product's tests need, and it leaves nothing behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.harness import wait_for
from tests.systemd_testbed import BootedSystem, BootedSystemError, boot_or_skip, booted_inits

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(120)]


def pids_of(system: BootedSystem, user: str, pattern: str) -> list[int]:
    """Pids (inside) of ``user``'s processes whose command line matches ``pattern``."""
    done = system.run(["pgrep", "-u", user, "-f", pattern])
    return [int(pid) for pid in done.stdout.split()]


def sessions(system: BootedSystem, user: str) -> list[str]:
    done = system.run(["loginctl", "list-sessions", "--no-legend"], check=True)
    return [line.split()[0] for line in done.stdout.splitlines() if user in line.split()]


def test_boots_to_running_on_an_overlay_with_its_own_tmp(booted_system: BootedSystem) -> None:
    print(f"boot: {booted_system.boot_s:.2f} s")
    state = booted_system.run(["systemctl", "is-system-running"], check=True).stdout.strip()
    assert state == "running", booted_system.failed_units()
    assert booted_system.run(["cat", "/proc/1/cmdline"]).stdout.startswith(
        "/lib/systemd/systemd\0--system\0"
    )
    filesystems = booted_system.run(["stat", "-f", "-c", "%T", "/", "/tmp"], check=True)
    assert filesystems.stdout.split() == ["overlayfs", "tmpfs"]
    assert booted_system.run(["cat", "/proc/self/cgroup"]).stdout.endswith("0::/\n")


def test_host_tmp_survives_boot_and_poweroff(testbed: BootedSystem) -> None:
    fd, canary = tempfile.mkstemp(prefix="dk-sysd-canary-", dir="/tmp")
    os.close(fd)
    try:
        boot_or_skip(testbed)
        inside = testbed.run(["ls", "-A", "/tmp"], check=True).stdout.split()
        assert Path(canary).name not in inside  # a tmpfs of its own, not the host's /tmp
        testbed.run(["touch", "/tmp/dk-sysd-written-inside"], check=True)
        testbed.poweroff()
        print(f"boot: {testbed.boot_s:.2f} s, poweroff: {testbed.poweroff_s:.2f} s")
        assert Path(canary).exists()
        assert not Path("/tmp/dk-sysd-written-inside").exists()
    finally:
        Path(canary).unlink(missing_ok=True)


def test_user_manager_runs_with_linger(booted_system: BootedSystem) -> None:
    uid = booted_system.add_user("dklinger")
    booted_system.run(["loginctl", "enable-linger", "dklinger"], check=True)
    booted_system.start_user_manager("dklinger")
    state = booted_system.run(
        ["systemctl", "--user", "is-system-running", "--wait"], user="dklinger", timeout=30
    )
    assert state.stdout.strip() == "running", state.stderr
    # The kit's way out of a session scope (SPEC §15.2).
    scope = booted_system.run(
        ["systemd-run", "--user", "--scope", "--collect", "cat", "/proc/self/cgroup"],
        user="dklinger",
    )
    assert scope.returncode == 0, scope.stderr
    assert f"0::/user.slice/user-{uid}.slice/user@{uid}.service/app.slice/run-" in scope.stdout


def test_terminated_session_loses_its_processes(booted_system: BootedSystem) -> None:
    booted_system.add_user("dksession")
    leader = booted_system.spawn(["sleep", "600"], user="dksession", login=True)
    sleeper = wait_for(
        lambda: pids_of(booted_system, "dksession", "^sleep 600$"), what="the session's sleep"
    )[0]
    cgroup = booted_system.run(["cat", f"/proc/{sleeper}/cgroup"], check=True).stdout
    (session,) = sessions(booted_system, "dksession")
    assert (
        f"0::/user.slice/user-{booted_system.uid('dksession')}.slice/session-{session}.scope\n"
        in cgroup
    )
    booted_system.run(["loginctl", "terminate-session", session], check=True)
    wait_for(
        lambda: not pids_of(booted_system, "dksession", "^sleep 600$"), what="the sleep to die"
    )
    assert leader.wait(timeout=15) != 0  # runuser, the session's leader, was killed too
    wait_for(lambda: not sessions(booted_system, "dksession"), what="the session to go")


def test_logout_kills_what_the_session_left_behind(booted_system: BootedSystem) -> None:
    # KillUserProcesses=yes (the testbed's logind drop-in): the session ends when its
    # leader exits, and logind kills what it left running.
    booted_system.add_user("dklogout")
    started = booted_system.run(
        ["sh", "-c", "setsid sleep 601 </dev/null >/dev/null 2>&1 & echo $!"],
        user="dklogout",
        login=True,
    )
    assert started.returncode == 0, started.stderr
    wait_for(
        lambda: not pids_of(booted_system, "dklogout", "^sleep 601$"),
        what="logind to kill the sleep left behind at logout",
    )
    wait_for(lambda: not sessions(booted_system, "dklogout"), what="the session to go")


def processes_in_namespace(namespace: str) -> list[str]:
    """Pids of the host's processes whose mount namespace is ``namespace``."""
    found = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.readlink(f"/proc/{name}/ns/mnt") == namespace:
                found.append(name)
        except OSError:
            continue  # gone meanwhile
    return found


def test_poweroff_leaves_no_process_and_no_mount(testbed: BootedSystem) -> None:
    boot_or_skip(testbed)
    init = testbed.pid
    assert init in booted_inits()
    namespace = os.readlink(f"/proc/{init}/ns/mnt")
    assert namespace != os.readlink("/proc/self/ns/mnt")
    assert processes_in_namespace(namespace)
    testbed.poweroff()
    print(f"poweroff: {testbed.poweroff_s:.2f} s")
    assert init not in booted_inits()
    assert not testbed.cgroup_procs(), "processes left in the booted system's cgroup"
    # The overlay was mounted only in that namespace: with no process left in it, the
    # kernel has dropped the namespace and its mounts.
    assert not processes_in_namespace(namespace)
    assert str(testbed.base) not in Path("/proc/self/mountinfo").read_text()
    base = testbed.base
    testbed.close()
    assert not base.exists()


def test_a_system_that_will_not_power_off_is_killed_by_pid(testbed: BootedSystem) -> None:
    testbed.mask("poweroff.target")
    boot_or_skip(testbed)
    init = testbed.pid
    assert init is not None
    namespace = os.readlink(f"/proc/{init}/ns/mnt")
    with pytest.raises(BootedSystemError, match=f"systemd \\(pid {init}\\) did not power off"):
        testbed.poweroff(timeout=3)
    assert init not in booted_inits()
    assert not processes_in_namespace(namespace)


def test_reboot_keeps_what_was_written_inside(testbed: BootedSystem) -> None:
    boot_or_skip(testbed)
    testbed.add_user("dkreboot")
    testbed.run(["sh", "-c", "echo kept >/var/lib/dk-sysd-marker"], check=True)
    first = testbed.pid
    testbed.reboot()
    print(f"reboot: poweroff {testbed.poweroff_s:.2f} s + boot {testbed.boot_s:.2f} s")
    assert testbed.pid != first
    assert testbed.run(["cat", "/var/lib/dk-sysd-marker"]).stdout == "kept\n"
    assert testbed.run(["id", "-u", "dkreboot"]).returncode == 0
    assert "dkreboot" not in Path("/etc/passwd").read_text()  # never on the host
