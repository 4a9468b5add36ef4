"""enable, disable and status's ``persistence``: surviving logout and reboot (SPEC §15.1, §15.3).

``enable``: a user manager must answer; write this home's unit (units.py) when its text
differs, ``daemon-reload``, ``enable``; turn linger on if it is off; ``start`` with
``--now``. ``disable``: ``stop`` with ``--now``, ``disable``, remove the unit file
(unless the unit still runs: its ExecStop must stay known to systemd), ``daemon-reload``;
turn linger off again only if the kit turned it on and no other kit unit is enabled.

Linger is per user, not per home, and so is the note that the kit turned it on:
``${XDG_STATE_HOME:-~/.local/state}/codex-daemonkit/linger.json``. A note per home would
be lost with the first home disabled while another still needs linger, and SPEC §16
allows no kit-only files in a Rust home.

Neither command takes the operation lock (SPEC §2.1): ``systemctl start`` runs the
unit's ``codex-daemon start``, which takes it.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time

from daemonkit import __version__
from daemonkit.errors import SystemdError, UnitFileError, describe_exception
from daemonkit.files import make_private_dirs, read_state_file, write_atomic
from daemonkit.output import PersistenceOutput, PersistenceReport, PersistenceStatus
from daemonkit.paths import passwd_home
from daemonkit.systemd import SystemdHost
from daemonkit.units import (
    GENERATED_MARK,
    WANTED_BY,
    daemon_command,
    default_codex_home,
    is_kit_unit_name,
    render_unit,
    unit_name,
    user_unit_dir,
    wants_link,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from daemonkit.paths import DaemonPaths
    from daemonkit.systemd import UserManager

__all__ = ["disable_persistence", "enable_persistence", "persistence_report"]

# systemctl start/stop wait for the unit's job: TimeoutStartSec/TimeoutStopSec and a margin.
START_TIMEOUT_S = 130.0
STOP_TIMEOUT_S = 410.0
_RUNNING_STATES = frozenset({"active", "activating", "deactivating", "reloading", "refreshing"})
LINGER_NOTE = ("codex-daemonkit", "linger.json")


def _unit_dir(environ: Mapping[str, str]) -> str:
    return user_unit_dir(environ, passwd_home())


def _read_unit(path: str) -> str | None:
    """The unit file's text; None if absent. Refuses a symlink or a non-regular file:
    ``systemctl link`` and hand-made setups are the user's, not ours to replace."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnitFileError(f"failed to read systemd unit {path}", path) from exc
    if stat.S_ISLNK(info.st_mode):
        raise UnitFileError(f"refusing to use {path}: it is a symbolic link", path)
    if not stat.S_ISREG(info.st_mode):
        raise UnitFileError(f"refusing to use {path}: not a regular file", path)
    try:
        raw = read_state_file(path, 1 << 20)
    except OSError as exc:
        raise UnitFileError(f"failed to read systemd unit {path}", path) from exc
    return None if raw is None else raw.decode("utf-8", "replace")


def _is_ours(text: str | None) -> bool:
    return text is not None and text.startswith(GENERATED_MARK + "\n")


def _write_unit(unit_dir: str, path: str, text: str) -> None:
    try:
        os.makedirs(unit_dir, exist_ok=True)
        # A dot name: systemd ignores it while it is half written.
        tmp = os.path.join(unit_dir, f".{os.path.basename(path)}.tmp")
        write_atomic(path, tmp, text.encode("utf-8"), durable=True)
    except OSError as exc:
        raise UnitFileError(f"failed to write systemd unit {path}", path) from exc


def _is_running(manager: UserManager, unit: str) -> bool:
    # is-active exits non-zero for anything but "active"; its word is the answer.
    return manager.run("is-active", unit).stdout.strip() in _RUNNING_STATES


# -- linger --------------------------------------------------------------------------


def _linger_note(environ: Mapping[str, str]) -> str | None:
    state = environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):
        home = environ.get("HOME") or passwd_home()
        if not home:
            return None
        state = os.path.join(home, ".local", "state")
    return os.path.join(state, *LINGER_NOTE)


def _kit_turned_linger_on(note: str | None, user: str) -> bool:
    if note is None:
        return False
    try:
        raw = read_state_file(note, 4096)
        value = json.loads(raw.decode("utf-8")) if raw else None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False  # unreadable: not proof that the kit turned it on
    return isinstance(value, dict) and value.get("user") == user


def _remember_linger(note: str | None, user: str) -> str | None:
    """Note that the kit turned linger on; None on success, else why not."""
    if note is None:
        return "HOME is not set"
    data = {"user": user, "enabledBy": "codex-daemon enable", "atMs": int(time.time() * 1000)}
    try:
        make_private_dirs(os.path.dirname(note))
        write_atomic(note, f"{note}.tmp", json.dumps(data).encode("utf-8"), durable=True)
    except OSError as exc:
        return f"{note}: {describe_exception(exc)}"
    return None


def _forget_linger(note: str | None, warn: Callable[[str], None]) -> None:
    if note is None:
        return
    try:
        os.unlink(note)
    except FileNotFoundError:
        pass
    except OSError as exc:
        # Lingering is off already; a stale note only makes a later disable try again.
        warn(f"failed to remove {note}: {describe_exception(exc)}")


def _turn_linger_on(
    host: SystemdHost, environ: Mapping[str, str], warn: Callable[[str], None]
) -> bool:
    """Linger after enable: on if it was, or if loginctl agreed; else say how."""
    user = host.current_user()
    if host.linger_enabled(user):
        return True
    why = host.set_linger(user, on=True, environ=environ)
    if why is None:
        unnoted = _remember_linger(_linger_note(environ), user)
        if unnoted is not None:
            warn(
                f"lingering is on, but failed to note that codex-daemon turned it on "
                f"({unnoted}); disable will leave it on"
            )
        return True
    warn(
        f"failed to enable lingering for {user}: {' '.join(why.split())}; without it the "
        "server stops when you log out and starts only at your next login; run as root: "
        f"loginctl enable-linger {user} (or: sudo loginctl enable-linger {user})"
    )
    return False


def _turn_linger_back(
    host: SystemdHost,
    environ: Mapping[str, str],
    unit_dir: str,
    unit: str,
    warn: Callable[[str], None],
) -> bool:
    """Linger after disable: off again iff the kit turned it on and no other kit unit
    (any home's, or the packaged one enabled by hand) is still enabled."""
    user = host.current_user()
    note = _linger_note(environ)
    if not _kit_turned_linger_on(note, user):
        return host.linger_enabled(user)
    wants = os.path.join(unit_dir, f"{WANTED_BY}.wants")
    try:
        names = os.listdir(wants)
    except OSError:
        names = []
    if any(is_kit_unit_name(name) and name != unit for name in names):
        return host.linger_enabled(user)
    if host.linger_enabled(user):
        why = host.set_linger(user, on=False, environ=environ)
        if why is not None:
            warn(f"failed to disable lingering for {user} again: {' '.join(why.split())}")
            return True
    _forget_linger(note, warn)
    return False


# -- commands ------------------------------------------------------------------------


def enable_persistence(
    paths: DaemonPaths,
    environ: Mapping[str, str],
    warn: Callable[[str], None],
    *,
    now: bool,
    host: SystemdHost | None = None,
) -> PersistenceOutput:
    """SPEC §15.1 ``enable [--now]``; idempotent (``alreadyEnabled``).

    Raises ``UserManagerUnavailableError`` before writing anything when no user
    manager answers, ``UnitFileError`` for a unit file it may not replace or cannot
    write, and ``SystemdError`` when systemctl fails.
    """
    host = host or SystemdHost()
    manager = host.connect(environ)
    home = paths.codex_home
    unit = unit_name(home, default_codex_home(environ))
    unit_dir = _unit_dir(environ)
    path = os.path.join(unit_dir, unit)
    # Where this kit is imported from: the same root the updater's PYTHONPATH names.
    from daemonkit.updater_control import KIT_ROOT  # noqa: PLC0415 - enable only

    text = render_unit(home, daemon_command(KIT_ROOT, sys.executable, os.path.isfile))
    existing = _read_unit(path)
    if existing is not None and existing != text and not _is_ours(existing):
        raise UnitFileError(
            f"refusing to replace {path}: it was not written by codex-daemon enable", path
        )
    changed = existing != text
    if changed:
        _write_unit(unit_dir, path, text)
        manager.check(
            f"failed to reload the systemd user manager after writing {path}", "daemon-reload"
        )
    link = wants_link(unit_dir, unit)
    linked = os.path.lexists(link)
    enabled_here = linked and os.path.realpath(link) == os.path.realpath(path)
    if changed or not enabled_here:
        # A link to another file of that name (the packaged unit, enabled by hand) makes
        # `enable` fail with "File exists"; reenable replaces it.
        verb = "reenable" if linked and not enabled_here else "enable"
        manager.check(f"failed to enable {unit}", verb, unit)
    linger = _turn_linger_on(host, environ, warn)
    if now:
        manager.check(f"failed to start {unit}", "start", unit, timeout_s=START_TIMEOUT_S)
    status = (
        PersistenceStatus.ENABLED
        if changed or not enabled_here
        else PersistenceStatus.ALREADY_ENABLED
    )
    return PersistenceOutput(
        status=status, unit=unit, linger=linger, codex_home=home, cli_version=__version__
    )


def disable_persistence(
    paths: DaemonPaths,
    environ: Mapping[str, str],
    warn: Callable[[str], None],
    *,
    now: bool,
    host: SystemdHost | None = None,
) -> PersistenceOutput:
    """SPEC §15.1 ``disable [--now]``: reverses enable; idempotent (``alreadyDisabled``).

    Raises as ``enable_persistence`` does; a unit file that is not the kit's is
    disabled but never removed.
    """
    host = host or SystemdHost()
    manager = host.connect(environ)
    home = paths.codex_home
    unit = unit_name(home, default_codex_home(environ))
    unit_dir = _unit_dir(environ)
    path = os.path.join(unit_dir, unit)
    try:
        existing = _read_unit(path)
    except UnitFileError:
        existing = None  # not ours: disabled below, never removed
    was_enabled = os.path.lexists(wants_link(unit_dir, unit))
    if now and _is_running(manager, unit):
        manager.check(f"failed to stop {unit}", "stop", unit, timeout_s=STOP_TIMEOUT_S)
    if was_enabled:
        manager.check(f"failed to disable {unit}", "disable", unit)
    if _is_ours(existing):
        if _is_running(manager, unit):
            warn(
                f"{unit} still runs, so its unit file stays until it stops; "
                "codex-daemon disable --now stops it"
            )
        else:
            _remove_unit(path)
            manager.check(
                f"failed to reload the systemd user manager after removing {path}", "daemon-reload"
            )
    linger = _turn_linger_back(host, environ, unit_dir, unit, warn)
    status = PersistenceStatus.DISABLED if was_enabled else PersistenceStatus.ALREADY_DISABLED
    return PersistenceOutput(
        status=status, unit=unit, linger=linger, codex_home=home, cli_version=__version__
    )


def _remove_unit(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise UnitFileError(f"failed to remove systemd unit {path}", path) from exc


def persistence_report(
    codex_home: str, environ: Mapping[str, str], host: SystemdHost | None = None
) -> PersistenceReport:
    """SPEC §15.3, without spawning anything: "unavailable" from the cheap checks,
    else whether this home's unit is enabled (its wants link) and the linger file."""
    host = host or SystemdHost()
    if host.user_manager_problem(environ) is not None:
        return PersistenceReport(systemd="unavailable", linger=None)
    try:
        unit_dir = _unit_dir(environ)
    except SystemdError:
        return PersistenceReport(systemd="unavailable", linger=None)
    unit = unit_name(codex_home, default_codex_home(environ))
    enabled = os.path.lexists(wants_link(unit_dir, unit))
    return PersistenceReport(
        systemd="enabled" if enabled else "disabled",
        linger=host.linger_enabled(host.current_user()),
    )
