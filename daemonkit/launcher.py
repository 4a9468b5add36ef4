"""Spawn a detached process: fork, python-daemon's double fork, exec (SPEC §4.7).

The launcher forks a child that enters ``daemon.DaemonContext`` (fork, setsid, fork).
The final process makes itself a process-group leader, resets its signal state and
reports over a close-on-exec pipe before it execs::

    P<pid> <startTicks>\\n     written just before execve
    E<errno> <text>\\n         written if anything fails; then _exit(127)

EOF on the pipe after a ``P`` line means the exec succeeded (the pipe closed on exec).
The launcher reaps only its own child (the first of the three forks): the final
process is re-parented to init and never becomes a zombie of a long-lived kit process.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from daemonkit.errors import SpawnError
from daemonkit.files import open_state_file

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import ModuleType

__all__ = ["Spawned", "open_log_for_spawn", "spawn_detached", "working_directory"]

_EXIT_FAILED = 127


@dataclass(frozen=True, slots=True, kw_only=True)
class Spawned:
    pid: int
    start_ticks: int


class _Fd:
    """A stand-in for sys.stdin/out/err when the CLI was started with one closed.

    python-daemon redirects a standard stream by ``dup2`` onto ``stream.fileno()``.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd


def working_directory(environ: Mapping[str, str]) -> str:
    """$HOME if it is a directory, else / : the same wherever the CLI was run."""
    home = environ.get("HOME", "")
    return home if home and os.path.isdir(home) else "/"


def open_log_for_spawn(log: str, previous: str) -> int:
    """Rotate ``log`` to ``previous`` and create it anew, 0600 (SPEC §4.9)."""
    try:
        os.rename(log, previous)
    except FileNotFoundError:
        pass
    return open_state_file(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)


def spawn_detached(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    stderr_fd: int,
    cwd: str,
    what: str = "app-server",
) -> Spawned:
    """Start ``argv`` as a detached session member and group leader.

    The caller blocks SIGINT/SIGTERM/SIGHUP around this call and the publishing of
    the pid record. Raises ``SpawnError`` with the child's errno if exec failed.
    """
    # Imported here: python-daemon is needed only on spawn paths, and the CLI's
    # read-only commands must start fast and work without it (SPEC §11, §12.2).
    import daemon  # noqa: PLC0415

    umask = os.umask(0o077)
    os.umask(umask)
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the forked child, reported over the pipe
            os.close(read_fd)
            _become_daemon_and_exec(daemon, argv, env, cwd, umask, devnull, stderr_fd, write_fd)
        os.close(write_fd)
        write_fd = -1
        report = _read_all(read_fd)
        os.waitpid(child, 0)
    finally:
        os.close(read_fd)
        os.close(devnull)
        if write_fd >= 0:
            os.close(write_fd)
    return _parse_report(report, argv[0], what)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_report(report: bytes, exe: str, what: str) -> Spawned:
    spawned: Spawned | None = None
    for line in report.decode("utf-8", "replace").splitlines():
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
        _reset_signals()
        for fd in (0, 1, 2):
            os.set_inheritable(fd, True)
        ticks = _own_start_ticks()
        os.write(report_fd, f"P{os.getpid()} {ticks}\n".encode())
        os.execve(argv[0], list(argv), dict(env))  # noqa: S606 - exec is the launcher's job
    except BaseException as exc:
        _report_failure(report_fd, exc)
    os._exit(_EXIT_FAILED)


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


def _own_start_ticks() -> int:
    with open("/proc/self/stat", "rb") as f:
        data = f.read()
    return int(data[data.rfind(b")") + 2 :].split()[19])
