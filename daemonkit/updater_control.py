"""Spawning, finding and stopping the updater process from the CLI (SPEC §2.4, §8.1)."""

from __future__ import annotations

import os
import sys

from daemonkit.backend import SpawnRequest, spawn_recorded, stop_recorded
from daemonkit.environment import child_environment, working_directory
from daemonkit.errors import DaemonError
from daemonkit.pidfile import Running, active_state, is_starting_or_running

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from daemonkit.paths import DaemonPaths
    from daemonkit.placement import ScopeCommand

    # (what, argv, env) -> the transient scope to spawn into, if any (SPEC §15.2).
    PlaceSpawn = Callable[[str, Sequence[str], Mapping[str, str]], ScopeCommand | None]

__all__ = [
    "RUST_UPDATE_MARKER",
    "dedicated_update_refusal",
    "foreign_updater_pid",
    "is_updater_active",
    "mark_updates_as_the_kits",
    "notify_updater",
    "spawn_updater",
    "stop_updater",
]

# Rust 0.169's `start`/`restart` stop any updater of a standalone install whose
# `<P>/auto-update-version` is missing (ensure_managed_updater), and start their own
# when it names the release `current` points to. Any other content makes Rust leave
# the updater that runs alone and start none (its tolerance for an installer that is
# still publishing): so the kit's updater, which also supervises, survives a Rust
# command in a kit home (issue 13). Not newline-terminated, like Rust's own marker.
RUST_UPDATE_MARKER = "codex-daemonkit"

# Long enough for a local connect, short enough never to slow a command down.
NOTIFY_TIMEOUT_S = 0.2

# Test hooks reach the updater, which runs the schedule they scale (SPEC §13).
_PASSED_HOOKS = ("CODEX_DAEMONKIT_TEST_HOOKS", "CODEX_DAEMONKIT_TIME_SCALE")
KIT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def is_updater_active(paths: DaemonPaths) -> bool:
    return is_starting_or_running(paths.updater)


def foreign_updater_pid(paths: DaemonPaths) -> int | None:
    """The pid of the live updater the record names if it is not the kit's: the Rust
    daemon's ``pid-update-loop``, which updates but never supervises (SPEC §16)."""
    from daemonkit.procinfo import is_kit_updater, read_command  # noqa: PLC0415

    state = active_state(paths.updater)
    if not isinstance(state, Running):
        return None
    command = read_command(state.record.pid)
    if command is None or is_kit_updater(command.argv):
        return None
    return state.record.pid


def updater_environment(environ: Mapping[str, str], codex_home: str) -> dict[str, str]:
    env = child_environment(environ, codex_home, remote_control=None)
    for key in _PASSED_HOOKS:
        if key in environ:
            env[key] = environ[key]
    # The updater's own crash point; any other would fire at the updater's app-server
    # spawn instead of in the CLI that a test meant to crash. A test that means the
    # updater's spawn names it with CODEX_DAEMONKIT_TEST_UPDATER_CRASH_AT.
    if environ.get("CODEX_DAEMONKIT_TEST_CRASH_AT") == "before-reexec":
        env["CODEX_DAEMONKIT_TEST_CRASH_AT"] = "before-reexec"
    if "CODEX_DAEMONKIT_TEST_UPDATER_CRASH_AT" in environ:
        env["CODEX_DAEMONKIT_TEST_CRASH_AT"] = environ["CODEX_DAEMONKIT_TEST_UPDATER_CRASH_AT"]
    # The updater runs `python -m updater` with the interpreter of this CLI; make the
    # kit importable from a checkout too (an installed kit is importable anyway).
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = KIT_ROOT if not existing else f"{KIT_ROOT}{os.pathsep}{existing}"
    return env


def spawn_updater(
    paths: DaemonPaths,
    environ: Mapping[str, str],
    *,
    once: bool,
    place: PlaceSpawn | None = None,
) -> int:
    """Start a detached updater with its own record; return its pid.

    ``place`` says whether it goes into a transient scope of the user manager rather
    than the caller's login session (SPEC §15.2).
    """
    argv = [sys.executable, "-m", "updater", "run"]
    if once:
        argv.append("--once")
    try:
        mark_updates_as_the_kits(paths)
    except (OSError, DaemonError):
        # Best effort: without the marker a Rust start may stop this updater, and the
        # kit's next command starts it again.
        pass
    env = updater_environment(environ, paths.codex_home)
    spawned = spawn_recorded(
        SpawnRequest(
            paths=paths.updater,
            state_dir=paths.state_dir,
            argv=argv,
            env=env,
            cwd=working_directory(environ),
            what="updater",
            scope=None if place is None else place("updater", argv, env),
        )
    )
    if isinstance(spawned, Running):
        return spawned.record.pid
    spawned.close()
    return spawned.pid


def mark_updates_as_the_kits(paths: DaemonPaths) -> None:
    """Write ``<P>/auto-update-version`` if the standalone install has none (see
    ``RUST_UPDATE_MARKER``). A marker that exists, the kit's or Rust's, is left as it is;
    a home without a standalone install (or in the dedicated layout) gets nothing."""
    from daemonkit.paths import Layout  # noqa: PLC0415

    marker = os.path.join(paths.package_root, "auto-update-version")
    if paths.layout is not Layout.STANDALONE or not os.path.isdir(paths.package_root):
        return
    if os.path.lexists(marker):
        return
    from daemonkit.files import write_atomic  # noqa: PLC0415

    write_atomic(marker, f"{marker}.tmp", RUST_UPDATE_MARKER.encode(), durable=False)


def dedicated_update_refusal(paths: DaemonPaths) -> str:
    """Why the kit does not update a home in Rust's dedicated layout itself (SPEC §16)."""
    return (
        f"the dedicated package layout {os.path.dirname(paths.bin_current)} is updated by "
        "the Codex daemon's own update loop, which the updater runs while "
        f"updater.autoUpdateEnabled is on in {paths.settings}; "
        "`codex app-server daemon update --from-cli` pins the Codex you run it with"
    )


def notify_updater(paths: DaemonPaths) -> None:
    """Tell a running updater that the server changed, so it watches the new one at
    once (SPEC §14.2). Best effort: an updater that misses it sees the record at its
    next wake-up, and a Rust updater answers an error that nobody reads."""
    from daemonkit.probe import connect_unix  # noqa: PLC0415 - socket costs start-up time

    try:
        sock = connect_unix(paths.kit_updater_socket, NOTIFY_TIMEOUT_S)
    except OSError:
        return
    try:
        sock.sendall(b"watch\n")
    except OSError:
        pass
    finally:
        sock.close()


def stop_updater(paths: DaemonPaths, grace_s: float) -> bool:
    """Stop the updater's whole process group (its installer child included)."""
    return stop_recorded(paths.updater, grace_s, group=True, what="updater")
