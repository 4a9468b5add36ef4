"""/proc identity: the lstart rendering against ps, what a process runs, and record matching.

SPEC §4.2 (processStartTime must equal ``ps -o lstart=``), §4.3 (identity match; a legacy
record names a process of its kind),
§13.1 row 4 (locale independence), §13.5 rows 18-20.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from daemonkit.paths import ProcessKind
from daemonkit.pidrecord import LinuxIdentity, MacIdentity, PidRecord
from daemonkit.procinfo import (
    ProcessCommand,
    ProcessSnapshot,
    boot_id,
    find_executable,
    format_lstart,
    inspect_process,
    is_codex_app_server,
    is_updater,
    parse_lstart,
    read_command,
    record_matches,
    runs_codex_app_server,
    snapshot_identity,
    start_ticks,
    with_argv0_from_path,
)
from tests.harness import cmdline, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from tests.harness import Home

pytestmark = pytest.mark.timeout(60)

FOREIGN_BOOT = "00000000-0000-4000-8000-000000000000"


def ps_lstart(pid: int, env: Mapping[str, str] | None = None) -> str:
    """``ps -p <pid> -o lstart=`` in the C locale, trimmed (SPEC §4.2)."""
    done = subprocess.run(
        ["ps", "-p", str(pid), "-o", "lstart="],
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C"} if env is None else dict(env),
        check=True,
        timeout=10,
    )
    return done.stdout.strip()


def proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()[0].decode()


def snapshot_of(pid: int) -> ProcessSnapshot:
    snapshot = inspect_process(pid)
    assert snapshot is not None, f"process {pid} is not inspectable"
    return snapshot


def native_record(snapshot: ProcessSnapshot) -> PidRecord:
    return PidRecord(
        pid=snapshot.pid, process_start_time=snapshot.lstart, identity=snapshot.identity
    )


@pytest.fixture
def sleeper(home: Home) -> ProcessSnapshot:
    """A live ``sleep`` this test started (killed by the home fixture's teardown)."""
    process = home.spawn_marked(["sleep", "60"])
    wait_until_exec_done(process.pid, "sleep")
    return snapshot_of(process.pid)


@pytest.fixture
def app_server(home: Home) -> ProcessSnapshot:
    """A fake Codex app-server this test started: a process of the app-server's kind."""
    release = home.install_fake()
    process = home.spawn_marked(
        [str(release / "codex"), "app-server", "--listen", "unix://"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until_exec_done(process.pid, "app-server")
    return snapshot_of(process.pid)


def wait_until_exec_done(pid: int, arg: str) -> None:
    """Wait until /proc shows ``arg`` in the argv of ``pid``.

    Popen returns once exec closed the child's close-on-exec pipe, which the kernel
    does before it sets up the new argv: until then cmdline reads empty.
    """
    wait_for(lambda: arg.encode() in cmdline(pid), what=f"process {pid} to finish its exec")


@pytest.fixture
def tz_restored() -> Iterator[None]:
    saved = os.environ.get("TZ")
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


# -- the lstart rendering equals ps ----------------------------------------------------


def test_own_process_lstart_equals_ps() -> None:
    snapshot = snapshot_of(os.getpid())
    assert snapshot.lstart == ps_lstart(os.getpid())
    assert format_lstart(snapshot.start_epoch_s) == snapshot.lstart


def test_fresh_sleep_lstart_equals_ps(home: Home) -> None:
    # Several processes, so that start times fall at different points within a second.
    processes = [home.spawn_marked(["sleep", "60"]) for _ in range(5)]
    for process in processes:
        assert snapshot_of(process.pid).lstart == ps_lstart(process.pid)


@pytest.mark.parametrize(
    "locale_env",
    [
        {"LANG": "oops"},
        {"LANG": "oops", "LC_TIME": "de_DE.UTF-8"},
        {"LC_TIME": "de_DE.UTF-8"},
    ],
    ids=["LANG=oops", "LANG=oops+LC_TIME=de", "LC_TIME=de"],
)
def test_ps_in_c_locale_ignores_caller_locale(
    sleeper: ProcessSnapshot, locale_env: dict[str, str]
) -> None:
    env = {**os.environ, **locale_env, "LC_ALL": "C"}
    assert ps_lstart(sleeper.pid, env) == sleeper.lstart


@pytest.mark.usefixtures("tz_restored")
def test_lstart_follows_tz_like_ps(sleeper: ProcessSnapshot) -> None:
    os.environ["TZ"] = "UTC0"
    time.tzset()
    utc = format_lstart(sleeper.start_epoch_s)
    assert utc == ps_lstart(sleeper.pid)
    os.environ["TZ"] = "XST-5:30"
    time.tzset()
    shifted = format_lstart(sleeper.start_epoch_s)
    assert shifted == ps_lstart(sleeper.pid)
    assert shifted != utc


def test_comm_with_spaces_and_parentheses(home: Home, tmp_path: Path) -> None:
    # The fields of /proc/<pid>/stat start after the LAST ')' (SPEC §4.2).
    link = tmp_path / "a) b (c) d"
    link.symlink_to("/bin/sleep")
    process = home.spawn_marked([str(link), "60"])

    def comm() -> str:
        with open(f"/proc/{process.pid}/comm", encoding="utf-8") as f:
            return f.read().strip()

    wait_for(lambda: comm() == "a) b (c) d", what="the exec of the oddly named sleep")
    snapshot = snapshot_of(process.pid)
    assert snapshot.lstart == ps_lstart(process.pid)
    assert start_ticks(process.pid) == snapshot.identity.start_ticks


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (0, "Thu Jan  1 00:00:00 1970"),
        (1_793_847_641, "Thu Nov  5 03:00:41 2026"),
        (1_795_910_441, "Sun Nov 29 00:00:41 2026"),
    ],
)
@pytest.mark.usefixtures("tz_restored")
def test_format_lstart_pads_the_day_with_a_space(epoch: int, expected: str) -> None:
    os.environ["TZ"] = "UTC0"
    time.tzset()
    assert format_lstart(epoch) == expected
    assert parse_lstart(expected) == epoch
    assert parse_lstart(f"  {expected}\n") == epoch


@pytest.mark.parametrize("text", ["", "garbage", "Tue Nov 99 03:00:41 2026", "Di Nov 24 2026"])
def test_parse_lstart_rejects_garbage(text: str) -> None:
    assert parse_lstart(text) is None


# -- inspect_process --------------------------------------------------------------------


def test_snapshot_reads_boot_id_and_ticks(sleeper: ProcessSnapshot) -> None:
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
        assert sleeper.identity.boot_id == f.read().strip() == boot_id()
    with open(f"/proc/{sleeper.pid}/stat", "rb") as f:
        data = f.read()
    assert sleeper.identity.start_ticks == int(data[data.rfind(b")") + 2 :].split()[19])


@pytest.mark.parametrize("pid", [0, 1, -1, -5])
def test_pid_at_most_one_is_never_inspected(pid: int) -> None:
    assert inspect_process(pid) is None


def test_dead_process_is_not_inspected(home: Home) -> None:
    process = home.spawn_marked(["sleep", "60"])
    process.kill()
    process.wait()
    assert inspect_process(process.pid) is None


def test_zombie_is_not_inspected(home: Home) -> None:
    process = home.spawn_marked(["sleep", "0"])  # never waited for: becomes a zombie
    ticks = start_ticks(process.pid)
    wait_for(lambda: proc_state(process.pid) == "Z", what="the unreaped sleep to be a zombie")
    assert inspect_process(process.pid) is None
    assert ticks is not None
    record = PidRecord(
        pid=process.pid,
        process_start_time="x",
        identity=LinuxIdentity(boot_id=boot_id(), start_ticks=ticks),
    )
    assert not record_matches(record, inspect_process(process.pid))
    assert proc_state(process.pid) == "Z"  # still unreaped: the check did not wait for it


# -- record_matches ---------------------------------------------------------------------


def test_live_matching_record_matches(sleeper: ProcessSnapshot) -> None:
    assert record_matches(native_record(sleeper), sleeper)
    # what a later check sees, freshly read, also matches
    assert record_matches(native_record(sleeper), inspect_process(sleeper.pid))


def test_wrong_start_ticks_do_not_match(sleeper: ProcessSnapshot) -> None:
    for delta in (1, -1, 1000):
        record = PidRecord(
            pid=sleeper.pid,
            process_start_time=sleeper.lstart,
            identity=LinuxIdentity(
                boot_id=sleeper.identity.boot_id, start_ticks=sleeper.identity.start_ticks + delta
            ),
        )
        assert not record_matches(record, sleeper)


def test_foreign_boot_id_does_not_match(sleeper: ProcessSnapshot) -> None:
    record = PidRecord(
        pid=sleeper.pid,
        process_start_time=sleeper.lstart,
        identity=LinuxIdentity(boot_id=FOREIGN_BOOT, start_ticks=sleeper.identity.start_ticks),
    )
    assert not record_matches(record, sleeper)
    assert not record_matches(record, None)


def test_record_for_another_pid_does_not_match(home: Home, sleeper: ProcessSnapshot) -> None:
    other = snapshot_of(home.spawn_marked(["sleep", "60"]).pid)
    assert not record_matches(native_record(sleeper), other)
    assert not record_matches(native_record(sleeper), None)


@pytest.mark.parametrize("pid", [0, 1])
def test_pid_zero_and_one_never_match(pid: int) -> None:
    assert inspect_process(pid) is None
    # Even handed a snapshot that agrees with the record, pid <= 1 is refused (SPEC §4.10).
    snapshot = snapshot_identity(pid, start_ticks(pid) or 0)
    assert not record_matches(native_record(snapshot), snapshot)
    assert not record_matches(PidRecord(pid=pid, process_start_time=snapshot.lstart), snapshot)


def test_own_pid_never_matches() -> None:
    own = snapshot_of(os.getpid())
    assert not record_matches(native_record(own), own)
    assert not record_matches(PidRecord(pid=own.pid, process_start_time=own.lstart), own)


def test_mac_identity_never_matches_a_linux_process(sleeper: ProcessSnapshot) -> None:
    record = PidRecord(
        pid=sleeper.pid,
        process_start_time=sleeper.lstart,
        identity=MacIdentity(
            boot_id=None,
            unique_id=None,
            start_seconds=sleeper.start_epoch_s,
            start_microseconds=0,
        ),
    )
    assert not record_matches(record, sleeper)


# -- legacy records (no processIdentity) -----------------------------------------------


def legacy(snapshot: ProcessSnapshot, start_time: str) -> PidRecord:
    return PidRecord(pid=snapshot.pid, process_start_time=start_time)


def test_legacy_record_with_exact_lstart_matches(app_server: ProcessSnapshot) -> None:
    assert record_matches(legacy(app_server, ps_lstart(app_server.pid)), app_server)
    assert record_matches(legacy(app_server, f"  {app_server.lstart}\n"), app_server)


@pytest.mark.parametrize("drift", [-2, -1, 1, 2])
def test_legacy_record_within_two_seconds_matches(app_server: ProcessSnapshot, drift: int) -> None:
    record = legacy(app_server, format_lstart(app_server.start_epoch_s + drift))
    assert record_matches(record, app_server)


@pytest.mark.parametrize("drift", [-5, -3, 3, 5, 3600])
def test_legacy_record_further_off_does_not_match(app_server: ProcessSnapshot, drift: int) -> None:
    record = legacy(app_server, format_lstart(app_server.start_epoch_s + drift))
    assert not record_matches(record, app_server)


@pytest.mark.parametrize("text", ["", "garbage", "Di Nov 24 03:00:41 2026"])
def test_legacy_record_with_unparseable_time_does_not_match(
    app_server: ProcessSnapshot, text: str
) -> None:
    assert not record_matches(legacy(app_server, text), app_server)


@pytest.mark.parametrize("kind", list(ProcessKind))
def test_legacy_record_of_a_process_of_another_kind_does_not_match(
    sleeper: ProcessSnapshot, kind: ProcessKind
) -> None:
    # The start time matches exactly, but a `sleep` is neither an app-server nor an
    # updater: a start second is no identity (SPEC §4.3).
    assert not record_matches(legacy(sleeper, ps_lstart(sleeper.pid)), sleeper, kind=kind)


def test_legacy_record_of_an_app_server_is_no_updater_record(app_server: ProcessSnapshot) -> None:
    record = legacy(app_server, app_server.lstart)
    assert record_matches(record, app_server, kind=ProcessKind.APP_SERVER)
    assert not record_matches(record, app_server, kind=ProcessKind.UPDATER)


@pytest.mark.parametrize("kind", list(ProcessKind))
def test_record_with_process_identity_needs_no_kind(
    sleeper: ProcessSnapshot, kind: ProcessKind
) -> None:
    # boot id + start ticks name one process exactly; its kind adds nothing.
    assert record_matches(native_record(sleeper), sleeper, kind=kind)


def test_legacy_record_of_dead_process_does_not_match(home: Home) -> None:
    process = home.spawn_marked(["sleep", "60"])
    snapshot = snapshot_of(process.pid)
    record = legacy(snapshot, snapshot.lstart)
    process.kill()
    process.wait()
    assert not record_matches(record, inspect_process(process.pid))


# -- what a process runs: is it a Codex app-server, an updater? ----------------------------

# Symlinks of the table's made-up file system: the venv's python, and `current`.
LINKS = {
    "/venv/bin/python": "/usr/bin/python3.12",
    "/h/packages/standalone/current/codex": "/h/packages/standalone/releases/1.0.0/codex",
}
RELEASE_CODEX = "/h/packages/standalone/releases/1.0.0/codex"
CURRENT_CODEX = "/h/packages/standalone/current/codex"
PYTHON = "/usr/bin/python3.12"
RUST_CODEX = "/opt/codex/bin/codex"
SERVER_ARGS = ("app-server", "--listen", "unix://")


def table_realpath(path: str) -> str:
    return LINKS.get(path, path)


# (argv, exe, is a Codex app-server, is an updater)
KINDS: dict[str, tuple[tuple[str, ...], str, bool, bool]] = {
    "kit-argv-canonical-binary": (
        (RELEASE_CODEX, *SERVER_ARGS, "--analytics-default-enabled", "--managed-daemon"),
        RELEASE_CODEX,
        True,
        False,
    ),
    "seed-argv-through-current": (
        (CURRENT_CODEX, "--enable", "remote_control", *SERVER_ARGS),
        RELEASE_CODEX,
        True,
        False,
    ),
    "current-flipped-since-exec": (
        (CURRENT_CODEX, *SERVER_ARGS),
        "/h/packages/standalone/releases/0.9.0/codex",
        False,
        False,
    ),
    "fake-script-through-shebang": (
        ("/venv/bin/python", RELEASE_CODEX, *SERVER_ARGS),
        PYTHON,
        True,
        False,
    ),
    "fake-script-shebang-with-option": (
        ("/venv/bin/python", "-u", RELEASE_CODEX, *SERVER_ARGS),
        PYTHON,
        True,
        False,
    ),
    "rust-updater": (
        (RUST_CODEX, "app-server", "daemon", "pid-update-loop"),
        RUST_CODEX,
        False,
        True,
    ),
    "rust-daemon-cli": ((RUST_CODEX, "app-server", "daemon", "start"), RUST_CODEX, False, False),
    "sleep-30": (("sleep", "30"), "/usr/bin/sleep", False, False),
    "sleep-30-absolute": (("/usr/bin/sleep", "30"), "/usr/bin/sleep", False, False),
    "python-c": (("/venv/bin/python", "-c", "import time; time.sleep(30)"), PYTHON, False, False),
    "python-c-codex-as-data": (
        ("/venv/bin/python", "-c", "pass", RELEASE_CODEX, *SERVER_ARGS),
        PYTHON,
        False,
        False,
    ),
    "python-script-codex-as-data": (
        ("/venv/bin/python", "/tmp/other.py", RELEASE_CODEX, *SERVER_ARGS),
        PYTHON,
        False,
        False,
    ),
    "codex-without-app-server": ((RUST_CODEX, "exec", "hello"), RUST_CODEX, False, False),
    "codex-alone": ((RUST_CODEX,), RUST_CODEX, False, False),
    "codex-something": (
        ("/usr/bin/codex-something", *SERVER_ARGS),
        "/usr/bin/codex-something",
        False,
        False,
    ),
    "empty-argv": ((), "/usr/bin/sleep", False, False),
    "codex-argv-other-executable": ((RUST_CODEX, *SERVER_ARGS), "/usr/bin/sleep", False, False),
    "bare-name-from-path": (("codex", *SERVER_ARGS), RUST_CODEX, False, False),
    "kit-updater": (("/venv/bin/python", "-m", "updater", "run"), PYTHON, False, True),
    "kit-updater-once": (
        ("/venv/bin/python", "-m", "updater", "run", "--once"),
        PYTHON,
        False,
        True,
    ),
    "kit-updater-interpreter-option": (
        ("/venv/bin/python", "-u", "-m", "updater", "--codex-home", "/h", "run"),
        PYTHON,
        False,
        True,
    ),
    "updater-console-script": (
        ("/venv/bin/python", "/venv/bin/codex-daemon-updater", "run"),
        PYTHON,
        False,
        True,
    ),
    "updater-without-run": (("/venv/bin/python", "-m", "updater", "--help"), PYTHON, False, False),
    "kit-cli": (("/venv/bin/python", "-m", "daemonkit", "start"), PYTHON, False, False),
    "updater-argv-as-code-data": (
        ("/venv/bin/python", "-c", "pass", "-m", "updater", "run"),
        PYTHON,
        False,
        False,
    ),
    "updater-argv-other-executable": (
        ("/venv/bin/python", "-m", "updater", "run"),
        "/usr/bin/sleep",
        False,
        False,
    ),
}


@pytest.mark.parametrize(
    ("argv", "exe", "app_server", "updater"), list(KINDS.values()), ids=list(KINDS)
)
def test_process_kind_from_argv_and_executable(
    argv: tuple[str, ...], exe: str, app_server: bool, updater: bool
) -> None:
    assert is_codex_app_server(argv, exe, table_realpath) is app_server
    assert is_updater(argv, exe, table_realpath) is updater


def test_read_command_of_a_fake_app_server(app_server: ProcessSnapshot, home: Home) -> None:
    command = read_command(app_server.pid)
    assert command is not None
    # The kernel ran the script through its shebang: the interpreter is the executable.
    script = os.path.realpath(os.path.join(home.paths.current, "codex"))
    assert command == ProcessCommand(
        argv=(sys.executable, script, "app-server", "--listen", "unix://"),
        exe=os.path.realpath(sys.executable),
    )


def test_read_command_keeps_empty_arguments(home: Home) -> None:
    code = "import time; time.sleep(60)"
    process = home.spawn_marked([sys.executable, "-c", code, "", "x", ""])
    wait_until_exec_done(process.pid, "x")
    command = read_command(process.pid)
    assert command is not None
    assert command.argv == (sys.executable, "-c", code, "", "x", "")


def test_read_command_names_a_replaced_executable_by_its_path(home: Home, tmp_path: Path) -> None:
    # An update replaces the binary under a live server; /proc then says "(deleted)".
    binary = tmp_path.resolve() / "codex"
    shutil.copy("/bin/sleep", binary)
    process = home.spawn_marked([str(binary), "60"])
    wait_until_exec_done(process.pid, "60")
    binary.unlink()
    command = read_command(process.pid)
    assert command is not None
    assert os.readlink(f"/proc/{process.pid}/exe") == f"{binary} (deleted)"
    assert command.exe == str(binary)


def test_read_command_of_a_gone_process_is_none(home: Home) -> None:
    process = home.spawn_marked(["sleep", "60"])
    process.kill()
    process.wait()
    assert read_command(process.pid) is None


# -- a bare argv[0], found on the process's own PATH (adopt, SPEC §14.12) -------------------


def executable(path: Path, *, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


def test_find_executable_takes_the_first_executable_file(tmp_path: Path) -> None:
    executable(tmp_path / "a" / "codex", mode=0o644)  # not executable: skipped
    (tmp_path / "b" / "codex").mkdir(parents=True)  # a directory: skipped
    found = executable(tmp_path / "c" / "codex")
    executable(tmp_path / "d" / "codex")  # later in PATH: shadowed
    dirs = ":".join(str(tmp_path / d) for d in "abcd")
    assert find_executable("codex", dirs, "/") == str(found)
    assert find_executable("codex", str(tmp_path / "a"), "/") is None
    assert find_executable("other", dirs, "/") is None


def test_find_executable_reads_relative_and_empty_entries_against_cwd(tmp_path: Path) -> None:
    executable(tmp_path / "bin" / "codex")
    assert find_executable("codex", "bin", str(tmp_path)) == str(tmp_path / "bin" / "codex")
    executable(tmp_path / "codex")
    # An empty entry is the current directory, as for execvp.
    assert find_executable("codex", ":/nonexistent", str(tmp_path)) == str(tmp_path / "codex")


@pytest.fixture
def bare_codex(home: Home, tmp_path: Path) -> tuple[int, Path]:
    """A binary named ``codex`` (a copy of bash), started through PATH as
    ``codex -c 'sleep 60; :' app-server``: argv[0] is the bare name, as when a client
    runs ``codex app-server`` without a path. The second command keeps bash itself
    running instead of exec'ing sleep."""
    bash = shutil.which("bash")
    assert bash is not None
    binary = tmp_path.resolve() / "bin" / "codex"
    binary.parent.mkdir()
    shutil.copy(bash, binary)
    home.extra_env["PATH"] = f"{binary.parent}{os.pathsep}{os.environ['PATH']}"
    process = home.spawn_marked(["codex", "-c", "sleep 60; :", "app-server"], group=True)
    wait_until_exec_done(process.pid, "app-server")
    return process.pid, binary


def test_a_bare_argv0_is_found_on_the_process_path(bare_codex: tuple[int, Path]) -> None:
    pid, binary = bare_codex
    command = read_command(pid)
    assert command is not None
    assert command.argv[0] == "codex"
    assert with_argv0_from_path(pid, command.argv) == (str(binary), *command.argv[1:])
    assert runs_codex_app_server(pid, command)
    # Records keep the stricter check: a bare name does not count there.
    assert not is_codex_app_server(command.argv, command.exe, os.path.realpath)


def test_a_bare_argv0_that_path_finds_elsewhere_does_not_count(home: Home, tmp_path: Path) -> None:
    # PATH names another `codex` than the one running: the lookup must not pass the
    # running binary off as a Codex.
    bash = shutil.which("bash")
    assert bash is not None
    running = tmp_path.resolve() / "real" / "codex"
    running.parent.mkdir()
    shutil.copy(bash, running)
    other = executable(tmp_path.resolve() / "other" / "codex")
    home.extra_env["PATH"] = f"{other.parent}{os.pathsep}{os.environ['PATH']}"
    process = home.spawn_marked(
        ["codex", "-c", "sleep 60; :", "app-server"], executable=str(running), group=True
    )
    wait_until_exec_done(process.pid, "app-server")
    command = read_command(process.pid)
    assert command is not None
    assert command.exe == str(running)
    assert with_argv0_from_path(process.pid, command.argv)[0] == str(other)
    assert not runs_codex_app_server(process.pid, command)


def test_an_argv0_with_a_slash_is_left_alone(app_server: ProcessSnapshot) -> None:
    command = read_command(app_server.pid)
    assert command is not None
    assert with_argv0_from_path(app_server.pid, command.argv) == command.argv
    assert runs_codex_app_server(app_server.pid, command)


def test_a_process_that_is_no_codex_is_not_a_server(sleeper: ProcessSnapshot) -> None:
    # `sleep` is found on PATH, but it is not named codex.
    command = read_command(sleeper.pid)
    assert command is not None
    assert not runs_codex_app_server(sleeper.pid, command)
