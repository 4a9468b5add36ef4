"""settings.json: the schema, strict and lenient loading, and the merge-preserving write.

Every key is optional and unknown keys are kept (SPEC §3.5). Strict loading turns the
first problem into a ``SettingsError``; lenient loading (stop, status) falls back to the
default of each key that fails and reports the problem as a warning (SPEC §3.6). Every
problem names the file and the (dotted) key: a wrong type is ``failed to parse settings
<path>`` caused by ``invalid type for <key>: ...``; an invalid value is ``invalid value
for <key> in <path>: <reason>`` (SPEC §3.5), and the lenient warning ``ignoring invalid
settings <path>: invalid value for <key>: <reason>`` (SPEC §2.7's shape).
"""

from __future__ import annotations

import json

from daemonkit.errors import (
    JsonFieldError,
    SettingsError,
    UnsafeFileError,
    describe_chain,
    os_errors_as,
)
from daemonkit.files import AtomicWriteError, read_state_file, write_atomic
from daemonkit.jsonget import get
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Final, Literal, TypeVar

    Channel = Literal["script", "npm"]
    T = TypeVar("T")

__all__ = [
    "Settings",
    "load_settings",
    "load_settings_leniently",
    "update_settings",
]

DEFAULT_GRACE_S = 60
MAX_GRACE_S = 300
DEFAULT_INTERVAL_MINUTES = 60
MAX_INTERVAL_MINUTES = 525_600
DEFAULT_SCRIPT_URL = "https://chatgpt.com/codex/install.sh"
DEFAULT_HEALTH_CHECK_S = 60
MIN_HEALTH_CHECK_S = 5
MAX_HEALTH_CHECK_S = 3600
SETTINGS_LIMIT = 1 << 20


class Settings(Value):
    __slots__ = (
        "auto_update_enabled",
        "channel",
        "health_check_interval_s",
        "install_script_url",
        "remote_control_enabled",
        "restart_on_exit",
        "shutdown_grace_s",
        "update_interval_minutes",
    )

    def __init__(
        self,
        *,
        remote_control_enabled: bool = False,
        shutdown_grace_s: int = DEFAULT_GRACE_S,
        auto_update_enabled: bool = True,
        update_interval_minutes: int = DEFAULT_INTERVAL_MINUTES,
        channel: Channel = "script",
        install_script_url: str = DEFAULT_SCRIPT_URL,
        restart_on_exit: bool = True,
        health_check_interval_s: int = DEFAULT_HEALTH_CHECK_S,
    ) -> None:
        self.remote_control_enabled: Final = remote_control_enabled
        self.shutdown_grace_s: Final = shutdown_grace_s
        self.auto_update_enabled: Final = auto_update_enabled
        self.update_interval_minutes: Final = update_interval_minutes
        self.channel: Final = channel
        self.install_script_url: Final = install_script_url
        self.restart_on_exit: Final = restart_on_exit
        self.health_check_interval_s: Final = health_check_interval_s

    @property
    def wants_updater(self) -> bool:
        """An updater runs for updates, for supervision, or both (SPEC §14.1)."""
        return self.auto_update_enabled or self.restart_on_exit


class _Problems:
    """Problems found while parsing, in the order strict loading reports them.

    ``parse`` holds wrong types (each text names its key); ``validate`` holds invalid
    values as ``(key, reason)``. Parsing appends to both, so this is a plain class,
    not a Value.
    """

    __slots__ = ("parse", "validate")

    def __init__(self) -> None:
        self.parse: Final[list[str]] = []
        self.validate: Final[list[tuple[str, str]]] = []

    def invalid(self, where: str, reason: str) -> None:
        self.validate.append((where, reason))

    def field(
        self,
        obj: dict[str, object],
        key: str,
        kind: type[T],
        default: T,
        *,
        path: str = "",
        expected: str | None = None,
        valid: Callable[[T], bool] | None = None,
    ) -> T:
        """``obj[key]`` or ``default``; a wrong type is a problem, and the default stands in."""
        try:
            return get(obj, key, kind, default, path=path, expected=expected, valid=valid)
        except JsonFieldError as exc:
            self.parse.append(exc.message)
            return default

    def uint(self, obj: dict[str, object], key: str, default: int, *, path: str = "") -> int:
        # JSON booleans are not integers, and integral floats (60.0) are errors, as in
        # upstream's integer parsing (SPEC §3.5).
        return self.field(
            obj,
            key,
            int,
            default,
            path=path,
            expected="a non-negative integer",
            valid=_non_negative,
        )


def _json_object(raw: bytes, path: str) -> dict[str, object]:
    def reject_constant(name: str) -> object:
        raise ValueError(f"invalid number {name}")

    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_constant=reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SettingsError(f"failed to parse settings {path}") from exc
    if not isinstance(value, dict):
        raise SettingsError(f"failed to parse settings {path}") from ValueError(
            "expected a JSON object"
        )
    return value


def _non_negative(number: int) -> bool:
    return number >= 0


def _is_allowed_url(url: str) -> bool:
    # Only a settings file that sets installScriptUrl pays for urllib and ipaddress.
    import ipaddress  # noqa: PLC0415
    import urllib.parse  # noqa: PLC0415

    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "https" and parsed.hostname:
        return True
    if parsed.scheme == "file":
        return True
    if parsed.scheme == "http" and parsed.hostname:
        if parsed.hostname == "localhost":
            return True
        try:
            return ipaddress.ip_address(parsed.hostname).is_loopback
        except ValueError:
            return False
    return False


def _parse(obj: dict[str, object]) -> tuple[Settings, _Problems]:
    p = _Problems()
    defaults = Settings()
    remote = p.field(obj, "remoteControlEnabled", bool, False)
    grace = p.uint(obj, "shutdownGraceSeconds", DEFAULT_GRACE_S)
    if grace > MAX_GRACE_S:
        p.invalid("shutdownGraceSeconds", "must be between 0 and 300 seconds")
        grace = DEFAULT_GRACE_S
    # A section of the wrong type counts as empty.
    updater: dict[str, object] = p.field(obj, "updater", dict, {})
    auto = p.field(updater, "autoUpdateEnabled", bool, True, path="updater")
    interval = p.uint(updater, "updateIntervalMinutes", DEFAULT_INTERVAL_MINUTES, path="updater")
    if interval == 0:
        p.invalid("updater.updateIntervalMinutes", "must be positive")
        interval = DEFAULT_INTERVAL_MINUTES
    channel_value = p.field(updater, "channel", str, defaults.channel, path="updater")
    channel: Channel = defaults.channel
    if channel_value in ("script", "npm"):
        channel = "npm" if channel_value == "npm" else "script"
    else:
        p.invalid("updater.channel", f'must be "script" or "npm", not {json.dumps(channel_value)}')
    url_value = p.field(updater, "installScriptUrl", str, DEFAULT_SCRIPT_URL, path="updater")
    url = DEFAULT_SCRIPT_URL
    if url_value == DEFAULT_SCRIPT_URL or _is_allowed_url(url_value):
        url = url_value
    else:
        p.invalid("updater.installScriptUrl", f"must use https: {url_value}")
    supervisor: dict[str, object] = p.field(obj, "supervisor", dict, {})
    restart_on_exit = p.field(supervisor, "restartOnExit", bool, True, path="supervisor")
    health = p.uint(
        supervisor, "healthCheckIntervalSeconds", DEFAULT_HEALTH_CHECK_S, path="supervisor"
    )
    if health != 0 and not MIN_HEALTH_CHECK_S <= health <= MAX_HEALTH_CHECK_S:
        p.invalid(
            "supervisor.healthCheckIntervalSeconds",
            f"must be 0 (off) or between {MIN_HEALTH_CHECK_S} and {MAX_HEALTH_CHECK_S} seconds",
        )
        health = DEFAULT_HEALTH_CHECK_S
    settings = Settings(
        remote_control_enabled=remote,
        shutdown_grace_s=grace,
        auto_update_enabled=auto,
        update_interval_minutes=min(interval, MAX_INTERVAL_MINUTES),
        channel=channel,
        install_script_url=url,
        restart_on_exit=restart_on_exit,
        health_check_interval_s=health,
    )
    return settings, p


def _read(path: str) -> bytes | None:
    with os_errors_as(SettingsError, f"failed to read settings {path}"):
        return read_state_file(path, SETTINGS_LIMIT)


def load_settings(path: str) -> Settings:
    """Strict load: defaults when absent, else the first problem as ``SettingsError``."""
    raw = _read(path)
    if raw is None:
        return Settings()
    obj = _json_object(raw, path)
    settings, problems = _parse(obj)
    if problems.parse:
        raise SettingsError(f"failed to parse settings {path}") from ValueError(problems.parse[0])
    if problems.validate:
        key, reason = problems.validate[0]
        raise SettingsError(f"invalid value for {key} in {path}: {reason}")
    return settings


def load_settings_leniently(path: str) -> tuple[Settings, list[str]]:
    """Lenient load: never raises; defaults replace what cannot be used.

    Returns the settings and the warning lines (without the ``warning: `` prefix).
    """
    try:
        raw = _read(path)
        if raw is None:
            return Settings(), []
        obj = _json_object(raw, path)
    except (SettingsError, UnsafeFileError) as exc:
        return Settings(), [f"ignoring invalid settings {path}: {describe_chain(exc)}"]
    settings, problems = _parse(obj)
    warnings = [
        f"ignoring invalid settings {path}: {reason}"
        for reason in (
            *problems.parse,
            *(f"invalid value for {key}: {why}" for key, why in problems.validate),
        )
    ]
    return settings, warnings


def update_settings(path: str, tmp: str, changes: dict[str, object]) -> None:
    """Merge ``changes`` into settings.json, keeping every other key and its order.

    Keys of ``changes`` are top-level names or ``updater.<name>``. The caller holds
    the operation lock and has already loaded the file strictly (SPEC §3.7).
    """
    raw = _read(path)
    obj: dict[str, object] = {} if raw is None else _json_object(raw, path)
    for dotted, value in changes.items():
        if dotted.startswith("updater."):
            nested = obj.get("updater")
            if not isinstance(nested, dict):
                nested = {}
            nested[dotted.removeprefix("updater.")] = value
            obj["updater"] = nested
        else:
            obj[dotted] = value
    data = json.dumps(obj, indent=2, ensure_ascii=False).encode("utf-8")
    try:
        write_atomic(path, tmp, data, durable=True, crash_at="after-settings-tmp")
    except UnsafeFileError:
        raise
    except AtomicWriteError as exc:
        if exc.step == "temp":
            raise SettingsError(f"failed to write settings temp file {tmp}") from exc
        raise SettingsError(f"failed to write settings {path}") from exc
