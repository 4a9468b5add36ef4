"""Inert-by-default crash points for tests (SPEC §13).

``crash_point(name)`` ends the process with ``_exit(99)`` when, and only when,
``CODEX_DAEMONKIT_TEST_HOOKS=1`` and ``CODEX_DAEMONKIT_TEST_CRASH_AT=<name>`` are set,
so tests can prove that the next command recovers from a crash at that step.
"""

from __future__ import annotations

import os

__all__ = ["crash_point", "hooks_enabled", "time_scale"]

CRASH_POINTS = frozenset(
    {
        "after-reserve",
        "after-spawn",
        "after-publish",
        "after-sigterm",
        "after-settings-tmp",
        "after-stage",
        "after-flip",
        "before-reexec",
    }
)


def hooks_enabled() -> bool:
    return os.environ.get("CODEX_DAEMONKIT_TEST_HOOKS") == "1"


def crash_point(name: str) -> None:
    """Die here, as a SIGKILL would leave things, if a test asked for it."""
    assert name in CRASH_POINTS, name
    if hooks_enabled() and os.environ.get("CODEX_DAEMONKIT_TEST_CRASH_AT") == name:
        os._exit(99)


def time_scale() -> float:
    """The factor tests apply to the updater's schedule; 1.0 outside tests."""
    if not hooks_enabled():
        return 1.0
    try:
        scale = float(os.environ.get("CODEX_DAEMONKIT_TIME_SCALE", "1"))
    except ValueError:
        return 1.0
    return scale if scale > 0 else 1.0
