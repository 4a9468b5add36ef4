"""The normal lifecycle against the fake, end to end through the CLI (SPEC §13.2 row 5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.harness import is_alive

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = pytest.mark.timeout(60)


def test_start_version_restart_stop_cycle(fake_home: Home) -> None:
    started = fake_home.run("start").json
    assert started["status"] == "started"
    pid = started["pid"]
    assert isinstance(pid, int)
    assert fake_home.record_pid() == pid
    assert fake_home.run("start").json["status"] == "alreadyRunning"
    assert fake_home.run("version").json["status"] == "running"
    restarted = fake_home.run("restart").json
    assert restarted["status"] == "restarted"
    assert restarted["pid"] != pid
    assert not is_alive(pid)
    stopped = fake_home.run("stop").json
    assert stopped["status"] == "stopped"
    assert "pid" not in stopped
    assert fake_home.record() is None
    assert fake_home.run("stop").json["status"] == "notRunning"
    failed = fake_home.run("version")
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert "No such file or directory (os error 2)" in failed.stderr
