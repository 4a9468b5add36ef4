"""What the storm tests share: their seed and size, worker threads drawing commands from
seeded generators, and the checks of a command's output and of the app-server record.

A storm's workers race lifecycle commands against one CODEX_HOME; each test adds its
own commands (updates, kills, the Rust daemon's stop) and its own invariants.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
from typing import TYPE_CHECKING

from tests.harness import boot_id, read_regular, start_ticks

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from collections.abc import Set as AbstractSet

    from tests.harness import Home, Result

WORKERS = 4
OPERATIONS = 60
# What each lifecycle command may report while other commands race it.
LIFECYCLE_STATUSES: dict[str, AbstractSet[str]] = {
    "start": {"started", "alreadyRunning"},
    "stop": {"stopped", "notRunning"},
    "restart": {"restarted"},
    "status": {"running", "starting", "notReady", "notRunning"},
}
# Racing never makes these fail: they wait for the lock or find the state as it is.
MUST_SUCCEED = frozenset(LIFECYCLE_STATUSES)


def storm_seed(default: int) -> int:
    """``DK_STORM_SEED`` when set, so that the seed a failure prints replays it."""
    return int(os.environ.get("DK_STORM_SEED", str(default)))


def run_workers(
    seed: str,
    workers: int,
    operations: int,
    failures: list[str],
    step: Callable[[int, random.Random], None],
) -> None:
    """``workers`` threads, each calling ``step(index, rng)`` ``operations // workers``
    times or until a failure is recorded. Each ``rng`` is seeded from ``seed`` and the
    worker's index, so a seed replays every worker's draws."""

    def worker(index: int) -> None:
        rng = random.Random(f"{seed}-{index}")
        for _ in range(operations // workers):
            if failures:
                return
            step(index, rng)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def output_problem(
    command: str, result: Result, statuses: Mapping[str, AbstractSet[str]]
) -> str | None:
    """What is malformed in a command's result, or None.

    Exit 0 must print one JSON object whose status is one of ``statuses[command]``;
    exit 1 must print nothing on stdout and an ``Error:`` on stderr; no other exit code
    is expected. A well-formed exit 1 is the command failing, for the caller to judge.
    """
    if result.returncode == 0:
        lines = result.stdout.splitlines()
        if len(lines) != 1:
            return f"{command}: expected one JSON line, got {result.stdout!r}"
        try:
            value = json.loads(lines[0])
        except ValueError:
            return f"{command}: stdout is not JSON: {result.stdout!r}"
        if not isinstance(value, dict) or value.get("status") not in statuses[command]:
            return f"{command}: unexpected output {value!r}"
        return None
    if result.returncode == 1:
        if result.stdout != "" or not result.stderr.startswith("Error: "):
            return f"{command}: malformed error: {result!r}"
        return None
    return f"{command}: exit {result.returncode}: {result!r}"


def record_problem(raw: bytes, servers: list[int], *, killed_ok: bool = False) -> str | None:
    """What is wrong with the app-server record ``raw``, read under ``daemon.lock`` while
    ``servers`` are the live app-servers, or None: it must name the one live server by
    its /proc identity. With ``killed_ok``, the record of a server the storm killed,
    which the supervisor has yet to deal with, passes while no other server runs."""
    try:
        record = json.loads(raw)
        identity = record["processIdentity"]
        pid = record["pid"]
    except (ValueError, KeyError, TypeError):
        return f"the app-server record is not a complete record: {raw!r}"
    if killed_ok and pid not in servers:
        return f"app-servers {servers} run next to a dead recorded {pid}" if servers else None
    if servers != [pid]:
        return f"the record names {pid}, the live app-servers are {servers}"
    try:
        seen = (boot_id(), start_ticks(pid))
    except OSError:
        return f"the recorded server {pid} vanished"
    if (identity.get("bootId"), identity.get("startTicks")) != seen:
        return f"the record's identity {identity} is not /proc's {seen}"
    return None


def kill_recorded_server(home: Home) -> int | None:
    """SIGKILL the app-server the record names, if it is this test's; its pid, or None
    when there was nothing of ours to kill."""
    raw = read_regular(home.paths.app_server.record)
    pid = json.loads(raw)["pid"] if raw else None
    if not isinstance(pid, int) or not home.carries_mark(pid):
        return None
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return None
    return pid
