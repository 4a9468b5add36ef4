"""wait-ready: probe until the app-server answers, or explain why it never did (SPEC §6.4)."""

from __future__ import annotations

import time

from daemonkit.errors import NotReadyError, ProbeError, SpawnError
from daemonkit.logtail import render_tail
from daemonkit.managed import try_codex_version
from daemonkit.probe import PROBE_BUDGET_S, AppServerInfo, probe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemonkit.backend import ProcessHandle

__all__ = ["START_TIMEOUT_S", "wait_until_ready"]

START_TIMEOUT_S = 10.0
FIRST_RETRY_S = 0.005
MAX_RETRY_S = 0.05


def wait_until_ready(
    socket_path: str,
    *,
    process: ProcessHandle | None,
    bin_used: str,
    log_path: str,
    env: Mapping[str, str] | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> AppServerInfo:
    """Probe ``socket_path`` until it answers, ``process`` exits, or the deadline passes.

    Retries start at 5 ms and double to 50 ms; a retry wakes early when the watched
    process exits, and its exit ends the wait at once.
    """
    deadline = time.monotonic() + timeout_s
    delay = FIRST_RETRY_S
    while True:
        remaining = deadline - time.monotonic()
        try:
            return probe(socket_path, min(PROBE_BUDGET_S, max(remaining, 0.001)))
        except ProbeError as exc:
            cause: Exception = exc
        if process is not None and process.has_exited():
            cause = SpawnError(f"app-server process {process.pid} exited before it became ready")
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        pause = min(delay, remaining)
        if process is not None:
            if process.wait_exit(pause):
                cause = SpawnError(
                    f"app-server process {process.pid} exited before it became ready"
                )
                break
        else:
            time.sleep(pause)
        delay = min(delay * 2, MAX_RETRY_S)
    raise NotReadyError(_not_ready_message(socket_path, bin_used, log_path, env)) from cause


def _not_ready_message(
    socket_path: str, bin_used: str, log_path: str, env: Mapping[str, str] | None
) -> str:
    version = try_codex_version(bin_used, env) or "unknown"
    message = (
        f"app server did not become ready on {socket_path}\n"
        "\n"
        "Daemon used app-server:\n"
        f"  path: {bin_used}\n"
        f"  version: {version}"
    )
    tail = render_tail(log_path)
    return f"{message}\n\n{tail}" if tail else message
