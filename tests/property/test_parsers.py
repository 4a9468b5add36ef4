"""Property tests of the parsers that read untrusted bytes (hypothesis).

Pid records (SPEC §4.2, §4.4), settings (§3.5-§3.6), the user-agent version (§6.3),
``--version`` output and version equality (§7.2), the lstart rendering (§4.2).
"""

from __future__ import annotations

import json
import os
import string
import tempfile
import time
from typing import TYPE_CHECKING, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemonkit.errors import ManagedCodexError, PidRecordError, ProbeError, SettingsError
from daemonkit.managed import parse_version_output, versions_equal
from daemonkit.pidrecord import (
    MAX_PID,
    ExecutableIdentity,
    LinuxIdentity,
    MacIdentity,
    PidRecord,
    parse_pid_record,
)
from daemonkit.probe import parse_user_agent_version
from daemonkit.procinfo import format_lstart, parse_lstart
from daemonkit.settings import Settings, load_settings, load_settings_leniently

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.timeout(120)

FAST = settings(max_examples=200, deadline=None, database=None)
# Recursive JSON strategies are the slow ones to generate.
HEAVY = settings(max_examples=100, deadline=None, database=None)
FILES = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
identity_keys = st.sampled_from(
    ["bootId", "startTicks", "startSeconds", "startMicroseconds", "uniqueId", "x"]
)
record_like = st.fixed_dictionaries(
    {},
    optional={
        "pid": json_values | st.integers(min_value=-1, max_value=2**33),
        "processStartTime": json_values,
        "processIdentity": json_values | st.dictionaries(identity_keys, json_values, max_size=5),
        "executableIdentity": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "digest": st.lists(st.integers(-1, 256), min_size=31, max_size=33),
                "path_digest": st.lists(st.integers(-1, 256), min_size=31, max_size=33),
            },
        ),
    },
)

digests = st.tuples(*[st.integers(0, 255)] * 32)
linux_identities = st.builds(
    LinuxIdentity, boot_id=st.text(max_size=40), start_ticks=st.integers(0, 2**64)
)
mac_identities = st.builds(
    MacIdentity,
    boot_id=st.none() | st.text(max_size=40),
    unique_id=st.none() | st.integers(-(2**63), 2**64),
    start_seconds=st.integers(-(2**40), 2**40),
    start_microseconds=st.integers(-(2**31), 2**31),
)
records = st.builds(
    PidRecord,
    pid=st.integers(0, MAX_PID),
    process_start_time=st.text(max_size=40),
    identity=st.none() | linux_identities | mac_identities,
    executable=st.none() | st.builds(ExecutableIdentity, digest=digests, path_digest=digests),
)


T = TypeVar("T")
E = TypeVar("E", bound=Exception)


def attempt(call: Callable[[], T], allowed: type[E]) -> T | E:
    """The call's result, or the ``allowed`` exception it raised; anything else propagates."""
    try:
        return call()
    except allowed as exc:
        return exc


# -- pid records ------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=300))
def test_pid_record_parse_of_arbitrary_bytes(raw: bytes) -> None:
    result = attempt(lambda: parse_pid_record(raw), PidRecordError)
    if isinstance(result, PidRecordError):
        assert result.message
    else:
        assert 0 <= result.pid <= MAX_PID


@HEAVY
@given(json_values)
def test_pid_record_parse_of_arbitrary_json(value: object) -> None:
    raw = json.dumps(value).encode()
    try:
        parse_pid_record(raw)
    except PidRecordError:
        pass


@HEAVY
@given(record_like)
def test_pid_record_parse_of_record_shaped_json(value: dict[str, object]) -> None:
    raw = json.dumps(value).encode()
    try:
        record = parse_pid_record(raw)
    except PidRecordError:
        return
    # Whatever parses is well typed and writes back to something that parses identically.
    assert isinstance(record.pid, int)
    assert not isinstance(record.pid, bool)
    assert isinstance(record.process_start_time, str)
    assert parse_pid_record(record.to_bytes()) == record


@HEAVY
@given(records)
def test_pid_record_round_trip(record: PidRecord) -> None:
    raw = record.to_bytes()
    assert parse_pid_record(raw) == record
    assert parse_pid_record(raw).to_bytes() == raw
    assert b"\n" not in raw
    assert list(json.loads(raw))[:2] == ["pid", "processStartTime"]


# -- settings ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def settings_file() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="dk-prop-", dir="/tmp") as root:
        yield os.path.join(root, "settings.json")


def write(path: str, raw: bytes) -> None:
    with open(path, "wb") as f:
        f.write(raw)


settings_like = st.fixed_dictionaries(
    {},
    optional={
        "remoteControlEnabled": json_values,
        "shutdownGraceSeconds": json_values | st.integers(-5, 400),
        "updater": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "autoUpdateEnabled": json_values,
                "updateIntervalMinutes": json_values | st.integers(-5, 600_000),
                "channel": json_values | st.sampled_from(["script", "npm", "pip"]),
                "installScriptUrl": json_values
                | st.sampled_from(
                    ["https://e.com/i", "http://127.0.0.1/i", "http://e.com/i", "file:///i"]
                ),
            },
        ),
        "custom": json_values,
    },
)


def check_loads(path: str) -> None:
    """Strict raises only SettingsError; lenient never raises and agrees with strict."""
    lenient, warnings = load_settings_leniently(path)
    assert all(w.startswith(f"ignoring invalid settings {path}: ") for w in warnings)
    assert 0 <= lenient.shutdown_grace_s <= 300
    assert 1 <= lenient.update_interval_minutes <= 525_600
    assert lenient.channel in ("script", "npm")
    try:
        strict = load_settings(path)
    except SettingsError as exc:
        failure: SettingsError | None = exc
    else:
        failure = None
    if failure is not None:
        assert warnings  # a strict failure is always a lenient warning
        # Every settings error names the file (SPEC §3.5).
        assert failure.message.startswith(f"failed to parse settings {path}") or (
            failure.message.startswith("invalid value for ") and f" in {path}: " in failure.message
        )
        return
    assert warnings == []
    assert strict == lenient


@FILES
@given(st.binary(max_size=200))
def test_settings_loads_of_arbitrary_bytes(settings_file: str, raw: bytes) -> None:
    write(settings_file, raw)
    check_loads(settings_file)


@FILES
@given(settings_like)
def test_settings_loads_of_settings_shaped_json(
    settings_file: str, value: dict[str, object]
) -> None:
    write(settings_file, json.dumps(value).encode())
    check_loads(settings_file)


@FILES
@given(st.integers(0, 300), st.integers(1, 10**9), st.sampled_from(["script", "npm"]))
def test_valid_settings_load_exactly(
    settings_file: str, grace: int, interval: int, channel: str
) -> None:
    value = {
        "shutdownGraceSeconds": grace,
        "updater": {"updateIntervalMinutes": interval, "channel": channel},
    }
    write(settings_file, json.dumps(value).encode())
    loaded = load_settings(settings_file)
    assert loaded == Settings(
        shutdown_grace_s=grace,
        update_interval_minutes=min(interval, 525_600),
        channel="npm" if channel == "npm" else "script",
    )


# -- user agent, --version output, version equality ------------------------------------


@FAST
@given(st.text(max_size=60))
def test_user_agent_version_is_a_token_or_a_probe_error(user_agent: str) -> None:
    _, slash, rest = user_agent.partition("/")
    result = attempt(lambda: parse_user_agent_version(user_agent), ProbeError)
    if not slash:
        assert isinstance(result, ProbeError)
        assert result.message == "app-server user-agent omitted version separator"
    elif not rest.split():
        assert isinstance(result, ProbeError)
        assert result.message == "app-server user-agent omitted version"
    else:
        assert isinstance(result, str)
        assert result == rest.split()[0]
        assert result
        assert not any(ch.isspace() for ch in result)


@FAST
@given(
    st.text(alphabet=string.ascii_letters + "_", min_size=1, max_size=15),
    st.text(alphabet=string.digits + ".-+abcrv", min_size=1, max_size=15),
    st.text(max_size=30),
)
def test_user_agent_round_trip(product: str, version: str, rest: str) -> None:
    assert parse_user_agent_version(f"{product}/{version} {rest}") == version


@FAST
@given(st.binary(max_size=80))
def test_version_output_is_a_token_or_a_managed_codex_error(stdout: bytes) -> None:
    result = attempt(lambda: parse_version_output(stdout, "/bin/codex"), ManagedCodexError)
    if isinstance(result, ManagedCodexError):
        assert result.message in (
            "managed Codex version output was malformed",
            "managed Codex version was not utf-8: /bin/codex",
        )
    else:
        assert result
        assert not any(ch.isspace() for ch in result)


versions = st.from_regex(r"\A(rust-v|v)?[0-9]{1,3}(\.[0-9]{1,3}){0,3}\Z") | st.text(max_size=12)


@FAST
@given(versions, versions)
def test_versions_equal_is_reflexive_and_symmetric(left: str, right: str) -> None:
    assert versions_equal(left, left)
    assert versions_equal(left, right) == versions_equal(right, left)


@FAST
@given(st.lists(st.integers(0, 999), min_size=1, max_size=4), st.sampled_from(["", "v", "rust-v"]))
def test_trailing_zeros_and_prefixes_never_differ(parts: list[int], prefix: str) -> None:
    plain = ".".join(map(str, parts))
    assert versions_equal(prefix + plain, plain + ".0")


# -- lstart -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def utc() -> Iterator[None]:
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "UTC0"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


@FAST
@given(st.integers(0, 4_102_444_800))  # 1970 .. 2100
def test_lstart_round_trip(utc: None, epoch: int) -> None:
    text = format_lstart(epoch)
    assert len(text) == 24  # ps pads the day of month: "Tue Nov  4 03:00:41 2026"
    assert parse_lstart(text) == epoch
    assert parse_lstart(f" {text}\n") == epoch
