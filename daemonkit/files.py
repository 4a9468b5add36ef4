"""Safe opening, reading and atomic writing of state files (SPEC §3.2-§3.4).

Every state file is opened with O_NOFOLLOW|O_CLOEXEC and checked with fstat on the
opened descriptor, so a symlink, a FIFO, a directory or another user's file is
refused before a byte is read or written through it.
"""

from __future__ import annotations

import errno
import os
import stat

from daemonkit.errors import HomeNotDirectoryError, StateDirError, UnsafeFileError
from daemonkit.hooks import crash_point

__all__ = [
    "FILE_MODE",
    "AtomicWriteError",
    "check_codex_home",
    "ensure_state_dir",
    "fsync_dir",
    "make_private_dirs",
    "open_state_file",
    "read_state_file",
    "refuse_unless_ours",
    "write_atomic",
]

FILE_MODE = 0o600
DIR_MODE = 0o700


def check_codex_home(path: str) -> None:
    """Refuse a CODEX_HOME that exists but is not a directory; a missing one is fine.

    Every command checks this first, so each fails with this one error naming the
    path, rather than with its own later symptom (a state directory it failed to
    create, warnings about pid files it cannot read, a clean ``notRunning``).
    """
    message = f"CODEX_HOME {path} is not a directory"
    try:
        info = os.stat(path)
    except NotADirectoryError as exc:  # a file above it: it can never be a directory
        raise HomeNotDirectoryError(message, path) from exc
    except OSError:
        # Missing: commands that write state create it. Unreadable: the command's
        # first access reports it with its own wording.
        return
    if not stat.S_ISDIR(info.st_mode):
        raise HomeNotDirectoryError(message, path)


def make_private_dirs(path: str) -> None:
    """Create ``path`` and every missing directory above it, each exactly 0700.

    ``os.makedirs`` gives its mode to the last level only, and mkdir's mode is
    filtered by the umask; a new CODEX_HOME and everything the kit makes in it must
    be private whatever the umask (SPEC §3.1). Existing levels are left as they are,
    and a symlink in the way (dangling or not) is never created through. Raises
    ``OSError`` for the caller to word.
    """
    missing: list[str] = []
    level = path
    while not os.path.lexists(level):
        missing.append(level)
        parent = os.path.dirname(level)
        if parent == level:
            break
        level = parent
    for level in reversed(missing):
        try:
            os.mkdir(level, DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by another process: its mode is not ours to set
        os.chmod(level, DIR_MODE)


def ensure_state_dir(path: str) -> None:
    """Create ``path`` (and missing parents) 0700, or tighten and vet an existing one."""
    try:
        make_private_dirs(path)
        info = os.stat(path)
    except OSError as exc:
        raise StateDirError(f"failed to create daemon state directory {path}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirError(f"failed to create daemon state directory {path}") from OSError(
            errno.ENOTDIR, os.strerror(errno.ENOTDIR)
        )
    euid = os.geteuid()
    if info.st_uid != euid:
        raise StateDirError(
            f"refusing to use daemon state directory {path}: owned by uid {info.st_uid}, "
            f"expected {euid}"
        )
    # An existing directory is only tightened, never loosened.
    if stat.S_IMODE(info.st_mode) & 0o077:
        try:
            os.chmod(path, DIR_MODE)
        except OSError as exc:
            raise StateDirError(f"failed to create daemon state directory {path}") from exc


def open_state_file(path: str, flags: int, mode: int = FILE_MODE) -> int:
    """Open a state file without following symlinks and check what was opened.

    O_NONBLOCK keeps a FIFO planted at ``path`` from blocking the open; the fstat
    check then refuses it. Raises ``UnsafeFileError`` for a symlink, a non-regular
    file or another user's file, and lets other ``OSError`` (ENOENT, EEXIST, ...)
    through for the caller to interpret.
    """
    # O_TRUNC would empty a foreign file before fstat could refuse it: truncate only
    # after the checks.
    truncate = bool(flags & os.O_TRUNC)
    open_flags = (flags & ~os.O_TRUNC) | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd, created = _open_noting_creation(path, open_flags, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(f"refusing to use {path}: it is a symbolic link", path) from None
        if exc.errno in (errno.ENXIO, errno.EISDIR):
            # A FIFO without a reader (opened for writing), or a directory.
            raise UnsafeFileError(f"refusing to use {path}: not a regular file", path) from None
        raise
    try:
        refuse_unless_ours(path, os.fstat(fd))
        if truncate:
            os.ftruncate(fd, 0)
        # The mode argument is filtered by the umask; state files are 0600 whatever
        # the caller's umask is (SPEC §3.2). A file that existed keeps its mode: the
        # Rust daemon's 0644 daemon.lock is not the kit's to change (SPEC §16).
        if created and stat.S_IMODE(os.fstat(fd).st_mode) != mode:
            os.fchmod(fd, mode)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_noting_creation(path: str, flags: int, mode: int) -> tuple[int, bool]:
    """``os.open``, and whether this call created the file.

    O_CREAT alone cannot tell, so it is split into O_CREAT|O_EXCL and a plain open,
    retried while the file appears and disappears between the two.
    """
    if not flags & os.O_CREAT or flags & os.O_EXCL:
        return os.open(path, flags, mode), bool(flags & os.O_CREAT)
    while True:
        try:
            return os.open(path, flags | os.O_EXCL, mode), True
        except FileExistsError:
            pass
        try:
            return os.open(path, flags & ~os.O_CREAT, mode), False
        except FileNotFoundError:
            continue


def refuse_unless_ours(path: str, info: os.stat_result, *, replacing: bool = False) -> None:
    """Raise ``UnsafeFileError`` unless the file ``info`` describes at ``path`` is ours.

    To use it (read, write, rotate), it must be a regular file owned by the effective
    uid, and an lstat'ed symlink is refused as such. To replace or unlink it
    (``replacing``), it must be owned by the effective uid and not a directory: our
    own symlink may be replaced, which rewrites the link, never its target.
    """
    if not replacing:
        if stat.S_ISLNK(info.st_mode):
            raise UnsafeFileError(f"refusing to use {path}: it is a symbolic link", path)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(f"refusing to use {path}: not a regular file", path)
    euid = os.geteuid()
    if info.st_uid != euid:
        raise UnsafeFileError(
            f"refusing to use {path}: owned by uid {info.st_uid}, expected {euid}", path
        )
    if replacing and stat.S_ISDIR(info.st_mode):
        raise UnsafeFileError(f"refusing to use {path}: not a regular file", path)


def read_state_file(path: str, limit: int = 1 << 20) -> bytes | None:
    """Return the contents of a state file, or None if it does not exist.

    At most ``limit`` bytes are read: state files are small, and a huge planted
    file must not exhaust memory; the caller's parser rejects truncated content.
    """
    try:
        fd = open_state_file(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        chunks: list[bytes] = []
        remaining = limit
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class AtomicWriteError(OSError):
    """Which step of an atomic write failed: ``"temp"`` (writing the temp file) or
    ``"replace"`` (renaming it onto the final name); the OS error is the cause."""

    def __init__(self, step: str, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.step = step


def _refuse_foreign(path: str) -> None:
    """Refuse to unlink or replace another user's file at ``path`` (SPEC §4.10 rule 5)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    refuse_unless_ours(path, info, replacing=True)


def write_atomic(
    path: str, tmp: str, data: bytes, *, durable: bool, crash_at: str | None = None
) -> None:
    """Write ``data`` to ``tmp`` (O_EXCL, 0600) and rename it onto ``path``.

    The caller holds the lock that protects ``path``, so a leftover ``tmp`` of ours is
    a crash's debris and is unlinked first (unlink never follows a symlink); another
    user's file at either name is refused. ``durable`` adds fsync of the file and of
    the directory (SPEC §3.4). Raises ``UnsafeFileError``, or ``AtomicWriteError``
    naming the failed step, for the caller to word as its spec says.
    """
    _refuse_foreign(tmp)
    _refuse_foreign(path)
    try:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        fd = open_state_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except UnsafeFileError:
        raise
    except OSError as exc:
        raise AtomicWriteError("temp", exc) from None
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if durable:
            os.fsync(fd)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise AtomicWriteError("temp", exc) from None
    finally:
        os.close(fd)
    if crash_at is not None:
        crash_point(crash_at)
    try:
        os.replace(tmp, path)
        if durable:
            fsync_dir(os.path.dirname(path))
    except OSError as exc:
        _unlink_quietly(tmp)
        raise AtomicWriteError("replace", exc) from None


def fsync_dir(path: str) -> None:
    """fsync a directory so a rename in it survives a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        # Best effort while an earlier error propagates; a leftover temp is removed
        # by the next writer, which holds the same lock.
        pass
