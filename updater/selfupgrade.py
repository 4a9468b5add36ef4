"""Noticing that the kit on disk is no longer the code this updater runs (SPEC §14.7).

Upstream's updater re-execs because it *is* the binary that was updated; ours is
Python, so it watches its own code instead (upstream issue #34721: an old updater
keeps running after a CLI update). The fingerprint of "the code this process runs" is
the kit's version as written in ``daemonkit/__init__.py`` (read from disk, never the
imported constant) and ``(path, size, mtime_ns, inode)`` of:

- every ``.py`` file in the directories the running ``daemonkit`` and ``updater``
  packages were imported from (``__pycache__`` is left out: Python writes it itself);
- every file of the installed distribution's metadata next to them
  (``codex_daemonkit-<version>.dist-info``/``.egg-info``: pip rewrites it, and renames
  it with the version, on every upgrade).

A file that is rewritten, replaced (a new inode: package managers rename new files into
place), deleted or added changes the fingerprint; a file that could not be read and did
not exist before does not.

When to exec (the choice, and why)::

    unchanged --the disk differs--> settling (SETTLE_S of quiet, not scaled)
    settling --the disk differs again--> settling (the wait starts over)
    settling --SETTLE_S with the same fingerprint--> due
    due --every file compiles and the new code imports--> the loop re-execs when idle
    due --a file fails to compile or import / the exec fails--> refused until the next period

``pip install -U`` and ``apt upgrade`` write a package's files one after the other;
exec'ing in the middle would start the new image on a half-written tree and kill the
updater with an ImportError (no supervision until a command starts another). So a
change must hold still for ``SETTLE_S`` first: two equal fingerprints that far apart,
with none different in between; pip and dpkg write a package of this size in well
under that.
Before the exec every ``.py`` file of the new tree must also compile, and a child
interpreter must import the new updater's entry point (``updater.loop.run_updater``)
from it: a file cut short at a line boundary compiles and still lacks what the new
image needs (seen: a half-written ``loop.py`` without ``run_updater`` killed the
updater at its exec). Such a tree is tried again only at the next periodic check, by
which time the install has finished or failed for good.
"""

from __future__ import annotations

import os
import re
import sys
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = [
    "SELF_CHECK_S",
    "SETTLE_S",
    "CodeFingerprint",
    "FileStamp",
    "SelfUpgrade",
    "find_unloadable",
    "kit_package_dirs",
    "take_fingerprint",
    "upgrade_details",
]

SELF_CHECK_S = 10 * 60.0  # at least this often (scaled in tests, SPEC §14.10)
SETTLE_S = 2.0  # quiet time a changed tree needs before we exec into it; never scaled
# What the exec'd image imports first (updater/__main__.py); a child tries it.
TRIAL_IMPORT = "from updater.loop import run_updater"
TRIAL_IMPORT_TIMEOUT_S = 30.0
CHANGED_SHOWN = 10  # changed files named in the self_upgrade event

_VERSION = re.compile(rb"""^__version__\s*=\s*["']([^"'\n]+)["']""", re.MULTILINE)
# codex_daemonkit-0.1.0.dist-info (pip), codex_daemonkit-0.1.0[-py3.11].egg-info (distros)
_METADATA_DIR = re.compile(r"^codex[-_]daemonkit(-.+)?\.(dist|egg)-info$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FileStamp:
    path: str
    size: int
    mtime_ns: int
    ino: int


@dataclass(frozen=True, slots=True)
class CodeFingerprint:
    version: str | None  # None: daemonkit/__init__.py unreadable or without a version
    files: frozenset[FileStamp]

    def changed_files(self, other: CodeFingerprint) -> list[str]:
        """The files added, removed or rewritten between the two, as ``package/file``."""
        return sorted({_shown(stamp.path) for stamp in self.files ^ other.files})


def _shown(path: str) -> str:
    return os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))


def kit_package_dirs() -> tuple[str, ...]:
    """The directories this process imported ``daemonkit`` and ``updater`` from."""
    import daemonkit  # noqa: PLC0415 - the packages themselves, for their paths
    import updater  # noqa: PLC0415

    return (
        os.path.dirname(os.path.abspath(daemonkit.__file__)),
        os.path.dirname(os.path.abspath(updater.__file__)),
    )


def _entries(directory: str) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            yield from it
    except OSError:
        return  # gone (mid-reinstall) or unreadable: its files count as absent


def _stamps(directory: str, wanted: Callable[[os.DirEntry[str]], bool]) -> Iterator[FileStamp]:
    for entry in _entries(directory):
        if not wanted(entry):
            continue
        try:
            info = entry.stat()  # follows a symlinked install to what Python reads
        except OSError:
            continue  # removed since the listing
        yield FileStamp(entry.path, info.st_size, info.st_mtime_ns, info.st_ino)


def _is_module(entry: os.DirEntry[str]) -> bool:
    return entry.name.endswith(".py")


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _read_version(init_path: str) -> str | None:
    try:
        with open(init_path, "rb") as f:
            found = _VERSION.search(f.read(64 * 1024))
    except OSError:
        return None
    return None if found is None else found.group(1).decode("utf-8", "replace")


def take_fingerprint(package_dirs: Sequence[str]) -> CodeFingerprint:
    """What the kit at ``package_dirs`` (``daemonkit``'s first) looks like on disk now."""
    stamps: list[FileStamp] = []
    for directory in package_dirs:
        stamps += _stamps(directory, _is_module)
    for parent in sorted({os.path.dirname(d) for d in package_dirs}):
        for entry in _entries(parent):
            if _METADATA_DIR.match(entry.name):
                stamps += _stamps(entry.path, _is_file)
    version = _read_version(os.path.join(package_dirs[0], "__init__.py"))
    return CodeFingerprint(version=version, files=frozenset(stamps))


def find_unloadable(package_dirs: Sequence[str]) -> str | None:
    """Why the kit at ``package_dirs`` cannot be imported as it stands, or None.

    What a half-written install breaks: a package without ``__init__.py``, a module
    that cannot be read or does not compile, or an entry point the new image would not
    find (tried in a child interpreter, so this image never imports the new code).
    """
    problem = _find_uncompilable(package_dirs)
    return problem if problem is not None else _find_unimportable()


def _find_unimportable() -> str | None:
    """Import the updater's entry point as the exec'd image will, in a child."""
    import subprocess  # noqa: PLC0415 - only when an upgrade is due

    try:
        done = subprocess.run(
            [sys.executable, "-c", TRIAL_IMPORT],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TRIAL_IMPORT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the new code could not be tried: {exc}"
    if done.returncode == 0:
        return None
    lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return f"the new code does not import: {lines[-1] if lines else done.returncode}"


def _find_uncompilable(package_dirs: Sequence[str]) -> str | None:
    for directory in package_dirs:
        if not os.path.isfile(os.path.join(directory, "__init__.py")):
            return f"{os.path.join(directory, '__init__.py')} is missing"
        for entry in sorted(_entries(directory), key=lambda e: e.name):
            if not _is_module(entry):
                continue
            try:
                with open(entry.path, "rb") as f:
                    source = f.read()
                with warnings.catch_warnings():
                    # The new image reports its own warnings when it imports the file.
                    warnings.simplefilter("ignore")
                    compile(source, entry.path, "exec", dont_inherit=True)
            except (OSError, SyntaxError, ValueError) as exc:
                return f"{entry.path}: {exc}"
    return None


def upgrade_details(old: CodeFingerprint, new: CodeFingerprint) -> dict[str, object]:
    """The ``self_upgrade`` event's details: versions and the first changed files."""
    changed = old.changed_files(new)
    return {
        "fromVersion": old.version,
        "toVersion": new.version,
        "changedFiles": len(changed),
        "changed": changed[:CHANGED_SHOWN],
    }


class SelfUpgrade:
    """Whether the updater should re-exec onto the kit on disk: look, let it settle.

    ``check()`` is called at every wake-up of the loop; ``deadline()`` tells the loop
    when to wake up for it at the latest. The disk and the clock are injected.
    """

    def __init__(
        self,
        look: Callable[[], CodeFingerprint],
        *,
        period_s: float,
        settle_s: float = SETTLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._look = look
        self._period_s = period_s
        self._settle_s = settle_s
        self._clock = clock
        self.running = look()  # the code this image started from
        self._seen: CodeFingerprint | None = None  # a changed tree, settling or due
        self._settled_at: float | None = None  # None once _seen has held still
        self._refused: CodeFingerprint | None = None
        self._refused_until = 0.0
        self._next_check_at = clock() + period_s

    def deadline(self) -> float:
        """The monotonic time of the next look the loop must wake up for."""
        if self._settled_at is None:
            return self._next_check_at
        return min(self._next_check_at, self._settled_at)

    def check(self) -> CodeFingerprint | None:
        """Look at the disk; the changed code once it held still, else None."""
        now = self._clock()
        self._next_check_at = now + self._period_s
        seen = self._look()
        if seen == self.running:
            self._seen = self._settled_at = None  # unchanged, or changed back
            return None
        if seen != self._seen:
            # unchanged -> settling, or settling -> settling: the install is still writing.
            self._seen, self._settled_at = seen, now + self._settle_s
            return None
        if self._settled_at is not None:
            if now < self._settled_at:
                return None
            self._settled_at = None  # settling -> due
        if seen == self._refused and now < self._refused_until:
            return None
        return seen

    def refuse(self, fingerprint: CodeFingerprint) -> None:
        """Do not offer ``fingerprint`` again before the next periodic check."""
        self._refused = fingerprint
        self._refused_until = self._next_check_at
