"""adopt: an unmanaged server on the control socket becomes a managed one (SPEC §14.12).

Upstream #24542/#33750: Desktop's SSH flow starts its own ``codex app-server --listen
unix://`` when nothing answers, and every managed command then refuses it. Here the
test starts that server itself (the fake codex, from a release that is not the managed
one), so the kit never spawned it. After ``adopt`` the record names it by identity;
``stop`` stops exactly it, the supervisor restarts it when it dies, ``restart`` moves it
onto the managed binary. Whatever is not our user's Codex app-server is refused and
left alone, and nothing on the socket is ``notRunning``.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from daemonkit import __version__
from daemonkit.lifecycle import app_server_argv
from tests.harness import (
    SUPERVISION_ONLY,
    Result,
    boot_id,
    cmdline,
    is_alive,
    marked_pids,
    read_regular,
    scheduled_updater,
    start_ticks,
    wait_for,
)
from tests.harness import write_settings as harness_write_settings

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = pytest.mark.timeout(90)

MANAGED = "1.0.0"  # the managed release (current)
FOREIGN = "0.170.0"  # the release the unmanaged server runs from, as Desktop would start it
WITNESS = "witness.jsonl"
NOBODY = 65534


def lifecycle_line(
    home: Home,
    status: str,
    *,
    managed: bool,
    pid: int | None = None,
    app_server_version: str | None = None,
) -> str:
    """The exact LifecycleOutput line, keys in SPEC §2.3's order."""
    out: dict[str, object] = {"status": status}
    if managed:
        out["backend"] = "pid"
    if pid is not None:
        out["pid"] = pid
    out["managedCodexPath"] = home.paths.managed_bin_candidates[0]
    out["managedCodexVersion"] = MANAGED
    out["socketPath"] = home.paths.socket
    out["cliVersion"] = __version__
    if app_server_version is not None:
        out["appServerVersion"] = app_server_version
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False) + "\n"


def write_settings(home: Home, *, supervise: bool = False) -> None:
    """Updates off; an updater runs only to supervise, and only if asked to."""
    supervisor = {"restartOnExit": supervise, "healthCheckIntervalSeconds": 0}
    harness_write_settings(home, {**SUPERVISION_ONLY, "supervisor": supervisor})


def answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def install_releases(home: Home) -> Path:
    """The managed release (current) and the foreign one; return the foreign one."""
    home.install_fake(MANAGED)
    return home.install_fake(
        FOREIGN, current=False, server_version=FOREIGN, witness=str(home.root / WITNESS)
    )


def start_unmanaged(home: Home, argv: list[str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, the way a client would, and wait for the socket."""
    process = home.spawn_marked(
        argv,
        group=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_for(lambda: answers(home.paths.socket), what="the unmanaged server's socket")
    return process


def start_foreign_server(home: Home) -> int:
    foreign = install_releases(home)
    return start_unmanaged(home, [str(foreign / "codex"), "app-server", "--listen", "unix://"]).pid


def witness_events(home: Home, pid: int) -> list[str]:
    """The fake's lifecycle events (start, ready, sigterm, exit), without its requests."""
    raw = read_regular(str(home.root / WITNESS)) or b""
    events = [json.loads(line) for line in raw.splitlines()]
    return [e["event"] for e in events if e["pid"] == pid and e["event"] != "request"]


def desired_state(home: Home) -> str | None:
    raw = read_regular(home.paths.desired_state)
    return None if raw is None else str(json.loads(raw)["desiredState"])


def assert_adopted(home: Home, result: Result, pid: int) -> None:
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout == lifecycle_line(
        home, "adopted", managed=True, pid=pid, app_server_version=FOREIGN
    )


def assert_refused(home: Home, result: Result, pid: int, why: str) -> None:
    """Exit 1 with exactly the adopt error; nothing recorded, the process untouched."""
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert result.stderr == f"Error: cannot adopt the app server on {home.paths.socket}: {why}\n"
    assert home.record() is None
    assert desired_state(home) is None
    assert is_alive(pid)
    assert answers(home.paths.socket)


# -- adopting -----------------------------------------------------------------------------


def test_adopt_records_the_server_by_identity(home: Home) -> None:
    write_settings(home)
    pid = start_foreign_server(home)
    assert home.run("stop").returncode == 1  # unmanaged: refused, as before adopt
    assert desired_state(home) == "stopped"

    assert_adopted(home, home.run("adopt"), pid)

    ps = subprocess.run(
        ["ps", "-p", str(pid), "-o", "lstart="],
        capture_output=True,
        env={**os.environ, "LC_ALL": "C"},
        check=True,
        text=True,
    ).stdout.strip()
    # No executableIdentity: the kit did not choose the binary it runs (SPEC §4.2).
    assert home.record() == {
        "pid": pid,
        "processStartTime": ps,
        "processIdentity": {"bootId": boot_id(), "startTicks": start_ticks(pid)},
    }
    assert desired_state(home) == "running"  # adopting means "keep it running"
    status = home.run("status").json
    assert (status["status"], status["backend"], status["pid"]) == ("running", "pid", pid)
    assert status["appServerVersion"] == FOREIGN
    version = home.run("version")
    assert version.stdout == lifecycle_line(
        home, "running", managed=True, app_server_version=FOREIGN
    )
    # Adopting again finds it managed.
    again = home.run("adopt")
    assert (again.returncode, again.stderr) == (0, ""), again
    assert again.stdout == lifecycle_line(
        home, "alreadyRunning", managed=True, app_server_version=FOREIGN
    )
    assert is_alive(pid)
    assert witness_events(home, pid) == ["start", "ready"]  # never signalled


def test_stop_stops_exactly_the_adopted_server(home: Home) -> None:
    write_settings(home)
    foreign = install_releases(home)
    # A bystander in the server's process group: stop signals the pid, never the group.
    server = start_unmanaged(
        home,
        ["sh", "-c", 'sleep 60 & exec "$0" app-server --listen unix://', str(foreign / "codex")],
    )
    pid = server.pid
    bystanders = wait_for(
        lambda: [p for p in marked_pids(home.mark) if cmdline(p)[:2] == [b"sleep", b"60"]],
        what="the bystander sleep",
    )
    assert os.getpgid(bystanders[0]) == pid
    assert_adopted(home, home.run("adopt"), pid)

    stopped = home.run("stop")
    assert (stopped.returncode, stopped.stderr) == (0, ""), stopped
    assert stopped.stdout == lifecycle_line(home, "stopped", managed=True)
    assert not is_alive(pid)
    assert witness_events(home, pid) == ["start", "ready", "sigterm", "exit"]
    assert all(is_alive(p) for p in bystanders)
    assert home.record() is None
    assert home.run("adopt").stdout == lifecycle_line(home, "notRunning", managed=False)
    # Teardown kills the group but does not wait for an orphan to die: do it here.
    for bystander in bystanders:
        os.kill(bystander, signal.SIGKILL)
    wait_for(lambda: not any(map(is_alive, bystanders)), what="the bystander to die")


def test_the_supervisor_restarts_an_adopted_server_that_dies(home: Home) -> None:
    write_settings(home, supervise=True)
    pid = start_foreign_server(home)
    assert_adopted(home, home.run("adopt"), pid)
    scheduled_updater(home)  # ensure-updater started it to supervise

    def supervisor() -> dict[str, object]:
        value = home.run("status").json["supervisor"]
        assert isinstance(value, dict)
        return value

    wait_for(lambda: supervisor()["state"] == "watching", what="the supervisor to watch it")
    os.kill(pid, signal.SIGKILL)

    def replacement() -> int | None:
        raw = read_regular(home.paths.app_server.record)
        if not raw:  # absent, or the reservation of the restart in progress
            return None
        new = json.loads(raw)["pid"]
        return new if new != pid and is_alive(new) else None

    new = wait_for(replacement, what=f"a managed server to replace {pid}", timeout=20)
    assert new is not None
    record = home.record()
    assert record is not None
    assert record["processIdentity"] == {"bootId": boot_id(), "startTicks": start_ticks(new)}
    # The launched process publishes its record before its exec, and the restart counts
    # once the server is ready.
    wait_for(lambda: supervisor()["restarts"] == 1, what="the supervised restart to finish")
    managed_bin = os.path.realpath(home.paths.managed_bin_candidates[0])
    assert cmdline(new)[1] == managed_bin.encode()  # the managed release, not the foreign one
    last_exit = supervisor()["lastExit"]
    assert isinstance(last_exit, dict)
    assert last_exit["pid"] == pid
    version = home.run("version")
    assert version.stdout == lifecycle_line(
        home, "running", managed=True, app_server_version=MANAGED
    )
    assert home.record_pid() == new


def test_restart_moves_an_adopted_server_onto_the_managed_binary(home: Home) -> None:
    write_settings(home)
    pid = start_foreign_server(home)
    assert_adopted(home, home.run("adopt"), pid)

    restarted = home.run("restart").json
    assert restarted["status"] == "restarted"
    new = restarted["pid"]
    assert isinstance(new, int)
    assert new != pid
    assert not is_alive(pid)
    assert witness_events(home, pid) == ["start", "ready", "sigterm", "exit"]
    canonical = os.path.realpath(home.paths.managed_bin_candidates[0])
    argv = app_server_argv(canonical, remote_control=False, codex_version=MANAGED)
    # The fake is a script: the kernel runs it through its shebang's interpreter.
    assert cmdline(new) == [os.fsencode(a) for a in (sys.executable, *argv)] + [b""]
    assert home.record_pid() == new


# -- what is not adopted ----------------------------------------------------------------


@pytest.mark.parametrize("socket_file", ["absent", "stale"])
def test_nothing_on_the_socket_is_notrunning(home: Home, socket_file: str) -> None:
    write_settings(home)
    install_releases(home)
    if socket_file == "stale":
        os.makedirs(os.path.dirname(home.paths.socket), mode=0o700)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(home.paths.socket)  # bound, never listening: connect is refused
    result = home.run("adopt")
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout == lifecycle_line(home, "notRunning", managed=False)
    assert home.record() is None
    assert desired_state(home) is None


def test_a_managed_server_is_alreadyrunning(home: Home) -> None:
    write_settings(home)
    install_releases(home)
    started = home.run("start").json
    raw = read_regular(home.paths.app_server.record)
    result = home.run("adopt")
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout == lifecycle_line(
        home, "alreadyRunning", managed=True, app_server_version=MANAGED
    )
    assert read_regular(home.paths.app_server.record) == raw
    assert home.record_pid() == started["pid"]


def test_a_listener_that_is_no_codex_is_refused(home: Home) -> None:
    write_settings(home)
    install_releases(home)
    os.makedirs(os.path.dirname(home.paths.socket), mode=0o700)
    code = (
        "import socket, sys, time\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.bind(sys.argv[1])\n"
        "s.listen(8)\n"
        "time.sleep(60)\n"
    )
    argv = [sys.executable, "-c", code, home.paths.socket]
    peer = start_unmanaged(home, argv)
    why = f"process {peer.pid} is not a Codex app-server ({shlex.join(argv)})"
    assert_refused(home, home.run("adopt"), peer.pid, why)


def test_a_codex_that_fails_the_handshake_is_refused(home: Home) -> None:
    write_settings(home)
    foreign = install_releases(home)
    home.configure_fake(foreign, http_status=500)
    server = start_unmanaged(home, [str(foreign / "codex"), "app-server", "--listen", "unix://"])
    result = home.run("adopt")
    assert result.returncode == 1, result
    sock = home.paths.socket
    assert result.stderr.startswith(
        f"Error: cannot adopt the app server on {sock}: "
        f"process {server.pid} did not answer the initialize handshake\n\nCaused by:\n"
        f"    0: failed to upgrade {sock}\n"
    ), result.stderr
    assert home.record() is None
    assert is_alive(server.pid)


def test_a_server_of_the_dedicated_layout_is_already_managed(home: Home) -> None:
    # The Rust daemon's dedicated layout names it in <S>/daemon.pid; the kit manages
    # that home with Rust's names (SPEC §9, §16), so there is nothing to adopt.
    write_settings(home)
    pid = start_foreign_server(home)
    lstart = subprocess.run(
        ["ps", "-p", str(pid), "-o", "lstart="],
        capture_output=True,
        env={**os.environ, "LC_ALL": "C"},
        check=True,
        text=True,
    ).stdout.strip()
    Path(os.path.join(home.paths.state_dir, "daemon.pid")).write_text(
        json.dumps({"pid": pid, "processStartTime": lstart}, separators=(",", ":"))
    )
    adopted = home.run("adopt").json
    assert adopted["status"] == "alreadyRunning"
    assert adopted["backend"] == "pid"
    assert not os.path.exists(home.paths.app_server.record)
    assert not os.path.exists(home.paths.app_server.lock)
    stopped = home.run("stop").json
    assert stopped["status"] == "stopped"
    assert not os.path.exists(os.path.join(home.paths.state_dir, "daemon.pid"))


@pytest.mark.skipif(os.geteuid() != 0, reason="starting a process as another user needs root")
def test_another_users_server_is_refused(home: Home) -> None:
    write_settings(home)
    foreign = install_releases(home)
    # nobody must reach the release and the socket directory; nothing else is opened up.
    for directory in (home.root, home.path):
        directory.chmod(0o711)
    control = Path(home.paths.socket).parent
    control.mkdir(mode=0o700)
    os.chown(control, NOBODY, NOBODY)
    ids = [f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    argv = ["setpriv", *ids, str(foreign / "codex"), "app-server", "--listen", "unix://"]
    server = home.spawn_marked(
        argv,
        group=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: answers(home.paths.socket), what="nobody's server", timeout=10)
    except pytest.fail.Exception:
        server.kill()
        _, err = server.communicate(timeout=10)
        pytest.skip(f"cannot start the fake codex as nobody here: {err.decode().strip()}")
    assert os.stat(home.paths.socket).st_uid == NOBODY
    assert_refused(home, home.run("adopt"), server.pid, f"it runs as uid {NOBODY}, not 0")


@pytest.mark.skipif(os.geteuid() != 0, reason="a new pid namespace needs root")
def test_a_server_whose_pid_is_not_visible_is_refused(home: Home) -> None:
    # From a new pid namespace the server's pid cannot be named: SO_PEERCRED gives 0.
    write_settings(home)
    pid = start_foreign_server(home)
    argv = ["unshare", "--pid", "--fork", "--mount-proc", *home.argv("adopt")]
    done = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, env=home.env(), check=False
    )
    if done.returncode != 1 and b"unshare" in done.stderr:
        pytest.skip(f"cannot create a pid namespace here: {done.stderr.decode().strip()}")
    result = Result(done.returncode, done.stdout.decode(), done.stderr.decode())
    assert_refused(home, result, pid, "the kernel gives its pid as 0")
