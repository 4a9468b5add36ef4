"""A seeded storm of concurrent lifecycle commands, with the invariants checked after each.

SPEC §5 and §13.3 rows 10-11, §13.5 row 18: K workers run a random mix of start, stop,
restart, status and version against one CODEX_HOME. After every command:

- at most one fake app-server is alive for the home (read from /proc: this test's
  marked processes whose argv says ``app-server``);
- every result is one JSON object on exit 0, or a well-formed ``Error:`` on exit 1 with
  nothing on stdout and never a traceback; start, stop, restart and status never fail;
- whenever the test can take ``daemon.lock`` itself (no lifecycle command in flight),
  the record is absent and nothing runs, or it names the one live server and its
  identity (boot id, start ticks) matches /proc.

A second storm plants forged records naming live unrelated processes (a ``sleep``
started here, and the pytest process itself) with the wrong start ticks or boot id:
they are stale, so they are removed or ignored, and their processes are never
signalled. Seed: ``DK_STORM_SEED`` (default below); a failure prints it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.faults.figures import Figures
from tests.faults.storm import (
    LIFECYCLE_STATUSES,
    MUST_SUCCEED,
    OPERATIONS,
    WORKERS,
    output_problem,
    record_problem,
    run_workers,
    storm_seed,
)
from tests.harness import (
    UPDATER_OFF,
    Result,
    app_servers_alive,
    boot_id,
    is_alive,
    start_ticks,
    try_operation_lock,
    wait_for,
    write_settings,
)

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Iterator
    from types import FrameType

    from tests.harness import Home

pytestmark = pytest.mark.timeout(180)

SEED = storm_seed(20240607)
COMMANDS = ("start", "stop", "restart", "status", "version")
WEIGHTS = (3, 3, 2, 1, 1)
STATUSES = {**LIFECYCLE_STATUSES, "version": {"running"}}
FOREIGN_BOOT_ID = "00000000-0000-4000-8000-000000000000"


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
def figures(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Figures:
    return Figures.for_test(tmp_path_factory, request)


@pytest.fixture
def fake(home: Home) -> Home:
    write_settings(home, {**UPDATER_OFF, "shutdownGraceSeconds": 5})
    home.install_fake(startup_delay=0.02)
    return home


def forged_record(pid: int, *, ticks: int, boot: str) -> bytes:
    value = {
        "pid": pid,
        "processStartTime": "Thu Jan  1 00:00:00 2015",
        "processIdentity": {"bootId": boot, "startTicks": ticks},
    }
    return json.dumps(value, separators=(",", ":")).encode()


def read_record_bytes(home: Home) -> bytes | None:
    try:
        return Path(home.paths.app_server.record).read_bytes()
    except FileNotFoundError:
        return None


@dataclass
class Storm:
    """Shared state of one storm: the checks it made and what it saw."""

    home: Home
    seed: int
    planted: set[bytes] = field(default_factory=set)
    log: list[str] = field(default_factory=list)
    operations: int = 0
    checks: int = 0
    plants: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    plant: Callable[[random.Random], bytes | None] | None = None

    def fail(self, message: str) -> None:
        self.failures.append(f"{message} (seed {self.seed}; last ops: {self.log[-6:]})")

    def check_result(self, command: str, result: Result) -> None:
        self.checks += 1
        if "Traceback" in result.stderr:
            self.fail(f"{command}: traceback: {result.stderr}")
        problem = output_problem(command, result, STATUSES)
        if problem is not None:
            self.fail(problem)
        elif result.returncode == 1 and command in MUST_SUCCEED:
            self.fail(f"{command} failed: {result.stderr!r}")

    def check_state(self, rng: random.Random) -> None:
        """The invariants; the strict ones only while no lifecycle command runs."""
        with self.lock:
            servers = app_servers_alive(self.home)
            self.checks += 1
            if len(servers) > 1:
                self.fail(f"{len(servers)} app-servers alive at once: {servers}")
            with try_operation_lock(self.home) as quiet:
                if quiet:
                    self._check_quiet(rng)

    def _check_quiet(self, rng: random.Random) -> None:
        home = self.home
        servers = app_servers_alive(home)
        raw = read_record_bytes(home)
        self.checks += 1
        if raw is None or raw in self.planted:
            if servers:
                self.fail(f"app-servers {servers} run without a record")
            if raw is None and self.plant is not None:
                forged = self.plant(rng)
                if forged is not None:
                    Path(home.paths.app_server.record).write_bytes(forged)
                    os.chmod(home.paths.app_server.record, 0o600)
                    self.planted.add(forged)
                    self.plants += 1
                    self.log.append("planted a forged record")
            return
        problem = record_problem(raw, servers)
        if problem is not None:
            self.fail(problem)


def run_storm(storm: Storm, workers: int, operations: int) -> None:
    def step(index: int, rng: random.Random) -> None:
        command = rng.choices(COMMANDS, WEIGHTS)[0]
        result = storm.home.run(command)
        with storm.lock:
            storm.operations += 1
            storm.log.append(f"w{index}:{command}->{result.returncode}")
            storm.check_result(command, result)
        storm.check_state(rng)

    run_workers(str(storm.seed), workers, operations, storm.failures, step)
    assert storm.failures == [], "\n".join(storm.failures)


def assert_nothing_survives(home: Home) -> None:
    stopped = home.run("stop")
    assert stopped.returncode == 0, stopped
    assert json.loads(stopped.stdout)["status"] in {"stopped", "notRunning"}
    wait_for(lambda: app_servers_alive(home) == [], what="no app-server left")
    assert read_record_bytes(home) is None
    names = set(os.listdir(home.paths.state_dir))
    assert {"daemon.lock", "app-server.pid.lock"} <= names, "lock files are never deleted"
    assert [n for n in names if n.endswith(".tmp")] == []


# -- the storm -------------------------------------------------------------------------


def test_storm_keeps_one_recorded_server_at_most(fake: Home, figures: Figures) -> None:
    storm = Storm(fake, SEED)
    run_storm(storm, WORKERS, OPERATIONS)
    figures.add("storm_operations", storm.operations)
    figures.add("storm_invariant_checks", storm.checks)
    assert storm.operations == OPERATIONS
    assert_nothing_survives(fake)


# -- pid reuse under load (SPEC §4.3, §4.10 rules 1-2; §13.5 row 18) ---------------------------


@pytest.fixture
def sigterm_witness() -> Iterator[list[int]]:
    """Record SIGTERMs that reach the pytest process instead of dying of them."""
    received: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_storm_never_signals_processes_named_by_forged_records(
    fake: Home, figures: Figures, sigterm_witness: list[int]
) -> None:
    sleeper = fake.spawn_marked(["sleep", "300"])
    sleeper_ticks = start_ticks(sleeper.pid)
    me = os.getpid()
    my_ticks = start_ticks(me)
    forgeries = [
        forged_record(sleeper.pid, ticks=sleeper_ticks + 1, boot=boot_id()),
        forged_record(sleeper.pid, ticks=sleeper_ticks, boot=FOREIGN_BOOT_ID),
        forged_record(me, ticks=my_ticks + 7, boot=boot_id()),
        forged_record(me, ticks=my_ticks, boot=FOREIGN_BOOT_ID),
    ]

    def plant(rng: random.Random) -> bytes | None:
        return rng.choice(forgeries) if rng.random() < 0.7 else None

    storm = Storm(fake, SEED + 1, plant=plant)
    run_storm(storm, 3, 30)
    figures.add("storm_operations", storm.operations)
    figures.add("storm_invariant_checks", storm.checks)
    figures.add("pid_reuse_records_planted", storm.plants)
    assert storm.plants >= 2, "the storm planted too few forged records; change the seed"

    assert sigterm_witness == [], "the kit signalled the test runner"
    assert sleeper.poll() is None, "the kit signalled an unrelated sleep"
    assert start_ticks(sleeper.pid) == sleeper_ticks
    assert_nothing_survives(fake)
    assert is_alive(sleeper.pid)


@pytest.mark.parametrize(
    "command", ["status", "version", "enable-remote-control", "disable-remote-control", "bootstrap"]
)
@pytest.mark.parametrize("victim", ["test-runner", "sleep"])
def test_forged_record_is_never_signalled_by_any_command(
    fake: Home, command: str, victim: str, figures: Figures, sigterm_witness: list[int]
) -> None:
    """The commands test_pid_records.py does not drive: none of them signals the victim."""
    if victim == "sleep":
        pid = fake.spawn_marked(["sleep", "300"]).pid
        forged = forged_record(pid, ticks=start_ticks(pid), boot=FOREIGN_BOOT_ID)
    else:
        pid = os.getpid()
        forged = forged_record(pid, ticks=start_ticks(pid) + 3, boot=boot_id())
    ticks = start_ticks(pid)
    Path(fake.paths.app_server.record).write_bytes(forged)
    os.chmod(fake.paths.app_server.record, 0o600)
    figures.add("pid_reuse_records_planted")

    result = fake.run(command)
    assert "Traceback" not in result.stderr
    if command == "version":
        assert result.returncode == 1, result  # nothing answers on the socket
        assert result.stderr.startswith(f"Error: failed to connect to {fake.paths.socket}\n")
    else:
        assert result.returncode == 0, result
        value = json.loads(result.stdout)
        assert "pid" not in value or value["pid"] != pid
    if command == "status":
        assert value["status"] == "notRunning"
        assert read_record_bytes(fake) == forged, "status never removes a record"
    elif command == "bootstrap":
        assert fake.record_pid() == app_servers_alive(fake)[0] != pid
    assert sigterm_witness == []
    assert is_alive(pid)
    assert start_ticks(pid) == ticks
    if command == "bootstrap":
        assert json.loads(fake.run("stop").stdout)["status"] == "stopped"
