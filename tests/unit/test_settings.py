"""settings.json: schema, strict and lenient loading, merge-preserving write.

SPEC §3.5-§3.7 and §13.6 rows 22-24.
"""

from __future__ import annotations

import json
import os
import stat
from typing import TYPE_CHECKING

import pytest

from daemonkit.errors import SettingsError, UnsafeFileError, render_error
from daemonkit.settings import (
    Settings,
    load_settings,
    load_settings_leniently,
    update_settings,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(30)

DEFAULTS = Settings()
DEFAULT_URL = "https://chatgpt.com/codex/install.sh"


@pytest.fixture
def settings_path(tmp_path: Path) -> str:
    return str(tmp_path / "settings.json")


@pytest.fixture
def tmp_name(tmp_path: Path) -> str:
    return str(tmp_path / "settings.tmp")


def write(path: str, data: str | bytes) -> None:
    raw = data.encode() if isinstance(data, str) else data
    with open(path, "wb") as f:
        f.write(raw)


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def strict_error(path: str, data: str | bytes) -> SettingsError:
    write(path, data)
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    return caught.value


def invalid(path: str, key: str, reason: str) -> str:
    """A validation error's text: the file, the (dotted) key, then the spec's reason."""
    return f"invalid value for {key} in {path}: {reason}"


def parse_cause(err: SettingsError, path: str) -> str:
    """Assert ``err`` is the parse error for ``path`` and return its cause's text."""
    assert err.message == f"failed to parse settings {path}"
    assert err.__cause__ is not None
    return str(err.__cause__)


class umask:  # noqa: N801 - reads as the syscall it wraps
    def __init__(self, mask: int) -> None:
        self.mask = mask
        self.old = 0

    def __enter__(self) -> None:
        self.old = os.umask(self.mask)

    def __exit__(self, *exc: object) -> None:
        os.umask(self.old)


@pytest.fixture
def restore_umask() -> Iterator[None]:
    old = os.umask(0o022)
    os.umask(old)
    try:
        yield
    finally:
        os.umask(old)


# -- strict loading: absent and valid files ---------------------------------------------


def test_missing_file_gives_defaults(settings_path: str) -> None:
    assert load_settings(settings_path) == DEFAULTS
    assert DEFAULTS.shutdown_grace_s == 60
    assert DEFAULTS.update_interval_minutes == 60
    assert DEFAULTS.channel == "script"
    assert DEFAULTS.install_script_url == DEFAULT_URL
    assert DEFAULTS.auto_update_enabled is True
    assert DEFAULTS.remote_control_enabled is False
    assert DEFAULTS.restart_on_exit is True
    assert DEFAULTS.health_check_interval_s == 60
    assert not os.path.exists(settings_path)  # loading never creates the file


def test_empty_object_gives_defaults(settings_path: str) -> None:
    write(settings_path, "{}")
    assert load_settings(settings_path) == DEFAULTS


def test_every_key_is_read(settings_path: str) -> None:
    write(
        settings_path,
        json.dumps(
            {
                "remoteControlEnabled": True,
                "shutdownGraceSeconds": 5,
                "custom": {"kept": True},
                "updater": {
                    "autoUpdateEnabled": False,
                    "updateIntervalMinutes": 7,
                    "channel": "npm",
                    "installScriptUrl": "https://example.com/i.sh",
                    "futureKey": 1,
                },
                "supervisor": {"restartOnExit": False, "healthCheckIntervalSeconds": 0},
            }
        ),
    )
    assert load_settings(settings_path) == Settings(
        remote_control_enabled=True,
        shutdown_grace_s=5,
        auto_update_enabled=False,
        update_interval_minutes=7,
        channel="npm",
        install_script_url="https://example.com/i.sh",
        restart_on_exit=False,
        health_check_interval_s=0,
    )


@pytest.mark.parametrize("grace", [0, 1, 60, 300])
def test_grace_in_range_is_accepted(settings_path: str, grace: int) -> None:
    write(settings_path, json.dumps({"shutdownGraceSeconds": grace}))
    assert load_settings(settings_path).shutdown_grace_s == grace


@pytest.mark.parametrize(
    ("interval", "effective"),
    [(1, 1), (60, 60), (525_600, 525_600), (525_601, 525_600), (10**30, 525_600)],
)
def test_interval_above_a_year_acts_as_a_year(
    settings_path: str, interval: int, effective: int
) -> None:
    write(settings_path, json.dumps({"updater": {"updateIntervalMinutes": interval}}))
    assert load_settings(settings_path).update_interval_minutes == effective


@pytest.mark.parametrize(
    "url",
    [
        "https://chatgpt.com/codex/install.sh",
        "https://example.com:8443/x.sh",
        "http://127.0.0.1/install.sh",
        "http://127.0.0.1:8080/install.sh",
        "http://127.1.2.3/install.sh",
        "http://localhost/install.sh",
        "http://localhost:9/install.sh",
        "http://[::1]:8080/install.sh",
        "file:///tmp/install.sh",
    ],
)
def test_allowed_installer_urls(settings_path: str, url: str) -> None:
    write(settings_path, json.dumps({"updater": {"installScriptUrl": url}}))
    assert load_settings(settings_path).install_script_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/install.sh",
        "http://10.0.0.1/install.sh",
        "http://localhost.example.com/install.sh",
        "http://127.0.0.1@example.com/install.sh",
        "ftp://example.com/install.sh",
        "https:///install.sh",
        "install.sh",
        "",
    ],
)
def test_refused_installer_urls(settings_path: str, url: str) -> None:
    err = strict_error(settings_path, json.dumps({"updater": {"installScriptUrl": url}}))
    assert err.message == invalid(
        settings_path, "updater.installScriptUrl", f"must use https: {url}"
    )
    assert err.__cause__ is None


# -- strict loading: parse errors -------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"   \n", b"not json", b'{"shutdownGraceSeconds": 5', b"\xff\xfe{}", b"{} {}"],
    ids=["empty", "whitespace", "garbage", "truncated", "not-utf8", "trailing-data"],
)
def test_not_json_is_a_parse_error(settings_path: str, data: bytes) -> None:
    err = strict_error(settings_path, data)
    assert err.message == f"failed to parse settings {settings_path}"
    assert err.__cause__ is not None


@pytest.mark.parametrize("data", ["[]", "[1,2]", '"text"', "12", "null", "true"])
def test_not_an_object_is_a_parse_error(settings_path: str, data: str) -> None:
    err = strict_error(settings_path, data)
    assert parse_cause(err, settings_path)  # a cause is always given


BOOLEAN = "expected a boolean"
UINT = "expected a non-negative integer"
STRING = "expected a string"


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({"remoteControlEnabled": "yes"}, "remoteControlEnabled", BOOLEAN),
        ({"remoteControlEnabled": 1}, "remoteControlEnabled", BOOLEAN),
        ({"remoteControlEnabled": None}, "remoteControlEnabled", BOOLEAN),
        ({"shutdownGraceSeconds": "60"}, "shutdownGraceSeconds", UINT),
        ({"shutdownGraceSeconds": 60.0}, "shutdownGraceSeconds", UINT),
        ({"shutdownGraceSeconds": 1.5}, "shutdownGraceSeconds", UINT),
        ({"shutdownGraceSeconds": True}, "shutdownGraceSeconds", UINT),
        ({"shutdownGraceSeconds": False}, "shutdownGraceSeconds", UINT),
        ({"shutdownGraceSeconds": -1}, "shutdownGraceSeconds", UINT),
        ({"updater": []}, "updater", "expected an object"),
        ({"updater": "npm"}, "updater", "expected an object"),
        ({"updater": {"autoUpdateEnabled": "false"}}, "updater.autoUpdateEnabled", BOOLEAN),
        ({"updater": {"updateIntervalMinutes": -1}}, "updater.updateIntervalMinutes", UINT),
        ({"updater": {"updateIntervalMinutes": 60.0}}, "updater.updateIntervalMinutes", UINT),
        ({"updater": {"updateIntervalMinutes": True}}, "updater.updateIntervalMinutes", UINT),
        ({"updater": {"channel": 1}}, "updater.channel", STRING),
        ({"updater": {"channel": ["npm"]}}, "updater.channel", STRING),
        ({"updater": {"installScriptUrl": 5}}, "updater.installScriptUrl", STRING),
        ({"supervisor": []}, "supervisor", "expected an object"),
        ({"supervisor": {"restartOnExit": "no"}}, "supervisor.restartOnExit", BOOLEAN),
        (
            {"supervisor": {"healthCheckIntervalSeconds": 60.0}},
            "supervisor.healthCheckIntervalSeconds",
            UINT,
        ),
        (
            {"supervisor": {"healthCheckIntervalSeconds": -5}},
            "supervisor.healthCheckIntervalSeconds",
            UINT,
        ),
    ],
)
def test_wrong_types_are_parse_errors_naming_the_file_and_key(
    settings_path: str, data: dict[str, object], key: str, expected: str
) -> None:
    # SPEC §3.6: the message names the file, its cause the (dotted) key.
    err = strict_error(settings_path, json.dumps(data))
    assert parse_cause(err, settings_path) == f"invalid type for {key}: {expected}"


def test_non_finite_numbers_are_parse_errors(settings_path: str) -> None:
    err = strict_error(settings_path, '{"shutdownGraceSeconds": NaN}')
    assert err.message == f"failed to parse settings {settings_path}"
    err = strict_error(settings_path, '{"shutdownGraceSeconds": Infinity}')
    assert err.message == f"failed to parse settings {settings_path}"


def test_deeply_nested_json_is_a_parse_error(settings_path: str) -> None:
    # A planted file must produce the settings error, not a RecursionError traceback.
    err = strict_error(settings_path, '{"custom":' + "[" * 100_000)
    assert err.message == f"failed to parse settings {settings_path}"


def test_parse_error_renders_with_the_key_in_the_cause(settings_path: str) -> None:
    err = strict_error(settings_path, '{"shutdownGraceSeconds": true}')
    rendered = render_error(err)
    head, _, cause = rendered.partition("\n\nCaused by:\n    ")
    assert head == f"Error: failed to parse settings {settings_path}"
    assert "shutdownGraceSeconds" in cause
    assert "\n" not in cause  # exactly one, unnumbered cause


# -- strict loading: validation and its order -------------------------------------------


def test_grace_301_is_out_of_range(settings_path: str) -> None:
    err = strict_error(settings_path, '{"shutdownGraceSeconds": 301}')
    assert err.message == (
        f"invalid value for shutdownGraceSeconds in {settings_path}: "
        "must be between 0 and 300 seconds"
    )
    assert render_error(err) == (
        f"Error: invalid value for shutdownGraceSeconds in {settings_path}: "
        "must be between 0 and 300 seconds"
    )


@pytest.mark.parametrize("interval", [0, 5, 60, 3600])
def test_health_check_off_or_in_range_is_accepted(settings_path: str, interval: int) -> None:
    write(settings_path, json.dumps({"supervisor": {"healthCheckIntervalSeconds": interval}}))
    assert load_settings(settings_path).health_check_interval_s == interval


@pytest.mark.parametrize("interval", [1, 4, 3601])
def test_health_check_out_of_range(settings_path: str, interval: int) -> None:
    data = json.dumps({"supervisor": {"healthCheckIntervalSeconds": interval}})
    err = strict_error(settings_path, data)
    assert err.message == invalid(
        settings_path,
        "supervisor.healthCheckIntervalSeconds",
        "must be 0 (off) or between 5 and 3600 seconds",
    )
    write(settings_path, data)
    settings, warnings = load_settings_leniently(settings_path)
    assert settings.health_check_interval_s == 60
    reason = "must be 0 (off) or between 5 and 3600 seconds"
    key = "supervisor.healthCheckIntervalSeconds"
    assert warnings == [
        f"ignoring invalid settings {settings_path}: invalid value for {key}: {reason}"
    ]


def test_interval_zero_is_not_positive(settings_path: str) -> None:
    err = strict_error(settings_path, '{"updater": {"updateIntervalMinutes": 0}}')
    assert err.message == (
        f"invalid value for updater.updateIntervalMinutes in {settings_path}: must be positive"
    )
    assert err.__cause__ is None


def test_unknown_channel(settings_path: str) -> None:
    err = strict_error(settings_path, '{"updater": {"channel": "pip"}}')
    assert err.message == (
        f"invalid value for updater.channel in {settings_path}: "
        'must be "script" or "npm", not "pip"'
    )
    assert err.__cause__ is None


def test_validation_order(settings_path: str) -> None:
    bad: dict[str, object] = {
        "shutdownGraceSeconds": 301,
        "updater": {
            "updateIntervalMinutes": 0,
            "channel": "pip",
            "installScriptUrl": "http://example.com/i.sh",
        },
    }
    expected = [
        invalid(
            settings_path,
            "shutdownGraceSeconds",
            "must be between 0 and 300 seconds",
        ),
        invalid(settings_path, "updater.updateIntervalMinutes", "must be positive"),
        invalid(
            settings_path,
            "updater.channel",
            'must be "script" or "npm", not "pip"',
        ),
        invalid(
            settings_path,
            "updater.installScriptUrl",
            "must use https: http://example.com/i.sh",
        ),
    ]
    updater = bad["updater"]
    assert isinstance(updater, dict)
    # Report the first problem, fix it, and the next one in the order is reported.
    fixes = [(bad, "shutdownGraceSeconds")] + [
        (updater, key) for key in ("updateIntervalMinutes", "channel", "installScriptUrl")
    ]
    for message, (holder, key) in zip(expected, fixes, strict=True):
        assert strict_error(settings_path, json.dumps(bad)).message == message
        del holder[key]
    write(settings_path, json.dumps(bad))
    assert load_settings(settings_path) == DEFAULTS


def test_type_errors_come_before_validation_errors(settings_path: str) -> None:
    # grace 301 is listed first, but a wrong type anywhere is a parse error first.
    err = strict_error(
        settings_path, '{"shutdownGraceSeconds": 301, "updater": {"channel": false}}'
    )
    assert parse_cause(err, settings_path) == "invalid type for updater.channel: expected a string"


# -- refused files ----------------------------------------------------------------------


def test_symlinked_settings_refused_strictly(settings_path: str, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text('{"shutdownGraceSeconds": 5}')
    os.symlink(target, settings_path)
    with pytest.raises(UnsafeFileError) as caught:
        load_settings(settings_path)
    assert str(caught.value) == f"refusing to use {settings_path}: it is a symbolic link"
    assert render_error(caught.value) == (
        f"Error: refusing to use {settings_path}: it is a symbolic link"
    )


def test_dangling_symlink_refused_strictly(settings_path: str, tmp_path: Path) -> None:
    os.symlink(tmp_path / "missing.json", settings_path)
    with pytest.raises(UnsafeFileError) as caught:
        load_settings(settings_path)
    assert str(caught.value) == f"refusing to use {settings_path}: it is a symbolic link"


def test_directory_at_settings_path_refused(settings_path: str) -> None:
    os.mkdir(settings_path)
    with pytest.raises(UnsafeFileError) as caught:
        load_settings(settings_path)
    assert str(caught.value) == f"refusing to use {settings_path}: not a regular file"


def test_symlinked_settings_warned_leniently(settings_path: str, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text('{"shutdownGraceSeconds": 5}')
    os.symlink(target, settings_path)
    settings, warnings = load_settings_leniently(settings_path)
    assert settings == DEFAULTS  # the target's grace is not used
    assert warnings == [
        (
            f"ignoring invalid settings {settings_path}: "
            f"refusing to use {settings_path}: it is a symbolic link"
        )
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to plant a foreign-owned file")
def test_foreign_owned_settings_refused(settings_path: str) -> None:
    write(settings_path, '{"shutdownGraceSeconds": 5}')
    os.chown(settings_path, 54321, 54321)
    with pytest.raises(UnsafeFileError) as caught:
        load_settings(settings_path)
    assert str(caught.value) == (
        f"refusing to use {settings_path}: owned by uid 54321, expected {os.geteuid()}"
    )
    settings, warnings = load_settings_leniently(settings_path)
    assert settings == DEFAULTS
    assert len(warnings) == 1
    assert warnings[0].startswith(f"ignoring invalid settings {settings_path}: refusing to use")


# -- lenient loading --------------------------------------------------------------------


def test_lenient_missing_file_has_no_warnings(settings_path: str) -> None:
    assert load_settings_leniently(settings_path) == (DEFAULTS, [])


def test_lenient_valid_file_has_no_warnings(settings_path: str) -> None:
    write(settings_path, '{"shutdownGraceSeconds": 0, "updater": {"channel": "npm"}}')
    settings, warnings = load_settings_leniently(settings_path)
    assert settings == Settings(shutdown_grace_s=0, channel="npm")
    assert warnings == []


@pytest.mark.parametrize("data", [b"", b"not json", b"[1]", b"\xff", b'{"a":' + b"[" * 100_000])
def test_lenient_unparseable_file_gives_defaults(settings_path: str, data: bytes) -> None:
    write(settings_path, data)
    settings, warnings = load_settings_leniently(settings_path)
    assert settings == DEFAULTS
    assert len(warnings) == 1
    assert warnings[0].startswith(
        f"ignoring invalid settings {settings_path}: failed to parse settings {settings_path}"
    )


@pytest.mark.parametrize(
    ("data", "grace", "reason"),
    [
        (
            {"shutdownGraceSeconds": 301},
            60,
            "invalid value for shutdownGraceSeconds: must be between 0 and 300 seconds",
        ),
        ({"shutdownGraceSeconds": -1}, 60, f"invalid type for shutdownGraceSeconds: {UINT}"),
        ({"shutdownGraceSeconds": 60.0}, 60, f"invalid type for shutdownGraceSeconds: {UINT}"),
        ({"shutdownGraceSeconds": True}, 60, f"invalid type for shutdownGraceSeconds: {UINT}"),
        (
            {"shutdownGraceSeconds": 7, "remoteControlEnabled": "x"},
            7,
            f"invalid type for remoteControlEnabled: {BOOLEAN}",
        ),
        (
            {"shutdownGraceSeconds": 0, "updater": {"channel": "pip"}},
            0,
            'invalid value for updater.channel: must be "script" or "npm", not "pip"',
        ),
        (
            {"shutdownGraceSeconds": 300, "updater": []},
            300,
            "invalid type for updater: expected an object",
        ),
    ],
)
def test_lenient_keeps_good_keys_and_warns_about_bad_ones(
    settings_path: str, data: dict[str, object], grace: int, reason: str
) -> None:
    write(settings_path, json.dumps(data))
    settings, warnings = load_settings_leniently(settings_path)
    assert settings.shutdown_grace_s == grace
    assert warnings == [f"ignoring invalid settings {settings_path}: {reason}"]


def test_lenient_warning_names_the_file_and_key_of_the_strict_error(settings_path: str) -> None:
    write(settings_path, '{"shutdownGraceSeconds": 301}')
    strict = strict_error(settings_path, '{"shutdownGraceSeconds": 301}')
    assert strict.message == invalid(
        settings_path, "shutdownGraceSeconds", "must be between 0 and 300 seconds"
    )
    assert load_settings_leniently(settings_path) == (
        DEFAULTS,
        [
            (
                f"ignoring invalid settings {settings_path}: "
                "invalid value for shutdownGraceSeconds: must be between 0 and 300 seconds"
            )
        ],
    )


def test_lenient_reports_every_problem(settings_path: str) -> None:
    write(
        settings_path,
        json.dumps(
            {
                "remoteControlEnabled": True,
                "shutdownGraceSeconds": 301,
                "updater": {
                    "autoUpdateEnabled": False,
                    "updateIntervalMinutes": 0,
                    "channel": "pip",
                    "installScriptUrl": "http://example.com/",
                },
            }
        ),
    )
    settings, warnings = load_settings_leniently(settings_path)
    assert settings == Settings(remote_control_enabled=True, auto_update_enabled=False)
    prefix = f"ignoring invalid settings {settings_path}: "
    assert warnings == [
        f"{prefix}invalid value for shutdownGraceSeconds: must be between 0 and 300 seconds",
        f"{prefix}invalid value for updater.updateIntervalMinutes: must be positive",
        f'{prefix}invalid value for updater.channel: must be "script" or "npm", not "pip"',
        f"{prefix}invalid value for updater.installScriptUrl: must use https: http://example.com/",
    ]


# -- merge-preserving write (SPEC §3.7) -------------------------------------------------


def test_merge_keeps_unknown_keys_and_order_and_appends(settings_path: str, tmp_name: str) -> None:
    write(
        settings_path,
        '{"custom":1,"shutdownGraceSeconds":5,"updater":{"channel":"npm","x":[1,2]}}',
    )
    update_settings(settings_path, tmp_name, {"remoteControlEnabled": True})
    assert read(settings_path) == (
        "{\n"
        '  "custom": 1,\n'
        '  "shutdownGraceSeconds": 5,\n'
        '  "updater": {\n'
        '    "channel": "npm",\n'
        '    "x": [\n'
        "      1,\n"
        "      2\n"
        "    ]\n"
        "  },\n"
        '  "remoteControlEnabled": true\n'
        "}"
    )
    assert not os.path.exists(tmp_name)


def test_merge_changes_an_existing_key_in_place(settings_path: str, tmp_name: str) -> None:
    write(settings_path, '{"a":1,"remoteControlEnabled":false,"b":{"c":null}}')
    update_settings(settings_path, tmp_name, {"remoteControlEnabled": True})
    text = read(settings_path)
    assert list(json.loads(text)) == ["a", "remoteControlEnabled", "b"]
    assert json.loads(text) == {"a": 1, "remoteControlEnabled": True, "b": {"c": None}}
    assert not text.endswith("\n")


def test_merge_nested_updater_keys(settings_path: str, tmp_name: str) -> None:
    write(
        settings_path,
        '{"updater":{"autoUpdateEnabled":true,"custom":"k","channel":"script"},"z":0}',
    )
    update_settings(
        settings_path,
        tmp_name,
        {"updater.autoUpdateEnabled": False, "updater.newKey": 3},
    )
    text = read(settings_path)
    assert text == (
        "{\n"
        '  "updater": {\n'
        '    "autoUpdateEnabled": false,\n'
        '    "custom": "k",\n'
        '    "channel": "script",\n'
        '    "newKey": 3\n'
        "  },\n"
        '  "z": 0\n'
        "}"
    )


def test_merge_creates_updater_object_when_absent(settings_path: str, tmp_name: str) -> None:
    write(settings_path, '{"a":true}')
    update_settings(settings_path, tmp_name, {"updater.channel": "npm"})
    assert read(settings_path) == '{\n  "a": true,\n  "updater": {\n    "channel": "npm"\n  }\n}'
    assert load_settings(settings_path).channel == "npm"


def test_merge_into_absent_file(settings_path: str, tmp_name: str) -> None:
    update_settings(settings_path, tmp_name, {"remoteControlEnabled": False})
    assert read(settings_path) == '{\n  "remoteControlEnabled": false\n}'


def test_merge_keeps_non_ascii_raw(settings_path: str, tmp_name: str) -> None:
    write(settings_path, '{"note":"caf\\u00e9 \\u2603"}')
    update_settings(settings_path, tmp_name, {"remoteControlEnabled": True})
    with open(settings_path, "rb") as f:
        raw = f.read()
    assert "café ☃".encode() in raw
    assert b"\\u" not in raw


def test_merge_refuses_unparseable_file_and_keeps_it(settings_path: str, tmp_name: str) -> None:
    write(settings_path, "{broken")
    with pytest.raises(SettingsError) as caught:
        update_settings(settings_path, tmp_name, {"remoteControlEnabled": True})
    assert caught.value.message == f"failed to parse settings {settings_path}"
    assert read(settings_path) == "{broken"


def test_merge_refuses_symlinked_settings_and_leaves_target(
    settings_path: str, tmp_name: str, tmp_path: Path
) -> None:
    target = tmp_path / "target.json"
    target.write_text('{"a":1}')
    os.symlink(target, settings_path)
    with pytest.raises(UnsafeFileError):
        update_settings(settings_path, tmp_name, {"remoteControlEnabled": True})
    assert target.read_text() == '{"a":1}'
    assert os.path.islink(settings_path)


def test_merge_replaces_leftover_or_symlinked_temp_without_following_it(
    settings_path: str, tmp_name: str, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(victim, tmp_name)
    update_settings(settings_path, tmp_name, {"remoteControlEnabled": True})
    assert victim.read_text() == "precious"
    assert not os.path.lexists(tmp_name)
    assert json.loads(read(settings_path)) == {"remoteControlEnabled": True}


@pytest.mark.usefixtures("restore_umask")
@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077, 0o277])
def test_written_settings_are_0600_whatever_the_umask(
    settings_path: str, tmp_name: str, mask: int
) -> None:
    with umask(mask):
        update_settings(settings_path, tmp_name, {"remoteControlEnabled": True})
    assert stat.S_IMODE(os.stat(settings_path).st_mode) == 0o600


@pytest.mark.usefixtures("restore_umask")
def test_rewrite_tightens_a_loose_existing_file(settings_path: str, tmp_name: str) -> None:
    write(settings_path, '{"a":1}')
    os.chmod(settings_path, 0o644)
    with umask(0):
        update_settings(settings_path, tmp_name, {"b": 2})
    assert stat.S_IMODE(os.stat(settings_path).st_mode) == 0o600
    assert json.loads(read(settings_path)) == {"a": 1, "b": 2}
