"""Readers of /proc: boot id, stat fields (state, parent, group, start ticks), the lstart
rendering, and what runs.

This is the only module that inspects other processes, so tests can reason about
identity with real processes and no patching of ``os``.
"""

from __future__ import annotations

import errno
import os
import time
from functools import cache

from daemonkit.paths import ProcessKind
from daemonkit.pidrecord import LinuxIdentity, PidRecord
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Final

__all__ = [
    "ProcessCommand",
    "ProcessSnapshot",
    "ProcessStat",
    "boot_id",
    "find_executable",
    "format_lstart",
    "inspect_process",
    "is_codex_app_server",
    "is_updater",
    "read_command",
    "read_stat",
    "record_matches",
    "runs_codex_app_server",
    "stat_or_none",
    "with_argv0_from_path",
]

# ``ps -o lstart=`` prints C-locale names whatever LANG says; spelling them out keeps
# the record identical for every caller's locale (upstream issue #43608).
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
LEGACY_TOLERANCE_S = 2
# readlink(/proc/<pid>/exe) appends this once the file was unlinked or replaced (an
# update); the process still runs what that path named when it was exec'd.
_DELETED_SUFFIX = " (deleted)"


class ProcessSnapshot(Value):
    """What /proc says about a live, non-zombie process we may signal."""

    __slots__ = ("identity", "pid", "start_epoch_s")

    def __init__(self, *, pid: int, identity: LinuxIdentity, start_epoch_s: int) -> None:
        self.pid: Final = pid
        self.identity: Final = identity
        self.start_epoch_s: Final = start_epoch_s

    @property
    def lstart(self) -> str:
        return format_lstart(self.start_epoch_s)


@cache
def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
        return f.read().strip()


@cache
def _btime() -> int:
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            if line.startswith("btime "):
                return int(line.split()[1])
    raise OSError(errno.ENODATA, "no btime in /proc/stat")


@cache
def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def format_lstart(epoch_s: int) -> str:
    """Render a start time as ``ps -o lstart=`` does (local time, C locale)."""
    t = time.localtime(epoch_s)
    return (
        f"{_DAYS[t.tm_wday]} {_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {t.tm_year}"
    )


def parse_lstart(text: str) -> int | None:
    """Parse a C-locale lstart string back to epoch seconds (local time), or None."""
    try:
        parsed = time.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return None
    return int(time.mktime(parsed))


class ProcessStat(Value):
    """The fields of /proc/<pid>/stat the kit uses (proc(5) fields 3, 4, 5 and 22)."""

    __slots__ = ("pgrp", "ppid", "start_ticks", "state")

    def __init__(self, *, state: str, ppid: int, pgrp: int, start_ticks: int) -> None:
        self.state: Final = state
        self.ppid: Final = ppid
        self.pgrp: Final = pgrp
        self.start_ticks: Final = start_ticks

    @property
    def is_zombie(self) -> bool:
        """Exited (Z) or dead (X): its pid is not a process we can act on."""
        return self.state in ("Z", "X")


def read_stat(pid: int | str) -> ProcessStat:
    """Parse /proc/<pid>/stat (``pid`` may be ``"self"``).

    Raises ``OSError`` if it cannot be read and ``ValueError`` if it is malformed.
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    # comm may contain spaces and parentheses: fields start after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return ProcessStat(
            state=fields[0].decode("ascii"),
            ppid=int(fields[1]),
            pgrp=int(fields[2]),
            start_ticks=int(fields[19]),
        )
    except IndexError:
        raise ValueError(f"malformed /proc/{pid}/stat") from None


def stat_or_none(pid: int) -> ProcessStat | None:
    """``read_stat``, or None if the process is gone, unreadable or its stat malformed."""
    try:
        return read_stat(pid)
    except (OSError, ValueError):
        return None


def start_ticks(pid: int) -> int | None:
    stat = stat_or_none(pid)
    return None if stat is None else stat.start_ticks


def is_signalable(pid: int) -> bool:
    """True if ``kill(pid, 0)`` succeeds: the pid exists and is ours to signal."""
    if pid <= 1:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        # ESRCH: gone. EPERM: another user's process, never ours (SPEC §4.3).
        return False
    return True


def inspect_process(pid: int) -> ProcessSnapshot | None:
    """Snapshot a live process we may signal; None if gone, foreign, zombie or unreadable."""
    if not is_signalable(pid):
        return None
    stat = stat_or_none(pid)
    if stat is None or stat.is_zombie:
        return None
    ticks = stat.start_ticks
    return ProcessSnapshot(
        pid=pid,
        identity=LinuxIdentity(boot_id=boot_id(), start_ticks=ticks),
        start_epoch_s=_btime() + ticks // _clock_ticks(),
    )


def snapshot_identity(pid: int, ticks: int) -> ProcessSnapshot:
    """Build the snapshot of a process we just spawned and whose ticks it reported."""
    return ProcessSnapshot(
        pid=pid,
        identity=LinuxIdentity(boot_id=boot_id(), start_ticks=ticks),
        start_epoch_s=_btime() + ticks // _clock_ticks(),
    )


class ProcessCommand(Value):
    """What a process runs: its argv and the canonical path of its executable."""

    __slots__ = ("argv", "exe")

    def __init__(self, *, argv: tuple[str, ...], exe: str) -> None:
        self.argv: Final = argv
        self.exe: Final = exe


def read_command(pid: int) -> ProcessCommand | None:
    """Read /proc/<pid>/cmdline and /proc/<pid>/exe; None if either is unreadable.

    Another user's process (EPERM), one that is gone, and a kernel thread (no argv)
    all read as None, so none can pass for a process of ours.
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    if not raw:
        return None
    # Each argument ends with a NUL; an empty argument is a NUL of its own.
    args = raw[:-1] if raw.endswith(b"\0") else raw
    exe = exe.removesuffix(_DELETED_SUFFIX)
    return ProcessCommand(argv=tuple(os.fsdecode(arg) for arg in args.split(b"\0")), exe=exe)


def _resolver(pid: int) -> Callable[[str], str]:
    """realpath as ``pid`` sees it: a relative path is relative to its cwd."""
    cwd = f"/proc/{pid}/cwd"
    return lambda path: os.path.realpath(os.path.join(cwd, path))


def _runs_argv0(argv: Sequence[str], exe: str, realpath: Callable[[str], str]) -> bool:
    """True if argv[0] names the running executable ``exe``.

    A bare name (no slash) was found through a PATH that /proc does not record, so
    it cannot be checked and does not count.
    """
    return bool(argv) and "/" in argv[0] and realpath(argv[0]) == exe


def _codex_args(
    argv: Sequence[str], exe: str, realpath: Callable[[str], str]
) -> Sequence[str] | None:
    """The arguments a ``codex`` binary or script runs with; None if ``argv`` runs none.

    Either argv[0] is ``codex`` and the running executable, or argv[0] is the
    interpreter of a ``codex`` script run through its shebang (the test suite's fake):
    the kernel puts the script's path right after the interpreter and its one
    optional shebang argument, so a ``codex`` anywhere later is data, not the program.
    """
    if not _runs_argv0(argv, exe, realpath):
        return None
    if os.path.basename(argv[0]) == "codex":
        return argv[1:]
    script = 2 if len(argv) > 2 and argv[1].startswith("-") else 1
    if len(argv) > script and os.path.basename(argv[script]) == "codex":
        return argv[script + 1 :]
    return None


def _after_app_server(args: Sequence[str]) -> Sequence[str] | None:
    """The arguments after ``app-server``, or None without one."""
    if "app-server" not in args:
        return None
    return args[args.index("app-server") + 1 :]


def is_codex_app_server(argv: Sequence[str], exe: str, realpath: Callable[[str], str]) -> bool:
    """True iff a process running ``argv`` with executable ``exe`` is a Codex app-server.

    ``exe`` is the canonical path /proc/<pid>/exe names; ``realpath`` resolves a path
    as the process sees it, injected so that the decision is a function of values.
    ``codex app-server daemon ...`` is the Rust daemon's CLI or its updater, not a server.
    """
    args = _codex_args(argv, exe, realpath)
    rest = None if args is None else _after_app_server(args)
    return rest is not None and list(rest[:1]) != ["daemon"]


def find_executable(name: str, search_path: str, cwd: str) -> str | None:
    """Where ``execvp`` finds the bare ``name``: the first executable regular file
    ``<dir>/<name>`` over the directories of ``search_path``, a relative one (or the
    empty entry, meaning the current directory) taken against ``cwd``."""
    for directory in search_path.split(os.pathsep):
        candidate = os.path.join(cwd, directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _environ_value(pid: int, key: str) -> str | None:
    """``key`` in the environment ``pid`` was started with; None if absent or unreadable."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    prefix = os.fsencode(key) + b"="
    for entry in raw.split(b"\0"):
        if entry.startswith(prefix):
            return os.fsdecode(entry[len(prefix) :])
    return None


def with_argv0_from_path(pid: int, argv: tuple[str, ...]) -> tuple[str, ...]:
    """``argv`` with a bare argv[0] replaced by where ``pid``'s own PATH finds it.

    ``codex app-server`` typed in a shell, or run by a client through PATH, names its
    program without a slash, which ``_runs_argv0`` cannot check. The PATH the process
    was started with is normally the one its parent searched; should it not be, the
    file found is not the running executable and the argv still does not count, so a
    wrong guess can refuse a process but never pass one off as another. Without PATH,
    ``execvp`` searches ``os.defpath``.
    """
    if not argv or "/" in argv[0]:
        return argv
    search_path = _environ_value(pid, "PATH")
    found = find_executable(
        argv[0], os.defpath if search_path is None else search_path, f"/proc/{pid}/cwd"
    )
    return argv if found is None else (found, *argv[1:])


def runs_codex_app_server(pid: int, command: ProcessCommand) -> bool:
    """True iff ``command``, read from /proc for ``pid``, is a Codex app-server, with a
    bare argv[0] first looked up on the process's own PATH.

    This is adopt's check (SPEC §14.12), for a server the kit did not start. A legacy
    record's kind check (``_is_of_kind``) keeps the stricter ``is_codex_app_server``.
    """
    argv = with_argv0_from_path(pid, command.argv)
    return is_codex_app_server(argv, command.exe, _resolver(pid))


def is_kit_updater(argv: Sequence[str]) -> bool:
    """``<python> [options] -m updater ... run`` or the ``codex-daemon-updater`` script."""
    for i, arg in enumerate(argv[1:], 1):
        if arg == "-m":
            return list(argv[i + 1 : i + 2]) == ["updater"] and "run" in argv[i + 2 :]
        if arg == "-c":
            return False  # the rest is the code's data, not the interpreter's options
        if not arg.startswith("-"):
            return os.path.basename(arg) == "codex-daemon-updater" and "run" in argv[i + 1 :]
    return False


def is_updater(argv: Sequence[str], exe: str, realpath: Callable[[str], str]) -> bool:
    """True iff a process running ``argv`` with executable ``exe`` is an updater.

    Either the kit's (``<python> -m updater run``, as the CLI spawns it and as it
    re-execs itself, or the console script) or the Rust daemon's
    (``codex app-server daemon pid-update-loop``); both record themselves in
    ``app-server-updater.pid``. Arguments as for ``is_codex_app_server``.
    """
    args = _codex_args(argv, exe, realpath)
    if args is not None:
        rest = _after_app_server(args)
        return rest is not None and list(rest[:1]) == ["daemon"] and "pid-update-loop" in rest
    return _runs_argv0(argv, exe, realpath) and is_kit_updater(argv)


def _is_of_kind(snapshot: ProcessSnapshot, kind: ProcessKind) -> bool:
    """True iff /proc shows the process ``snapshot`` describes running as ``kind``."""
    command = read_command(snapshot.pid)
    # The command must belong to the snapshot's process, not to one that reused the
    # pid in between: the same start ticks after the read prove it.
    if command is None or start_ticks(snapshot.pid) != snapshot.identity.start_ticks:
        return False
    realpath = _resolver(snapshot.pid)
    match kind:
        case ProcessKind.APP_SERVER:
            return is_codex_app_server(command.argv, command.exe, realpath)
        case ProcessKind.UPDATER:
            return is_updater(command.argv, command.exe, realpath)


def record_matches(
    record: PidRecord,
    snapshot: ProcessSnapshot | None,
    *,
    kind: ProcessKind = ProcessKind.APP_SERVER,
) -> bool:
    """True iff ``record`` names the live process ``snapshot`` describes (SPEC §4.3).

    A legacy record (no ``processIdentity``) names a process by its start time to
    the second, which an unrelated process can share: it also needs the process to
    be of ``kind``, read from /proc. ``kind`` defaults to the app-server: the Rust
    dedicated layout's ``daemon.pid`` names one too.
    """
    if record.pid <= 1 or record.pid == os.getpid():
        return False
    identity = record.identity
    if isinstance(identity, LinuxIdentity) and identity.boot_id != boot_id():
        # A different boot proves staleness without looking at the pid at all.
        return False
    if snapshot is None or snapshot.pid != record.pid:
        return False
    if isinstance(identity, LinuxIdentity):
        return identity == snapshot.identity
    if identity is not None:
        return False  # a macOS identity never matches a Linux process
    return _start_time_matches(record.process_start_time, snapshot) and _is_of_kind(snapshot, kind)


def _start_time_matches(recorded: str, snapshot: ProcessSnapshot) -> bool:
    if recorded.strip() == snapshot.lstart:
        return True
    epoch_s = parse_lstart(recorded)
    # WSL2 re-derives the clock, so ps and /proc may disagree by a second or two
    # (upstream issue #44037).
    return epoch_s is not None and abs(epoch_s - snapshot.start_epoch_s) <= LEGACY_TOLERANCE_S
