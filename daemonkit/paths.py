"""Every path the kit uses, derived from CODEX_HOME without touching the file system."""

from __future__ import annotations

import os
import pwd
from enum import Enum, auto

from daemonkit.errors import HomeError
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Final

__all__ = [
    "BINARY_CACHE_NAME",
    "LEGACY_BINARY_CACHE_NAME",
    "DaemonPaths",
    "Layout",
    "PidPaths",
    "ProcessKind",
    "detect_layout",
    "home_digest",
    "kit_private_dir",
    "passwd_home",
    "resolve_codex_home",
]

STATE_DIR_NAME = "app-server-daemon"
STANDALONE_ROOT = ("packages", "standalone")
DEDICATED_ROOT = ("packages", "app-server-daemon")
SOCKET_RELATIVE = ("app-server-control", "app-server-control.sock")
# The managed binary's cache (daemonkit.binarycache), in ``kit_dir``. Its name before
# it held the digests too is still read while the new one is missing.
BINARY_CACHE_NAME = "managed-codex-cache.json"
LEGACY_BINARY_CACHE_NAME = "managed-codex-version.json"


def resolve_codex_home(flag: str | None, environ: Mapping[str, str]) -> str:
    """Return the absolute CODEX_HOME: the flag, else $CODEX_HOME, else $HOME/.codex.

    Symlinks are deliberately not resolved: resolving lengthens socket paths
    (macOS /var -> /private/var) past the sun_path limit (SPEC §2.1).
    """
    home = flag or environ.get("CODEX_HOME") or None
    if home is None:
        user_home = environ.get("HOME") or passwd_home()
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


def passwd_home() -> str | None:
    """The home directory the password database gives the caller, if any."""
    try:
        return pwd.getpwuid(os.getuid()).pw_dir or None
    except KeyError:
        return None


def home_digest(codex_home: str) -> str:
    """A short stable name for one home: the first 12 hex digits of its path's SHA-256."""
    import hashlib  # noqa: PLC0415 - only the dedicated layout and units need it

    return hashlib.sha256(os.fsencode(codex_home)).hexdigest()[:12]


def kit_private_dir(codex_home: str, environ: Mapping[str, str]) -> str | None:
    """Where the kit keeps its own files for a home it shares with the Rust daemon.

    ``$XDG_STATE_HOME/codex-daemonkit/homes/<digest>`` (``~/.local/state`` by default):
    outside the home, whose dedicated layout is Rust's (SPEC §16). None without any
    home directory to put it in.
    """
    base = environ.get("XDG_STATE_HOME") or ""
    if not os.path.isabs(base):  # the XDG spec: a relative value is invalid, ignore it
        user_home = environ.get("HOME") or passwd_home()
        if not user_home:
            return None
        base = os.path.join(user_home, ".local", "state")
    return os.path.join(base, "codex-daemonkit", "homes", home_digest(codex_home))


class Layout(Enum):
    """Which package root and record names a home uses (SPEC §9, §16).

    STANDALONE: ``packages/standalone``, ``app-server.pid``/``app-server-updater.pid``.
    DEDICATED: ``packages/app-server-daemon`` (``current/bin/codex``),
    ``daemon.pid``/``daemon-updater.pid``; set up only by the Rust daemon.
    """

    STANDALONE = auto()
    DEDICATED = auto()

    @property
    def stems(self) -> tuple[str, str]:
        """The app-server's and the updater's file stems in <S>."""
        if self is Layout.DEDICATED:
            return ("daemon", "daemon-updater")
        return ("app-server", "app-server-updater")

    @property
    def root(self) -> tuple[str, str]:
        return DEDICATED_ROOT if self is Layout.DEDICATED else STANDALONE_ROOT


def _has_launch_artifacts(state_dir: str, layout: Layout) -> bool:
    return any(
        os.path.lexists(os.path.join(state_dir, f"{stem}{suffix}"))
        for stem in layout.stems
        for suffix in (".pid", ".stderr.log")
    )


def detect_layout(codex_home: str) -> Layout:
    """The layout the Rust daemon 0.169 picks for this home, as far as the kit follows it.

    Rust's rule (SPEC §9): the dedicated root if its ``current`` exists; else the
    first root, dedicated then standalone, with launch artifacts (pid files, stderr
    logs) in <S>; else the dedicated root. The kit differs only in that last case:
    it never creates the dedicated root (SPEC §16), so a home with neither stays
    standalone. Both manage the same files even then: the kit's first spawn leaves
    ``app-server.stderr.log``, after which Rust picks standalone too, and a Rust
    start in such a home creates ``packages/app-server-daemon/current``, after
    which the kit picks dedicated. Reads only whether names exist, never contents.
    """
    if os.path.lexists(os.path.join(codex_home, *DEDICATED_ROOT, "current")):
        return Layout.DEDICATED
    state_dir = os.path.join(codex_home, STATE_DIR_NAME)
    for layout in (Layout.DEDICATED, Layout.STANDALONE):
        if _has_launch_artifacts(state_dir, layout):
            return layout
    return Layout.STANDALONE


class ProcessKind(Enum):
    """The kind of process a pid record names.

    A legacy record (no ``processIdentity``) matches only a process of its kind: a
    start time to the second is no identity (SPEC §4.3).
    """

    APP_SERVER = auto()
    UPDATER = auto()


class PidPaths(Value):
    """The files that belong to one managed process (SPEC §4.1), and its kind."""

    __slots__ = ("kind", "lock", "log", "previous_log", "record", "tmp")

    def __init__(
        self, *, kind: ProcessKind, record: str, lock: str, tmp: str, log: str, previous_log: str
    ) -> None:
        self.kind: Final = kind
        self.record: Final = record
        self.lock: Final = lock
        self.tmp: Final = tmp
        self.log: Final = log
        self.previous_log: Final = previous_log

    @classmethod
    def for_stem(cls, state_dir: str, stem: str, kind: ProcessKind) -> PidPaths:
        record = os.path.join(state_dir, f"{stem}.pid")
        log = os.path.join(state_dir, f"{stem}.stderr.log")
        return cls(
            kind=kind,
            record=record,
            lock=f"{record}.lock",
            tmp=f"{record}.tmp",
            log=log,
            previous_log=f"{log}.previous",
        )


class DaemonPaths(Value):
    """The state layout of one CODEX_HOME (SPEC §3.1, §16).

    ``layout`` picks the record names and the root the managed binary comes from;
    commands build it once with :meth:`detect`. Installs (``package_root``,
    ``releases``, ``current``, ``previous``, ``install_lock``) always target the
    standalone root: the kit never creates the dedicated one.

    ``kit_dir`` holds the files only the kit reads (its updater's state and request
    socket, the managed binary's cache): <S> in a standalone home, and a private directory
    outside the home in the dedicated layout, where <S> holds only what Rust knows
    plus ``desired-state.json`` (SPEC §16).
    """

    __slots__ = (
        "app_server",
        "bin_current",
        "binary_cache",
        "codex_home",
        "current",
        "desired_state",
        "install_lock",
        "kit_dir",
        "kit_updater_socket",
        "layout",
        "operation_lock",
        "package_root",
        "previous",
        "releases",
        "settings",
        "settings_tmp",
        "socket",
        "state_dir",
        "updater",
        "updater_socket",
        "updater_state",
    )

    def __init__(
        self, codex_home: str, layout: Layout = Layout.STANDALONE, kit_dir: str | None = None
    ) -> None:
        state_dir = os.path.join(codex_home, STATE_DIR_NAME)
        kit_dir = kit_dir or state_dir
        package_root = os.path.join(codex_home, *STANDALONE_ROOT)
        server_stem, updater_stem = layout.stems
        self.codex_home: Final = codex_home
        self.layout: Final = layout
        self.state_dir: Final = state_dir
        self.socket: Final = os.path.join(codex_home, *SOCKET_RELATIVE)
        self.operation_lock: Final = os.path.join(state_dir, "daemon.lock")
        self.settings: Final = os.path.join(state_dir, "settings.json")
        self.settings_tmp: Final = os.path.join(state_dir, "settings.tmp")
        self.desired_state: Final = os.path.join(state_dir, "desired-state.json")
        self.kit_dir: Final = kit_dir
        self.updater_state: Final = os.path.join(kit_dir, "app-server-updater.state.json")
        # The request socket every updater, the kit's or Rust's, binds (SPEC §8.3).
        self.updater_socket: Final = os.path.join(state_dir, f"{updater_stem}.sock")
        # The socket the kit's updater binds: the same one, except in the dedicated
        # layout, where Rust's update loop (run by the kit's updater) binds that one.
        self.kit_updater_socket: Final = (
            self.updater_socket
            if kit_dir == state_dir
            else os.path.join(kit_dir, "app-server-updater.sock")
        )
        self.binary_cache: Final = os.path.join(kit_dir, BINARY_CACHE_NAME)
        self.app_server: Final = PidPaths.for_stem(state_dir, server_stem, ProcessKind.APP_SERVER)
        self.updater: Final = PidPaths.for_stem(state_dir, updater_stem, ProcessKind.UPDATER)
        self.package_root: Final = package_root
        self.releases: Final = os.path.join(package_root, "releases")
        self.current: Final = os.path.join(package_root, "current")
        self.previous: Final = os.path.join(package_root, "previous")
        self.install_lock: Final = os.path.join(package_root, "install.lock")
        self.bin_current: Final = os.path.join(codex_home, *layout.root, "current")

    @classmethod
    def detect(cls, codex_home: str, environ: Mapping[str, str]) -> DaemonPaths:
        """The paths for the layout the home has now (:func:`detect_layout`)."""
        layout = detect_layout(codex_home)
        if layout is Layout.STANDALONE:
            return cls(codex_home, layout)
        return cls(codex_home, layout, kit_private_dir(codex_home, environ))

    @property
    def managed_bin_candidates(self) -> tuple[str, ...]:
        """Where the managed binary may be (SPEC §7.1): the path reported when it is
        missing first, the tarball layout `current/bin/codex` last.

        Standalone: (`current/codex`, `current/bin/codex`); dedicated: only the latter.
        """
        tarball = os.path.join(self.bin_current, "bin", "codex")
        if self.layout is Layout.DEDICATED:
            return (tarball,)
        return (os.path.join(self.bin_current, "codex"), tarball)
