"""Pid record schema: parsing and writing (SPEC §4.2, §13.5 rows 19 and 21)."""

from __future__ import annotations

import json

import pytest

from daemonkit.errors import PidFileError, PidRecordError
from daemonkit.pidrecord import (
    MAX_PID,
    ExecutableIdentity,
    LinuxIdentity,
    MacIdentity,
    PidRecord,
    parse_pid_record,
)

pytestmark = pytest.mark.timeout(30)

BOOT = "1b5e3f4c-2a0d-4c8e-9f7a-0123456789ab"
START = "Tue Nov 24 03:00:41 2026"
DIGEST = tuple(range(32))
PATH_DIGEST = tuple(range(255, 223, -1))


def record_bytes(**fields: object) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode()


# -- writing: exact bytes ---------------------------------------------------------------


def test_linux_record_bytes_are_compact_in_key_order() -> None:
    record = PidRecord(
        pid=4804,
        process_start_time=START,
        identity=LinuxIdentity(boot_id=BOOT, start_ticks=123456),
    )
    assert record.to_bytes() == (
        b'{"pid":4804,"processStartTime":"Tue Nov 24 03:00:41 2026",'
        b'"processIdentity":{"bootId":"1b5e3f4c-2a0d-4c8e-9f7a-0123456789ab","startTicks":123456}}'
    )


def test_record_with_executable_identity_bytes() -> None:
    record = PidRecord(
        pid=7,
        process_start_time=START,
        identity=LinuxIdentity(boot_id="b", start_ticks=1),
        executable=ExecutableIdentity(digest=DIGEST, path_digest=PATH_DIGEST),
    )
    digest = ",".join(map(str, DIGEST))
    path_digest = ",".join(map(str, PATH_DIGEST))
    assert (
        record.to_bytes()
        == (
            f'{{"pid":7,"processStartTime":"{START}",'
            f'"processIdentity":{{"bootId":"b","startTicks":1}},'
            f'"executableIdentity":{{"digest":[{digest}],"path_digest":[{path_digest}]}}}}'
        ).encode()
    )


def test_legacy_record_bytes() -> None:
    assert PidRecord(pid=4804, process_start_time=START).to_bytes() == (
        b'{"pid":4804,"processStartTime":"Tue Nov 24 03:00:41 2026"}'
    )


def test_record_bytes_have_no_trailing_newline_or_spaces() -> None:
    raw = PidRecord(pid=1, process_start_time="x").to_bytes()
    assert not raw.endswith(b"\n")
    assert b" " not in raw


def test_replace_identity_promotes_a_legacy_record() -> None:
    legacy = PidRecord(pid=9, process_start_time=START)
    promoted = legacy.replace(identity=LinuxIdentity(boot_id=BOOT, start_ticks=5))
    assert promoted == PidRecord(
        pid=9, process_start_time=START, identity=LinuxIdentity(boot_id=BOOT, start_ticks=5)
    )
    assert legacy.identity is None


# -- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        PidRecord(pid=4804, process_start_time=START),
        PidRecord(
            pid=4804,
            process_start_time=START,
            identity=LinuxIdentity(boot_id=BOOT, start_ticks=0),
        ),
        PidRecord(
            pid=MAX_PID,
            process_start_time="Mon Jan  5 00:00:00 2026",
            identity=LinuxIdentity(boot_id=BOOT, start_ticks=2**63),
            executable=ExecutableIdentity(digest=DIGEST, path_digest=PATH_DIGEST),
        ),
        PidRecord(
            pid=321,
            process_start_time=START,
            identity=MacIdentity(
                boot_id="A1B2-C3", unique_id=99, start_seconds=1_700_000_000, start_microseconds=7
            ),
        ),
        PidRecord(
            pid=321,
            process_start_time=START,
            identity=MacIdentity(
                boot_id=None, unique_id=None, start_seconds=1_700_000_000, start_microseconds=0
            ),
        ),
        PidRecord(
            pid=321,
            process_start_time=START,
            identity=MacIdentity(
                boot_id="B", unique_id=None, start_seconds=1, start_microseconds=999_999
            ),
        ),
        PidRecord(pid=0, process_start_time=""),
    ],
    ids=["legacy", "linux", "linux-exe", "mac", "mac-legacy", "mac-boot-only", "pid0"],
)
def test_round_trip(record: PidRecord) -> None:
    raw = record.to_bytes()
    assert parse_pid_record(raw) == record
    assert parse_pid_record(raw).to_bytes() == raw


def test_parse_rust_linux_record() -> None:
    raw = (
        b'{"pid":4804,"processStartTime":"Tue Nov 24 03:00:41 2026",'
        b'"processIdentity":{"bootId":"' + BOOT.encode() + b'","startTicks":123456},'
        b'"executableIdentity":{"digest":[' + ",".join(map(str, DIGEST)).encode() + b"],"
        b'"path_digest":[' + ",".join(map(str, PATH_DIGEST)).encode() + b"]}}"
    )
    record = parse_pid_record(raw)
    assert record.pid == 4804
    assert record.process_start_time == START
    assert record.identity == LinuxIdentity(boot_id=BOOT, start_ticks=123456)
    assert record.executable == ExecutableIdentity(digest=DIGEST, path_digest=PATH_DIGEST)
    assert record.to_bytes() == raw


def test_parse_legacy_mac_identity() -> None:
    record = parse_pid_record(
        b'{"pid":5,"processStartTime":"x",'
        b'"processIdentity":{"startSeconds":10,"startMicroseconds":20}}'
    )
    assert record.identity == MacIdentity(
        boot_id=None, unique_id=None, start_seconds=10, start_microseconds=20
    )


def test_parse_tolerates_whitespace_and_trailing_newline() -> None:
    record = parse_pid_record(b' { "pid" : 12 ,\n "processStartTime" : "x" }\n')
    assert record == PidRecord(pid=12, process_start_time="x")


def test_unknown_keys_are_ignored() -> None:
    raw = (
        b'{"future":{"nested":[1,2]},"pid":12,"processStartTime":"x",'
        b'"processIdentity":{"bootId":"b","startTicks":3,"extra":true},"zzz":null}'
    )
    record = parse_pid_record(raw)
    assert record == PidRecord(
        pid=12, process_start_time="x", identity=LinuxIdentity(boot_id="b", start_ticks=3)
    )
    assert record.to_bytes() == (
        b'{"pid":12,"processStartTime":"x","processIdentity":{"bootId":"b","startTicks":3}}'
    )


def test_null_identities_mean_absent() -> None:
    record = parse_pid_record(
        b'{"pid":12,"processStartTime":"x","processIdentity":null,"executableIdentity":null}'
    )
    assert record == PidRecord(pid=12, process_start_time="x")


@pytest.mark.parametrize("pid", [0, 1, 2, 1_073_741_824, MAX_PID])
def test_any_unsigned_32_bit_pid_parses(pid: int) -> None:
    # pid <= 1 parses; such records are merely never active (SPEC §4.2).
    assert parse_pid_record(record_bytes(pid=pid, processStartTime="x")).pid == pid


# -- invalid records --------------------------------------------------------------------

INVALID: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("whitespace", b" \n\t "),
    ("garbage", b"garbage"),
    ("truncated", b'{"pid":4804,"processStartTime":"Tue No'),
    ("truncated-after-key", b'{"pid":'),
    ("not-utf8", b'{"pid":1,"processStartTime":"\xff"}'),
    ("array", b"[4804]"),
    ("string", b'"4804"'),
    ("number", b"4804"),
    ("null", b"null"),
    ("true", b"true"),
    ("missing-pid", b'{"processStartTime":"x"}'),
    ("missing-start", b'{"pid":4804}'),
    ("pid-string", b'{"pid":"4804","processStartTime":"x"}'),
    ("pid-float", b'{"pid":4804.0,"processStartTime":"x"}'),
    ("pid-true", b'{"pid":true,"processStartTime":"x"}'),
    ("pid-false", b'{"pid":false,"processStartTime":"x"}'),
    ("pid-null", b'{"pid":null,"processStartTime":"x"}'),
    ("pid-negative", b'{"pid":-5,"processStartTime":"x"}'),
    ("pid-too-big", b'{"pid":4294967296,"processStartTime":"x"}'),
    ("pid-huge", b'{"pid":1e400,"processStartTime":"x"}'),
    ("pid-nan", b'{"pid":NaN,"processStartTime":"x"}'),
    ("start-int", b'{"pid":5,"processStartTime":5}'),
    ("start-null", b'{"pid":5,"processStartTime":null}'),
    ("identity-string", b'{"pid":5,"processStartTime":"x","processIdentity":"b"}'),
    ("identity-empty", b'{"pid":5,"processStartTime":"x","processIdentity":{}}'),
    (
        "ticks-string",
        b'{"pid":5,"processStartTime":"x","processIdentity":{"bootId":"b","startTicks":"1"}}',
    ),
    (
        "ticks-negative",
        b'{"pid":5,"processStartTime":"x","processIdentity":{"bootId":"b","startTicks":-1}}',
    ),
    (
        "ticks-bool",
        b'{"pid":5,"processStartTime":"x","processIdentity":{"bootId":"b","startTicks":true}}',
    ),
    ("ticks-missing", b'{"pid":5,"processStartTime":"x","processIdentity":{"bootId":"b"}}'),
    ("boot-missing", b'{"pid":5,"processStartTime":"x","processIdentity":{"startTicks":1}}'),
    (
        "boot-int",
        b'{"pid":5,"processStartTime":"x","processIdentity":{"bootId":1,"startTicks":1}}',
    ),
    (
        "mac-micros-missing",
        b'{"pid":5,"processStartTime":"x","processIdentity":{"startSeconds":1}}',
    ),
    (
        "mac-unique-string",
        (
            b'{"pid":5,"processStartTime":"x","processIdentity":'
            b'{"uniqueId":"u","startSeconds":1,"startMicroseconds":2}}'
        ),
    ),
    ("exe-list", b'{"pid":5,"processStartTime":"x","executableIdentity":[]}'),
    (
        "exe-short-digest",
        b'{"pid":5,"processStartTime":"x","executableIdentity":{"digest":[1,2],'
        b'"path_digest":[' + b",".join([b"0"] * 32) + b"]}}",
    ),
    (
        "exe-byte-out-of-range",
        b'{"pid":5,"processStartTime":"x","executableIdentity":{"digest":['
        + b",".join([b"256"] * 32)
        + b'],"path_digest":['
        + b",".join([b"0"] * 32)
        + b"]}}",
    ),
    (
        "exe-missing-path-digest",
        b'{"pid":5,"processStartTime":"x","executableIdentity":{"digest":['
        + b",".join([b"0"] * 32)
        + b"]}}",
    ),
    ("deeply-nested", b'{"pid":5,"processStartTime":"x","future":' + b"[" * 100_000),
]


@pytest.mark.parametrize("raw", [raw for _, raw in INVALID], ids=[name for name, _ in INVALID])
def test_invalid_records_raise_pid_record_error(raw: bytes) -> None:
    with pytest.raises(PidRecordError) as caught:
        parse_pid_record(raw)
    assert caught.value.message  # the parser's message becomes the cause text (SPEC §4.4)


def test_pid_record_error_is_a_pid_file_error_and_a_value_error() -> None:
    with pytest.raises(PidRecordError) as caught:
        parse_pid_record(b"garbage")
    assert isinstance(caught.value, PidFileError)
    assert isinstance(caught.value, ValueError)


def test_wrong_pid_type_names_the_key() -> None:
    with pytest.raises(PidRecordError) as caught:
        parse_pid_record(b'{"pid":true,"processStartTime":"x"}')
    assert "pid" in caught.value.message
