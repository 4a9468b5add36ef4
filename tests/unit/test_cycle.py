"""One update cycle's decisions (SPEC §8.4-§8.10), every branch, without processes.

The home is real (symlinks under ``tmp_path``, ``daemon.lock``); the app-server, the
channel install, ``--version`` and the clock are the small fakes below, passed through
``updater.ports``. A fake binary's content is the version it reports, so a release is a
directory with one text file. Each test names the branch of ``updater/cycle.py`` it
covers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from daemonkit.digest import digest_kind, file_digest
from daemonkit.errors import (
    DaemonError,
    InstallError,
    ManagedCodexError,
    NotReadyError,
    ProbeError,
    SpawnError,
    VerificationError,
)
from daemonkit.files import ensure_state_dir
from daemonkit.install import InstallResult, flip_symlink, read_link
from daemonkit.intent import DesiredState, write_desired_state
from daemonkit.locks import open_lock_file, try_lock
from daemonkit.paths import DaemonPaths
from daemonkit.pidfile import Absent, PidState, Running
from daemonkit.pidrecord import ExecutableIdentity, PidRecord
from daemonkit.probe import AppServerInfo
from updater.cycle import UNSUPPORTED_MESSAGE, ShutdownRequestedError, _reference_digest, run_cycle
from updater.log import EventLog, error_text
from updater.ports import CycleEffects
from updater.report import UpdateStatus
from updater.state import CycleResult, UpdaterState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

    from daemonkit.paths import PidPaths
    from daemonkit.settings import Settings
    from updater.ports import Shutdown
    from updater.report import CycleReport

pytestmark = pytest.mark.timeout(10)

OLD, NEW = "1.0.0", "2.0.0"
NOW = 1_700_000_000_000
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


# -- fakes -------------------------------------------------------------------------------------


def make_release(paths: DaemonPaths, version: str, *, binary: bool = True) -> str:
    """``releases/<version>/codex``, a file whose content is the version it reports."""
    release = os.path.join(paths.releases, version)
    os.makedirs(release, exist_ok=True)
    if binary:
        with open(os.path.join(release, "codex"), "w") as f:
            f.write(version)
    return release


def read_version(path: str, _env: Mapping[str, str]) -> str:
    """``<bin> --version`` of a fake binary; an empty one fails as a broken binary does."""
    with open(path) as f:
        text = f.read()
    if not text:
        raise ManagedCodexError(f"managed Codex binary {path} exited with status exit status: 1")
    return text


class Server:
    """The app-server as the cycle sees it: its record and what answers on its socket."""

    def __init__(self, version: str | None, *, record: bool | Absent | None = None) -> None:
        self.version = version  # None: nothing answers
        # True: a live record; MISSING / STARTING: as active_state says; None: follows version
        self.record: bool | Absent = version is not None if record is None else record
        self.pid = 100

    def state(self, _paths: PidPaths) -> PidState:
        if self.record is True:
            return Running(record=PidRecord(pid=self.pid, process_start_time="1"), raw=b"r")
        return Absent.MISSING if self.record is False else self.record

    def probe(self, socket_path: str) -> AppServerInfo:
        if self.version is None:
            raise ProbeError(f"failed to connect to {socket_path}")
        return AppServerInfo(app_server_version=self.version, user_agent="codex_test")


class FakeDaemon:
    """``DaemonControl``: each spawn answers with the next scripted version or error."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.answers: list[str | DaemonError] = [NEW]
        self.calls: list[str] = []

    def stop_app_server(self, grace_s: float) -> bool:
        self.calls.append("stop")
        was_running = self.server.record is True
        self.server.version, self.server.record = None, False
        return was_running

    def spawn_and_wait(self, settings: Settings, bin_path: str) -> tuple[int, AppServerInfo]:
        self.calls.append(f"spawn {os.path.basename(os.path.dirname(bin_path))}")
        answer = self.answers.pop(0)
        if isinstance(answer, DaemonError):
            raise answer
        self.server.pid += 1
        self.server.version, self.server.record = answer, True
        return self.server.pid, AppServerInfo(app_server_version=answer, user_agent="codex_test")


class FakeInstall:
    """The channel install: lays out ``version`` and flips as ``daemonkit.install`` does."""

    def __init__(self, version: str = NEW) -> None:
        self.version = version
        self.error: BaseException | None = None
        self.calls = 0

    def __call__(
        self,
        paths: DaemonPaths,
        settings: Settings,
        env: Mapping[str, str],
        environ: Mapping[str, str],
        log: EventLog,
        shutdown: Shutdown,
    ) -> InstallResult:
        self.calls += 1
        if self.error is not None:
            raise self.error
        release = make_release(paths, self.version)
        before = read_link(paths.current)
        previous = read_link(paths.previous)
        if before == release:
            return InstallResult(
                release=release, version=self.version, previous=previous, changed=False
            )
        if before is not None:
            flip_symlink(paths.previous, before)
            previous = before
        flip_symlink(paths.current, release)
        return InstallResult(release=release, version=self.version, previous=previous, changed=True)


class FakeShutdown:
    """The SIGTERM self-pipe; ``on_wait`` runs at each busy wait and says if SIGTERM came."""

    def __init__(self) -> None:
        self.on_wait: Callable[[int], bool] = lambda _n: False
        self.waits = 0

    def fileno(self) -> int:
        return -1

    def wait(self, timeout_s: float) -> bool:
        self.waits += 1
        return self.on_wait(self.waits)


@dataclass
class Rig:
    """A home where ``OLD`` is current and serving, and the channel offers ``NEW``."""

    paths: DaemonPaths
    server: Server
    daemon: FakeDaemon
    install: FakeInstall
    shutdown: FakeShutdown
    state: UpdaterState = field(default_factory=UpdaterState)
    reports: list[CycleReport] = field(default_factory=list)
    prepared: list[tuple[str, str, str, int]] = field(default_factory=list)

    def run(self, *, requested: bool) -> CycleReport:
        effects = CycleEffects(
            install=self.install,
            read_version=read_version,
            probe=self.server.probe,
            server_state=self.server.state,
            now_ms=lambda: NOW,
            prepare_start=self.prepare_start,
        )
        report = run_cycle(
            paths=self.paths,
            environ={},
            daemon=self.daemon,
            log=EventLog(None, None),
            shutdown=self.shutdown,
            state=self.state,
            requested=requested,
            effects=effects,
        )
        self.reports.append(report)
        return report

    def release_path(self, version: str) -> str:
        return os.path.join(self.paths.releases, version)

    def prepare_start(self, canonical: str, cache_path: str, version: str) -> None:
        # With how many daemon calls had been made: 0 means before the stop.
        release = os.path.basename(os.path.dirname(canonical))
        self.prepared.append((release, version, cache_path, len(self.daemon.calls)))


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    monkeypatch.delenv("CODEX_DAEMONKIT_TEST_HOOKS", raising=False)  # time scale 1
    paths = DaemonPaths(str(tmp_path / "h"))
    ensure_state_dir(paths.state_dir)
    flip_symlink(paths.current, make_release(paths, OLD))
    server = Server(OLD)
    rig = Rig(paths, server, FakeDaemon(server), FakeInstall(), FakeShutdown())
    yield rig
    for report in rig.reports:
        report.release()


def events(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    lines = capsys.readouterr().err.splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def named(log: list[dict[str, object]], event: str) -> list[object]:
    return [line["details"] for line in log if line.get("event") == event]


def lock_is_free(paths: DaemonPaths) -> bool:
    fd = open_lock_file(paths.operation_lock, "test lock")
    try:
        return try_lock(fd)
    finally:
        os.close(fd)


# -- outcomes and outputs (_decide_and_act, _report) --------------------------------------------


@dataclass(frozen=True)
class Row:
    running: str | None  # what answers on the socket before the cycle
    record: bool | Absent  # the app-server's record
    current: str  # where `current` points before the install of NEW
    status: UpdateStatus
    result: CycleResult
    message: str
    stopped: bool = False  # desired-state.json says stopped


OUTPUT_TABLE = {
    # RESTART (IF_VERSION_CHANGED, versions differ) -> RESTARTED, changed
    "restarted onto the new install": Row(
        OLD, True, OLD, UpdateStatus.UPDATED, CycleResult.UPDATED,
        f"installed Codex {NEW} and restarted the app server onto it",
    ),
    # RESTART although nothing was installed: the server runs an older version
    "restarted onto what was already installed": Row(
        OLD, True, NEW, UpdateStatus.UPDATED, CycleResult.UPDATED,
        f"restarted the app server onto Codex {NEW}",
    ),
    # ALREADY_CURRENT, not changed -> noUpdate
    "no update": Row(
        NEW, True, NEW, UpdateStatus.NO_UPDATE, CycleResult.NO_UPDATE,
        f"the app server already runs Codex {NEW}",
    ),
    # ALREADY_CURRENT, changed (versions compare normalised) -> updated, alreadyCurrent
    "installed, server already runs it": Row(
        f"v{NEW}", True, OLD, UpdateStatus.UPDATED, CycleResult.ALREADY_CURRENT,
        f"installed Codex {NEW}; the app server already runs Codex {NEW}",
    ),
    # no record, nothing answers -> NOT_RUNNING
    "installed, not running": Row(
        None, False, OLD, UpdateStatus.UPDATED, CycleResult.NOT_RUNNING,
        f"installed Codex {NEW}; the app server is not running; Codex {NEW} is installed",
    ),
    "not running, no update": Row(
        None, False, NEW, UpdateStatus.NO_UPDATE, CycleResult.NOT_RUNNING,
        f"the app server is not running; Codex {NEW} is installed",
    ),
    # a live record whose server does not answer -> NOT_READY
    "installed, not ready": Row(
        None, True, OLD, UpdateStatus.UPDATED, CycleResult.NOT_READY,
        f"installed Codex {NEW}; the app server is not ready; Codex {NEW} is installed",
    ),
    # a reservation still Starting counts as running, and does not answer yet
    "not ready while starting": Row(
        None, Absent.STARTING, NEW, UpdateStatus.NO_UPDATE, CycleResult.NOT_READY,
        f"the app server is not ready; Codex {NEW} is installed",
    ),
    # desired state stopped: never started by an update, even if one serves (SPEC §3.8)
    "user stopped it": Row(
        OLD, True, OLD, UpdateStatus.UPDATED, CycleResult.NOT_RUNNING,
        f"installed Codex {NEW}; the app server is not running; Codex {NEW} is installed",
        stopped=True,
    ),
}  # fmt: skip


@pytest.mark.parametrize("requested", [True, False], ids=["requested", "scheduled"])
@pytest.mark.parametrize("row", OUTPUT_TABLE.values(), ids=OUTPUT_TABLE.keys())
def test_outcome_output_and_result(rig: Rig, row: Row, requested: bool) -> None:
    flip_symlink(rig.paths.current, make_release(rig.paths, row.current))
    rig.server.version, rig.server.record = row.running, row.record
    if row.stopped:
        write_desired_state(rig.paths.desired_state, DesiredState.STOPPED, "stop")
    report = rig.run(requested=requested)
    assert report.error is None
    assert report.output is not None
    assert report.output.status is row.status
    assert report.output.message == row.message
    assert report.output.installed_version == NEW
    assert report.output.managed_codex_path == os.path.join(rig.paths.current, "codex")
    assert report.output.running_version == rig.server.version
    assert rig.state.last_result is row.result
    assert rig.state.last_check_at_ms == NOW
    restarted = row.result is CycleResult.UPDATED
    assert rig.daemon.calls == (["stop", f"spawn {NEW}"] if restarted else [])
    # Only unattended restarts count toward the cap (SPEC §8.10).
    assert rig.state.restarts_at_ms == ([NOW] if restarted and not requested else [])
    assert report.reexec is False  # the reference digest is unknown: no refresh


def test_a_managed_record_missing_while_a_server_answers_is_unmanaged(rig: Rig) -> None:
    # _decide_and_act: not starting/running, but the probe answers -> UnmanagedServerError
    rig.server.record = False
    report = rig.run(requested=True)
    assert report.output is None
    assert report.error is not None
    assert error_text(report.error) == (
        "app server is running but is not managed by codex app-server daemon"
    )
    assert rig.state.last_result is CycleResult.FAILED
    assert rig.daemon.calls == []


def test_a_restart_is_validated_and_remembered_with_the_lock_carried_out(rig: Rig) -> None:
    # _run after RESTARTED: the validated digest and pid; _try_restart: the lock stays held
    report = rig.run(requested=True)
    canonical = os.path.join(rig.release_path(NEW), "codex")
    assert rig.state.last_validated_digest == file_digest(canonical, digest_kind())
    assert rig.state.last_validated_digest_kind == digest_kind()
    assert rig.state.last_validated_pid == rig.server.pid == 101
    assert not lock_is_free(rig.paths)  # the reply and a re-exec happen under it (§8.8)
    report.release()
    assert lock_is_free(rig.paths)


# -- modes and the re-exec decision (_reference_digest, update_modes, should_reexec) -----------


@pytest.mark.parametrize("running", [NEW, None], ids=["answers", "not ready"])
def test_a_binary_replaced_under_the_same_version_restarts_and_reexecs(
    rig: Rig, running: str | None
) -> None:
    # reference digest differs -> ALWAYS + REEXEC_IF_MANAGED_BINARY_CHANGED -> RESTARTED,
    # whatever the running server answers (restart_decision's ALWAYS row)
    flip_symlink(rig.paths.current, make_release(rig.paths, NEW))
    rig.server.version = running
    rig.state.last_validated_digest = "00" * 32
    rig.state.last_validated_digest_kind = digest_kind()
    rig.state.last_validated_pid = rig.server.pid
    report = rig.run(requested=True)
    assert rig.daemon.calls == ["stop", f"spawn {NEW}"]
    assert report.reexec is True
    assert report.output is not None
    assert report.output.status is UpdateStatus.UPDATED
    assert report.output.message == f"restarted the app server onto Codex {NEW}"


def test_the_same_binary_under_the_same_version_is_left_alone(rig: Rig) -> None:
    # reference digest equal -> IF_VERSION_CHANGED + NONE -> ALREADY_CURRENT, no re-exec
    release = make_release(rig.paths, NEW)
    flip_symlink(rig.paths.current, release)
    rig.server.version = NEW
    rig.state.last_validated_digest = file_digest(os.path.join(release, "codex"), digest_kind())
    rig.state.last_validated_digest_kind = digest_kind()
    rig.state.last_validated_pid = rig.server.pid
    report = rig.run(requested=True)
    assert (rig.daemon.calls, report.reexec) == ([], False)
    assert rig.state.last_result is CycleResult.NO_UPDATE


def test_a_rollback_never_reexecs(rig: Rig) -> None:
    # should_reexec_updater: REEXEC mode, outcome ROLLED_BACK -> False
    rig.state.last_validated_digest = "00" * 32
    rig.state.last_validated_digest_kind = digest_kind()
    rig.state.last_validated_pid = rig.server.pid
    rig.daemon.answers = [NotReadyError("app server did not become ready"), OLD]
    report = rig.run(requested=True)
    assert rig.state.last_result is CycleResult.ROLLED_BACK
    assert report.reexec is False


EXECUTABLE = ExecutableIdentity(digest=(0xAB,) * 32, path_digest=(0,) * 32)
REFERENCE_TABLE = {
    # (record, kind, state digest, state kind, state pid) -> reference
    "blake3 record carries its digest": (EXECUTABLE, "blake3", "cd", "blake3", 100, "ab" * 32),
    "record without identity, state names it": (None, "blake3", "cd", "blake3", 100, "cd"),
    "sha256 uses the state, not the record": (EXECUTABLE, "sha256", "cd", "sha256", 100, "cd"),
    "state digest of another kind": (None, "sha256", "cd", "blake3", 100, None),
    "state digest of another server": (None, "blake3", "cd", "blake3", 99, None),
    "no state digest": (None, "blake3", None, None, None, None),
}  # fmt: skip


@pytest.mark.parametrize(
    ("executable", "kind", "digest", "digest_kind_", "pid", "reference"),
    REFERENCE_TABLE.values(),
    ids=REFERENCE_TABLE.keys(),
)
def test_reference_digest(
    executable: ExecutableIdentity | None,
    kind: str,
    digest: str | None,
    digest_kind_: str | None,
    pid: int | None,
    reference: str | None,
) -> None:
    state = UpdaterState(
        last_validated_digest=digest,
        last_validated_digest_kind=digest_kind_,
        last_validated_pid=pid,
    )
    record = PidRecord(pid=100, process_start_time="1", executable=executable)
    running: PidState = Running(record=record, raw=b"r")
    assert _reference_digest(state, running, kind) == reference
    assert _reference_digest(state, Absent.MISSING, kind) is None
    assert _reference_digest(state, Absent.STARTING, kind) is None


# -- rollback (_restart, _roll_back; SPEC §8.7) -----------------------------------------------


ROLLBACK_CAUSES = {
    # _restart: spawn_and_wait fails -> roll back
    "not ready": (
        [NotReadyError("app server did not become ready"), OLD],
        ["stop", f"spawn {NEW}", "stop", f"spawn {OLD}"],
        "app server did not become ready",
    ),
    # _restart: it answers another version -> stop it (grace), roll back
    "wrong version": (
        ["1.5.0", OLD],
        ["stop", f"spawn {NEW}", "stop", "stop", f"spawn {OLD}"],
        f"app server reported version 1.5.0, expected {NEW}",
    ),
}


@pytest.mark.parametrize("requested", [True, False], ids=["requested", "scheduled"])
@pytest.mark.parametrize(
    ("answers", "calls", "cause"), ROLLBACK_CAUSES.values(), ids=ROLLBACK_CAUSES.keys()
)
def test_a_failed_restart_rolls_back_to_previous(
    rig: Rig, answers: list[str | DaemonError], calls: list[str], cause: str, requested: bool
) -> None:
    rig.state.consecutive_failures = 2
    rig.daemon.answers = list(answers)
    report = rig.run(requested=requested)
    old = rig.release_path(OLD)
    assert rig.daemon.calls == calls
    assert read_link(rig.paths.current) == old
    assert rig.server.version == OLD
    assert rig.state.quarantine == {NEW: NOW + DAY_MS}
    assert report.output is None
    assert report.error is not None
    assert error_text(report.error) == (
        f"updated app server {NEW} did not become ready; rolled back to {old}\n"
        f"\nCaused by:\n    {cause}"
    )
    assert rig.state.last_result is CycleResult.ROLLED_BACK
    assert rig.state.last_error == error_text(report.error)
    assert rig.state.consecutive_failures == 3
    # The rolled-back server is the validated reference now.
    assert rig.state.last_validated_digest == file_digest(os.path.join(old, "codex"), digest_kind())
    assert rig.state.last_validated_pid == rig.server.pid
    # Both restarts count toward the cap when unattended.
    assert rig.state.restarts_at_ms == ([] if requested else [NOW, NOW])
    assert not lock_is_free(rig.paths)


def _no_previous(rig: Rig) -> None:
    pass


def _previous_is_the_release(rig: Rig) -> None:
    flip_symlink(rig.paths.previous, rig.release_path(NEW))


def _previous_without_binary(rig: Rig) -> None:
    flip_symlink(rig.paths.previous, make_release(rig.paths, "0.9.0", binary=False))


@pytest.mark.parametrize(
    "make_previous",
    [_no_previous, _previous_is_the_release, _previous_without_binary],
    ids=["no previous", "previous is the failed release", "previous has no binary"],
)
def test_without_a_rollback_target_the_cycle_fails_with_the_cause(
    rig: Rig, make_previous: Callable[[Rig], None]
) -> None:
    # _roll_back: previous None / == release / without a binary -> FAILED, quarantined anyway
    flip_symlink(rig.paths.current, make_release(rig.paths, NEW))  # the install flips nothing
    make_previous(rig)
    rig.daemon.answers = [NotReadyError("app server did not become ready")]
    report = rig.run(requested=True)
    assert rig.daemon.calls == ["stop", f"spawn {NEW}"]
    assert read_link(rig.paths.current) == rig.release_path(NEW)
    assert rig.state.quarantine == {NEW: NOW + DAY_MS}
    assert report.error is not None
    assert error_text(report.error) == "app server did not become ready"
    assert rig.state.last_result is CycleResult.FAILED
    assert rig.state.last_validated_digest is None
    assert not lock_is_free(rig.paths)


def test_a_failed_rollback_says_nothing_serves(rig: Rig) -> None:
    # _roll_back: the previous release does not start either -> FAILED
    rig.daemon.answers = [
        NotReadyError("app server did not become ready"),
        SpawnError("failed to spawn app server"),
    ]
    report = rig.run(requested=True)
    old = rig.release_path(OLD)
    assert rig.daemon.calls == ["stop", f"spawn {NEW}", "stop", f"spawn {OLD}"]
    assert read_link(rig.paths.current) == old
    assert report.error is not None
    assert error_text(report.error) == (
        f"rollback to {old} failed; the app server is not running\n"
        "\nCaused by:\n    failed to spawn app server"
    )
    assert rig.state.last_result is CycleResult.FAILED
    assert rig.state.quarantine == {NEW: NOW + DAY_MS}


# -- quarantine (SPEC §8.10) ------------------------------------------------------------------


@pytest.mark.parametrize("had_previous", [False, True], ids=["no previous", "previous"])
def test_a_scheduled_cycle_skips_a_quarantined_release_and_undoes_the_flip(
    rig: Rig, capsys: pytest.CaptureFixture[str], had_previous: bool
) -> None:
    # _run: scheduled, quarantined, changed -> _undo_flip, deferred "quarantined"
    older = make_release(rig.paths, "0.9.0")
    if had_previous:
        flip_symlink(rig.paths.previous, older)
    rig.state.quarantine = {NEW: NOW + HOUR_MS}
    report = rig.run(requested=False)
    assert (report.output, report.error, report.lock) == (None, None, None)
    assert read_link(rig.paths.current) == rig.release_path(OLD)
    assert read_link(rig.paths.previous) == (older if had_previous else None)
    assert os.path.lexists(rig.paths.previous) is had_previous
    assert rig.daemon.calls == []
    assert rig.state.last_result is CycleResult.DEFERRED
    assert named(events(capsys), "deferred") == [
        {"reason": "quarantined", "release": rig.release_path(NEW)}
    ]


def test_a_quarantined_release_already_current_is_not_flipped(rig: Rig) -> None:
    # _run: scheduled, quarantined, not changed -> nothing to undo, deferred
    flip_symlink(rig.paths.current, make_release(rig.paths, NEW))
    rig.state.quarantine = {NEW: NOW + HOUR_MS}
    rig.run(requested=False)
    assert read_link(rig.paths.current) == rig.release_path(NEW)
    assert rig.state.last_result is CycleResult.DEFERRED


def test_a_requested_cycle_installs_a_quarantined_release(rig: Rig) -> None:
    # _run: requested -> the quarantine is not consulted
    rig.state.quarantine = {NEW: NOW + HOUR_MS}
    rig.run(requested=True)
    assert rig.state.last_result is CycleResult.UPDATED
    assert rig.daemon.calls == ["stop", f"spawn {NEW}"]


def test_an_expired_quarantine_is_dropped(rig: Rig) -> None:
    # run: active_quarantine prunes; the scheduled cycle goes ahead
    rig.state.quarantine = {NEW: NOW, "0.9.0": NOW - 1}
    rig.run(requested=False)
    assert rig.state.quarantine == {}
    assert rig.state.last_result is CycleResult.UPDATED


def test_a_release_that_cannot_report_its_version_is_quarantined(rig: Rig) -> None:
    # run: VerificationError -> _quarantine(exc.release), FAILED
    rig.install.error = VerificationError(
        "candidate Codex failed verification", rig.release_path(NEW)
    )
    report = rig.run(requested=True)
    assert rig.state.quarantine == {NEW: NOW + DAY_MS}
    assert report.error is not None
    assert error_text(report.error) == "candidate Codex failed verification"
    assert rig.state.last_result is CycleResult.FAILED


# -- restart cap (SPEC §8.10) -----------------------------------------------------------------


CAP_TABLE = {
    # (restarts before, requested) -> deferred?, restarts kept
    "four in the hour, scheduled: deferred": (
        [NOW - 50 * MINUTE_MS, NOW - 3, NOW - 2, NOW - 1], False, True
    ),
    "four in the hour, requested: goes ahead": ([NOW - 3, NOW - 2, NOW - 1, NOW], True, False),
    "three in the hour, scheduled: goes ahead": ([NOW - 3, NOW - 2, NOW - 1], False, False),
    "the fourth fell out of the window": ([NOW - HOUR_MS, NOW - 2, NOW - 1, NOW], False, False),
}  # fmt: skip


@pytest.mark.parametrize(
    ("restarts", "requested", "deferred"), CAP_TABLE.values(), ids=CAP_TABLE.keys()
)
def test_restart_cap(
    rig: Rig,
    capsys: pytest.CaptureFixture[str],
    restarts: list[int],
    requested: bool,
    deferred: bool,
) -> None:
    # _run: scheduled and restart_cap_reached -> deferred "restartCap" before any install
    rig.state.restarts_at_ms = list(restarts)
    report = rig.run(requested=requested)
    kept = [at for at in restarts if at > NOW - HOUR_MS]
    if deferred:
        assert (report.output, report.error, rig.install.calls) == (None, None, 0)
        assert rig.state.last_result is CycleResult.DEFERRED
        assert rig.state.restarts_at_ms == kept
        assert named(events(capsys), "deferred") == [{"reason": "restartCap"}]
    else:
        assert rig.state.last_result is CycleResult.UPDATED
        assert rig.state.restarts_at_ms == kept + ([] if requested else [NOW])


# -- busy: daemon.lock held by a user command (SPEC §8.6) -------------------------------------


def test_busy_retries_until_the_lock_is_free(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    # _try_restart_until_done: BUSY -> one "deferred busy" event, wait, retry
    held = open_lock_file(rig.paths.operation_lock, "test lock")
    assert try_lock(held)

    def release_on_third_wait(n: int) -> bool:
        if n == 3:
            os.close(held)
        return False

    rig.shutdown.on_wait = release_on_third_wait
    rig.run(requested=False)
    assert rig.shutdown.waits == 3
    assert rig.state.last_result is CycleResult.UPDATED
    assert named(events(capsys), "deferred") == [
        {"reason": "busy", "lock": rig.paths.operation_lock}
    ]


def test_sigterm_while_busy_ends_the_cycle(rig: Rig) -> None:
    # _try_restart_until_done: shutdown.wait says SIGTERM -> ShutdownRequestedError
    held = open_lock_file(rig.paths.operation_lock, "test lock")
    assert try_lock(held)
    rig.shutdown.on_wait = lambda _n: True
    try:
        with pytest.raises(ShutdownRequestedError):
            rig.run(requested=True)
    finally:
        os.close(held)
    assert rig.daemon.calls == []


def test_sigterm_during_the_install_ends_the_cycle(rig: Rig) -> None:
    # install_release raises ShutdownRequestedError: not a failure, it unwinds
    rig.install.error = ShutdownRequestedError()
    with pytest.raises(ShutdownRequestedError):
        rig.run(requested=False)
    assert rig.state.last_result is None


# -- unsupported current (SPEC §8.4) ---------------------------------------------------------


def _hand_built_directory(rig: Rig, version: str) -> None:
    os.unlink(rig.paths.current)
    os.makedirs(rig.paths.current)
    with open(os.path.join(rig.paths.current, "codex"), "w") as f:
        f.write(version)


def _link_outside_releases(rig: Rig, version: str) -> None:
    outside = os.path.join(rig.paths.package_root, "mine")
    os.makedirs(outside)
    with open(os.path.join(outside, "codex"), "w") as f:
        f.write(version)
    flip_symlink(rig.paths.current, outside)


@pytest.mark.parametrize(
    ("make_current", "binary", "installed"),
    [
        (_hand_built_directory, OLD, OLD),
        (_link_outside_releases, OLD, OLD),
        (_link_outside_releases, "", None),  # the version is informational only
    ],
    ids=["directory", "link outside releases", "link, broken binary"],
)
def test_a_hand_built_current_is_unsupported(
    rig: Rig,
    capsys: pytest.CaptureFixture[str],
    make_current: Callable[[Rig, str], None],
    binary: str,
    installed: str | None,
) -> None:
    # _run: current exists but is not a link into releases -> _unsupported
    make_current(rig, binary)
    report = rig.run(requested=True)
    assert report.error is None
    assert report.output is not None
    assert report.output.status is UpdateStatus.UNSUPPORTED
    assert report.output.message == UNSUPPORTED_MESSAGE
    assert report.output.installed_version == installed
    assert report.output.running_version == OLD
    assert rig.install.calls == 0
    assert rig.state.last_result is CycleResult.FAILED
    assert rig.state.last_error == UNSUPPORTED_MESSAGE
    assert f"warning: {UNSUPPORTED_MESSAGE} ({rig.paths.current})" in capsys.readouterr().err


def test_a_home_without_current_installs(rig: Rig) -> None:
    # _run: no current at all is supported: the first install creates it
    os.unlink(rig.paths.current)
    rig.server.version, rig.server.record = None, False
    report = rig.run(requested=True)
    assert read_link(rig.paths.current) == rig.release_path(NEW)
    assert report.output is not None
    assert report.output.status is UpdateStatus.UPDATED
    assert rig.state.last_result is CycleResult.NOT_RUNNING


# -- failures and the records they leave (run, _record) ---------------------------------------


def _settings_invalid(rig: Rig) -> None:
    with open(rig.paths.settings, "w") as f:
        f.write("{")


def _install_fails(rig: Rig) -> None:
    rig.install.error = InstallError("standalone Codex installer exited with status 1")


def _binary_broken(rig: Rig) -> None:
    rig.install = FakeInstall("")  # the release's binary reports nothing


FAILURE_TABLE = {
    "invalid settings": (_settings_invalid, "failed to parse settings"),
    "install fails": (_install_fails, "standalone Codex installer exited with status 1"),
    "installed binary broken": (_binary_broken, "managed Codex binary"),
}


@pytest.mark.parametrize(("breaker", "text"), FAILURE_TABLE.values(), ids=FAILURE_TABLE.keys())
def test_a_failing_step_fails_the_cycle(
    rig: Rig, breaker: Callable[[Rig], None], text: str
) -> None:
    # run: DaemonError/OSError from _run -> FAILED, Err, backoff counter +1
    rig.state.consecutive_failures = 1
    breaker(rig)
    report = rig.run(requested=True)
    assert report.output is None
    assert report.error is not None
    assert error_text(report.error).startswith(text)
    assert rig.state.last_result is CycleResult.FAILED
    assert rig.state.consecutive_failures == 2
    assert rig.state.quarantine == {}
    assert rig.daemon.calls == []


RECORD_TABLE = {
    # outcome's result -> consecutive_failures after 3 (SPEC §8.10 backoff)
    "updated resets": (OLD, True, 0),
    "not ready keeps": (None, True, 3),
    "not running resets": (None, False, 0),
}


@pytest.mark.parametrize(
    ("running", "record", "failures"), RECORD_TABLE.values(), ids=RECORD_TABLE.keys()
)
def test_consecutive_failures(rig: Rig, running: str | None, record: bool, failures: int) -> None:
    # _record: FAILED/ROLLED_BACK count (above), DEFERRED/NOT_READY keep, others reset
    rig.state.consecutive_failures = 3
    rig.server.version, rig.server.record = running, record
    rig.run(requested=True)
    assert rig.state.consecutive_failures == failures


def test_a_deferred_cycle_keeps_the_failure_count(rig: Rig) -> None:
    rig.state.consecutive_failures = 3
    rig.state.restarts_at_ms = [NOW - 4, NOW - 3, NOW - 2, NOW - 1]
    rig.run(requested=False)
    assert rig.state.last_result is CycleResult.DEFERRED
    assert rig.state.consecutive_failures == 3


@pytest.mark.parametrize(
    ("requested", "stage"), [(True, "requested_update"), (False, "scheduled_update")]
)
def test_the_cycle_is_logged_as_its_stage(
    rig: Rig, capsys: pytest.CaptureFixture[str], requested: bool, stage: str
) -> None:
    # run: the stage name follows requested; restart is its own stage
    rig.run(requested=requested)
    stages = [(line["stage"], line["outcome"]) for line in events(capsys) if "stage" in line]
    assert stages == [("restart", "succeeded"), (stage, "succeeded")]


def test_the_new_binary_is_prepared_before_the_old_server_stops(rig: Rig) -> None:
    """Its version and identity go into the cache while the old server still answers,
    so the restart's spawn does not compute them in the gap clients see."""
    rig.run(requested=True)
    assert rig.daemon.calls == ["stop", f"spawn {NEW}"]
    assert rig.prepared == [(NEW, NEW, rig.paths.binary_cache, 0)]
