"""The updater keeps the app-server running (SPEC §14), against the fake codex.

Real processes and real signals: the server is killed, crashed, stopped with SIGSTOP
or told to exit by its release's configuration, and the test waits (deadlines, never
sleeps) for the supervisor to bring back a server that the record names by identity,
or for it to leave the home alone when it must.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness import (
    SUPERVISION_ONLY,
    boot_id,
    holds_for,
    is_alive,
    read_regular,
    scheduled_updater,
    start_ticks,
    try_operation_lock,
    updater_pid,
    wait_for,
)
from tests.harness import write_settings as harness_write_settings

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = pytest.mark.timeout(90)

WITNESS = "witness.jsonl"


def write_settings(home: Home, **supervisor: object) -> None:
    """Supervision only, with these ``supervisor`` keys on top."""
    harness_write_settings(
        home,
        {**SUPERVISION_ONLY, "supervisor": {"healthCheckIntervalSeconds": 0, **supervisor}},
    )


def start(home: Home) -> int:
    started = home.run("start").json
    assert started["status"] == "started"
    pid = started["pid"]
    assert isinstance(pid, int)
    scheduled_updater(home)  # auto-update is off: the updater runs to supervise
    return pid


def server_starts(home: Home) -> list[int]:
    raw = read_regular(str(home.root / WITNESS)) or b""
    return [
        event["pid"] for line in raw.splitlines() if (event := json.loads(line))["event"] == "start"
    ]


def replacement_of(home: Home, old: int) -> int:
    """Wait until the record names a new live server; check it names it by identity."""

    def new_pid() -> int | None:
        raw = read_regular(home.paths.app_server.record)
        if not raw:  # absent, or the empty reservation of a spawn in progress
            return None
        pid = json.loads(raw)["pid"]
        assert isinstance(pid, int)
        return pid if pid != old and is_alive(pid) else None

    pid = wait_for(new_pid, what=f"a server to replace {old}", timeout=20)
    assert pid is not None
    record = home.record()
    assert record is not None
    assert record["processIdentity"] == {"bootId": boot_id(), "startTicks": start_ticks(pid)}
    # The record is published before the server is ready (SPEC §4.6); it answers soon.
    wait_for(lambda: home.run("version").returncode == 0, what=f"server {pid} to answer")
    assert home.run("version").json["backend"] == "pid"
    return pid


def supervisor_status(home: Home) -> dict[str, object]:
    value = home.run("status").json["supervisor"]
    assert isinstance(value, dict)
    return value


@pytest.mark.parametrize(
    "death", ["SIGKILL", "SIGSEGV", "exit 1"], ids=["sigkill", "sigsegv", "exit-1"]
)
def test_a_server_that_dies_is_restarted(home: Home, death: str) -> None:
    release = home.install_fake(
        witness=str(home.root / WITNESS), exit_after=1.0 if death == "exit 1" else None
    )
    write_settings(home)
    first = start(home)
    assert supervisor_status(home)["state"] == "watching"

    began = time.monotonic()
    if death == "exit 1":
        # The running server exits with status 1 a second after it became ready; its
        # replacement reads the release's configuration anew and stays.
        home.configure_fake(release, exit_after=None)
        wait_for(lambda: not is_alive(first), what=f"server {first} to exit with status 1")
        began = time.monotonic()
    else:
        os.kill(first, getattr(signal, death))
    second = replacement_of(home, first)
    recovered_s = time.monotonic() - began
    assert not is_alive(first)
    assert server_starts(home) == [first, second]
    # The supervisor saves "watching" just after the server answered its own probe.
    wait_for(lambda: supervisor_status(home)["state"] == "watching", what="watching again")
    status = supervisor_status(home)
    assert status["restarts"] == 1
    last_exit = status["lastExit"]
    assert isinstance(last_exit, dict)
    assert last_exit["pid"] == first
    print(f"recovered in {recovered_s:.3f} s")


def test_the_first_restart_is_at_once_and_later_ones_back_off(home: Home) -> None:
    # Scale 2: the second exit's 1 s backoff lasts 2 s, long enough to see it in status.
    home.extra_env.update({"CODEX_DAEMONKIT_TEST_HOOKS": "1", "CODEX_DAEMONKIT_TIME_SCALE": "2"})
    home.install_fake(witness=str(home.root / WITNESS))
    write_settings(home)
    pid = start(home)
    os.kill(pid, signal.SIGKILL)
    second = replacement_of(home, pid)
    killed_at = time.monotonic()
    os.kill(second, signal.SIGKILL)
    wait_for(lambda: supervisor_status(home)["state"] == "backingOff", what="backing off")
    third = replacement_of(home, second)
    assert time.monotonic() - killed_at >= 2.0
    wait_for(lambda: supervisor_status(home)["state"] == "watching", what="watching again")
    assert supervisor_status(home)["restarts"] == 2
    assert is_alive(third)


def test_a_user_stop_is_never_undone(home: Home) -> None:
    home.extra_env.update({"CODEX_DAEMONKIT_TEST_HOOKS": "1", "CODEX_DAEMONKIT_TIME_SCALE": "0.01"})
    home.install_fake(witness=str(home.root / WITNESS))
    write_settings(home, healthCheckIntervalSeconds=5)  # scaled: a probe every 50 ms
    first = start(home)
    updater = scheduled_updater(home)
    assert home.run("stop").json["status"] == "stopped"

    # Many health-check intervals later: still down, the updater still there.
    holds_for(
        lambda: (
            read_regular(home.paths.app_server.record) is None and server_starts(home) == [first]
        ),
        1.5,
        what="a stopped server stays stopped",
    )
    assert is_alive(updater)

    second = home.run("start").json["pid"]
    assert isinstance(second, int)
    os.kill(second, signal.SIGKILL)
    replacement_of(home, second)  # watched again


def test_a_crash_loop_gives_up_after_five_exits_until_a_user_start(home: Home) -> None:
    home.extra_env.update({"CODEX_DAEMONKIT_TEST_HOOKS": "1", "CODEX_DAEMONKIT_TIME_SCALE": "0.05"})
    good = home.install_fake("1.0.0", witness=str(home.root / WITNESS))
    bad = home.install_fake("1.0.1", witness=str(home.root / WITNESS), exit_after=0.3)
    write_settings(home)
    first = start(home)  # 1.0.1 is current: it dies 0.3 s after each start

    wait_for(lambda: supervisor_status(home)["state"] == "gaveUp", what="the supervisor to give up")
    starts = server_starts(home)
    assert len(starts) == 5, starts  # the first start and four supervised restarts
    assert starts[0] == first
    assert home.record() is None
    # No more spawns once it gave up.
    holds_for(lambda: len(server_starts(home)) == 5, 1.0, what="no spawn after giving up")
    updater = scheduled_updater(home)

    home.point_current(good)
    pid = home.run("start").json["pid"]
    assert isinstance(pid, int)
    wait_for(lambda: supervisor_status(home)["state"] == "watching", what="watching again")
    assert supervisor_status(home)["restarts"] == 0
    assert scheduled_updater(home) == updater
    os.kill(pid, signal.SIGKILL)
    replacement_of(home, pid)
    del bad


def test_a_hung_server_is_stopped_and_restarted(home: Home) -> None:
    home.extra_env.update({"CODEX_DAEMONKIT_TEST_HOOKS": "1", "CODEX_DAEMONKIT_TIME_SCALE": "0.05"})
    home.install_fake(witness=str(home.root / WITNESS))
    write_settings(home, healthCheckIntervalSeconds=5)  # scaled: every 0.25 s
    hung = start(home)
    os.kill(hung, signal.SIGSTOP)
    replacement = replacement_of(home, hung)
    wait_for(lambda: not is_alive(hung), what=f"the hung server {hung} to be gone")
    assert is_alive(replacement)
    log = Path(home.paths.updater.log).read_text()
    failures = [
        json.loads(line)
        for line in log.splitlines()
        if '"event":"health_check_failed"' in line and f'"pid":{hung}' in line
    ]
    assert [f["details"]["consecutive"] for f in failures] == [1, 2, 3]
    assert supervisor_status(home)["lastExit"]["reason"] == "hung"  # type: ignore[index]


def test_restart_on_exit_false_leaves_a_dead_server_dead(home: Home) -> None:
    home.install_fake(witness=str(home.root / WITNESS))
    write_settings(home, restartOnExit=False)
    settings = json.loads(Path(home.paths.settings).read_text())
    settings["updater"]["autoUpdateEnabled"] = True  # an updater runs, for updates only
    harness_write_settings(home, settings)
    first = home.run("start").json["pid"]
    assert isinstance(first, int)
    scheduled_updater(home)
    assert supervisor_status(home)["state"] == "off"
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not is_alive(first), what="the server to die")
    holds_for(lambda: server_starts(home) == [first], 1.0, what="no restart")


def test_no_updater_when_updates_and_supervision_are_both_off(home: Home) -> None:
    home.install_fake()
    write_settings(home, restartOnExit=False)
    assert home.run("start").json["status"] == "started"
    assert updater_pid(home) is None
    assert supervisor_status(home)["state"] == "off"


def test_a_running_updater_watches_a_server_a_command_started_within_a_second(
    home: Home,
) -> None:
    home.install_fake(witness=str(home.root / WITNESS))
    write_settings(home)
    first = start(home)
    updater = scheduled_updater(home)
    assert home.run("stop").json["status"] == "stopped"
    second = home.run("start").json["pid"]
    assert isinstance(second, int)
    assert scheduled_updater(home) == updater  # the same updater, told to watch
    # Nothing else wakes this updater (no schedule, no health check): only the
    # command's notification makes it watch the new server (SPEC §14.2).
    killed_at = time.monotonic()
    os.kill(second, signal.SIGKILL)
    replacement_of(home, second)
    assert time.monotonic() - killed_at < 5
    del first


def voluntary_switches(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError(f"no voluntary_ctxt_switches for {pid}")


def initialize_requests(home: Home, server: int) -> int:
    raw = read_regular(str(home.root / WITNESS)) or b""
    return sum(
        1
        for line in raw.splitlines()
        if (event := json.loads(line))["event"] == "request"
        and event["pid"] == server
        and event.get("method") == "initialize"
    )


@pytest.mark.parametrize("interval", [0, 5], ids=["health-check-off", "health-check-on"])
def test_an_idle_supervisor_wakes_only_for_its_health_check(home: Home, interval: int) -> None:
    # Scale 0.05: a 5 s interval is 0.25 s; the self-upgrade check (10 min) is 30 s away.
    home.extra_env.update({"CODEX_DAEMONKIT_TEST_HOOKS": "1", "CODEX_DAEMONKIT_TIME_SCALE": "0.05"})
    home.install_fake(witness=str(home.root / WITNESS))
    write_settings(home, healthCheckIntervalSeconds=interval)
    server = start(home)
    updater = scheduled_updater(home)
    # Let the start-up settle: the command's notification and the updater's own start
    # are handled once its switch count stands still for a moment.
    wait_for(lambda: supervisor_status(home)["state"] == "watching", what="watching")
    settled = [voluntary_switches(updater)]

    def standing_still() -> bool:
        time.sleep(0.3)
        settled.append(voluntary_switches(updater))
        return settled[-1] == settled[-2] or interval != 0

    wait_for(standing_still, what="the updater to go idle")
    probes_before = initialize_requests(home, server)
    switches_before = voluntary_switches(updater)
    window_s = 2.5
    deadline = time.monotonic() + window_s
    while time.monotonic() < deadline:
        time.sleep(0.1)  # the test only observes; it must not wake the updater
    probes = initialize_requests(home, server) - probes_before
    switches = voluntary_switches(updater) - switches_before
    print(f"interval {interval}: {probes} probes, {switches} voluntary switches in {window_s} s")
    if interval == 0:
        assert probes == 0
        assert switches == 0
    else:
        expected = window_s / (interval * 0.05)  # one probe per interval: 10
        assert expected * 0.6 <= probes <= expected * 1.2


@pytest.mark.parametrize("order", ["stop-waits-with-the-supervisor", "stop-after-the-restart"])
def test_a_stop_racing_a_supervised_restart_for_the_lock_leaves_nothing(
    home: Home, order: str
) -> None:
    """SPEC §14.3/§14.4: whoever takes daemon.lock first, the user's stop has the last word."""
    home.install_fake(witness=str(home.root / WITNESS))
    write_settings(home)
    first = start(home)
    with try_operation_lock(home) as held:
        assert held
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: not is_alive(first), what="the server to die")
        if order == "stop-waits-with-the-supervisor":
            # Both wait for the lock; either may get it first.
            stopper = home.popen("stop")
            holds_for(lambda: stopper.poll() is None, 0.3, what="stop waits for the lock")
        else:
            stopper = None
    if stopper is None:
        # The supervisor gets the lock first and restarts; the stop then stops that one.
        wait_for(lambda: len(server_starts(home)) == 2, what="the supervised restart")
        stopped = home.run("stop").json
    else:
        out, err = stopper.communicate(timeout=60)
        assert stopper.returncode == 0, err
        stopped = json.loads(out)
    assert stopped["status"] in ("stopped", "notRunning")
    holds_for(
        lambda: (
            read_regular(home.paths.app_server.record) is None
            and all(not is_alive(pid) for pid in server_starts(home))
        ),
        1.0,
        what="no server after the stop",
    )
