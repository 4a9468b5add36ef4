"""Re-executing the updater in place after a validated restart (SPEC §8.8).

The argv and environment are computed by pure functions; ``reexec`` is the one
``os.execve`` call. The pid, process group and start ticks survive exec, so the
updater's pid record stays valid; ``daemon.lock`` is O_CLOEXEC, so exec releases it
only once the new image is on its way (PR #21853's hand-off).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import TYPE_CHECKING

from daemonkit.hooks import crash_point

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["REEXEC_ENV", "consume_reexec_marker", "reexec", "reexec_argv", "reexec_env"]

# Set only for the exec; the new image removes it at once. Its value is the
# wall-clock ms of the exec, so the new image can log the reexec stage's duration.
REEXEC_ENV = "CODEX_DAEMONKIT_UPDATER_REEXEC"


def reexec_argv(orig_argv: Sequence[str]) -> list[str]:
    """The updater's original command line (interpreter flags, ``-m updater run``)."""
    return list(orig_argv)


def reexec_env(environ: Mapping[str, str], now_ms: int) -> dict[str, str]:
    env = dict(environ)
    env[REEXEC_ENV] = str(now_ms)
    return env


def consume_reexec_marker() -> int | None:
    """Remove the marker from our environment; the exec's wall-clock ms, if re-executed."""
    value = os.environ.pop(REEXEC_ENV, None)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return 0


def reexec() -> OSError:
    """Replace this process with a fresh updater image; returns only the exec's error."""
    argv = reexec_argv(sys.orig_argv)
    env = reexec_env(os.environ, int(time.time() * 1000))
    # Python ignores SIGPIPE and SIGXFSZ, and an ignored disposition survives exec.
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(signum, signal.SIG_DFL)
    sys.stderr.flush()
    crash_point("before-reexec")
    try:
        os.execve(sys.executable, argv, env)  # noqa: S606 - re-exec of our own argv
    except OSError as exc:
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        return exc
    raise AssertionError("unreachable: execve returned without an error")  # pragma: no cover
