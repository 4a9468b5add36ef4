"""Test harness: short CODEX_HOMEs, the CLI as a subprocess, fakes installed as releases.

Every process a test starts carries ``DK_TEST_MARK=<mark>`` in its environment (the
kit passes the caller's environment on to the app-server), so teardown can find and
kill exactly the processes this test started, by pid, and fail the test if any
survived. Nothing is ever stopped by name.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

from daemonkit.paths import DaemonPaths, Layout

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

REPO = Path(__file__).resolve().parents[1]
FAKE_SOURCE = REPO / "tests" / "fakes" / "fake_codex.py"
MARK_VAR = "DK_TEST_MARK"
TARGET = "x86_64-unknown-linux-musl"
WAIT_S = 15.0
POLL_S = 0.01
REAL_CODEX_VERSION = "0.169.0"
# Supervision alone (SPEC §14): a short grace, no update cycles, no health check, so
# that nothing but the server's exit wakes the updater.
SUPERVISION_ONLY: dict[str, object] = {
    "shutdownGraceSeconds": 1,
    "updater": {"autoUpdateEnabled": False},
    "supervisor": {"healthCheckIntervalSeconds": 0},
}
# Settings that keep the updater out of play: no updates and no supervision (SPEC §14.1).
UPDATER_OFF: dict[str, object] = {
    "updater": {"autoUpdateEnabled": False},
    "supervisor": {"restartOnExit": False},
}

T = TypeVar("T")


def remote_control_status(sock: str, *, timeout: float = 10.0) -> str:
    """The remote-control status a client learns by connecting and initializing.

    The server pushes ``remoteControl/status/changed`` around its initialize response
    (SPEC §6.5); this reads messages until that notification, within ``timeout``.
    """
    from websockets.sync.client import unix_connect  # noqa: PLC0415 - only a few tests talk

    request = {
        "id": 1,
        "method": "initialize",
        "params": {"clientInfo": {"name": "dk_tests", "title": "dk tests", "version": "0"}},
    }
    deadline = time.monotonic() + timeout
    with unix_connect(sock, "ws://localhost/", open_timeout=timeout, compression=None) as ws:
        ws.send(json.dumps(request))
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no remoteControl/status/changed from {sock} within {timeout} s")
            message = json.loads(ws.recv(timeout=remaining))
            if message.get("method") == "remoteControl/status/changed":
                status = message["params"]["status"]
                assert isinstance(status, str)
                return status


def wait_for(predicate: Callable[[], T], *, what: str, timeout: float = WAIT_S) -> T:
    """Poll ``predicate`` until truthy; fail with the last value seen at the deadline."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value:
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what} (last value: {value!r})")
        time.sleep(POLL_S)
        value = predicate()
    return value


def write_settings(home: Home, settings: Mapping[str, object]) -> bytes:
    """settings.json as a client might have written it (JSON on one line); its bytes."""
    return write_settings_text(home, json.dumps(settings))


def write_settings_text(home: Home, text: str) -> bytes:
    """settings.json holding exactly ``text``, which need not be valid; its bytes, for
    tests that check the kit left them alone. The file is 0600 in a 0700 state dir, as
    the kit keeps its own state files (SPEC §3.2)."""
    Path(home.paths.state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    path = Path(home.paths.settings)
    path.write_text(text)
    path.chmod(0o600)
    return path.read_bytes()


def rust_daemon(home: Home, binary: Path, command: str, *args: str) -> dict[str, object]:
    """``codex app-server daemon <command>`` of a real Codex in this home: it must exit 0
    and print exactly one JSON object, as the kit's commands do."""
    done = subprocess.run(
        [str(binary), "app-server", "daemon", command, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=home.env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1, lines
    value = json.loads(lines[0])
    assert isinstance(value, dict)
    return value


# Every name Rust's daemon keeps in <S> of its dedicated layout (SPEC §16): the kit may
# add only desired-state.json there.
RUST_STATE_NAMES = frozenset(
    {
        "daemon.pid",
        "daemon.pid.lock",
        "daemon.stderr.log",
        "daemon.stderr.log.previous",
        "daemon-updater.pid",
        "daemon-updater.pid.lock",
        "daemon-updater.stderr.log",
        "daemon-updater.stderr.log.previous",
        "daemon-updater.sock",
        "daemon.lock",
        "settings.json",
    }
)


def assert_no_kit_only_files(home: Home) -> None:
    """<S> of a Rust dedicated home holds Rust's files and desired-state.json only."""
    present = set(os.listdir(home.paths.state_dir))
    assert present - RUST_STATE_NAMES <= {"desired-state.json"}, sorted(present)


def holds_for(predicate: Callable[[], bool], seconds: float, *, what: str) -> None:
    """A negative check: ``predicate`` stays true for ``seconds``, polled throughout."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), what
        time.sleep(POLL_S)


# Marks are "<session>-<test>": the end-of-session sweep looks only at this pytest
# session's processes, never at another run's that happens to share the machine.
SESSION = uuid.uuid4().hex[:12]


def marked_pids(mark: str | None = None) -> list[int]:
    """Pids of live processes carrying ``mark``, or any mark of this session if None."""
    exact = f"{MARK_VAR}={mark}".encode() if mark else None
    prefix = f"{MARK_VAR}={SESSION}-".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        state = stat[stat.rfind(b")") + 2 :].split()[0]
        if state in (b"Z", b"X"):
            continue
        entries = environ.split(b"\0")
        if (exact in entries) if exact else any(e.startswith(prefix) for e in entries):
            found.append(int(name))
    return found


def cmdline(pid: int) -> list[bytes]:
    """The process's argv from /proc, or [] once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def app_servers_alive(home: Home) -> list[int]:
    """This test's live (non-zombie) processes running Codex in app-server mode."""
    return sorted(pid for pid in marked_pids(home.mark) if b"app-server" in cmdline(pid))


def stat_fields(pid: int) -> list[bytes]:
    """Fields of /proc/<pid>/stat from the state on (field 3 is index 0).

    Read here, not through daemonkit.procinfo, so tests check the kit against the
    kernel rather than against itself.
    """
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return data[data.rfind(b")") + 2 :].split()


def start_ticks(pid: int) -> int:
    return int(stat_fields(pid)[19])  # field 22


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@contextmanager
def try_operation_lock(home: Home) -> Iterator[bool]:
    """Hold ``daemon.lock`` for the block if it is free right now (never waits)."""
    try:
        fd = os.open(home.paths.operation_lock, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the flock


def updater_pid(home: Home) -> int | None:
    """The pid in this home's updater record, or None without a (regular) record."""
    raw = read_regular(home.paths.updater.record)
    if raw is None:
        return None
    pid = json.loads(raw)["pid"]
    assert isinstance(pid, int)
    return pid


def scheduled_updater(home: Home) -> int:
    """The recorded updater: alive, started by this test, a scheduled (not --once) run."""
    pid = updater_pid(home)
    assert pid is not None, "no updater record"
    assert is_alive(pid)
    assert home.carries_mark(pid)
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    assert argv[1:] == ["-m", "updater", "run"]
    return pid


def is_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")


def real_codex_binary() -> Path | None:
    """The pinned real Codex binary installed by .ci/run, if present."""
    explicit = os.environ.get("DK_REAL_CODEX")
    if explicit:
        return Path(explicit)
    vendor = (
        REPO
        / ".ci-cache"
        / f"codex-{REAL_CODEX_VERSION}"
        / "npm"
        / "node_modules"
        / "@openai"
        / "codex-linux-x64"
        / "vendor"
        / TARGET
        / "bin"
        / "codex"
    )
    return vendor if vendor.is_file() else None


# Where .ci/run notes the binary of npm's `latest` it resolved at run time.
LATEST_NOTE = REPO / ".ci-cache" / "latest-codex"


def latest_codex_binary() -> Path | None:
    """npm's latest Codex as .ci/run resolved it this run, if it installed one.

    ``DK_REAL_CODEX_LATEST`` (set by .ci/run) names the binary; a direct pytest run
    after .ci/run finds the same path in .ci-cache/latest-codex.
    """
    explicit = os.environ.get("DK_REAL_CODEX_LATEST")
    if explicit:
        return Path(explicit)
    try:
        noted = Path(LATEST_NOTE.read_text().strip())
    except OSError:
        return None
    return noted if noted.is_file() else None


@dataclass(frozen=True)
class RealCodex:
    """One real Codex build the e2e tests run against: ``pinned`` or npm's ``latest``."""

    label: str
    binary: Path
    version: str


def real_codex_build(label: str) -> RealCodex | None:
    """The ``pinned`` or ``latest`` build, its version read from the binary itself."""
    binary = real_codex_binary() if label == "pinned" else latest_codex_binary()
    if binary is None:
        return None
    done = subprocess.run(
        [str(binary), "--version"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=True,
    )
    return RealCodex(label, binary, done.stdout.decode().split()[1])


def read_regular(path: str) -> bytes | None:
    """Read a file only if it is a regular file: a FIFO planted by a test must not
    hang teardown, and a symlink must not be followed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict[str, object]:
        assert self.returncode == 0, f"exit {self.returncode}: {self.stderr}"
        lines = self.stdout.splitlines()
        assert len(lines) == 1, f"expected one JSON line, got {self.stdout!r}"
        value = json.loads(lines[0])
        assert isinstance(value, dict)
        return value


class Home:
    """A short, fresh CODEX_HOME under /tmp/dk-* and everything a test runs in it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dk-", dir="/tmp"))
        self.path = self.root / "h"
        self.path.mkdir(mode=0o700)
        self.user_home = self.root / "u"
        self.user_home.mkdir()
        self.mark = f"{SESSION}-{uuid.uuid4().hex}"
        self.paths = DaemonPaths(str(self.path))
        self.extra_env: dict[str, str] = {}
        self.started: list[subprocess.Popen[bytes]] = []
        self.groups: list[int] = []

    # -- installs -------------------------------------------------------------------

    def install_fake(
        self, version: str = "1.0.0", *, current: bool = True, **config: object
    ) -> Path:
        """Install the fake codex as release ``<version>-<target>``; flip current to it."""
        release = Path(self.paths.releases) / f"{version}-{TARGET}"
        release.mkdir(parents=True, exist_ok=True)
        source = FAKE_SOURCE.read_text().splitlines(keepends=True)
        binary = release / "codex"
        binary.write_text(f"#!{sys.executable}\n" + "".join(source[1:]))
        binary.chmod(0o755)
        (release / "fake-codex.json").write_text(json.dumps({"version": version, **config}))
        if current:
            self.point_current(release)
        return release

    def configure_fake(self, release: Path, **config: object) -> None:
        data = json.loads((release / "fake-codex.json").read_text())
        data.update(config)
        (release / "fake-codex.json").write_text(json.dumps(data))
        # The kit caches `--version` against the binary's identity; a reconfigured
        # fake is a different binary as far as the cache should know.
        os.utime(release / "codex")

    def install_real(self, codex: RealCodex | None = None) -> Path:
        """Make a real Codex (default: the pinned one) the managed binary (tarball layout,
        via symlink)."""
        if codex is None:
            binary = real_codex_binary()
            version = REAL_CODEX_VERSION
        else:
            binary, version = codex.binary, codex.version
        if binary is None:
            pytest.skip("the real Codex CLI is not installed (bash .ci/run installs it)")
        release = Path(self.paths.releases) / f"{version}-{TARGET}"
        (release / "bin").mkdir(parents=True, exist_ok=True)
        (release / "bin" / "codex").symlink_to(binary)
        self.point_current(release)
        return release

    def point_current(self, release: Path) -> None:
        current = Path(self.paths.current)
        tmp = current.with_name("current.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(release)
        tmp.replace(current)

    # -- running the CLI ------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("CODEX_", "FAKE_CODEX_", "PYTEST_"))
        }
        env.update(
            {
                "CODEX_HOME": str(self.path),
                "HOME": str(self.user_home),
                # A runtime directory that does not exist: no user manager answers,
                # whatever the host runs, so status reports persistence "unavailable"
                # and a spawn never leaves for a transient scope (SPEC §15).
                "XDG_RUNTIME_DIR": str(self.root / "no-runtime-dir"),
                "PYTHONPATH": str(REPO),
                MARK_VAR: self.mark,
            }
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "daemonkit", *args]

    def run(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> Result:
        done = subprocess.run(
            self.argv(*args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=dict(env) if env is not None else self.env(),
            timeout=timeout,
            check=False,
        )
        return Result(
            done.returncode,
            done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"),
        )

    def popen(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            self.argv(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else self.env(),
        )
        self.started.append(process)
        return process

    def spawn_marked(
        self, argv: list[str], *, group: bool = False, **kwargs: object
    ) -> subprocess.Popen[bytes]:
        """Start a helper process (sleep, flock, a fake) carrying this test's mark.

        ``group=True`` starts it in a new session and teardown kills its whole group
        (``flock lock sleep 30`` forks the sleep).
        """
        group = group or bool(kwargs.pop("start_new_session", False))
        process = subprocess.Popen(  # type: ignore[call-overload]
            argv, env=self.env(), start_new_session=group, **kwargs
        )
        if group:
            self.groups.append(process.pid)
        self.started.append(process)
        assert isinstance(process, subprocess.Popen)
        return process

    # -- state ----------------------------------------------------------------------

    def record(self) -> dict[str, object] | None:
        raw = read_regular(self.paths.app_server.record)
        if raw is None:
            return None
        value = json.loads(raw)
        assert isinstance(value, dict)
        return value

    def record_pid(self) -> int | None:
        record = self.record()
        if record is None:
            return None
        pid = record["pid"]
        assert isinstance(pid, int)
        return pid

    def stop_updater(self) -> None:
        """SIGTERM the updater that `start` spawned (by its recorded pid) and wait.

        For tests about something else that need a quiet home.
        """
        raw = read_regular(self.paths.updater.record)
        if raw is None:
            return
        pid = json.loads(raw)["pid"]
        if not (isinstance(pid, int) and pid > 1 and self.carries_mark(pid)):
            return
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not is_alive(pid), what=f"updater {pid} to exit")
        # A SIGTERM that lands before the updater installs its handler kills it with
        # its record in place; that record is stale, and the kit treats it so.

    # -- teardown -------------------------------------------------------------------

    def follow_layout(self) -> DaemonPaths:
        """Point ``paths`` at the layout the home has now, as every command does
        (SPEC §16): Rust's record names, the kit's files outside the home."""
        self.paths = DaemonPaths.detect(str(self.path), self.env())
        return self.paths

    def carries_mark(self, pid: int) -> bool:
        return pid in marked_pids(self.mark)

    def _kill_recorded(self) -> list[int]:
        """SIGKILL the processes named by this home's records, if they carry our mark."""
        killed = []
        # Both layouts' names: a Rust command may have moved the home to the other.
        records = (
            os.path.join(self.paths.state_dir, f"{stem}.pid")
            for layout in Layout
            for stem in layout.stems
        )
        for record_path in records:
            try:
                pid = json.loads(read_regular(record_path) or b"")["pid"]
            except (ValueError, KeyError, TypeError):
                continue
            if not (isinstance(pid, int) and pid > 1 and self.carries_mark(pid)):
                continue
            try:
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.append(pid)
        return killed

    def close(self) -> list[int]:
        """Stop by pid everything this test started; return the pids that leaked.

        Recorded processes are stopped by the pid in their record, and only when they
        carry this test's mark; whatever still carries the mark afterwards leaked.
        """
        killed = self._kill_recorded()
        for pgid in self.groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        # Detached processes are reaped by init, which can take a moment; so can the
        # children of a killed group.
        deadline = time.monotonic() + 5
        while any(is_alive(pid) for pid in killed) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        grace = time.monotonic() + 1
        leaked = marked_pids(self.mark)
        while leaked and killed and time.monotonic() < grace:
            time.sleep(POLL_S)
            leaked = marked_pids(self.mark)
        for pid in leaked:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)
        return leaked
