"""The environment a detached child gets: the caller's, cleaned (SPEC §4.7)."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["REMOTE_CONTROL_DISABLED_ENV", "child_environment", "working_directory"]

_DROPPED = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET")
REMOTE_CONTROL_DISABLED_ENV = "CODEX_INTERNAL_APP_SERVER_REMOTE_CONTROL_DISABLED"


def child_environment(
    environ: Mapping[str, str], codex_home: str, *, remote_control: bool | None
) -> dict[str, str]:
    """The caller's environment minus socket activation and the kit's own variables.

    Socket-activation variables would make the child believe it owns sockets it
    does not; ``CODEX_DAEMONKIT_*`` are for the kit. ``remote_control`` is None for
    children other than the app-server (``--version`` runs, the updater).
    """
    env = {
        key: value
        for key, value in environ.items()
        if key not in _DROPPED and not key.startswith("CODEX_DAEMONKIT_")
    }
    env["CODEX_HOME"] = codex_home
    if remote_control is True:
        env.pop(REMOTE_CONTROL_DISABLED_ENV, None)
    elif remote_control is False:
        env[REMOTE_CONTROL_DISABLED_ENV] = "1"
    return env


def working_directory(environ: Mapping[str, str]) -> str:
    """$HOME if it is a directory, else / : the same wherever the CLI was run.

    The updater runs there, and so does the script channel's installer, whether the
    updater or the ``install`` command runs it.
    """
    home = environ.get("HOME", "")
    return home if home and os.path.isdir(home) else "/"
