"""Every path the kit uses, derived from CODEX_HOME without touching the file system."""

from __future__ import annotations

import os
import pwd
from typing import TYPE_CHECKING, NamedTuple

from daemonkit.errors import HomeError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DaemonPaths", "PidPaths", "resolve_codex_home"]

STATE_DIR_NAME = "app-server-daemon"
SOCKET_RELATIVE = ("app-server-control", "app-server-control.sock")


def resolve_codex_home(flag: str | None, environ: Mapping[str, str]) -> str:
    """Return the absolute CODEX_HOME: the flag, else $CODEX_HOME, else $HOME/.codex.

    Symlinks are deliberately not resolved: resolving lengthens socket paths
    (macOS /var -> /private/var) past the sun_path limit (SPEC §2.1).
    """
    home = flag or environ.get("CODEX_HOME") or None
    if home is None:
        user_home = environ.get("HOME") or _passwd_home()
        if not user_home:
            raise HomeError("failed to resolve CODEX_HOME")
        home = os.path.join(user_home, ".codex")
    if os.path.isabs(home):
        return home
    # Joined, not normalised: collapsing "link/.." textually would name a different
    # directory than the kernel does.
    try:
        return os.path.join(os.getcwd(), home)
    except OSError as exc:  # the current directory was removed under us
        raise HomeError("failed to resolve CODEX_HOME") from exc


def _passwd_home() -> str | None:
    try:
        return pwd.getpwuid(os.getuid()).pw_dir or None
    except KeyError:
        return None


class PidPaths(NamedTuple):
    """The files that belong to one managed process (SPEC §4.1)."""

    record: str
    lock: str
    tmp: str
    log: str
    previous_log: str

    @classmethod
    def for_stem(cls, state_dir: str, stem: str) -> PidPaths:
        record = os.path.join(state_dir, f"{stem}.pid")
        log = os.path.join(state_dir, f"{stem}.stderr.log")
        return cls(
            record=record,
            lock=f"{record}.lock",
            tmp=f"{record}.tmp",
            log=log,
            previous_log=f"{log}.previous",
        )


class DaemonPaths(NamedTuple):
    """The state layout of one CODEX_HOME (SPEC §3.1)."""

    codex_home: str
    state_dir: str
    socket: str
    operation_lock: str
    settings: str
    settings_tmp: str
    desired_state: str
    updater_state: str
    updater_socket: str
    version_cache: str
    app_server: PidPaths
    updater: PidPaths
    package_root: str
    releases: str
    current: str
    previous: str
    install_lock: str
    rust_dedicated_pid: str

    @classmethod
    def from_home(cls, codex_home: str) -> DaemonPaths:
        state_dir = os.path.join(codex_home, STATE_DIR_NAME)
        package_root = os.path.join(codex_home, "packages", "standalone")
        return cls(
            codex_home=codex_home,
            state_dir=state_dir,
            socket=os.path.join(codex_home, *SOCKET_RELATIVE),
            operation_lock=os.path.join(state_dir, "daemon.lock"),
            settings=os.path.join(state_dir, "settings.json"),
            settings_tmp=os.path.join(state_dir, "settings.tmp"),
            desired_state=os.path.join(state_dir, "desired-state.json"),
            updater_state=os.path.join(state_dir, "app-server-updater.state.json"),
            updater_socket=os.path.join(state_dir, "app-server-updater.sock"),
            version_cache=os.path.join(state_dir, "managed-codex-version.json"),
            app_server=PidPaths.for_stem(state_dir, "app-server"),
            updater=PidPaths.for_stem(state_dir, "app-server-updater"),
            package_root=package_root,
            releases=os.path.join(package_root, "releases"),
            current=os.path.join(package_root, "current"),
            previous=os.path.join(package_root, "previous"),
            install_lock=os.path.join(package_root, "install.lock"),
            rust_dedicated_pid=os.path.join(state_dir, "daemon.pid"),
        )

    @property
    def managed_bin_candidates(self) -> tuple[str, str]:
        """`current/codex`, then the tarball layout `current/bin/codex` (SPEC §7.1)."""
        return (
            os.path.join(self.current, "codex"),
            os.path.join(self.current, "bin", "codex"),
        )
