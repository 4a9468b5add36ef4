"""Rust's own update loop, run by the kit's updater in the dedicated layout (SPEC §16).

A home in Rust's dedicated package layout is updated by Rust: the kit installs nothing
there. With auto-update on, the kit's updater runs the managed binary's
``codex app-server daemon pid-update-loop`` as its child, in its own process group, and
goes on supervising the server itself. So the home has one recorded updater, as Rust
expects: Rust's loop binds the request socket (``update`` of either CLI reaches it),
and whoever stops the recorded updater by its group, a kit command or a Rust one, stops
both. A loop that exits is started again after 1, 2, 4 ... 60 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from daemonkit.decisions import backoff_delay_s
from daemonkit.environment import child_environment
from daemonkit.managed import canonical_bin, managed_bin_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemonkit.paths import DaemonPaths
    from updater.log import EventLog

__all__ = ["RustUpdateLoop"]

FIRST_RETRY_S = 1.0
RETRY_CAP_S = 60.0
# A loop that ran this long before it exited starts the backoff afresh.
HEALTHY_RUN_S = 600.0
# Without a pidfd (kernels before 5.3) the child's exit is polled this often.
POLL_S = 1.0
STOP_GRACE_S = 5.0


class RustUpdateLoop:
    """The child ``pid-update-loop`` and when to start it again."""

    def __init__(
        self, paths: DaemonPaths, environ: Mapping[str, str], log: EventLog, scale: float
    ) -> None:
        self.paths = paths
        self.environ = environ
        self.log = log
        self.scale = scale
        self.process: subprocess.Popen[bytes] | None = None
        self.pidfd: int | None = None
        self.started_at = 0.0
        self.failures = 0
        self.retry_at: float | None = None  # monotonic; set after an exit

    def want(self, enabled: bool) -> None:
        """Run the loop while ``enabled`` (auto-update on), else stop it."""
        if not enabled:
            self.stop()
            self.retry_at = None
            self.failures = 0
            return
        if self.process is None and (self.retry_at is None or time.monotonic() >= self.retry_at):
            self._start()

    def fds(self) -> list[int]:
        return [] if self.pidfd is None else [self.pidfd]

    def deadline(self) -> float | None:
        if self.process is not None:
            return time.monotonic() + POLL_S * self.scale if self.pidfd is None else None
        return self.retry_at

    def on_wake(self) -> None:
        """Reap the loop if it exited, and schedule its next start."""
        process = self.process
        if process is None or process.poll() is None:
            return
        ran_s = time.monotonic() - self.started_at
        self._forget()
        self.failures = 1 if ran_s >= HEALTHY_RUN_S * self.scale else self.failures + 1
        delay_s = backoff_delay_s(
            FIRST_RETRY_S * self.scale, self.failures - 1, RETRY_CAP_S * self.scale
        )
        self.retry_at = time.monotonic() + delay_s
        self.log.event(
            "rust_update_loop_exited",
            pid=process.pid,
            exitCode=process.returncode,
            retryInMs=int(delay_s * 1000),
        )

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``; reaped either way."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._forget()

    def _start(self) -> None:
        binary = canonical_bin(managed_bin_path(self.paths))
        argv = [binary, "app-server", "daemon", "pid-update-loop"]
        try:
            # Our process group (no new session): the recorded updater's group is
            # what both daemons stop. Its stderr is ours, the updater's log.
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=child_environment(self.environ, self.paths.codex_home, remote_control=None),
                cwd=self.paths.state_dir,
            )
        except OSError as exc:
            self.log.warn_line(f"failed to start the Codex update loop {binary}: {exc}")
            self.failures += 1
            self.retry_at = time.monotonic() + backoff_delay_s(
                FIRST_RETRY_S * self.scale, self.failures - 1, RETRY_CAP_S * self.scale
            )
            return
        self.started_at = time.monotonic()
        self.retry_at = None
        try:
            self.pidfd = os.pidfd_open(self.process.pid)
        except (AttributeError, OSError):
            self.pidfd = None  # polled instead (see deadline)
        self.log.event("process_spawned", pid=self.process.pid, what="rust_update_loop")

    def _forget(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        self.process = None
