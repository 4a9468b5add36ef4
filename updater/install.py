"""Running a channel install from the updater, abortable by SIGTERM (SPEC §7.5-§7.8, §8.9).

The install itself is ``daemonkit.install`` (fetch, installer or npm, verify, flip). It
runs in a worker thread so the main thread can wait on the SIGTERM self-pipe at the
same time: on SIGTERM the installer's processes (members of the updater's process
group) are terminated, then killed, and the updater unwinds and exits. The install
lock is a descriptor of this process, so exit releases it; leftover staging
directories are removed by the next install, which holds that lock.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from daemonkit.environment import working_directory
from daemonkit.errors import DaemonError, InstallError
from daemonkit.install import InstallResult, install_npm, install_script
from daemonkit.procinfo import stat_or_none

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Protocol

    from daemonkit.paths import DaemonPaths
    from daemonkit.settings import Settings
    from updater.log import EventLog, Stage

    class _Readable(Protocol):
        def fileno(self) -> int: ...


__all__ = ["ShutdownRequestedError", "install_release", "installer_processes"]

INSTALLER_TERM_WAIT_S = 1.0
INSTALLER_KILL_WAIT_S = 0.5


class ShutdownRequestedError(BaseException):
    """SIGTERM arrived while the updater waited; the loop exits when this unwinds to it.

    A ``BaseException`` (as gunicorn's ``HaltServer``) so that no ``except Exception``
    on the way can swallow a shutdown.
    """


def _stage_of_failure(exc: BaseException, default: Stage) -> Stage:
    text = str(exc)
    if text.startswith(("failed to fetch standalone", "standalone Codex updater request")):
        return "installer_fetch"
    if "failed verification" in text or " reported version " in text:
        return "verify"
    return default


def install_release(
    paths: DaemonPaths,
    settings: Settings,
    env: Mapping[str, str],
    environ: Mapping[str, str],
    log: EventLog,
    shutdown: _Readable,
) -> InstallResult:
    """Install through the configured channel; raise ``ShutdownRequestedError`` on SIGTERM."""
    stage: Stage = "npm_install" if settings.channel == "npm" else "installer_run"
    started = time.monotonic()
    box: list[InstallResult | BaseException] = []
    done_r, done_w = os.pipe2(os.O_CLOEXEC)

    def work() -> None:
        try:
            if settings.channel == "npm":
                box.append(install_npm(paths, env, None, sys.stderr))
            else:
                box.append(
                    install_script(
                        paths,
                        env,
                        settings.install_script_url,
                        working_directory(environ),
                        sys.stderr,
                    )
                )
        except BaseException as exc:  # handed to the main thread, re-raised there
            box.append(exc)
        finally:
            os.close(done_w)

    thread = threading.Thread(target=work, name="codex-install", daemon=True)
    thread.start()
    try:
        while True:
            readable, _, _ = select.select([shutdown.fileno(), done_r], [], [])
            if done_r in readable:
                break
            if shutdown.fileno() in readable:
                _stop_installer(thread, log)
                raise ShutdownRequestedError
    finally:
        os.close(done_r)
    thread.join()
    outcome = box[0]
    if isinstance(outcome, Exception) and not isinstance(outcome, DaemonError | OSError):
        # An unexpected failure inside the channel (a malformed package.json, say) is
        # still a failed install to the updater, never a reason to die.
        wrapped = InstallError(f"installing Codex through the {settings.channel} channel failed")
        wrapped.__cause__ = outcome
        outcome = wrapped
    if isinstance(outcome, BaseException):
        log.stage(_stage_of_failure(outcome, stage), started, outcome)
        raise outcome
    log.stage(stage, started)
    return outcome


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgrp) of every live, non-zombie process we can read."""
    table: dict[int, tuple[int, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = stat_or_none(int(name))
        if stat is not None and not stat.is_zombie:
            table[int(name)] = (stat.ppid, stat.pgrp)
    return table


def installer_processes() -> list[int]:
    """Processes the installer left running: our group's other members, else descendants.

    The updater leads its own process group (the launcher or its own registration
    made it so), and installer children inherit it; without a group of our own only
    descendants are ours.
    """
    me = os.getpid()
    pgid = os.getpgrp()
    table = _proc_table()
    if pgid == me:
        return sorted(pid for pid, (_, pgrp) in table.items() if pgrp == pgid and pid != me)
    found: set[int] = set()
    frontier = {me}
    while frontier:
        children = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
        found |= children
        frontier = children
    return sorted(found)


def _signal_verified(pid: int, signum: int) -> bool:
    """Signal ``pid`` through a pidfd after re-checking it is still ours to signal."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        stat = stat_or_none(pid)
        me = os.getpid()
        if stat is None or stat.is_zombie:
            return False
        if os.getpgrp() == me and stat.pgrp != me:
            return False  # left our group since the scan: no longer the installer's
        signal.pidfd_send_signal(pidfd, signum)
    except OSError:
        return False
    finally:
        os.close(pidfd)
    return True


def _stop_installer(thread: threading.Thread, log: EventLog) -> None:
    """SIGTERM the installer's processes, then SIGKILL whatever outlives the wait."""
    for pid in installer_processes():
        _signal_verified(pid, signal.SIGTERM)
    thread.join(INSTALLER_TERM_WAIT_S)
    survivors = installer_processes()
    if survivors:
        killed = [pid for pid in survivors if _signal_verified(pid, signal.SIGKILL)]
        log.event("shutdown_forced", pids=killed)
    thread.join(INSTALLER_KILL_WAIT_S)
