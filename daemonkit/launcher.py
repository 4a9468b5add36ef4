"""Spawn a detached process: fork, python-daemon's double fork, exec (SPEC §4.7).

The launcher forks a child that enters ``daemon.DaemonContext`` (fork, setsid, fork).
The final process makes itself a process-group leader, resets its signal state, runs
the caller's ``before_exec`` (the pid backend publishes the record there, so a CLI
killed right after the spawn cannot leave an unrecorded server) and reports over a
close-on-exec pipe before it execs::

    P<pid> <startTicks>\\n     written just before execve
    R<errno> <message>\\n      before_exec failed (its DaemonError message); _exit(127)
    E<errno> <text>\\n         anything else failed, exec included; then _exit(127)

EOF on the pipe after a ``P`` line means the exec succeeded (the pipe closed on exec).
With ``wrap_exec`` the final process execs a wrapper that execs ``argv`` in its place
(``systemd-run --scope``, SPEC §15.2): the pid, and so the record, stay the same.
The launcher reaps only its own child (the first of the three forks): the final
process is re-parented to init and never becomes a zombie of a long-lived kit process.
"""

from __future__ import annotations

import errno
import os
import signal
import sys

from daemonkit.errors import DaemonError, PidFileError, SpawnError
from daemonkit.procinfo import read_stat
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from types import ModuleType
    from typing import Final

__all__ = ["Spawned", "spawn_detached"]

_EXIT_FAILED = 127


class Spawned(Value):
    __slots__ = ("pid", "start_ticks")

    def __init__(self, *, pid: int, start_ticks: int) -> None:
        self.pid: Final = pid
        self.start_ticks: Final = start_ticks


class _Fd:
    """A stand-in for sys.stdin/out/err when the CLI was started with one closed.

    python-daemon redirects a standard stream by ``dup2`` onto ``stream.fileno()``.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd


def spawn_detached(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    stderr_fd: int,
    cwd: str,
    what: str = "app-server",
    before_exec: Callable[[int, int], None] | None = None,
    wrap_exec: Callable[[int, Sequence[str]], Sequence[str]] | None = None,
) -> Spawned:
    """Start ``argv`` as a detached session member and group leader.

    ``before_exec(pid, start_ticks)`` runs in the final process just before exec; a
    ``DaemonError`` it raises comes back as ``PidFileError`` with its message.
    ``wrap_exec(pid, argv)``, if given, returns what the final process execs instead:
    a command that execs ``argv`` in place, keeping the pid. The caller blocks
    SIGINT/SIGTERM/SIGHUP around this call. Raises ``SpawnError`` with the child's
    errno if anything else failed.
    """
    umask = os.umask(0o077)
    os.umask(umask)
    opened: list[int] = []
    try:
        # Imported here: python-daemon is needed only on spawn paths, and the CLI's
        # read-only commands must start fast and work without it (SPEC §11, §12.2).
        import daemon  # noqa: PLC0415

        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        opened += [read_fd, write_fd]
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        opened.append(devnull)
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the forked child, reported over the pipe
            os.close(read_fd)
            _become_daemon_and_exec(
                daemon,
                argv,
                env,
                cwd,
                umask,
                devnull,
                stderr_fd,
                write_fd,
                before_exec,
                wrap_exec,
            )
        os.close(write_fd)
        opened.remove(write_fd)
        report = _read_all(read_fd)
        os.waitpid(child, 0)
    except OSError as exc:
        raise SpawnError(f"failed to spawn detached {what} process using {argv[0]}") from exc
    finally:
        for fd in opened:
            os.close(fd)
    return _parse_report(report, argv[0], what)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_report(report: bytes, exe: str, what: str) -> Spawned:
    spawned: Spawned | None = None
    for line in report.decode("utf-8", "replace").splitlines():
        if line.startswith("R"):
            code, _, text = line[1:].partition(" ")
            number = int(code) if code.isdigit() else errno.EIO
            raise PidFileError(text) from OSError(number, os.strerror(number))
        if line.startswith("E"):
            code, _, text = line[1:].partition(" ")
            number = int(code) if code.isdigit() else errno.EIO
            raise SpawnError(f"failed to spawn detached {what} process using {exe}") from OSError(
                number, text or os.strerror(number)
            )
        if line.startswith("P"):
            pid_text, _, ticks_text = line[1:].partition(" ")
            spawned = Spawned(pid=int(pid_text), start_ticks=int(ticks_text))
    if spawned is None:
        raise SpawnError(f"spawned {what} process has no pid")
    return spawned


def _become_daemon_and_exec(
    daemon_module: ModuleType,
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    umask: int,
    devnull: int,
    stderr_fd: int,
    report_fd: int,
    before_exec: Callable[[int, int], None] | None,
    wrap_exec: Callable[[int, Sequence[str]], Sequence[str]] | None,
) -> None:
    """Run in the forked child; never returns."""
    try:
        for index, name in enumerate(("stdin", "stdout", "stderr")):
            setattr(sys, name, _Fd(index))
        with (
            os.fdopen(devnull, "r+b", closefd=False) as null,
            os.fdopen(stderr_fd, "ab", closefd=False) as log,
        ):
            context = daemon_module.DaemonContext(
                detach_process=True,
                umask=umask,
                prevent_core=False,
                signal_map={},
                working_directory=cwd,
                files_preserve=[report_fd],
                stdin=null,
                stdout=null,
                stderr=log,
            )
            context.open()
        # Now the grandchild: a session member, not its leader, so it can lead a
        # process group of its own and can never acquire a controlling terminal.
        os.setpgid(0, 0)
        ticks = read_stat("self").start_ticks
        if before_exec is not None:
            # Before the signal reset: Python's ignored SIGXFSZ turns a write past
            # RLIMIT_FSIZE into EFBIG we can report, not a silent death.
            try:
                before_exec(os.getpid(), ticks)
            except DaemonError as exc:
                _report_record_failure(report_fd, exc)
                os._exit(_EXIT_FAILED)
        final = list(argv) if wrap_exec is None else list(wrap_exec(os.getpid(), argv))
        _reset_signals()
        for fd in (0, 1, 2):
            os.set_inheritable(fd, True)
        os.write(report_fd, f"P{os.getpid()} {ticks}\n".encode())
        os.execve(final[0], final, dict(env))  # noqa: S606 - exec is the launcher's job
    except BaseException as exc:
        _report_failure(report_fd, exc)
    os._exit(_EXIT_FAILED)


def _report_record_failure(report_fd: int, exc: DaemonError) -> None:
    cause = exc.__cause__
    number = cause.errno if isinstance(cause, OSError) and cause.errno else errno.EIO
    try:
        os.write(report_fd, f"R{number} {exc.message}\n".encode("utf-8", "replace"))
    except OSError:
        pass


def _report_failure(report_fd: int, exc: BaseException) -> None:
    cause: BaseException | None = exc
    while cause is not None and not (isinstance(cause, OSError) and cause.errno):
        cause = cause.__cause__
    if isinstance(cause, OSError) and cause.errno:
        line = f"E{cause.errno} {os.strerror(cause.errno)}\n"
    else:
        line = f"E{errno.EIO} {exc}\n"
    try:
        os.write(report_fd, line.encode("utf-8", "replace"))
    except OSError:
        pass


def _reset_signals() -> None:
    """Unblock every signal and restore default dispositions.

    Python ignores SIGPIPE and SIGXFSZ, and an ignored disposition survives exec; the
    server must see a clean SigIgn/SigBlk (SPEC §4.7, §13.2 row 9).
    """
    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):
            continue
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
