"""The app-server's argv by the binary's version (SPEC §4.7)."""

from __future__ import annotations

import pytest

from daemonkit.lifecycle import app_server_argv, speaks_managed_daemon_argv

BIN = "/h/packages/standalone/releases/0.169.0-x86_64-unknown-linux-musl/bin/codex"


@pytest.mark.parametrize(
    ("version", "modern"),
    [
        ("0.169.0", True),
        ("0.171.0", True),
        ("v0.169.0", True),
        ("rust-v0.170.1", True),
        ("0.169.0-alpha.3", True),
        ("1.0.0", True),
        ("0.168.9", False),
        ("0.1.0", False),
        ("v0.166.0", False),
        (None, True),  # unknown: every current release needs the new form
        ("garbage", True),
    ],
)
def test_which_binaries_take_the_managed_daemon_argv(version: str | None, modern: bool) -> None:
    assert speaks_managed_daemon_argv(version) is modern


def test_argv_of_rust_0_169_daemon() -> None:
    # Read off /proc/<pid>/cmdline of servers that `codex app-server daemon` 0.169.0 started.
    assert app_server_argv(BIN, remote_control=False, codex_version="0.169.0") == [
        BIN,
        "app-server",
        "--listen",
        "unix://",
        "--analytics-default-enabled",
        "--managed-daemon",
    ]
    assert app_server_argv(BIN, remote_control=True, codex_version="0.171.0") == [
        BIN,
        "app-server",
        "--remote-control",
        "--listen",
        "unix://",
        "--analytics-default-enabled",
        "--managed-daemon",
    ]


def test_seed_argv_for_older_binaries() -> None:
    assert app_server_argv(BIN, remote_control=False, codex_version="0.166.0") == [
        BIN,
        "app-server",
        "--listen",
        "unix://",
    ]
    assert app_server_argv(BIN, remote_control=True, codex_version="0.166.0") == [
        BIN,
        "--enable",
        "remote_control",
        "app-server",
        "--listen",
        "unix://",
    ]
