"""The updater's view of its own code on disk, and when it re-execs onto a change (SPEC §14.7).

Fingerprints are taken of a small fake kit in a temporary directory; the settle and
refuse decisions run on an injected clock and an injected sequence of fingerprints.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from updater.selfupgrade import (
    CodeFingerprint,
    FileStamp,
    SelfUpgrade,
    find_unloadable,
    kit_package_dirs,
    take_fingerprint,
    upgrade_details,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def kit(tmp_path: Path) -> tuple[str, str]:
    """``daemonkit`` and ``updater`` packages as a site-packages directory holds them."""
    for package, modules in (("daemonkit", ("cli.py",)), ("updater", ("__main__.py", "loop.py"))):
        (tmp_path / package).mkdir()
        for module in modules:
            (tmp_path / package / module).write_text(f"NAME = {module!r}\n")
    (tmp_path / "daemonkit" / "__init__.py").write_text('__version__ = "0.1.0"\n')
    (tmp_path / "updater" / "__init__.py").write_text("")
    return str(tmp_path / "daemonkit"), str(tmp_path / "updater")


def bump_mtime(path: str) -> None:
    info = os.stat(path)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))


def test_an_untouched_kit_keeps_its_fingerprint(kit: tuple[str, str]) -> None:
    before = take_fingerprint(kit)
    assert before.version == "0.1.0"
    assert {os.path.basename(stamp.path) for stamp in before.files} == {
        "__init__.py",
        "cli.py",
        "__main__.py",
        "loop.py",
    }
    # Python's own byte-code cache and files that are not modules are not the code.
    os.mkdir(os.path.join(kit[1], "__pycache__"))
    with open(os.path.join(kit[1], "__pycache__", "loop.cpython-311.pyc"), "wb") as f:
        f.write(b"\0")
    with open(os.path.join(kit[0], "py.typed"), "w") as f:
        f.write("")
    assert take_fingerprint(kit) == before


def rewrite(path: str) -> None:
    with open(path, "a") as f:
        f.write("# changed\n")


def replace_keeping_size_and_mtime(path: str) -> None:
    """A package manager's write: a new file renamed over the old, same bytes and times."""
    info = os.stat(path)
    with open(path, "rb") as f:
        data = f.read()
    tmp = path + ".dpkg-new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.utime(tmp, ns=(info.st_atime_ns, info.st_mtime_ns))
    os.replace(tmp, path)


def add_module(directory: str) -> None:
    with open(os.path.join(directory, "new.py"), "w") as f:
        f.write("")


@pytest.mark.parametrize(
    ("change", "changed"),
    [
        (lambda kit: rewrite(os.path.join(kit[1], "loop.py")), ["updater/loop.py"]),
        (lambda kit: bump_mtime(os.path.join(kit[0], "cli.py")), ["daemonkit/cli.py"]),
        (
            lambda kit: replace_keeping_size_and_mtime(os.path.join(kit[1], "loop.py")),
            ["updater/loop.py"],
        ),
        (lambda kit: os.unlink(os.path.join(kit[0], "cli.py")), ["daemonkit/cli.py"]),
        (lambda kit: add_module(kit[1]), ["updater/new.py"]),
    ],
    ids=["rewritten", "touched", "new-inode", "deleted", "added"],
)
def test_any_change_to_a_module_changes_the_fingerprint(
    kit: tuple[str, str], change: Callable[[tuple[str, str]], None], changed: list[str]
) -> None:
    before = take_fingerprint(kit)
    change(kit)
    after = take_fingerprint(kit)
    assert after != before
    assert before.changed_files(after) == changed


def test_the_version_is_read_from_disk(kit: tuple[str, str]) -> None:
    before = take_fingerprint(kit)
    with open(os.path.join(kit[0], "__init__.py"), "w") as f:
        f.write('"""doc"""\n\n# a comment\n__version__ = "0.2.0"\n')
    after = take_fingerprint(kit)
    assert after.version == "0.2.0"
    assert upgrade_details(before, after) == {
        "fromVersion": "0.1.0",
        "toVersion": "0.2.0",
        "changedFiles": 1,
        "changed": ["daemonkit/__init__.py"],
    }


def test_a_removed_package_counts_as_changed_and_is_not_loadable(kit: tuple[str, str]) -> None:
    before = take_fingerprint(kit)
    for name in os.listdir(kit[1]):
        os.unlink(os.path.join(kit[1], name))
    os.rmdir(kit[1])
    after = take_fingerprint(kit)
    assert before.changed_files(after) == [
        "updater/__init__.py",
        "updater/__main__.py",
        "updater/loop.py",
    ]
    assert find_unloadable(kit) == f"{kit[1]}/__init__.py is missing"


def test_installed_metadata_next_to_the_packages_is_part_of_the_fingerprint(
    kit: tuple[str, str],
) -> None:
    site = os.path.dirname(kit[0])
    metadata = os.path.join(site, "codex_daemonkit-0.1.0.dist-info")
    os.mkdir(metadata)
    for name in ("METADATA", "RECORD"):
        with open(os.path.join(metadata, name), "w") as f:
            f.write("0.1.0\n")
    os.mkdir(os.path.join(site, "codex_daemonkit_extras-1.0.dist-info"))  # not ours either
    other = os.path.join(site, "packaging-24.0.dist-info")
    os.mkdir(other)
    with open(os.path.join(other, "RECORD"), "w") as f:
        f.write("")
    before = take_fingerprint(kit)
    assert "codex_daemonkit-0.1.0.dist-info/RECORD" in {
        f"{os.path.basename(os.path.dirname(s.path))}/{os.path.basename(s.path)}"
        for s in before.files
    }
    rewrite(os.path.join(other, "RECORD"))  # another distribution: not ours
    assert take_fingerprint(kit) == before
    # pip renames the metadata directory with the version on every upgrade.
    os.rename(metadata, os.path.join(site, "codex_daemonkit-0.2.0.dist-info"))
    assert before.changed_files(take_fingerprint(kit)) == [
        "codex_daemonkit-0.1.0.dist-info/METADATA",
        "codex_daemonkit-0.1.0.dist-info/RECORD",
        "codex_daemonkit-0.2.0.dist-info/METADATA",
        "codex_daemonkit-0.2.0.dist-info/RECORD",
    ]


def test_a_truncated_module_is_not_loadable(kit: tuple[str, str]) -> None:
    assert find_unloadable(kit) is None
    loop = os.path.join(kit[1], "loop.py")
    with open(loop, "w") as f:
        f.write("def half(:\n")
    problem = find_unloadable(kit)
    assert problem is not None
    assert problem.startswith(f"{loop}: ")


def test_the_running_kit_is_found_where_it_was_imported_from() -> None:
    import daemonkit  # noqa: PLC0415
    import updater  # noqa: PLC0415

    dirs = kit_package_dirs()
    assert dirs == (
        os.path.dirname(os.path.abspath(daemonkit.__file__)),
        os.path.dirname(os.path.abspath(updater.__file__)),
    )
    running = take_fingerprint(dirs)
    assert running.version == daemonkit.__version__
    assert find_unloadable(dirs) is None


# -- when to exec: settle, then offer; refuse until the next period --------------------------


def fingerprint(tag: str) -> CodeFingerprint:
    return CodeFingerprint(
        version=tag, files=frozenset({FileStamp(f"/k/updater/{tag}.py", 1, 1, 1)})
    )


class Disk:
    """What the next look at the disk sees, and a clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0
        self.current = fingerprint("old")

    def look(self) -> CodeFingerprint:
        return self.current

    def clock(self) -> float:
        return self.now


def watcher(disk: Disk) -> SelfUpgrade:
    return SelfUpgrade(disk.look, period_s=600.0, settle_s=2.0, clock=disk.clock)


def test_unchanged_code_is_looked_at_every_period() -> None:
    disk = Disk()
    upgrade = watcher(disk)
    assert upgrade.running == fingerprint("old")
    assert upgrade.deadline() == 700.0
    disk.now = 700.0
    assert upgrade.check() is None
    assert upgrade.deadline() == 1300.0


def test_a_change_is_offered_once_it_held_still() -> None:
    disk = Disk()
    upgrade = watcher(disk)
    disk.current = fingerprint("new")
    disk.now = 150.0
    assert upgrade.check() is None  # first seen: wait for it to hold still
    assert upgrade.deadline() == 152.0
    disk.now = 151.0
    assert upgrade.check() is None  # a wake-up in between: still settling
    disk.now = 152.0
    assert upgrade.check() == fingerprint("new")
    assert upgrade.deadline() == 752.0  # due: the loop execs, or looks again next period
    disk.now = 160.0
    assert upgrade.check() == fingerprint("new")  # still due while the loop was busy


def test_a_change_that_keeps_changing_waits_again() -> None:
    disk = Disk()
    upgrade = watcher(disk)
    disk.current = fingerprint("half")
    assert upgrade.check() is None
    disk.now = 101.5
    disk.current = fingerprint("whole")
    assert upgrade.check() is None  # a different tree: the wait starts over
    disk.now = 102.5
    assert upgrade.check() is None
    assert upgrade.deadline() == 103.5
    disk.now = 103.5
    assert upgrade.check() == fingerprint("whole")


def test_a_change_reverted_before_it_settled_is_forgotten() -> None:
    disk = Disk()
    upgrade = watcher(disk)
    disk.current = fingerprint("new")
    assert upgrade.check() is None
    disk.current = fingerprint("old")
    disk.now = 103.0
    assert upgrade.check() is None
    assert upgrade.deadline() == 703.0


def test_a_refused_change_is_offered_again_only_at_the_next_period() -> None:
    disk = Disk()
    upgrade = watcher(disk)
    disk.current = fingerprint("broken")
    assert upgrade.check() is None
    disk.now = 102.0
    refused = upgrade.check()
    assert refused == fingerprint("broken")
    upgrade.refuse(refused)
    disk.now = 110.0
    assert upgrade.check() is None
    disk.now = 702.0
    assert upgrade.check() == fingerprint("broken")  # try again: the install may be done
    # A different tree is not held back by an earlier refusal (after it settles).
    upgrade.refuse(fingerprint("broken"))
    disk.current = fingerprint("fixed")
    disk.now = 703.0
    assert upgrade.check() is None
    disk.now = 705.0
    assert upgrade.check() == fingerprint("fixed")
