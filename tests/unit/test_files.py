"""Safe opening, atomic writing and the state directory (SPEC §3.2-§3.4, §13.6 rows 22-23)."""

from __future__ import annotations

import errno
import os
import resource
import signal
import stat
from typing import TYPE_CHECKING

import pytest

from daemonkit.errors import (
    HomeNotDirectoryError,
    StateDirError,
    UnsafeFileError,
    describe_exception,
)
from daemonkit.files import (
    check_codex_home,
    ensure_state_dir,
    make_private_dirs,
    open_state_file,
    read_state_file,
    write_atomic,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(30)

FOREIGN_UID = 54_321
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to plant foreign files")

READ = os.O_RDONLY
RDWR_CREATE = os.O_RDWR | os.O_CREAT
WRITE_CREATE_TRUNC = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
WRITE_CREATE_EXCL = os.O_WRONLY | os.O_CREAT | os.O_EXCL
FLAG_SETS = [READ, RDWR_CREATE, WRITE_CREATE_TRUNC]
FLAG_IDS = ["read", "rdwr-create (locks)", "write-create-trunc (logs)"]


@pytest.fixture(autouse=True)
def restore_umask() -> Iterator[None]:
    old = os.umask(0o022)
    os.umask(old)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: str | Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def open_and_close(path: str, flags: int) -> None:
    fd = open_state_file(path, flags)
    os.close(fd)


# -- open_state_file: refusals ----------------------------------------------------------


@pytest.mark.parametrize("flags", FLAG_SETS, ids=FLAG_IDS)
def test_symlink_is_refused_and_target_untouched(tmp_path: Path, flags: int) -> None:
    target = tmp_path / "target"
    target.write_text("precious")
    target.chmod(0o644)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(UnsafeFileError) as caught:
        open_and_close(str(link), flags)
    assert str(caught.value) == f"refusing to use {link}: it is a symbolic link"
    assert caught.value.path == str(link)
    assert target.read_text() == "precious"
    assert mode_of(target) == 0o644


@pytest.mark.parametrize("flags", FLAG_SETS, ids=FLAG_IDS)
def test_dangling_symlink_is_refused_and_nothing_created(tmp_path: Path, flags: int) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "missing")
    with pytest.raises(UnsafeFileError) as caught:
        open_and_close(str(link), flags)
    assert str(caught.value) == f"refusing to use {link}: it is a symbolic link"
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("flags", FLAG_SETS, ids=FLAG_IDS)
def test_fifo_is_refused_without_blocking(tmp_path: Path, flags: int) -> None:
    # No process ever opens the other end: a blocking open would hang until the timeout.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(UnsafeFileError) as caught:
        open_and_close(str(fifo), flags)
    assert str(caught.value) == f"refusing to use {fifo}: not a regular file"


@pytest.mark.parametrize("flags", FLAG_SETS, ids=FLAG_IDS)
def test_directory_is_refused(tmp_path: Path, flags: int) -> None:
    directory = tmp_path / "dir"
    directory.mkdir()
    with pytest.raises(UnsafeFileError) as caught:
        open_and_close(str(directory), flags)
    assert str(caught.value) == f"refusing to use {directory}: not a regular file"


def test_fifo_read_does_not_block_or_consume(tmp_path: Path) -> None:
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo, 0o600)
    with pytest.raises(UnsafeFileError):
        read_state_file(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@needs_root
@pytest.mark.parametrize("flags", FLAG_SETS, ids=FLAG_IDS)
def test_foreign_owned_file_is_refused_and_untouched(tmp_path: Path, flags: int) -> None:
    victim = tmp_path / "foreign"
    victim.write_text("someone else's data")
    victim.chmod(0o644)
    os.chown(victim, FOREIGN_UID, FOREIGN_UID)
    with pytest.raises(UnsafeFileError) as caught:
        open_and_close(str(victim), flags)
    assert str(caught.value) == (
        f"refusing to use {victim}: owned by uid {FOREIGN_UID}, expected {os.geteuid()}"
    )
    # "never writes through, truncates, chmods or deletes such a file" (SPEC §3.3)
    assert victim.read_text() == "someone else's data"
    assert mode_of(victim) == 0o644
    assert os.stat(victim).st_uid == FOREIGN_UID


@needs_root
def test_foreign_owned_empty_file_is_not_chmodded(tmp_path: Path) -> None:
    victim = tmp_path / "foreign.lock"
    victim.touch(0o644)
    victim.chmod(0o644)
    os.chown(victim, FOREIGN_UID, FOREIGN_UID)
    with pytest.raises(UnsafeFileError):
        open_and_close(str(victim), RDWR_CREATE)
    assert mode_of(victim) == 0o644


def test_missing_file_errors_pass_through(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_state_file(str(tmp_path / "absent"), READ)
    assert read_state_file(str(tmp_path / "absent")) is None


def test_exclusive_create_on_existing_file_passes_eexist_through(tmp_path: Path) -> None:
    existing = tmp_path / "x"
    existing.write_text("old")
    with pytest.raises(FileExistsError):
        open_state_file(str(existing), WRITE_CREATE_EXCL)
    assert existing.read_text() == "old"


# -- open_state_file: what it returns ---------------------------------------------------


def test_regular_file_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"content")
    fd = open_state_file(str(path), READ)
    try:
        assert os.read(fd, 100) == b"content"
        assert os.get_inheritable(fd) is False  # O_CLOEXEC
        assert os.get_blocking(fd) is True  # O_NONBLOCK was only for the open
    finally:
        os.close(fd)
    assert read_state_file(str(path)) == b"content"


def test_read_state_file_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"x" * 200_000)
    assert read_state_file(str(path), limit=100_000) == b"x" * 100_000
    assert read_state_file(str(path), limit=5) == b"xxxxx"


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077, 0o277, 0o777])
@pytest.mark.parametrize(
    "flags", [RDWR_CREATE, WRITE_CREATE_TRUNC, WRITE_CREATE_EXCL], ids=["lock", "log", "temp"]
)
def test_created_files_are_0600_whatever_the_umask(tmp_path: Path, mask: int, flags: int) -> None:
    path = tmp_path / "new"
    os.umask(mask)
    fd = open_state_file(str(path), flags)
    os.close(fd)
    assert mode_of(path) == 0o600


@pytest.mark.parametrize("existing_mode", [0o644, 0o640, 0o604, 0o600])
@pytest.mark.parametrize("size", [0, 4], ids=["empty", "non-empty"])
@pytest.mark.parametrize("flags", [RDWR_CREATE, WRITE_CREATE_TRUNC], ids=["lock", "log"])
def test_an_existing_file_keeps_its_mode(
    tmp_path: Path, existing_mode: int, size: int, flags: int
) -> None:
    # The Rust daemon creates daemon.lock 0644: opening it must not chmod it (SPEC §16).
    path = tmp_path / "daemon.lock"
    path.write_bytes(b"x" * size)
    path.chmod(existing_mode)
    os.umask(0)
    open_and_close(str(path), flags)
    assert mode_of(path) == existing_mode


def test_existing_file_contents_are_kept_by_rdwr_create(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    path.write_text("kept")
    open_and_close(str(path), RDWR_CREATE)
    assert path.read_text() == "kept"


# -- write_atomic (SPEC §3.4) -----------------------------------------------------------


@pytest.mark.parametrize("durable", [False, True])
def test_write_atomic_writes_0600_and_leaves_no_temp(tmp_path: Path, durable: bool) -> None:
    path, tmp = tmp_path / "f.json", tmp_path / "f.json.tmp"
    os.umask(0)
    write_atomic(str(path), str(tmp), b'{"a":1}', durable=durable)
    assert path.read_bytes() == b'{"a":1}'
    assert mode_of(path) == 0o600
    assert not os.path.lexists(tmp)


def test_write_atomic_replaces_the_inode(tmp_path: Path) -> None:
    path, tmp = tmp_path / "f", tmp_path / "f.tmp"
    path.write_bytes(b"old")
    path.chmod(0o644)
    old_inode = os.stat(path).st_ino
    with open(path, "rb") as reader:  # a reader of the old file still sees all of it
        write_atomic(str(path), str(tmp), b"new contents", durable=False)
        assert reader.read() == b"old"
    assert os.stat(path).st_ino != old_inode
    assert path.read_bytes() == b"new contents"
    assert mode_of(path) == 0o600


def test_write_atomic_removes_a_leftover_temp(tmp_path: Path) -> None:
    path, tmp = tmp_path / "f", tmp_path / "f.tmp"
    tmp.write_bytes(b"debris from a crash, longer than the new data")
    write_atomic(str(path), str(tmp), b"new", durable=True)
    assert path.read_bytes() == b"new"
    assert not os.path.lexists(tmp)


def test_write_atomic_never_writes_through_a_symlinked_temp(tmp_path: Path) -> None:
    path, tmp, victim = tmp_path / "f", tmp_path / "f.tmp", tmp_path / "victim"
    victim.write_bytes(b"precious")
    tmp.symlink_to(victim)
    write_atomic(str(path), str(tmp), b"new", durable=False)
    assert victim.read_bytes() == b"precious"
    assert path.read_bytes() == b"new"
    assert not os.path.lexists(tmp)


def test_write_atomic_replaces_a_symlink_at_the_target_not_its_referent(tmp_path: Path) -> None:
    path, tmp, victim = tmp_path / "f", tmp_path / "f.tmp", tmp_path / "victim"
    victim.write_bytes(b"precious")
    path.symlink_to(victim)
    write_atomic(str(path), str(tmp), b"new", durable=False)
    assert victim.read_bytes() == b"precious"
    assert not path.is_symlink()
    assert path.read_bytes() == b"new"


def test_write_atomic_failure_to_create_temp_keeps_old_file(tmp_path: Path) -> None:
    path, tmp = tmp_path / "f", tmp_path / "f.tmp"
    path.write_bytes(b"old contents")
    tmp.mkdir()  # the temp cannot be unlinked or created
    (tmp / "inside").write_text("x")
    with pytest.raises(OSError) as caught:
        write_atomic(str(path), str(tmp), b"new contents", durable=True)
    assert "[Errno" not in describe_exception(caught.value)
    assert path.read_bytes() == b"old contents"
    assert (tmp / "inside").read_text() == "x"


def test_write_atomic_failure_mid_write_keeps_old_file_and_removes_temp(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes write(2) fail with EFBIG part-way through the data.
    path, tmp = tmp_path / "f", tmp_path / "f.tmp"
    path.write_bytes(b"old contents")
    limit = 64 * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(OSError) as caught:
            write_atomic(str(path), str(tmp), b"x" * (4 * limit), durable=True)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert caught.value.errno == errno.EFBIG
    assert path.read_bytes() == b"old contents"
    assert not os.path.lexists(tmp)


def test_write_atomic_rename_failure_keeps_old_file_and_removes_temp(tmp_path: Path) -> None:
    # rename(2) of a file onto a non-empty directory fails (EISDIR).
    path, tmp = tmp_path / "f", tmp_path / "f.tmp"
    path.mkdir()
    (path / "keep").write_text("x")
    with pytest.raises(OSError):
        write_atomic(str(path), str(tmp), b"new", durable=False)
    assert (path / "keep").read_text() == "x"
    assert not os.path.lexists(tmp)


# -- ensure_state_dir (SPEC §3.2) -------------------------------------------------------


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077, 0o277])
def test_state_dir_created_0700(tmp_path: Path, mask: int) -> None:
    state = tmp_path / "a" / "h" / "app-server-daemon"
    os.umask(mask)
    ensure_state_dir(str(state))
    assert state.is_dir()
    for level in (tmp_path / "a", tmp_path / "a" / "h", state):
        assert mode_of(level) == 0o700, level


# -- check_codex_home (issue 10) --------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "directory", "symlink-to-directory"])
def test_a_codex_home_that_is_or_can_become_a_directory_passes(tmp_path: Path, kind: str) -> None:
    home = tmp_path / "h"
    if kind == "directory":
        home.mkdir()
    elif kind == "symlink-to-directory":
        home.symlink_to(tmp_path)
    check_codex_home(str(home))
    assert os.path.lexists(home) == (kind != "missing")  # the check creates nothing


@pytest.mark.parametrize("kind", ["file", "symlink-to-file", "fifo"])
def test_a_codex_home_that_is_not_a_directory_is_refused(tmp_path: Path, kind: str) -> None:
    home = tmp_path / "h"
    if kind == "file":
        home.write_text("")
    elif kind == "symlink-to-file":
        (tmp_path / "f").write_text("")
        home.symlink_to(tmp_path / "f")
    else:
        os.mkfifo(home)
    with pytest.raises(HomeNotDirectoryError) as caught:
        check_codex_home(str(home))
    assert caught.value.message == f"CODEX_HOME {home} is not a directory"
    assert caught.value.path == str(home)
    assert caught.value.__cause__ is None


def test_a_codex_home_below_a_file_is_refused_with_the_os_cause(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    home = tmp_path / "f" / "h"
    with pytest.raises(HomeNotDirectoryError) as caught:
        check_codex_home(str(home))
    assert caught.value.message == f"CODEX_HOME {home} is not a directory"
    assert describe_exception(caught.value.__cause__ or Exception()) == (
        "Not a directory (os error 20)"
    )


# -- make_private_dirs (SPEC §3.1) ---------------------------------------------------------


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o277])
def test_every_missing_level_is_created_0700(tmp_path: Path, mask: int) -> None:
    existing = tmp_path / "e"
    existing.mkdir()
    existing.chmod(0o755)
    leaf = existing / "h" / "packages" / "standalone" / "releases"
    os.umask(mask)
    make_private_dirs(str(leaf))
    assert mode_of(existing) == 0o755  # not created here: left as it was
    for level in (leaf, *list(leaf.parents)[:3]):
        assert mode_of(level) == 0o700, level


def test_existing_path_is_left_alone(tmp_path: Path) -> None:
    leaf = tmp_path / "d"
    leaf.mkdir()
    leaf.chmod(0o751)
    make_private_dirs(str(leaf))
    assert mode_of(leaf) == 0o751


def test_nothing_is_created_through_a_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError):
        make_private_dirs(str(tmp_path / "link" / "h"))
    assert not (tmp_path / "elsewhere").exists()


def test_a_file_in_the_way_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError):
        make_private_dirs(str(tmp_path / "f" / "h"))


@pytest.mark.parametrize("loose", [0o755, 0o750, 0o707, 0o777, 0o701])
def test_state_dir_tightened(tmp_path: Path, loose: int) -> None:
    state = tmp_path / "s"
    state.mkdir()
    state.chmod(loose)
    (state / "keep").write_text("x")
    ensure_state_dir(str(state))
    assert mode_of(state) == 0o700
    assert (state / "keep").read_text() == "x"


def test_state_dir_already_0700_is_left_alone(tmp_path: Path) -> None:
    state = tmp_path / "s"
    state.mkdir(mode=0o700)
    state.chmod(0o700)
    before = os.stat(state).st_ctime_ns
    ensure_state_dir(str(state))
    assert mode_of(state) == 0o700
    assert os.stat(state).st_ctime_ns == before


def test_state_dir_through_a_symlink_is_accepted(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    real.chmod(0o755)
    link = tmp_path / "link"
    link.symlink_to(real)
    ensure_state_dir(str(link))
    assert mode_of(real) == 0o700


def test_state_dir_path_is_a_file(tmp_path: Path) -> None:
    state = tmp_path / "s"
    state.write_text("not a dir")
    with pytest.raises(StateDirError) as caught:
        ensure_state_dir(str(state))
    assert caught.value.message == f"failed to create daemon state directory {state}"
    assert caught.value.__cause__ is not None
    assert state.read_text() == "not a dir"


def test_state_dir_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "h").write_text("")
    state = tmp_path / "h" / "app-server-daemon"
    with pytest.raises(StateDirError) as caught:
        ensure_state_dir(str(state))
    assert caught.value.message == f"failed to create daemon state directory {state}"
    assert describe_exception(caught.value.__cause__ or Exception()) == (
        "Not a directory (os error 20)"
    )


@needs_root
def test_foreign_state_dir_is_refused_and_not_chmodded(tmp_path: Path) -> None:
    state = tmp_path / "s"
    state.mkdir()
    state.chmod(0o755)
    os.chown(state, FOREIGN_UID, FOREIGN_UID)
    with pytest.raises(StateDirError) as caught:
        ensure_state_dir(str(state))
    assert caught.value.message == (
        f"refusing to use daemon state directory {state}: owned by uid {FOREIGN_UID}, "
        f"expected {os.geteuid()}"
    )
    assert mode_of(state) == 0o755
