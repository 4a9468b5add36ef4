"""Concurrent commands, the operation lock, rapid cycles and interrupts (SPEC §5, §13.3).

Lifecycle commands serialise on ``daemon.lock``: however they interleave, one server
runs (or none), one record names it, and nothing is orphaned. Read-only commands
never wait for the lock. An interrupted ``start`` leaves a recorded server behind,
never an unrecorded one (SPEC §2.2, §4.6).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from daemonkit.lifecycle import Daemon
from daemonkit.output import LifecycleStatus
from tests.harness import UPDATER_OFF, Result, app_servers_alive, is_alive, wait_for, write_settings

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = pytest.mark.timeout(90)

PARALLEL_STARTS = 8
CYCLES = 20


# -- helpers ---------------------------------------------------------------------------


def finish(process: subprocess.Popen[bytes], timeout: float = 60) -> Result:
    out, err = process.communicate(timeout=timeout)
    return Result(process.returncode, out.decode(), err.decode())


def published_pid(home: Home) -> int | None:
    """The pid of a published record; None while absent or still a reservation."""
    try:
        raw = Path(home.paths.app_server.record).read_bytes()
        pid = json.loads(raw)["pid"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if isinstance(pid, int) else None


def lock_is_held(path: str) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def zombie_children() -> list[int]:
    """Children of this test process that exited and were never reaped."""
    me = os.getpid()
    zombies = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            data = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        if fields[0] == b"Z" and int(fields[1]) == me:
            zombies.append(int(name))
    return zombies


@pytest.fixture
def fake(home: Home) -> Home:
    write_settings(home, UPDATER_OFF)
    home.install_fake()
    return home


# -- parallel commands -------------------------------------------------------------------


def test_parallel_starts_share_one_server(fake: Home) -> None:
    processes = [fake.popen("start") for _ in range(PARALLEL_STARTS)]
    outputs = [finish(process).json for process in processes]

    statuses = sorted(str(output["status"]) for output in outputs)
    assert statuses == ["alreadyRunning"] * (PARALLEL_STARTS - 1) + ["started"]
    (started,) = [output for output in outputs if output["status"] == "started"]
    pid = started["pid"]
    for output in outputs:
        assert output["backend"] == "pid"
        assert output["appServerVersion"] == "1.0.0"
        assert output["socketPath"] == fake.paths.socket
        assert "pid" not in output or output is started
    assert fake.record_pid() == pid
    assert app_servers_alive(fake) == [pid]
    pid_files = sorted(
        name for name in os.listdir(fake.paths.state_dir) if name.startswith("app-server.pid")
    )
    assert pid_files == ["app-server.pid", "app-server.pid.lock"], "one record, no temp"


def test_start_racing_stop_ends_in_the_state_of_the_later_command(fake: Home) -> None:
    start = fake.popen("start")
    stop = fake.popen("stop")
    started = finish(start).json
    stopped = finish(stop).json
    assert started["status"] == "started"
    if stopped["status"] == "stopped":
        # start won the lock: the stop that followed stopped its server.
        assert fake.record() is None
        wait_for(lambda: app_servers_alive(fake) == [], what="no app-server left")
    else:
        # stop went first and found nothing; start's server runs and is recorded.
        assert stopped["status"] == "notRunning"
        assert fake.record_pid() == started["pid"]
        assert app_servers_alive(fake) == [started["pid"]]


def test_rapid_stop_start_cycles_leak_nothing(fake: Home) -> None:
    """20 stop/start cycles in this process, so its own descriptors can be counted."""
    warnings: list[str] = []
    daemon = Daemon(fake.paths, fake.env(), warnings.append)
    first = daemon.start()
    assert first.status is LifecycleStatus.STARTED
    assert first.pid is not None
    locks = (fake.paths.operation_lock, fake.paths.app_server.lock)
    inodes = [(os.stat(path).st_dev, os.stat(path).st_ino) for path in locks]
    fds = sorted(os.listdir("/proc/self/fd"))

    pids = [first.pid]
    for _ in range(CYCLES):
        assert daemon.stop().status is LifecycleStatus.STOPPED
        started = daemon.start()
        assert started.status is LifecycleStatus.STARTED
        assert started.pid is not None
        pids.append(started.pid)

    assert sorted(os.listdir("/proc/self/fd")) == fds, "the kit leaked descriptors"
    assert [(os.stat(path).st_dev, os.stat(path).st_ino) for path in locks] == inodes
    assert warnings == []
    assert zombie_children() == []
    assert len(set(pids)) == len(pids)
    last = pids[-1]
    assert fake.record_pid() == last
    wait_for(
        lambda: [pid for pid in pids[:-1] if os.path.exists(f"/proc/{pid}")] == [],
        what="every stopped server to be reaped",
    )
    assert app_servers_alive(fake) == [last]
    assert fake.run("version").json["status"] == "running"


# -- the operation lock --------------------------------------------------------------------


def test_read_only_commands_ignore_a_held_operation_lock(fake: Home) -> None:
    write_settings(fake, {**UPDATER_OFF, "shutdownGraceSeconds": 0})
    pid = fake.run("start").json["pid"]
    lock = fake.paths.operation_lock
    # Its own session, so the holder and its sleep child go together.
    holder = fake.spawn_marked(["flock", lock, "sleep", "30"], start_new_session=True)
    wait_for(lambda: lock_is_held(lock), what="flock to take daemon.lock")

    version = fake.run("version", timeout=20).json
    assert version["status"] == "running"
    status = fake.run("status", timeout=20).json
    assert status["status"] == "running"
    assert status["pid"] == pid

    start = fake.popen("start")
    with pytest.raises(subprocess.TimeoutExpired):
        start.wait(timeout=1.0)  # a deadline on start's exit: it must still be waiting
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    result = finish(start, timeout=20).json
    assert result["status"] == "alreadyRunning"
    assert fake.record_pid() == pid


# -- interrupts ------------------------------------------------------------------------------


def test_sigterm_during_readiness_wait_leaves_a_recorded_server(home: Home) -> None:
    write_settings(home, UPDATER_OFF)
    witness = home.root / "witness.jsonl"
    home.install_fake(startup_delay=3.0, witness=str(witness))
    start = home.popen("start")
    pid = wait_for(lambda: published_pid(home), what="start to publish the record")
    assert pid is not None
    wait_for(witness.exists, what="the spawned server to run")
    assert not os.path.exists(home.paths.socket), "the server must still be starting"

    start.send_signal(signal.SIGTERM)
    interrupted = finish(start)
    assert interrupted.returncode == 1
    assert interrupted.stdout == ""
    assert interrupted.stderr == "Error: interrupted\n"
    assert published_pid(home) == pid, "the spawned server must stay recorded"
    assert is_alive(pid)

    stopped = home.run("stop").json
    assert stopped["status"] == "stopped"
    assert home.record() is None
    wait_for(lambda: not is_alive(pid), what=f"app-server {pid} to be stopped")
