"""The host's systemd as the kit uses it: the user manager, systemctl, linger, logind (SPEC §15).

The cheap checks (booted with systemd? a runtime directory of ours? a manager
listening on its private socket?) cost a few stat and connect calls, so ``status``
says "unavailable" without spawning anything; the tools (``systemctl --user``,
``loginctl``, ``busctl``) run only after those checks passed, and only on the paths
that need them (``enable``/``disable``, and a spawn from inside a login session).
"""

from __future__ import annotations

import os
import pwd

from daemonkit.errors import SystemdError, UserManagerUnavailableError, describe_exception
from daemonkit.managed import render_exit_status
from daemonkit.procinfo import find_executable
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Final

__all__ = [
    "LINGER_DIR",
    "SystemdHost",
    "ToolResult",
    "UserManager",
    "connect_user_manager",
    "current_user",
    "find_tool",
    "kill_user_processes",
    "linger_enabled",
    "run_tool",
    "runtime_dir",
    "set_linger",
    "user_manager_problem",
]

# sd_booted(3): this directory exists iff pid 1 is systemd.
BOOTED_DIR = "/run/systemd/system"
# logind keeps one file per lingering user here (loginctl enable-linger creates it).
LINGER_DIR = "/var/lib/systemd/linger"
# Where the tools live when PATH does not say (a unit's or cron's minimal PATH).
_FALLBACK_PATH = "/usr/bin:/bin"
CONNECT_TIMEOUT_S = 1.0
TOOL_TIMEOUT_S = 30.0
BUSCTL_TIMEOUT_S = 2.0


def find_tool(name: str, environ: Mapping[str, str]) -> str | None:
    """The absolute path of a systemd tool: on ``$PATH``, else in /usr/bin or /bin."""
    search = environ.get("PATH") or os.defpath
    return find_executable(name, search, "/") or find_executable(name, _FALLBACK_PATH, "/")


def runtime_dir(environ: Mapping[str, str], *, fallback: bool) -> str | None:
    """``$XDG_RUNTIME_DIR``; with ``fallback``, ``/run/user/<uid>`` when it is unset.

    ``su`` and ``sudo -u`` shells often lack the variable while the user's manager
    runs; systemctl is then given the directory pam_systemd would have set.
    """
    value = environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(value):
        return value
    return f"/run/user/{os.getuid()}" if fallback else None


def user_manager_problem(environ: Mapping[str, str], *, fallback: bool = True) -> str | None:
    """Why no user manager of ours answers, from cheap checks; None if one listens.

    The runtime directory must be our uid's: root with another user's
    XDG_RUNTIME_DIR would otherwise talk to that user's manager.
    """
    if not os.path.isdir(BOOTED_DIR):
        return f"this system was not booted with systemd ({BOOTED_DIR} does not exist)"
    directory = runtime_dir(environ, fallback=fallback)
    if directory is None:
        return "XDG_RUNTIME_DIR is not set"
    try:
        info = os.stat(directory)
    except OSError as exc:
        return f"no runtime directory {directory}: {describe_exception(exc)}"
    euid = os.geteuid()
    if info.st_uid != euid:
        return f"runtime directory {directory} is owned by uid {info.st_uid}, not {euid}"
    private = os.path.join(directory, "systemd", "private")
    from daemonkit.probe import connect_unix  # noqa: PLC0415 - socket costs start-up time

    try:
        connect_unix(private, CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        return f"no user manager listens on {private}: {describe_exception(exc)}"
    return None


class ToolResult(Value):
    __slots__ = ("argv", "returncode", "stderr", "stdout")

    def __init__(self, *, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv: Final = tuple(argv)
        self.returncode: Final = returncode
        self.stdout: Final = stdout
        self.stderr: Final = stderr

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def problem(self) -> str:
        """What went wrong, in the tool's words when it said any."""
        said = self.stderr.strip()
        if said:
            return said
        name = os.path.basename(self.argv[0])
        return f"{name} {' '.join(self.argv[1:])} exited with {render_exit_status(self.returncode)}"


def run_tool(argv: Sequence[str], env: Mapping[str, str], timeout_s: float) -> ToolResult:
    """Run a systemd tool with nothing on its stdin and both outputs captured.

    Raises ``SystemdError`` if it cannot be run or outlives ``timeout_s``.
    """
    import subprocess  # noqa: PLC0415 - only the paths that run tools load it

    try:
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=dict(env),
            timeout=timeout_s,
            check=False,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        raise SystemdError(f"timed out running {' '.join(argv)}") from None
    except OSError as exc:
        raise SystemdError(f"failed to run {argv[0]}") from exc
    return ToolResult(
        argv=argv,
        returncode=done.returncode,
        stdout=done.stdout.decode("utf-8", "replace"),
        stderr=done.stderr.decode("utf-8", "replace"),
    )


class UserManager:
    """A user manager that answered: ``systemctl --user`` against it."""

    def __init__(self, systemctl: str, env: Mapping[str, str]) -> None:
        self.systemctl = systemctl
        self.env = dict(env)

    def run(self, *args: str, timeout_s: float = TOOL_TIMEOUT_S) -> ToolResult:
        return run_tool([self.systemctl, "--user", "--no-ask-password", *args], self.env, timeout_s)

    def check(self, message: str, *args: str, timeout_s: float = TOOL_TIMEOUT_S) -> ToolResult:
        """Run ``systemctl --user <args>``; a failure is ``SystemdError(message)``."""
        result = self.run(*args, timeout_s=timeout_s)
        if not result.ok:
            raise SystemdError(message) from SystemdError(result.problem())
        return result


def connect_user_manager(environ: Mapping[str, str]) -> UserManager:
    """The user manager, once ``systemctl --user`` reaches it (SPEC §15.1).

    Raises ``UserManagerUnavailableError``: ``systemd user manager not available: <why>``.
    """
    problem = user_manager_problem(environ)
    systemctl = find_tool("systemctl", environ)
    if problem is None and systemctl is None:
        problem = "systemctl not found"
    if problem is None and systemctl is not None:
        env = dict(environ)
        env["XDG_RUNTIME_DIR"] = runtime_dir(environ, fallback=True) or ""
        manager = UserManager(systemctl, env)
        result = manager.run("show", "--property=Version")
        if result.ok:
            return manager
        problem = result.problem()
    raise UserManagerUnavailableError(f"systemd user manager not available: {problem}")


def current_user() -> str:
    """The caller's user name, as loginctl and the linger directory know it."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def linger_enabled(user: str) -> bool:
    """Whether logind keeps ``user``'s manager running without a session (its linger file)."""
    return os.path.exists(os.path.join(LINGER_DIR, user))


def set_linger(user: str, *, on: bool, environ: Mapping[str, str]) -> str | None:
    """``loginctl enable-linger|disable-linger <user>``; None on success, else why not.

    Never prompts: polkit allows it for one's own user by default on Debian, and
    root always; anything else is refused and reported, not asked for.
    """
    loginctl = find_tool("loginctl", environ)
    if loginctl is None:
        return "loginctl not found"
    verb = "enable-linger" if on else "disable-linger"
    try:
        result = run_tool([loginctl, "--no-ask-password", verb, user], environ, TOOL_TIMEOUT_S)
    except SystemdError as exc:
        return describe_exception(exc)
    if not result.ok:
        return result.problem()
    if linger_enabled(user) != on:
        state = "missing" if on else "still there"
        return f"loginctl {verb} succeeded but {os.path.join(LINGER_DIR, user)} is {state}"
    return None


def kill_user_processes(environ: Mapping[str, str]) -> bool | None:
    """logind's effective ``KillUserProcesses=``; None when logind cannot be asked.

    Asked over the bus rather than read from logind.conf: the compiled-in default
    differs between distributions, and drop-ins may override it.
    """
    busctl = find_tool("busctl", environ)
    if busctl is None:
        return None
    argv = [
        busctl,
        "get-property",
        "org.freedesktop.login1",
        "/org/freedesktop/login1",
        "org.freedesktop.login1.Manager",
        "KillUserProcesses",
    ]
    try:
        result = run_tool(argv, environ, BUSCTL_TIMEOUT_S)
    except SystemdError:
        return None
    match result.stdout.split() if result.ok else []:
        case ["b", "true"]:
            return True
        case ["b", "false"]:
            return False
        case _:
            return None


class SystemdHost:
    """The systemd effects of enable, disable and status's ``persistence``, on one object
    so that tests can substitute them (Supervisor's options seam); the real ones here."""

    def user_manager_problem(self, environ: Mapping[str, str]) -> str | None:
        return user_manager_problem(environ)

    def connect(self, environ: Mapping[str, str]) -> UserManager:
        return connect_user_manager(environ)

    def current_user(self) -> str:
        return current_user()

    def linger_enabled(self, user: str) -> bool:
        return linger_enabled(user)

    def set_linger(self, user: str, *, on: bool, environ: Mapping[str, str]) -> str | None:
        return set_linger(user, on=on, environ=environ)
