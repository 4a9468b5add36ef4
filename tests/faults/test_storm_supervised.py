"""A seeded storm of lifecycle commands and server kills with the supervisor on (SPEC §14.3-§14.4).

K workers run a random mix of start, stop, restart, status, version, SIGKILL of the
recorded server, and (with the real Codex CLI installed) the Rust daemon's own
``stop``, against one CODEX_HOME whose updater supervises. Throughout:

- at most one fake app-server is alive for the home (never a double spawn);
- every command's result is well formed and start, stop, restart, status never fail;
- whenever the test can take ``daemon.lock`` (no command and no supervised restart in
  flight), a record that names a live process names the one live server by identity.

At the end the home converges to what the last user command says: after ``start``
exactly one recorded server that the supervisor brings back after a kill, after
``stop`` none, for good. Seed: ``DK_STORM_SEED``; a failure prints it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from tests.faults.storm import (
    LIFECYCLE_STATUSES,
    MUST_SUCCEED,
    OPERATIONS,
    WORKERS,
    kill_recorded_server,
    output_problem,
    record_problem,
    run_workers,
    storm_seed,
)
from tests.harness import (
    SUPERVISION_ONLY,
    Result,
    app_servers_alive,
    cmdline,
    holds_for,
    is_alive,
    read_regular,
    real_codex_binary,
    scheduled_updater,
    try_operation_lock,
    wait_for,
    write_settings,
)

if TYPE_CHECKING:
    import random
    from pathlib import Path

    from tests.harness import Home

pytestmark = pytest.mark.timeout(240)

SEED = storm_seed(20261204)
COMMANDS = ("start", "stop", "restart", "status", "version", "kill", "rust-stop")
WEIGHTS = (3, 2, 2, 1, 1, 3, 1)
STATUSES = {**LIFECYCLE_STATUSES, "version": {"running"}}


def servers_alive(home: Home) -> list[int]:
    """This test's live app-servers: not the Rust daemon's own commands and updater,
    whose argv also says ``app-server`` (``codex app-server daemon stop``)."""
    return [pid for pid in app_servers_alive(home) if b"daemon" not in cmdline(pid)]


def recorded_pid(home: Home) -> int | None:
    raw = read_regular(home.paths.app_server.record)
    if not raw:
        return None
    pid = json.loads(raw)["pid"]
    assert isinstance(pid, int)
    return pid


@dataclass
class Storm:
    home: Home
    seed: int
    rust: Path | None
    log: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    killed: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, message: str) -> None:
        self.failures.append(f"{message} (seed {self.seed}; last ops: {self.log[-8:]})")

    def kill(self) -> str:
        pid = kill_recorded_server(self.home)
        if pid is None:
            return "nothing to kill"
        self.killed.add(pid)
        return f"killed {pid}"

    def rust_stop(self) -> Result:
        assert self.rust is not None
        done = subprocess.run(
            [str(self.rust), "app-server", "daemon", "stop"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=self.home.env(),
            timeout=90,
            check=False,
        )
        return Result(done.returncode, done.stdout.decode(), done.stderr.decode())

    def check_result(self, command: str, result: Result) -> None:
        if "Traceback" in result.stderr:
            self.fail(f"{command}: traceback: {result.stderr}")
        if command == "rust-stop":
            if result.returncode != 0:
                self.fail(f"rust stop failed: {result!r}")
            return
        problem = output_problem(command, result, STATUSES)
        if problem is not None:
            self.fail(problem)
        elif (
            result.returncode == 1
            and command in MUST_SUCCEED
            and not self._killed_under_it(result.stderr)
        ):
            self.fail(f"{command} failed: {result.stderr!r}")

    def _killed_under_it(self, stderr: str) -> bool:
        """A start or restart whose new server this storm killed before it was ready
        fails truthfully (and leaves nothing behind, SPEC §6.4)."""
        found = re.search(r"app-server process (\d+) exited before it became ready", stderr)
        return found is not None and int(found.group(1)) in self.killed

    def check_state(self) -> None:
        servers = servers_alive(self.home)
        if len(servers) > 1:
            self.fail(f"{len(servers)} app-servers alive at once: {servers}")
        with try_operation_lock(self.home) as quiet:
            if not quiet:
                return
            servers = servers_alive(self.home)
            raw = read_regular(self.home.paths.app_server.record)
            if not raw:
                if servers:
                    self.fail(f"app-servers {servers} run without a record")
                return
            # A record whose server was just killed, dead or dying, is the supervisor's
            # to handle: no other server may run meanwhile.
            problem = record_problem(raw, servers, killed_ok=True)
            if problem is not None:
                self.fail(problem)


def run_storm(storm: Storm) -> None:
    commands = COMMANDS if storm.rust is not None else COMMANDS[:-1]
    weights = WEIGHTS[: len(commands)]

    def step(index: int, rng: random.Random) -> None:
        command = rng.choices(commands, weights)[0]
        if command == "kill":
            with storm.lock:
                storm.log.append(f"w{index}:{storm.kill()}")
        else:
            result = storm.rust_stop() if command == "rust-stop" else storm.home.run(command)
            with storm.lock:
                storm.log.append(f"w{index}:{command}->{result.returncode}")
                storm.check_result(command, result)
        with storm.lock:
            storm.check_state()

    run_workers(str(storm.seed), WORKERS, OPERATIONS, storm.failures, step)
    assert storm.failures == [], "\n".join(storm.failures)


def test_storm_of_commands_and_kills_keeps_one_server_at_most_and_converges(
    home: Home,
) -> None:
    home.extra_env.update({"CODEX_DAEMONKIT_TEST_HOOKS": "1", "CODEX_DAEMONKIT_TIME_SCALE": "0.01"})
    home.install_fake()
    write_settings(home, SUPERVISION_ONLY)
    storm = Storm(home, SEED, real_codex_binary())
    run_storm(storm)
    print(f"storm: {OPERATIONS} operations, {len(storm.killed)} kills, rust: {storm.rust}")

    # The last user command says start: one recorded server, which the supervisor
    # (cleared of any giving-up by that start) brings back after a kill.
    assert home.run("start").json["status"] in {"started", "alreadyRunning"}
    updater = scheduled_updater(home)
    server = wait_for(lambda: recorded_pid(home), what="a recorded server")
    assert server is not None
    wait_for(lambda: servers_alive(home) == [server], what="only the recorded server")
    os.kill(server, signal.SIGKILL)
    replacement = wait_for(
        lambda: (pid := recorded_pid(home)) not in (None, server) and is_alive(pid) and pid,
        what="the supervisor's restart",
        timeout=20,
    )
    wait_for(lambda: servers_alive(home) == [replacement], what="exactly that server")
    assert scheduled_updater(home) == updater

    # The last user command says stop: none, for good.
    assert home.run("stop").json["status"] == "stopped"
    holds_for(
        lambda: servers_alive(home) == [] and recorded_pid(home) is None,
        1.5,
        what="a stopped home stays stopped",
    )
