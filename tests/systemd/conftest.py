"""Fixtures that boot a real systemd (SPEC §15.4; the recipe is in tests/systemd_testbed.py).

A kernel that refuses a step (overlayfs, namespaces, cgroup2) or a run without root
skips the test with the reason; a system that boots but does not come up fails it,
with its failed units and journal tail: that is ours to fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.systemd_testbed import BootedSystem, boot_or_skip

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="module")
def booted_system() -> Iterator[BootedSystem]:
    """A booted system shared by a module's tests (boot takes about a second): for tests
    that leave it as they found it, apart from users they add under names of their own."""
    system = BootedSystem()
    try:
        boot_or_skip(system)
        yield system
    finally:
        system.close()


@pytest.fixture
def testbed() -> Iterator[BootedSystem]:
    """A system of the test's own, not booted yet (``boot_or_skip`` boots it); powered
    off and removed in teardown."""
    system = BootedSystem()
    try:
        yield system
    finally:
        system.close()
