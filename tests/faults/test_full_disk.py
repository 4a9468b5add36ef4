"""Writes that fail half-way: the previous file stays whole, the next command works.

SPEC §3.4 (create a temp, write all bytes, rename), §4.6 step 6, §3.7, §3.8, §13.6
row 25. Two ways to make writes fail:

- ``RLIMIT_FSIZE`` set tiny in the CLI (Python ignores SIGXFSZ, so an over-long write
  fails with EFBIG, ``File too large (os error 27)``) while it publishes a pid record,
  writes settings.json, desired-state.json or the version cache. The spawned
  app-server inherits the limit; the fake's few bytes of stderr fit under it.
- (root, where mounts are allowed) a full tmpfs mounted as the state directory: a real
  ENOSPC, ``No space left on device (os error 28)``.

Each case: exit 1 with a clear error naming the file (or, for the best-effort version
cache, success), the previous file byte-identical, no temp left, nothing half-written
read afterwards, and nothing running that is not recorded.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.faults.figures import Figures
from tests.harness import UPDATER_OFF, Result, app_servers_alive, is_alive, wait_for, write_settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.harness import Home

pytestmark = pytest.mark.timeout(90)

EFBIG = "File too large (os error 27)"
ENOSPC = "No space left on device (os error 28)"
TMPFS_BYTES = 256 * 1024


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
def figures(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Figures:
    return Figures.for_test(tmp_path_factory, request)


@pytest.fixture
def fake(home: Home) -> Home:
    write_settings(home, {**UPDATER_OFF, "shutdownGraceSeconds": 2})
    home.install_fake()
    return home


def limited(max_bytes: int) -> Callable[[], None]:
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return set_limit


def run_limited(home: Home, max_bytes: int, *args: str) -> Result:
    done = subprocess.run(
        home.argv(*args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=home.env(),
        preexec_fn=limited(max_bytes),  # the test process runs no threads here
        timeout=60,
        check=False,
    )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


def read_bytes(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None


def temps(home: Home) -> list[str]:
    return sorted(n for n in os.listdir(home.paths.state_dir) if ".tmp" in n)


def assert_write_error(result: Result, first_line: str, cause: str) -> None:
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.split("\n", 1)[0] == first_line, result.stderr
    assert f"Caused by:\n    {cause}\n" in result.stderr, result.stderr


def started_pid(home: Home) -> int:
    started = home.run("start").json
    assert started["status"] == "started", started
    pid = started["pid"]
    assert isinstance(pid, int)
    return pid


# -- RLIMIT_FSIZE: EFBIG ------------------------------------------------------------------


def test_pid_record_that_cannot_be_written_kills_the_child(fake: Home, figures: Figures) -> None:
    """SPEC §4.6 step 6: the publish fails, the child is SIGTERMed, the reservation goes."""
    figures.add("write_failures_tried")
    # desired-state.json (about 75 bytes) fits; the record (over 100) does not.
    result = run_limited(fake, 100, "start")
    assert_write_error(
        result, f"Error: failed to write pid temp file {fake.paths.app_server.tmp}", EFBIG
    )
    wait_for(lambda: app_servers_alive(fake) == [], what="the unrecorded child to be stopped")
    assert read_bytes(fake.paths.app_server.record) is None
    assert temps(fake) == []
    assert json.loads(read_bytes(fake.paths.desired_state) or b"")["desiredState"] == "running"

    pid = started_pid(fake)
    assert fake.record_pid() == pid
    assert app_servers_alive(fake) == [pid]
    figures.add("write_failures_safe")


def test_settings_that_cannot_be_written_stay_as_they_were(fake: Home, figures: Figures) -> None:
    figures.add("write_failures_tried")
    pid = started_pid(fake)
    record = read_bytes(fake.paths.app_server.record)
    before = read_bytes(fake.paths.settings)
    result = run_limited(fake, 40, "enable-remote-control")
    assert_write_error(
        result, f"Error: failed to write settings temp file {fake.paths.settings_tmp}", EFBIG
    )
    assert read_bytes(fake.paths.settings) == before
    assert temps(fake) == []
    assert read_bytes(fake.paths.app_server.record) == record, "the server was left alone"
    assert app_servers_alive(fake) == [pid]

    enabled = fake.run("enable-remote-control").json
    assert enabled["status"] == "enabled"
    settings = json.loads(read_bytes(fake.paths.settings) or b"")
    assert settings["remoteControlEnabled"] is True
    assert settings["updater"] == {"autoUpdateEnabled": False}
    assert fake.record_pid() in app_servers_alive(fake)
    figures.add("write_failures_safe")


def test_desired_state_that_cannot_be_written_stops_start_before_spawning(
    fake: Home, figures: Figures
) -> None:
    figures.add("write_failures_tried")
    assert fake.run("stop").json["status"] == "notRunning"
    before = read_bytes(fake.paths.desired_state)
    assert before is not None
    result = run_limited(fake, 10, "start")
    assert_write_error(
        result, f"Error: failed to write desired state {fake.paths.desired_state}", EFBIG
    )
    assert read_bytes(fake.paths.desired_state) == before
    assert temps(fake) == []
    assert app_servers_alive(fake) == []
    assert read_bytes(fake.paths.app_server.record) is None

    started_pid(fake)
    assert json.loads(read_bytes(fake.paths.desired_state) or b"")["desiredState"] == "running"
    figures.add("write_failures_safe")


def test_stop_that_cannot_record_the_intent_leaves_a_managed_server(
    fake: Home, figures: Figures
) -> None:
    """The intent is written before anything is stopped (SPEC §2.7 step 3): on EFBIG the
    stop fails as a whole and the server stays recorded and managed, never half-stopped."""
    figures.add("write_failures_tried")
    pid = started_pid(fake)
    before = read_bytes(fake.paths.desired_state)
    result = run_limited(fake, 10, "stop")
    assert_write_error(
        result, f"Error: failed to write desired state {fake.paths.desired_state}", EFBIG
    )
    assert read_bytes(fake.paths.desired_state) == before
    assert is_alive(pid)
    status = fake.run("status").json
    assert (status["status"], status["backend"], status["pid"]) == ("running", "pid", pid)

    assert fake.run("stop").json["status"] == "stopped"
    assert app_servers_alive(fake) == []
    figures.add("write_failures_safe")


def test_version_cache_that_cannot_be_written_is_skipped(fake: Home, figures: Figures) -> None:
    figures.add("write_failures_tried")
    started_pid(fake)
    os.unlink(fake.paths.binary_cache)
    result = run_limited(fake, 10, "version")
    assert result.returncode == 0, result
    assert result.stderr == ""
    assert result.json["managedCodexVersion"] == "1.0.0"
    assert read_bytes(fake.paths.binary_cache) is None
    assert temps(fake) == [], "a failed cache write leaves no temp behind"
    figures.add("write_failures_safe")


# -- a full file system: ENOSPC --------------------------------------------------------------


@pytest.fixture
def full_state_dir(fake: Home) -> Iterator[Callable[[bool], None]]:
    """Mount a small tmpfs as the state directory; the callable fills or frees it."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    state_dir = fake.paths.state_dir
    settings = read_bytes(fake.paths.settings)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700", "tmpfs", state_dir],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    filler = Path(state_dir) / "filler"

    def fill(full: bool) -> None:
        if not full:
            filler.unlink(missing_ok=True)
            return
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == 28, exc  # noqa: PT017 - the point is the errno
        finally:
            os.close(fd)

    try:
        Path(fake.paths.settings).write_bytes(settings or b"{}")
        os.chmod(fake.paths.settings, 0o600)
        yield fill
    finally:
        # Stop what runs from the tmpfs before it goes, or the unmount is only lazy.
        for pid in app_servers_alive(fake):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: app_servers_alive(fake) == [], what="servers gone before unmount")
        subprocess.run(["umount", state_dir], check=False)
        if os.path.ismount(state_dir):
            subprocess.run(["umount", "-l", state_dir], check=False)


def test_full_file_system_fails_cleanly_and_recovers(
    fake: Home, full_state_dir: Callable[[bool], None], figures: Figures
) -> None:
    figures.add("write_failures_tried", 3)
    pid = started_pid(fake)
    record = read_bytes(fake.paths.app_server.record)
    settings = read_bytes(fake.paths.settings)
    full_state_dir(True)

    enabled = fake.run("enable-remote-control")
    assert_write_error(
        enabled, f"Error: failed to write settings temp file {fake.paths.settings_tmp}", ENOSPC
    )
    assert read_bytes(fake.paths.settings) == settings
    restarted = fake.run("restart")
    assert_write_error(
        restarted, f"Error: failed to write desired state {fake.paths.desired_state}", ENOSPC
    )
    assert read_bytes(fake.paths.app_server.record) == record
    assert app_servers_alive(fake) == [pid], "a failed restart stopped nothing"
    status = fake.run("status")
    assert status.json["status"] == "running", "status never fails (SPEC §2.12)"
    assert temps(fake) == []

    full_state_dir(False)
    assert fake.run("stop").json["status"] == "stopped"
    assert started_pid(fake) != pid
    assert fake.run("enable-remote-control").json["status"] == "enabled"
    assert fake.run("stop").json["status"] == "stopped"
    assert app_servers_alive(fake) == []
    figures.add("write_failures_safe", 3)
