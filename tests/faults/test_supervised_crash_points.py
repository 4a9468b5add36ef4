"""An updater killed at every step of a supervised restart leaves a home the next command
converges from (SPEC §14.3, §13 test hooks).

``CODEX_DAEMONKIT_TEST_UPDATER_CRASH_AT=<point>`` arms the crash point in the updater
that ``start`` spawns (not in the CLI). The server is then killed; the supervisor's
restart dies at the point, as a SIGKILL of the updater would leave it. The next plain
``start`` must find exactly one recorded server whose identity matches /proc, and an
updater that supervises it again.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

import pytest

from tests.harness import (
    SUPERVISION_ONLY,
    app_servers_alive,
    boot_id,
    is_alive,
    scheduled_updater,
    start_ticks,
    updater_pid,
    wait_for,
    write_settings,
)

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = pytest.mark.timeout(90)


def one_recorded_server(home: Home) -> int:
    servers = wait_for(lambda: app_servers_alive(home), what="an app-server")
    assert len(servers) == 1, f"expected one app-server, found {servers}"
    record = home.record()
    assert record is not None
    assert record["pid"] == servers[0]
    assert record["processIdentity"] == {
        "bootId": boot_id(),
        "startTicks": start_ticks(servers[0]),
    }
    return servers[0]


@pytest.mark.parametrize("point", ["after-reserve", "after-spawn", "after-publish"])
def test_a_supervised_restart_killed_at_any_step_converges(home: Home, point: str) -> None:
    home.install_fake()
    write_settings(home, SUPERVISION_ONLY)
    env = home.env(CODEX_DAEMONKIT_TEST_HOOKS="1", CODEX_DAEMONKIT_TEST_UPDATER_CRASH_AT=point)
    started = home.run("start", env=env).json
    first = started["pid"]
    assert isinstance(first, int)
    crashing = scheduled_updater(home)

    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not is_alive(crashing), what=f"the updater to die at {point}")

    again = home.run("start").json
    assert again["status"] in ("started", "alreadyRunning")
    server = one_recorded_server(home)
    updater = wait_for(lambda: updater_pid(home), what="a new updater")
    assert updater != crashing
    scheduled_updater(home)

    # The new updater supervises: the next kill is repaired without a command.
    os.kill(server, signal.SIGKILL)

    def replaced() -> bool:
        servers = app_servers_alive(home)
        return servers != [] and server not in servers

    wait_for(replaced, what="a supervised restart after the recovery", timeout=20)
    one_recorded_server(home)
