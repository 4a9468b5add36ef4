"""Pid records against real processes: identity, corrupt and stale records, pid reuse.

SPEC §4.2-§4.5 and §13.5 rows 18-19, through the CLI as a subprocess. A record that
names a process which is not ours must never lead to a signal: the processes such
records name (pid 1, the test runner, a ``sleep`` this test started) stay alive.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from daemonkit.pidfile import add_executable_identity
from daemonkit.pidrecord import ExecutableIdentity
from tests.harness import (
    UPDATER_OFF,
    Result,
    boot_id,
    is_alive,
    scheduled_updater,
    start_ticks,
    wait_for,
    write_settings,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.harness import Home

pytestmark = pytest.mark.timeout(60)

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
FOREIGN_BOOT_ID = "00000000-0000-4000-8000-000000000000"


# -- helpers ---------------------------------------------------------------------------


def write_record(home: Home, raw: bytes) -> None:
    os.makedirs(home.paths.state_dir, mode=0o700, exist_ok=True)
    path = Path(home.paths.app_server.record)
    path.write_bytes(raw)
    path.chmod(0o600)


def record_bytes(home: Home) -> bytes | None:
    try:
        return Path(home.paths.app_server.record).read_bytes()
    except FileNotFoundError:
        return None


def ps_lstart(home: Home, pid: int) -> str:
    done = subprocess.run(
        ["ps", "-p", str(pid), "-o", "lstart="],
        env=home.env(LC_ALL="C"),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def shift_lstart(text: str, seconds: int) -> str:
    """A C-locale lstart string moved by ``seconds``, in ps's layout."""
    epoch = int(time.mktime(time.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y")))
    t = time.localtime(epoch + seconds)
    return (
        f"{DAYS[t.tm_wday]} {MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {t.tm_year}"
    )


def native_record(
    pid: int, *, ticks: int, boot: str, lstart: str = "Thu Jan  1 00:00:00 2015"
) -> bytes:
    value = {
        "pid": pid,
        "processStartTime": lstart,
        "processIdentity": {"bootId": boot, "startTicks": ticks},
    }
    return json.dumps(value, separators=(",", ":")).encode()


def started_pid(home: Home) -> int:
    started = home.run("start").json
    assert started["status"] == "started", started
    pid = started["pid"]
    assert isinstance(pid, int)
    return pid


def run_together(home: Home, *commands: str) -> list[Result]:
    """Run CLI commands concurrently; their results in the order given."""
    processes = [home.popen(command) for command in commands]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        results.append(Result(process.returncode, out.decode(), err.decode()))
    return results


def kill_and_wait(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not is_alive(pid), what=f"pid {pid} to die")


@pytest.fixture
def fake(home: Home) -> Home:
    write_settings(home, UPDATER_OFF)
    home.install_fake()
    return home


# -- the record of a started server ------------------------------------------------------


def test_record_names_the_started_process_by_proc_identity(fake: Home) -> None:
    pid = started_pid(fake)
    raw = record_bytes(fake)
    assert raw is not None
    assert not raw.endswith(b"\n")
    record = json.loads(raw)
    assert raw == json.dumps(record, separators=(",", ":")).encode(), "record must be compact"
    keys = list(record)
    assert keys[:3] == ["pid", "processStartTime", "processIdentity"]
    assert set(keys) <= {"pid", "processStartTime", "processIdentity", "executableIdentity"}
    assert record["pid"] == pid
    assert record["processIdentity"] == {"bootId": boot_id(), "startTicks": start_ticks(pid)}
    assert record["processStartTime"] == ps_lstart(fake, pid)

    again = fake.run("start").json
    assert again["status"] == "alreadyRunning"
    assert again["backend"] == "pid"
    assert "pid" not in again
    assert again["appServerVersion"] == "1.0.0"
    assert fake.record_pid() == pid
    assert record_bytes(fake) == raw
    assert is_alive(pid)


def managed_binary(home: Home) -> str:
    return os.path.realpath(os.path.join(home.paths.current, "codex"))


def test_record_names_the_binary_by_its_blake3_digests(fake: Home) -> None:
    """executableIdentity as the Rust daemon writes it (SPEC §4.2), with the extra."""
    blake3 = pytest.importorskip("blake3", reason="executableIdentity needs the blake3 extra")
    started_pid(fake)
    raw = record_bytes(fake)
    assert raw is not None
    record = json.loads(raw)
    binary = managed_binary(fake)
    assert list(record) == ["pid", "processStartTime", "processIdentity", "executableIdentity"]
    assert record["executableIdentity"] == {
        "digest": list(blake3.blake3(Path(binary).read_bytes()).digest()),
        "path_digest": list(blake3.blake3(binary.encode()).digest()),
    }
    # It names the binary, not the process: never part of the liveness match.
    assert fake.run("status").json["status"] == "running"


def test_binary_digests_are_cached_against_the_file_identity(fake: Home) -> None:
    """A start digests the binary once; a rewritten binary is digested again."""
    blake3 = pytest.importorskip("blake3", reason="executableIdentity needs the blake3 extra")
    binary = Path(managed_binary(fake))
    started_pid(fake)
    cache = json.loads(Path(fake.paths.binary_cache).read_bytes())
    assert cache["digest"] == blake3.blake3(binary.read_bytes()).hexdigest()
    assert cache["identity"][0] == str(binary)
    assert fake.run("stop").json["status"] == "stopped"

    # The cached answer is what the next start records: the cache is used...
    cache["digest"] = "ab" * 32
    Path(fake.paths.binary_cache).write_text(json.dumps(cache))
    started_pid(fake)
    record = json.loads(record_bytes(fake) or b"")
    assert record["executableIdentity"]["digest"] == [0xAB] * 32
    assert fake.run("stop").json["status"] == "stopped"

    # ...and only for the file it was computed from.
    with binary.open("a") as f:
        f.write("# rebuilt\n")
    started_pid(fake)
    record = json.loads(record_bytes(fake) or b"")
    assert record["executableIdentity"]["digest"] == list(
        blake3.blake3(binary.read_bytes()).digest()
    )


def test_binary_identity_is_added_only_to_the_record_of_that_live_process(fake: Home) -> None:
    pid = started_pid(fake)
    raw = record_bytes(fake)
    assert raw is not None
    bare = {key: value for key, value in json.loads(raw).items() if key != "executableIdentity"}
    bare_raw = json.dumps(bare, separators=(",", ":")).encode()
    Path(fake.paths.app_server.record).write_bytes(bare_raw)
    identity = ExecutableIdentity(digest=tuple(range(32)), path_digest=tuple(range(1, 33)))

    add_executable_identity(fake.paths.app_server, os.getpid(), identity)  # not its pid
    assert record_bytes(fake) == bare_raw
    add_executable_identity(fake.paths.app_server, pid, identity)
    added = json.loads(record_bytes(fake) or b"")
    assert added["executableIdentity"] == {
        "digest": list(range(32)),
        "path_digest": list(range(1, 33)),
    }
    # A record that already names its binary keeps the name it has.
    other = ExecutableIdentity(digest=(0,) * 32, path_digest=(0,) * 32)
    add_executable_identity(fake.paths.app_server, pid, other)
    assert json.loads(record_bytes(fake) or b"") == added


def test_without_blake3_the_record_omits_the_binary_identity(fake: Home) -> None:
    # An entry of None in sys.modules makes `import blake3` fail as if not installed.
    code = (
        "import sys; sys.modules['blake3'] = None; sys.argv = ['codex-daemon', 'start']; "
        "from daemonkit.cli import run; run()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=fake.env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "started"
    raw = record_bytes(fake)
    assert raw is not None
    assert list(json.loads(raw)) == ["pid", "processStartTime", "processIdentity"]


# -- reservations (empty records) ----------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b" \n\t  \n"], ids=["empty", "whitespace"])
def test_reservation_with_free_lock_is_debris(fake: Home, content: bytes) -> None:
    write_record(fake, content)
    stopped = fake.run("stop").json
    assert stopped["status"] == "notRunning"
    assert "backend" not in stopped
    assert record_bytes(fake) is None

    write_record(fake, content)
    pid = started_pid(fake)
    assert fake.record_pid() == pid
    assert is_alive(pid)


def test_reservation_with_held_lock_reads_as_starting(fake: Home) -> None:
    write_record(fake, b"")
    lock = os.open(fake.paths.app_server.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        status = fake.run("status").json
    finally:
        os.close(lock)
    assert status["status"] == "starting"
    assert record_bytes(fake) == b"", "status never removes a reservation"


# -- corrupt records: an error, never silently discarded -------------------------------------

CORRUPT = {
    "garbage": b"garbage",
    "truncated": b'{"pid":4242,"processStartTime":"Thu Jan  1 00:',
    "pid-string": b'{"pid":"4242","processStartTime":"Thu Jan  1 00:00:00 2015"}',
    "no-start-time": b'{"pid":4242}',
    "pid-negative": b'{"pid":-5,"processStartTime":"Thu Jan  1 00:00:00 2015"}',
}


@pytest.mark.parametrize("raw", list(CORRUPT.values()), ids=list(CORRUPT))
def test_corrupt_record_fails_start_and_stop_and_status_warns(fake: Home, raw: bytes) -> None:
    write_record(fake, raw)
    path = fake.paths.app_server.record
    # None of the three changes the record, so they may as well run side by side.
    start, stop, status_result = run_together(fake, "start", "stop", "status")
    for command, failed in (("start", start), ("stop", stop)):
        assert failed.returncode == 1, (command, failed)
        assert failed.stdout == ""
        assert failed.stderr.startswith(f"Error: invalid pid file contents in {path}\n"), failed
        assert "\nCaused by:\n    " in failed.stderr
        assert "Traceback" not in failed.stderr
    assert record_bytes(fake) == raw, "a corrupt record is never silently discarded"
    status = status_result.json
    assert status["status"] == "notRunning"
    assert "pid" not in status
    warnings = status["warnings"]
    assert isinstance(warnings, list)
    assert f"invalid pid file contents in {path}" in warnings
    assert record_bytes(fake) == raw
    assert not Path(fake.paths.socket).exists(), "nothing may have been spawned"


# -- stale records: valid JSON naming a process that is not ours -----------------------------


def _pid_zero(home: Home) -> tuple[bytes, int | None]:
    return native_record(0, ticks=1, boot=boot_id()), None


def _pid_one(home: Home) -> tuple[bytes, int | None]:
    return native_record(1, ticks=start_ticks(1), boot=boot_id()), 1


def _pid_one_legacy(home: Home) -> tuple[bytes, int | None]:
    raw = json.dumps({"pid": 1, "processStartTime": ps_lstart(home, 1)}, separators=(",", ":"))
    return raw.encode(), 1


def _pid_huge(home: Home) -> tuple[bytes, int | None]:
    return native_record(1073741824, ticks=1, boot=boot_id()), None


def _test_runner_wrong_ticks(home: Home) -> tuple[bytes, int | None]:
    me = os.getpid()
    return native_record(me, ticks=start_ticks(me) + 1, boot=boot_id()), me


def _test_runner_foreign_boot(home: Home) -> tuple[bytes, int | None]:
    me = os.getpid()
    return native_record(me, ticks=start_ticks(me), boot=FOREIGN_BOOT_ID), me


STALE: dict[str, Callable[[Home], tuple[bytes, int | None]]] = {
    "pid-0": _pid_zero,
    "pid-1": _pid_one,
    "pid-1-legacy-matching-lstart": _pid_one_legacy,
    "pid-1073741824": _pid_huge,
    "test-runner-wrong-ticks": _test_runner_wrong_ticks,
    "test-runner-foreign-boot-id": _test_runner_foreign_boot,
}


@pytest.mark.parametrize("make", list(STALE.values()), ids=list(STALE))
def test_stale_record_is_removed_by_stop_and_replaced_by_start(
    fake: Home, make: Callable[[Home], tuple[bytes, int | None]]
) -> None:
    raw, named = make(fake)
    write_record(fake, raw)
    stopped = fake.run("stop").json
    assert stopped["status"] == "notRunning"
    assert "backend" not in stopped
    assert record_bytes(fake) is None

    write_record(fake, raw)
    pid = started_pid(fake)
    assert pid != named
    assert fake.record_pid() == pid
    if named is not None:
        assert is_alive(named)


@pytest.mark.parametrize(
    ("mismatch", "command"),
    [
        ("wrong-ticks", "start"),
        ("wrong-ticks", "stop"),
        ("wrong-ticks", "restart"),
        ("foreign-boot-id", "stop"),
        ("foreign-boot-id", "restart"),
    ],
)
def test_record_naming_an_unrelated_live_process_never_signals_it(
    fake: Home, command: str, mismatch: str
) -> None:
    sleeper = fake.spawn_marked(["sleep", "60"])
    ticks = start_ticks(sleeper.pid)
    if mismatch == "wrong-ticks":
        raw = native_record(sleeper.pid, ticks=ticks + 1, boot=boot_id())
    else:
        raw = native_record(sleeper.pid, ticks=ticks, boot=FOREIGN_BOOT_ID)
    write_record(fake, raw)

    result = fake.run(command).json
    expected = {"start": "started", "stop": "notRunning", "restart": "restarted"}[command]
    assert result["status"] == expected
    if command == "stop":
        assert record_bytes(fake) is None
    else:
        assert fake.record_pid() == result["pid"] != sleeper.pid
    assert sleeper.poll() is None, f"{command} signalled an unrelated process"
    assert is_alive(sleeper.pid)
    assert start_ticks(sleeper.pid) == ticks


# -- legacy records (no processIdentity) ------------------------------------------------------


@pytest.mark.parametrize("offset_s", [0, -1], ids=["exact", "minus-1s"])
def test_legacy_record_with_matching_lstart_is_running(fake: Home, offset_s: int) -> None:
    pid = started_pid(fake)
    lstart = shift_lstart(ps_lstart(fake, pid), offset_s) if offset_s else ps_lstart(fake, pid)
    write_record(fake, json.dumps({"pid": pid, "processStartTime": lstart}).encode())

    stopped = fake.run("stop").json
    assert stopped["status"] == "stopped"
    assert stopped["backend"] == "pid"
    wait_for(lambda: not is_alive(pid), what="the legacy-recorded server to exit")
    assert record_bytes(fake) is None


def test_legacy_record_with_wrong_lstart_is_stale(fake: Home) -> None:
    pid = started_pid(fake)
    lstart = shift_lstart(ps_lstart(fake, pid), 3600)
    write_record(fake, json.dumps({"pid": pid, "processStartTime": lstart}).encode())

    stopped = fake.run("stop")
    # The record is stale, so the live server answering on the socket is unmanaged.
    assert stopped.returncode == 1
    assert stopped.stdout == ""
    assert stopped.stderr == (
        "Error: app server is running but is not managed by codex app-server daemon\n"
    )
    assert record_bytes(fake) is None, "a stale record is removed"
    assert is_alive(pid), "a process named by a stale record is never signalled"
    kill_and_wait(pid)


def test_matching_legacy_record_is_promoted_exactly_once(fake: Home) -> None:
    """SPEC §4.3: a matching legacy record is rewritten with processIdentity added."""
    pid = started_pid(fake)
    lstart = ps_lstart(fake, pid)
    write_record(fake, json.dumps({"pid": pid, "processStartTime": lstart}).encode())

    assert fake.run("start").json["status"] == "alreadyRunning"
    promoted = record_bytes(fake)
    assert promoted is not None
    record = json.loads(promoted)
    assert record["pid"] == pid
    assert record["processStartTime"] == lstart
    assert record["processIdentity"] == {"bootId": boot_id(), "startTicks": start_ticks(pid)}

    assert fake.run("start").json["status"] == "alreadyRunning"
    assert record_bytes(fake) == promoted, "promotion happens once"


# -- legacy records naming a process of another kind --------------------------------------------
# An lstart match is necessary, not sufficient: a seed-era record must also name a process of
# the record's kind (SPEC §4.3), or a recycled pid with a coinciding start second gets SIGTERM.


def legacy_record(home: Home, pid: int) -> bytes:
    """A seed-era record of ``pid``: its pid and its ``ps`` start time, nothing else."""
    value = {"pid": pid, "processStartTime": ps_lstart(home, pid)}
    return json.dumps(value, separators=(",", ":")).encode()


def updater_record_bytes(home: Home) -> bytes | None:
    try:
        return Path(home.paths.updater.record).read_bytes()
    except FileNotFoundError:
        return None


def assert_untouched(sleeper: subprocess.Popen[bytes], ticks: int, command: str) -> None:
    assert sleeper.poll() is None, f"{command} signalled a process of another kind"
    assert is_alive(sleeper.pid)
    assert start_ticks(sleeper.pid) == ticks


@pytest.mark.parametrize("command", ["stop", "restart", "status", "start"])
def test_legacy_record_of_a_process_that_is_no_app_server_is_stale(
    fake: Home, command: str
) -> None:
    sleeper = fake.spawn_marked(["sleep", "30"])
    ticks = start_ticks(sleeper.pid)
    raw = legacy_record(fake, sleeper.pid)
    write_record(fake, raw)

    result = fake.run(command).json
    expected = {"stop": "notRunning", "status": "notRunning"}.get(command)
    if expected is not None:
        assert result["status"] == expected
        assert "backend" not in result, "a stale record manages nothing"
        assert "pid" not in result
    if command == "stop":
        assert record_bytes(fake) is None, "the stale record is removed"
    elif command == "status":
        assert record_bytes(fake) == raw, "status never cleans up, nor promotes"
    else:
        assert result["status"] == {"start": "started", "restart": "restarted"}[command]
        assert fake.record_pid() == result["pid"] != sleeper.pid
    assert_untouched(sleeper, ticks, command)


@pytest.mark.parametrize("auto_update", [False, True], ids=["auto-update-off", "auto-update-on"])
def test_legacy_updater_record_of_a_process_that_is_no_updater_is_stale(
    home: Home, auto_update: bool
) -> None:
    # With auto-update off, `start` stops an active updater; with it on, it spawns one
    # only if none is active. Either way the record below must not count as an updater.
    write_settings(home, {**UPDATER_OFF, "updater": {"autoUpdateEnabled": auto_update}})
    home.install_fake()
    sleeper = home.spawn_marked(["sleep", "30"])
    ticks = start_ticks(sleeper.pid)
    raw = legacy_record(home, sleeper.pid)
    os.makedirs(home.paths.state_dir, mode=0o700, exist_ok=True)
    Path(home.paths.updater.record).write_bytes(raw)
    Path(home.paths.updater.record).chmod(0o600)

    updater = home.run("status").json["updater"]
    assert isinstance(updater, dict)
    assert updater["status"] == "notRunning"
    assert "pid" not in updater
    assert updater_record_bytes(home) == raw, "status never cleans up, nor promotes"

    assert home.run("start").json["status"] == "started"
    if auto_update:
        assert scheduled_updater(home) != sleeper.pid
    else:
        assert updater_record_bytes(home) is None, "the stale record is removed"
    assert_untouched(sleeper, ticks, "start")


def test_legacy_updater_record_of_the_updater_is_promoted_once_and_stops_it(home: Home) -> None:
    write_settings(home, {**UPDATER_OFF, "updater": {"autoUpdateEnabled": True}})
    home.install_fake()
    assert home.run("start").json["status"] == "started"
    pid = scheduled_updater(home)
    raw = legacy_record(home, pid)
    Path(home.paths.updater.record).write_bytes(raw)

    updater = home.run("status").json["updater"]
    assert isinstance(updater, dict)
    assert (updater["status"], updater["pid"]) == ("running", pid)
    assert updater_record_bytes(home) == raw, "status never promotes"

    # `start` finds the updater active (promoting its record) and spawns no second one.
    assert home.run("start").json["status"] == "alreadyRunning"
    promoted = updater_record_bytes(home)
    assert promoted is not None
    record = json.loads(promoted)
    assert record["pid"] == pid
    assert record["processIdentity"] == {"bootId": boot_id(), "startTicks": start_ticks(pid)}
    assert scheduled_updater(home) == pid
    assert home.run("start").json["status"] == "alreadyRunning"
    assert updater_record_bytes(home) == promoted, "promotion happens once"

    # With auto-update off, `start` stops the updater its legacy record names.
    Path(home.paths.updater.record).write_bytes(raw)
    write_settings(home, {**UPDATER_OFF, "updater": {"autoUpdateEnabled": False}})
    assert home.run("start").json["status"] == "alreadyRunning"
    wait_for(lambda: not is_alive(pid), what="the legacy-recorded updater to exit")
    assert updater_record_bytes(home) is None
