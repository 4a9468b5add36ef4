"""A seeded storm of lifecycle commands *and updates*, with the invariants checked after each.

Issue 7, SPEC §2.11, §5, §8.1, §8.6, §13.3 rows 10-11, §13.9 rows 34-37. Like
test_storm.py, but auto-update is on: ``start`` and ``restart`` keep an updater running,
its scheduled cycles run every 0.6 s (``CODEX_DAEMONKIT_TIME_SCALE=0.01``), and
``update --yes`` is one of the storm's commands. The loopback install script alternates
between reinstalling the release it installed last and installing the next one
(1.0.0, 1.0.1, ... 1.0.4, then only reinstalls), so updates restart the server onto new
versions while the workers start, stop and restart it.

After every command:

- at most one fake app-server and at most one updater (``python -m updater run``) are
  alive for the home (this test's marked processes, read from /proc);
- the output is one JSON object with an expected status on exit 0, or a well-formed
  ``Error:`` on exit 1 with nothing on stdout, never a traceback; every command here
  is expected to succeed;
- whenever the test can take ``daemon.lock`` itself (no lifecycle command and no
  updater restart in flight), the app-server record is absent and nothing runs, or it
  names the one live server with its /proc identity; the updater record names the one
  live updater with its identity, or no updater runs.

At the end ``stop`` and the updater's SIGTERM leave no process of this test alive.
Seed: ``DK_STORM_SEED`` (default below); a failure prints it.

The second storm adds SIGKILLs of the recorded server (issue 11, SPEC §14): the updater
supervises it as well as updating it, so kills land during user restarts, during
update restarts and between them. A command that was running while a kill landed may
fail, truthfully (a restart whose new server died, an update rolled back); everything
else holds as above, and a killed server's record may name a dead process until the
supervisor has dealt with it.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from tests.faults.figures import Figures
from tests.faults.storm import (
    LIFECYCLE_STATUSES,
    OPERATIONS,
    WORKERS,
    kill_recorded_server,
    output_problem,
    record_problem,
    run_workers,
    storm_seed,
)
from tests.harness import (
    Result,
    cmdline,
    marked_pids,
    read_regular,
    start_ticks,
    stat_fields,
    try_operation_lock,
    wait_for,
    write_settings,
)
from tests.updates import install_script, stage_payload

if TYPE_CHECKING:
    import random
    from collections.abc import Iterator

    from tests.harness import Home

pytestmark = pytest.mark.timeout(150)

SEED = storm_seed(20240607)
COMMANDS = ("start", "stop", "restart", "status", "update")
WEIGHTS = (3, 2, 2, 1, 3)
STATUSES = {**LIFECYCLE_STATUSES, "update": {"updated", "noUpdate"}}
TIME_SCALE = "0.005"  # first cycle 1.5 s after the updater starts, then one every 0.3 s
LAST_MINOR = 6  # releases 1.0.0 .. 1.0.6
# An updater seen alive without a record may be between removing its record and exiting.
EXITING_UPDATER_S = 2.0
# A launched app-server runs the updater's code only from its fork to its execve.
LAUNCH_EXEC_S = 5.0


# -- figures ----------------------------------------------------------------------------------


@pytest.fixture
def figures(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Figures:
    return Figures.for_test(tmp_path_factory, request)


# -- the alternating install script -----------------------------------------------------------


class AlternatingScripts:
    """Serves ``/install.sh``: odd fetches reinstall the last version, even ones the next."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.minor = 0
        self.fetches = 0
        self.installed: list[str] = []
        self.payloads = {m: stage_payload(home, f"1.0.{m}") for m in range(LAST_MINOR + 1)}
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = server.next_script().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/x-sh")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def next_script(self) -> str:
        with self.lock:
            self.fetches += 1
            if self.fetches % 2 == 0 and self.minor < LAST_MINOR:
                self.minor += 1
            version = f"1.0.{self.minor}"
            self.installed.append(version)
            return install_script(self.payloads[self.minor], version)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/install.sh"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def storm_home(home: Home) -> Iterator[tuple[Home, AlternatingScripts]]:
    home.install_fake("1.0.0")
    scripts = AlternatingScripts(home)
    settings = {
        "shutdownGraceSeconds": 5,
        "updater": {
            "installScriptUrl": scripts.url,
            "autoUpdateEnabled": True,
            "updateIntervalMinutes": 1,
        },
    }
    write_settings(home, settings)
    home.extra_env["CODEX_DAEMONKIT_TEST_HOOKS"] = "1"
    home.extra_env["CODEX_DAEMONKIT_TIME_SCALE"] = TIME_SCALE
    try:
        yield home, scripts
    finally:
        scripts.close()


# -- observing the home -----------------------------------------------------------------------


def parent_pid(pid: int) -> int | None:
    try:
        return int(stat_fields(pid)[1])  # field 4
    except OSError:
        return None


def is_updater_command(pid: int) -> bool:
    return cmdline(pid)[1:4] == [b"-m", b"updater", b"run"]


def alive_by_kind(home: Home) -> tuple[list[int], list[int]]:
    """(app-servers, updaters) alive among this test's marked processes.

    A child the updater forked (``sh`` for ``--version``, ``subprocess`` for the
    installer) carries the updater's command line until it execs: a process whose
    parent is an updater is that parent's child, not a second updater. The app-server
    the updater launches is the grandchild of a double fork: once the middle process
    has exited it has no updater parent, yet it carries the updater's command line until
    it publishes its record and execs the server. So more than one candidate is settled:
    a candidate that execs something else within ``LAUNCH_EXEC_S`` was such a grandchild.
    """
    servers, updaters = [], []
    for pid in marked_pids(home.mark):
        argv = cmdline(pid)
        if b"app-server" in argv:
            servers.append(pid)
        elif is_updater_command(pid):
            updaters.append(pid)
    updaters = [pid for pid in updaters if parent_pid(pid) not in updaters]
    deadline = time.monotonic() + LAUNCH_EXEC_S
    while len(updaters) > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
        updaters = [pid for pid in updaters if is_updater_command(pid)]
    return sorted(servers), sorted(updaters)


@dataclass
class Storm:
    home: Home
    seed: int
    kills: bool = False
    kill_times: list[float] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    operations: int = 0
    checks: int = 0
    quiet_checks: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, message: str) -> None:
        self.failures.append(f"{message} (seed {self.seed}; last ops: {self.log[-8:]})")

    def kill(self) -> str:
        pid = kill_recorded_server(self.home)
        if pid is None:
            return "nothing to kill"
        self.kill_times.append(time.monotonic())
        return f"killed {pid}"

    def killed_during(self, began: float, ended: float) -> bool:
        return any(began <= at <= ended for at in self.kill_times)

    def check_result(self, command: str, result: Result, *, killed: bool = False) -> None:
        self.checks += 1
        if "Traceback" in result.stderr:
            self.fail(f"{command}: traceback: {result.stderr}")
        problem = output_problem(command, result, STATUSES)
        if problem is not None:
            self.fail(problem)
        elif result.returncode == 0:
            key = f"{command}:{json.loads(result.stdout)['status']}"
            self.outcomes[key] = self.outcomes.get(key, 0) + 1
        elif killed:
            key = f"{command}:failedUnderAKill"
            self.outcomes[key] = self.outcomes.get(key, 0) + 1
        else:
            self.fail(f"{command} failed: {result.stderr!r}")

    def check_state(self) -> None:
        with self.lock:
            servers, updaters = alive_by_kind(self.home)
            self.checks += 1
            if len(servers) > 1:
                self.fail(f"{len(servers)} app-servers alive at once: {servers}")
            if len(updaters) > 1:
                self.fail(f"{len(updaters)} updaters alive at once: {updaters}")
            with try_operation_lock(self.home) as quiet:
                if quiet:
                    self.quiet_checks += 1
                    self._check_server_record()
            self._check_updater_record()

    def _check_server_record(self) -> None:
        home = self.home
        servers, _ = alive_by_kind(home)
        raw = read_regular(home.paths.app_server.record)
        self.checks += 1
        if raw is None:
            if servers:
                self.fail(f"app-servers {servers} run without a record")
            return
        problem = record_problem(raw, servers, killed_ok=self.kills)
        if problem is not None:
            self.fail(problem)

    def _check_updater_record(self) -> None:
        """The updater record is not under daemon.lock: `update` spawns without it."""
        home = self.home
        self.checks += 1
        _, updaters = alive_by_kind(home)
        raw = read_regular(home.paths.updater.record)
        if raw == b"":
            return  # a reservation: an updater is being spawned right now
        if raw is None:
            if updaters:
                # Maybe exiting (it removes its record first); it must then be gone soon.
                deadline = time.monotonic() + EXITING_UPDATER_S
                while alive_by_kind(home)[1] and time.monotonic() < deadline:
                    time.sleep(0.01)
                if alive_by_kind(home)[1]:
                    self.fail(f"updaters {updaters} run without a record")
                else:
                    self.log.append(f"an updater exited: {updaters}")
            return
        try:
            record = json.loads(raw)
            pid = record["pid"]
            ticks = record["processIdentity"]["startTicks"]
        except (ValueError, KeyError, TypeError):
            self.fail(f"the updater record is not a complete record: {raw!r}")
            return
        if updaters and updaters != [pid]:
            self.fail(f"the updater record names {pid}, the live updaters are {updaters}")
            return
        if updaters:
            try:
                if start_ticks(pid) != ticks:
                    self.fail(f"the updater record's start ticks {ticks} are not /proc's")
            except OSError:
                pass  # exited between the two reads


def run_storm(storm: Storm) -> None:
    def step(index: int, rng: random.Random) -> None:
        if storm.kills:
            command = rng.choices((*COMMANDS, "kill"), (*WEIGHTS, 2))[0]
        else:
            command = rng.choices(COMMANDS, WEIGHTS)[0]
        if command == "kill":
            with storm.lock:
                storm.operations += 1
                storm.log.append(f"w{index}:{storm.kill()}")
            storm.check_state()
            return
        args = ("update", "--yes") if command == "update" else (command,)
        began = time.monotonic()
        result = storm.home.run(*args)
        with storm.lock:
            storm.operations += 1
            storm.log.append(f"w{index}:{command}->{result.returncode}")
            killed = storm.killed_during(began, time.monotonic())
            storm.check_result(command, result, killed=killed)
        storm.check_state()

    run_workers(f"{storm.seed}-update", WORKERS, OPERATIONS, storm.failures, step)


# -- the storm --------------------------------------------------------------------------------


@pytest.mark.parametrize("kills", [False, True], ids=["updates", "updates-and-kills"])
def test_storm_with_updates_keeps_one_server_and_one_updater(
    storm_home: tuple[Home, AlternatingScripts], figures: Figures, kills: bool
) -> None:
    home, scripts = storm_home
    storm = Storm(home, SEED, kills=kills)
    try:
        run_storm(storm)
    finally:
        figures.add("storm_operations", storm.operations)
        figures.add("storm_invariant_checks", storm.checks)
        figures.add("update_storm_operations", storm.operations)
        figures.add("update_storm_invariant_checks", storm.checks)
    assert storm.failures == [], "\n".join(storm.failures)
    assert storm.operations == OPERATIONS
    assert storm.quiet_checks > 0, "never found daemon.lock free: the strict checks never ran"
    print(f"update storm outcomes: {storm.outcomes}; versions served: {scripts.installed}")
    # The storm did update: the script was fetched and newer releases came in.
    assert scripts.fetches >= 2
    assert scripts.minor >= 1

    stopped = home.run("stop")
    assert stopped.returncode == 0, stopped
    assert json.loads(stopped.stdout)["status"] in {"stopped", "notRunning"}
    home.stop_updater()
    wait_for(lambda: marked_pids(home.mark) == [], what="no process of this test left")
    assert read_regular(home.paths.app_server.record) is None
    assert read_regular(home.paths.updater.record) is None
    names = set(os.listdir(home.paths.state_dir))
    assert {"daemon.lock", "app-server.pid.lock"} <= names, "lock files are never deleted"
    assert [n for n in names if n.endswith(".tmp")] == []
