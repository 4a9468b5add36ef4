"""Surviving logout and reboot under a real systemd (SPEC §15), in the booted testbed.

The kit runs inside the booted system as root (whose login sessions the testbed's
logind kills at logout: ``KillExcludeUsers=nobody``), from this checkout and this
interpreter, which the overlay of ``/`` shows inside. Its Codex home is
``/root/.codex`` (the default home, so the unit is ``codex-daemon.service``) with the
fake codex as the managed release. Times are printed (``-s``): boot, enable,
reboot-to-ready.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from typing import TYPE_CHECKING

import pytest

from tests.harness import FAKE_SOURCE, REPO, TARGET, holds_for, wait_for
from tests.systemd_testbed import boot_or_skip

if TYPE_CHECKING:
    from subprocess import CompletedProcess

    from tests.systemd_testbed import BootedSystem

pytestmark = [pytest.mark.systemd, pytest.mark.timeout(240)]

HOME = "/root/.codex"
RELEASE = f"{HOME}/packages/standalone/releases/1.0.0-{TARGET}"
STATE = f"{HOME}/app-server-daemon"
ROOT_ENV = {
    "HOME": "/root",
    "PYTHONPATH": str(REPO),
    "XDG_RUNTIME_DIR": "/run/user/0",
    "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/0/bus",
}
KIT = [sys.executable, "-m", "daemonkit"]
SETTINGS = {
    "shutdownGraceSeconds": 2,
    "updater": {"autoUpdateEnabled": False},
    "supervisor": {"healthCheckIntervalSeconds": 0},
}


def prepare_home(system: BootedSystem) -> None:
    """The fake codex 1.0.0 as the managed release of root's default home, inside."""
    fake = FAKE_SOURCE.read_text().split("\n", 1)[1]
    script = "\n".join(
        [
            "set -eu",
            f"mkdir -p -m 0700 {RELEASE} {STATE}",
            f"printf '%s\\n' {shlex.quote('#!' + sys.executable)} > {RELEASE}/codex",
            f"cat >> {RELEASE}/codex <<'DK_FAKE_EOF'\n{fake}\nDK_FAKE_EOF",
            f"chmod 0755 {RELEASE}/codex",
            f'echo \'{{"version": "1.0.0"}}\' > {RELEASE}/fake-codex.json',
            f"ln -sfn {RELEASE} {HOME}/packages/standalone/current",
            f"echo {shlex.quote(json.dumps(SETTINGS))} > {STATE}/settings.json",
        ]
    )
    system.run(["sh", "-c", script], check=True)


def kit(system: BootedSystem, *args: str, login: bool = False) -> CompletedProcess[str]:
    """``codex-daemon`` inside, as root: a plain command, or one in a login session."""
    return system.run([*KIT, *args], user="root", login=login, env=ROOT_ENV, timeout=120)


def kit_json(system: BootedSystem, *args: str) -> dict[str, object]:
    done = kit(system, *args)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    value = json.loads(done.stdout)
    assert isinstance(value, dict)
    return value


def answers(system: BootedSystem) -> bool:
    return kit(system, "version").returncode == 0


def app_servers(system: BootedSystem) -> list[int]:
    done = system.run(["pgrep", "-f", f"^{sys.executable} {RELEASE}/codex app-server"])
    return [int(pid) for pid in done.stdout.split()]


def status(system: BootedSystem) -> dict[str, object]:
    return kit_json(system, "status")


def test_enable_now_survives_reboot_and_disable_ends_it(testbed: BootedSystem) -> None:
    boot_or_skip(testbed)
    boot_s = testbed.boot_s
    prepare_home(testbed)
    # A logged-in user has a user manager; here root's is started as a login would.
    testbed.start_user_manager("root")

    began = time.monotonic()
    enabled = kit_json(testbed, "enable", "--now")
    enable_s = time.monotonic() - began
    assert enabled["status"] == "enabled"
    assert enabled["unit"] == "codex-daemon.service"
    assert enabled["linger"] is True
    assert answers(testbed)
    report = status(testbed)
    assert report["persistence"] == {"systemd": "enabled", "linger": True}
    assert report["supervisor"]["state"] == "watching"  # type: ignore[index]
    assert kit_json(testbed, "enable")["status"] == "alreadyEnabled"
    man = "/var/lib/dk-verify/man/man1"
    testbed.run(["sh", "-c", f"mkdir -p {man} && cp {REPO}/packaging/man/*.1 {man}/"], check=True)
    verify_inside(testbed, "/root/.config/systemd/user/codex-daemon.service")

    # Reboot: nobody runs a command; linger starts root's manager, which starts the unit.
    testbed.reboot()
    began = time.monotonic()
    wait_for(lambda: answers(testbed), what="the server after a reboot", timeout=60)
    assert testbed.boot_s is not None
    reboot_to_ready_s = testbed.boot_s + (time.monotonic() - began)
    report = status(testbed)
    assert report["backend"] == "pid"
    assert report["updater"]["status"] == "running"  # type: ignore[index]
    assert report["supervisor"]["state"] == "watching"  # type: ignore[index]
    (server,) = app_servers(testbed)
    testbed.run(["kill", "-KILL", str(server)], check=True)
    wait_for(
        lambda: (found := app_servers(testbed)) != [] and server not in found and answers(testbed),
        what="the supervisor to bring the server back after the reboot",
        timeout=30,
    )

    disabled = kit_json(testbed, "disable", "--now")
    assert disabled["status"] == "disabled"
    assert not answers(testbed)
    testbed.reboot()
    testbed.run(["systemctl", "--user", "is-system-running", "--wait"], user="root", timeout=60)
    holds_for(
        lambda: app_servers(testbed) == [] and not answers(testbed),
        3.0,
        what="nothing runs after disable and a reboot",
    )
    print(
        f"boot {boot_s:.2f} s, enable --now {enable_s:.2f} s, "
        f"reboot to ready {reboot_to_ready_s:.2f} s"
    )


def session_of(system: BootedSystem, pid: int) -> str | None:
    cgroup = system.run(["cat", f"/proc/{pid}/cgroup"]).stdout
    for part in cgroup.strip().split("/"):
        if part.startswith("session-") and part.endswith(".scope"):
            return part.removeprefix("session-").removesuffix(".scope")
    return None


def test_a_server_started_in_a_login_session_outlives_the_session(testbed: BootedSystem) -> None:
    boot_or_skip(testbed)
    prepare_home(testbed)
    testbed.run(["loginctl", "enable-linger", "root"], check=True)
    testbed.start_user_manager("root")

    # A real login session (pam_systemd: session-<id>.scope) that runs `start` and stays.
    command = shlex.join([*KIT, "start"])
    session = testbed.spawn(
        ["sh", "-c", f"{command} >/tmp/dk-start.json 2>/tmp/dk-start.err; exec sleep 600"],
        user="root",
        login=True,
        env=ROOT_ENV,
    )
    sleeper = wait_for(
        lambda: [
            int(pid)
            for pid in testbed.run(["pgrep", "-f", "^sleep 600$"]).stdout.split()
            if session_of(testbed, int(pid)) is not None
        ],
        what="the login session's shell",
        timeout=60,
    )[0]
    session_id = session_of(testbed, sleeper)
    assert session_id is not None
    assert answers(testbed)
    (server,) = app_servers(testbed)
    for pid in (server, int(json.loads(kit(testbed, "status").stdout)["updater"]["pid"])):
        cgroup = testbed.run(["cat", f"/proc/{pid}/cgroup"], check=True).stdout
        assert "/user@0.service/" in cgroup, f"{pid} stayed in the session: {cgroup}"
        assert "session-" not in cgroup

    testbed.run(["loginctl", "terminate-session", session_id], check=True)
    wait_for(
        lambda: testbed.run(["pgrep", "-f", "^sleep 600$"]).stdout == "",
        what="logind to end the session's processes",
    )
    session.wait(timeout=30)
    assert answers(testbed), "the server died with the login session"
    assert app_servers(testbed) == [server]
    # The updater still supervises.
    testbed.run(["kill", "-KILL", str(server)], check=True)
    wait_for(
        lambda: (found := app_servers(testbed)) != [] and server not in found and answers(testbed),
        what="the supervisor to bring the server back after the logout",
        timeout=30,
    )
    assert kit_json(testbed, "stop")["status"] == "stopped"


def verify_inside(system: BootedSystem, *units: str) -> None:
    """``systemd-analyze --user verify`` by the booted systemd, with the generated man
    pages on MANPATH (verify looks up Documentation=) and a runtime directory of its own
    (it needs one, not a running user manager); any output is a failure."""
    system.run(["mkdir", "-p", "-m", "0700", "/var/lib/dk-verify/runtime"], check=True)
    done = system.run(
        ["systemd-analyze", "--user", "verify", *units],
        env={
            "XDG_RUNTIME_DIR": "/var/lib/dk-verify/runtime",
            "HOME": "/root",
            "MANPATH": "/var/lib/dk-verify/man",
        },
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), done


def test_packaged_units_pass_systemd_analyze_verify_inside(booted_system: BootedSystem) -> None:
    """The packaged units, their ExecStart pointed at this checkout's wrappers (verify
    needs an executable), verified by the booted systemd; made inside, in its overlay."""
    script = "\n".join(
        [
            "set -eu",
            "mkdir -p /var/lib/dk-verify/man/man1 /var/lib/dk-verify/units",
            f"cp {REPO}/packaging/man/*.1 /var/lib/dk-verify/man/man1/",
            f"for unit in {REPO}/packaging/systemd/*.service; do",
            f'  sed "s#/usr/bin/#{REPO}/bin/#" "$unit" > "/var/lib/dk-verify/units/${{unit##*/}}"',
            "done",
        ]
    )
    booted_system.run(["sh", "-c", script], check=True)
    units = booted_system.run(["sh", "-c", "ls /var/lib/dk-verify/units/*.service"], check=True)
    assert len(units.stdout.split()) == 2
    verify_inside(booted_system, *units.stdout.split())


def test_without_linger_a_start_in_a_session_warns_that_logout_will_stop_it(
    testbed: BootedSystem,
) -> None:
    """SPEC §15.2: with linger off the user manager dies with the last session, so the
    kit leaves the server where it is and says what will happen."""
    boot_or_skip(testbed)
    prepare_home(testbed)
    started = kit(testbed, "start", login=True)
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["status"] == "started"
    assert (
        "warning: this server will stop when you log out; run codex-daemon enable "
        "(or loginctl enable-linger root)"
    ) in started.stderr
    # The session ended with the command; KillUserProcesses=yes ended what it started.
    wait_for(lambda: app_servers(testbed) == [], what="logout to end the server", timeout=30)
