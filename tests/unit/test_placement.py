"""Out of the login session's scope: the decision table, the cgroup parser, the exec argv
(SPEC §15.2)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import pytest

from daemonkit.placement import (
    Placement,
    Placer,
    ScopeAction,
    ScopeCommand,
    plan_placement,
    scope_action,
    session_scope,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

pytestmark = pytest.mark.timeout(10)

MOVE, WARN, STAY = ScopeAction.MOVE, ScopeAction.WARN, ScopeAction.STAY


# in session scope, user manager reachable, linger, KillUserProcesses -> action
TABLE = [
    # Not in a session scope (a unit, cron, a container, no systemd): nothing changes.
    *[
        (False, reachable, linger, kill, STAY)
        for reachable, linger, kill in itertools.product(
            (True, False), (True, False), (True, False, None)
        )
    ],
    # Linger on and a manager to take it: move, whatever logind would do.
    (True, True, True, True, MOVE),
    (True, True, True, False, MOVE),
    (True, True, True, None, MOVE),
    # Linger off: the manager dies with the last session, so the server stays; it is
    # killed at logout only with KillUserProcesses=yes, and then the user is told.
    (True, True, False, True, WARN),
    (True, True, False, False, STAY),
    (True, True, False, None, STAY),
    # No manager to move it to: the same, linger or not.
    (True, False, False, True, WARN),
    (True, False, True, True, WARN),
    (True, False, False, False, STAY),
    (True, False, True, False, STAY),
    (True, False, True, None, STAY),
    (True, False, False, None, STAY),
]


@pytest.mark.parametrize(("in_scope", "reachable", "linger", "kill", "action"), TABLE)
def test_scope_decision_table(
    in_scope: bool, reachable: bool, linger: bool, kill: bool | None, action: ScopeAction
) -> None:
    assert (
        scope_action(
            in_session_scope=in_scope,
            user_manager_reachable=reachable,
            linger=linger,
            kill_user_processes=kill,
        )
        is action
    )


def test_the_table_covers_every_input() -> None:
    rows = {row[:4] for row in TABLE}
    assert len(rows) == len(TABLE) == 2 * 2 * 2 * 3


# -- /proc/self/cgroup ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cgroup", "scope"),
    [
        ("0::/user.slice/user-1000.slice/session-3.scope\n", "session-3.scope"),
        ("0::/user.slice/user-0.slice/session-c12.scope\n", "session-c12.scope"),
        # systemd's hybrid layout: the named hierarchy and the unified one agree.
        (
            (
                "12:cpu,cpuacct:/user.slice\n"
                "1:name=systemd:/user.slice/user-1000.slice/session-7.scope\n"
                "0::/user.slice/user-1000.slice/session-7.scope\n"
            ),
            "session-7.scope",
        ),
        # Already out: the user manager's scopes and services, and a kit unit.
        (
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/codex-app-server-9.scope\n",
            None,
        ),
        ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/codex-daemon.service\n", None),
        ("0::/system.slice/ssh.service\n", None),
        ("0::/\n", None),  # a container
        ("", None),  # no /proc
        # Only where logind tracks sessions counts, not another v1 controller's path.
        ("4:memory:/user.slice/user-1000.slice/session-3.scope\n0::/init.scope\n", None),
        ("0::/user.slice/user-1000.slice/session-3.scope/child\n", None),
        ("0::/user.slice/user-1000.slice/session-.scope\n", None),
        ("0::/user.slice/user-1000.slice/my-session-3.scope\n", None),
    ],
)
def test_session_scope(cgroup: str, scope: str | None) -> None:
    assert session_scope(cgroup) == scope


def test_this_host_is_not_in_a_session_and_plans_nothing() -> None:
    # The tests run under no logind session here (and in CI); the plan reads one file.
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        assert session_scope(f.read()) is None
    assert plan_placement({}) == Placement(action=STAY)


# -- the exec -----------------------------------------------------------------------------------

ARGV = ["/h/packages/standalone/releases/1/codex", "app-server", "--listen", "unix://"]


def scope(invocation_id: str | None = None) -> ScopeCommand:
    return ScopeCommand(
        systemd_run="/usr/bin/systemd-run",
        env_tool="/usr/bin/env",
        what="app-server",
        description="Codex app-server for /h (codex-daemonkit)",
        invocation_id=invocation_id,
    )


def test_exec_argv_removes_systemd_runs_invocation_id() -> None:
    assert scope().wrap(4804, ARGV) == [
        "/usr/bin/systemd-run",
        "--user",
        "--scope",
        "--collect",
        "--quiet",
        "--no-ask-password",
        "--unit=codex-app-server-4804",
        "--description=Codex app-server for /h (codex-daemonkit)",
        "--",
        "/usr/bin/env",
        "-u",
        "INVOCATION_ID",
        "--",
        *ARGV,
    ]


def test_exec_argv_restores_the_callers_invocation_id() -> None:
    assert scope("feed").wrap(7, ARGV) == [
        "/usr/bin/systemd-run",
        "--user",
        "--scope",
        "--collect",
        "--quiet",
        "--no-ask-password",
        "--unit=codex-app-server-7",
        "--description=Codex app-server for /h (codex-daemonkit)",
        "--setenv=INVOCATION_ID=feed",
        "--",
        *ARGV,
    ]


@pytest.mark.parametrize(
    ("argv", "invocation_id", "passes"),
    [
        (ARGV, None, True),
        (["/opt/$HOME/codex", "app-server"], None, False),  # systemd >= 254 expands it
        (["/opt/codex", "--x=${Y}"], "feed", False),
        (["/opt/a=b/codex", "app-server"], None, False),  # env reads it as NAME=VALUE
        (["/opt/a=b/codex", "app-server"], "feed", True),  # no env in between
        (["/usr/bin/python3", "-m", "updater", "run"], None, True),
    ],
)
def test_argv_that_would_not_pass_unchanged(
    argv: list[str], invocation_id: str | None, passes: bool
) -> None:
    assert scope(invocation_id).passes_unchanged(argv) is passes


def test_only_a_move_gets_a_scope() -> None:
    tools = {"systemd_run": "/usr/bin/systemd-run", "env_tool": "/usr/bin/env", "user": "me"}
    moving = Placement(action=MOVE, **tools)
    assert moving.scope_for("updater", "/h", ARGV, {}) == ScopeCommand(
        systemd_run="/usr/bin/systemd-run",
        env_tool="/usr/bin/env",
        what="updater",
        description="Codex updater for /h (codex-daemonkit)",
        invocation_id=None,
    )
    assert moving.scope_for("updater", "/h", ARGV, {"INVOCATION_ID": "x"}) == ScopeCommand(
        systemd_run="/usr/bin/systemd-run",
        env_tool="/usr/bin/env",
        what="updater",
        description="Codex updater for /h (codex-daemonkit)",
        invocation_id="x",
    )
    assert moving.scope_for("app-server", "/h", ["/opt/$x/codex"], {}) is None
    assert Placement(action=WARN, **tools).scope_for("app-server", "/h", ARGV, {}) is None
    assert Placement(action=STAY).scope_for("app-server", "/h", ARGV, {}) is None


def test_the_warning_names_the_user() -> None:
    assert Placement(action=WARN, user="me").warning() == (
        "this server will stop when you log out; run codex-daemon enable "
        "(or loginctl enable-linger me)"
    )


# -- one decision per command, a fresh one per updater spawn -----------------------------------


class Plans:
    def __init__(self, placement: Placement) -> None:
        self.placement = placement
        self.count = 0

    def __call__(self, environ: Mapping[str, str]) -> Placement:
        self.count += 1
        return self.placement


@pytest.mark.parametrize(("remember", "plans", "warnings"), [(True, 1, 1), (False, 3, 3)])
def test_a_command_decides_and_warns_once(remember: bool, plans: int, warnings: int) -> None:
    plan = Plans(Placement(action=WARN, user="me"))
    said: list[str] = []
    placer = Placer({}, "/h", said.append, remember=remember, plan=plan)
    for what in ("app-server", "updater", "app-server"):
        assert placer(what, ARGV, {}) is None
    assert plan.count == plans
    assert said == [plan.placement.warning()] * warnings


def test_a_move_that_cannot_pass_unchanged_says_so() -> None:
    moving = Placement(
        action=MOVE, user="me", systemd_run="/usr/bin/systemd-run", env_tool="/usr/bin/env"
    )
    said: list[str] = []
    placer = Placer({}, "/h", said.append, remember=True, plan=lambda _environ: moving)
    assert placer("app-server", ["/opt/$x/codex"], {}) is None
    assert placer("updater", ARGV, {}) is not None
    assert said == [
        (
            "the app-server stays in this login session's scope: systemd-run would change its "
            "command line (it holds $, or = in the program's path)"
        )
    ]
