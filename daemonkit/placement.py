"""Out of the login session's scope: where a spawned server and updater live (SPEC §15.2).

A command typed in an SSH or desktop login runs in logind's ``session-<n>.scope``,
and so does everything it double-forks. With ``KillUserProcesses=yes`` logind kills
that scope when the session ends. The user manager outlives sessions only with
linger on, so (``scope_action``):

    in a session scope | manager reachable | linger | KillUserProcesses | action
    no                 | -                 | -      | -                 | STAY
    yes                | yes               | on     | -                 | MOVE
    yes                | no, or linger off          | yes               | WARN
    yes                | no, or linger off          | no / unknown      | STAY

Moving with linger off would hand the server to a manager that stops about 10 s
after the last session ends, killing a server that Debian's default
(``KillUserProcesses=no``) lets live on in the session scope.

The move, in the launcher's final process after its pid record is published::

    execve(systemd-run --user --scope --collect --quiet --no-ask-password
                       --unit=codex-<what>-<pid> --description=<...>
                       -- env -u INVOCATION_ID -- <argv>)

``systemd-run --scope`` asks the user manager for a transient scope holding its own
pid (``PIDs=[getpid()]``), waits for the start job, then ``execvpe``s the command
(systemd 252, src/run/run.c ``start_transient_scope``; the user manager asks pid 1 to
move a process out of a cgroup it does not own, ``AttachProcessesToUnit``). Nothing
forks: the pid, its start ticks and so the published record stay exact, and
/proc/<pid>/cmdline becomes ``argv`` with the last exec. systemd-run adds
``INVOCATION_ID`` to the environment; ``env -u`` takes it out again (``--setenv``
restores a value the caller had), so the server sees SPEC §4.7's environment. From
systemd 254 on, systemd-run also expands ``$VAR`` in the command's words: an argv
holding ``$`` (or an ``=`` in argv[0], which ``env`` would read as an assignment)
cannot pass unchanged and is not moved.
"""

from __future__ import annotations

from enum import Enum, auto

from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Final

__all__ = [
    "Placement",
    "Placer",
    "ScopeAction",
    "ScopeCommand",
    "plan_placement",
    "scope_action",
    "session_scope",
]

INVOCATION_ID = "INVOCATION_ID"


class ScopeAction(Enum):
    MOVE = auto()  # into a transient scope of the user manager
    WARN = auto()  # stays in the session scope, which logind kills at logout
    STAY = auto()  # stays where it is, and nothing to say


def scope_action(
    *,
    in_session_scope: bool,
    user_manager_reachable: bool,
    linger: bool,
    kill_user_processes: bool | None,
) -> ScopeAction:
    """SPEC §15.2's decision; ``kill_user_processes`` is None when logind was not asked
    or did not answer, and then nothing is said."""
    if not in_session_scope:
        return ScopeAction.STAY
    if user_manager_reachable and linger:
        return ScopeAction.MOVE
    if kill_user_processes:
        return ScopeAction.WARN
    return ScopeAction.STAY


def session_scope(cgroup: str) -> str | None:
    """The logind session scope ``/proc/<pid>/cgroup`` puts the process in, or None.

    The unified hierarchy (``0::``) or systemd's named legacy one decides; other v1
    controllers' paths are not where logind tracks sessions.
    """
    for line in cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if (hierarchy, controllers) == ("0", "") or controllers == "name=systemd":
            name = path.rstrip("/").rpartition("/")[2]
            session = name.removeprefix("session-").removesuffix(".scope")
            # logind session ids are ASCII letters and digits ("3", "c12").
            if name == f"session-{session}.scope" and session.isascii() and session.isalnum():
                return name
    return None


class ScopeCommand(Value):
    """How the launcher's final process execs ``argv`` into a new scope, same pid."""

    __slots__ = ("description", "env_tool", "invocation_id", "systemd_run", "what")

    def __init__(
        self,
        *,
        systemd_run: str,
        env_tool: str,
        what: str,
        description: str,
        invocation_id: str | None,
    ) -> None:
        self.systemd_run: Final = systemd_run
        self.env_tool: Final = env_tool
        self.what: Final = what  # "app-server" or "updater": the scope's name
        self.description: Final = description
        self.invocation_id: Final = invocation_id  # the caller's own INVOCATION_ID, if any

    def wrap(self, pid: int, argv: Sequence[str]) -> list[str]:
        """The argv that runs ``argv`` in scope ``codex-<what>-<pid>.scope``."""
        command = [
            self.systemd_run,
            "--user",
            "--scope",
            "--collect",
            "--quiet",
            "--no-ask-password",
            f"--unit=codex-{self.what}-{pid}",
            f"--description={self.description}",
        ]
        if self.invocation_id is not None:
            return [*command, f"--setenv={INVOCATION_ID}={self.invocation_id}", "--", *argv]
        return [*command, "--", self.env_tool, "-u", INVOCATION_ID, "--", *argv]

    def passes_unchanged(self, argv: Sequence[str]) -> bool:
        """Whether ``wrap`` execs exactly ``argv`` in the end (see the module docstring)."""
        if any("$" in word for word in argv):
            return False
        return self.invocation_id is not None or "=" not in argv[0]


class Placement(Value):
    """What this command's spawns do about the session scope (SPEC §15.2)."""

    __slots__ = ("action", "env_tool", "systemd_run", "user")

    def __init__(
        self,
        *,
        action: ScopeAction,
        user: str = "",
        systemd_run: str | None = None,
        env_tool: str | None = None,
    ) -> None:
        self.action: Final = action
        self.user: Final = user
        self.systemd_run: Final = systemd_run
        self.env_tool: Final = env_tool

    def warning(self) -> str:
        return (
            "this server will stop when you log out; run codex-daemon enable "
            f"(or loginctl enable-linger {self.user})"
        )

    def scope_for(
        self, what: str, codex_home: str, argv: Sequence[str], env: Mapping[str, str]
    ) -> ScopeCommand | None:
        """The scope to exec ``argv`` into, or None when it stays (or cannot pass)."""
        if self.action is not ScopeAction.MOVE or not self.systemd_run or not self.env_tool:
            return None
        scope = ScopeCommand(
            systemd_run=self.systemd_run,
            env_tool=self.env_tool,
            what=what,
            description=f"Codex {what} for {codex_home} (codex-daemonkit)",
            invocation_id=env.get(INVOCATION_ID),
        )
        return scope if scope.passes_unchanged(argv) else None


def _own_cgroup() -> str:
    try:
        with open("/proc/self/cgroup", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""  # no /proc (macOS): no logind either


def plan_placement(environ: Mapping[str, str]) -> Placement:
    """Gather the decision's inputs, cheapest first, and decide.

    Outside a session scope (a unit, cron, a container, any host without systemd)
    this reads one /proc file and runs nothing. Inside one, it stats and connects to
    the user manager's socket, reads the linger file, and asks logind (busctl) only
    when the answer decides between WARN and STAY.
    """
    if session_scope(_own_cgroup()) is None:
        return Placement(action=ScopeAction.STAY)
    from daemonkit.systemd import (  # noqa: PLC0415 - only inside a login session
        current_user,
        find_tool,
        kill_user_processes,
        linger_enabled,
        user_manager_problem,
    )

    user = current_user()
    systemd_run = find_tool("systemd-run", environ)
    env_tool = find_tool("env", environ)
    # The server's own environment must reach the manager: no /run/user fallback.
    reachable = (
        systemd_run is not None
        and env_tool is not None
        and user_manager_problem(environ, fallback=False) is None
    )
    linger = linger_enabled(user)
    kill = None if reachable and linger else kill_user_processes(environ)
    action = scope_action(
        in_session_scope=True,
        user_manager_reachable=reachable,
        linger=linger,
        kill_user_processes=kill,
    )
    return Placement(action=action, user=user, systemd_run=systemd_run, env_tool=env_tool)


class Placer:
    """A command's spawns, placed: decide, warn when the decision says so, and give
    each spawn its scope.

    ``remember`` keeps one decision for the object's life, as a CLI command wants (one
    decision and one warning for the server and the updater it spawns); the
    long-lived updater decides afresh at every spawn, since linger may have changed.
    """

    def __init__(
        self,
        environ: Mapping[str, str],
        codex_home: str,
        warn: Callable[[str], None],
        *,
        remember: bool,
        plan: Callable[[Mapping[str, str]], Placement] = plan_placement,
    ) -> None:
        self._plan = plan
        self._environ = environ
        self._codex_home = codex_home
        self._warn = warn
        self._remember = remember
        self._placement: Placement | None = None

    def placement(self) -> Placement:
        if self._placement is not None:
            return self._placement
        placement = self._plan(self._environ)
        if placement.action is ScopeAction.WARN:
            self._warn(placement.warning())
        if self._remember:
            self._placement = placement
        return placement

    def __call__(
        self, what: str, argv: Sequence[str], env: Mapping[str, str]
    ) -> ScopeCommand | None:
        placement = self.placement()
        scope = placement.scope_for(what, self._codex_home, argv, env)
        if scope is None and placement.action is ScopeAction.MOVE:
            self._warn(
                f"the {what} stays in this login session's scope: systemd-run would change "
                "its command line (it holds $, or = in the program's path)"
            )
        return scope
