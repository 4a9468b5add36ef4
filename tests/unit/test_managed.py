"""The managed Codex binary: resolution, --version parsing, version equality, texts.

SPEC §7.1-§7.3, §2.15 (exit status rendering), §13.9 row 34 (no `v1.2.3` loop).
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

import pytest

from daemonkit.errors import ManagedCodexError, render_error
from daemonkit.managed import (
    ensure_managed_bin,
    managed_bin_path,
    missing_install_message,
    normalize_version,
    parse_version_output,
    render_exit_status,
    versions_equal,
)
from daemonkit.paths import DaemonPaths, Layout

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(30)

BIN = "/h/packages/standalone/current/codex"


# -- parse_version_output ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("stdout", "version"),
    [
        (b"codex-cli 0.169.0\n", "0.169.0"),
        (b"codex-cli 0.169.0", "0.169.0"),
        (b"codex-cli   1.2.3-alpha.1 (build abc)\n", "1.2.3-alpha.1"),
        (b"\n  codex-cli\tv1.0.65\r\n", "v1.0.65"),
        ("codex-cli 0.1.0-é\n".encode(), "0.1.0-é"),
    ],
)
def test_version_is_the_second_token(stdout: bytes, version: str) -> None:
    assert parse_version_output(stdout, BIN) == version


@pytest.mark.parametrize("stdout", [b"", b"\n", b"codex-cli", b"codex-cli\n", b"   0.169.0  \n"])
def test_malformed_version_output(stdout: bytes) -> None:
    with pytest.raises(ManagedCodexError) as caught:
        parse_version_output(stdout, BIN)
    assert caught.value.message == "managed Codex version output was malformed"


@pytest.mark.parametrize("stdout", [b"codex-cli \xff\xfe\n", b"\xc3 1.0", b"codex-cli 1.0\x80"])
def test_non_utf8_version_output(stdout: bytes) -> None:
    with pytest.raises(ManagedCodexError) as caught:
        parse_version_output(stdout, BIN)
    assert caught.value.message == f"managed Codex version was not utf-8: {BIN}"
    assert render_error(caught.value) == f"Error: managed Codex version was not utf-8: {BIN}"


# -- render_exit_status -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("returncode", "text"),
    [
        (0, "exit status: 0"),
        (1, "exit status: 1"),
        (3, "exit status: 3"),
        (127, "exit status: 127"),
        (255, "exit status: 255"),
        (-signal.SIGKILL, "signal: 9 (SIGKILL)"),
        (-signal.SIGTERM, "signal: 15 (SIGTERM)"),
        (-signal.SIGSEGV, "signal: 11 (SIGSEGV)"),
        (-signal.SIGABRT, "signal: 6 (SIGABRT)"),
        (-signal.SIGHUP, "signal: 1 (SIGHUP)"),
        (-signal.SIGINT, "signal: 2 (SIGINT)"),
    ],
)
def test_render_exit_status_like_rust(returncode: int, text: str) -> None:
    assert render_exit_status(returncode) == text


def test_render_exit_status_unknown_signal_has_no_name() -> None:
    assert render_exit_status(-200) == "signal: 200"


# -- versions_equal ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("1.2.3", "1.2.3"),
        ("v1.2.3", "1.2.3"),
        ("1.2.3", "v1.2.3"),
        ("rust-v1.0.65", "1.0.65"),
        ("rust-v1.0.65", "v1.0.65"),
        ("1.0", "1.0.0"),
        ("v1.0", "rust-v1.0.0"),
        ("0.169.0", "0.169"),
        ("1.0.0-alpha.1", "1.0.0a1"),
        ("not a version", "not a version"),
        ("v-weird", "-weird"),
    ],
)
def test_versions_equal(left: str, right: str) -> None:
    assert versions_equal(left, right)
    assert versions_equal(right, left)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("1.2.3", "1.2.4"),
        ("0.169.0", "0.170.0"),
        ("1.0.0", "1.0.0a1"),
        ("1.0.0", "1.0.0.post1"),
        ("1.0.0+local", "1.0.0"),
        ("not a version", "not-a-version"),
        ("garbage", "1.0.0"),
        ("", "0"),
    ],
)
def test_versions_differ(left: str, right: str) -> None:
    assert not versions_equal(left, right)
    assert not versions_equal(right, left)


def test_versions_equal_never_raises_on_huge_numbers() -> None:
    # A misbehaving binary's --version must not crash the comparison: packaging turns
    # digits into int, and CPython refuses int() of more than 4300 digits with ValueError.
    huge = "1" * 5000
    assert versions_equal(huge, huge)
    assert not versions_equal(huge, huge[:-1] + "2")


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("v1.2.3", "1.2.3"), ("rust-v1.0.65", "1.0.65"), ("1.2.3", "1.2.3"), ("rust-1", "rust-1")],
)
def test_normalize_version(raw: str, normal: str) -> None:
    assert normalize_version(raw) == normal


# -- missing install message ------------------------------------------------------------


def test_missing_install_message_exact_text() -> None:
    assert missing_install_message(BIN) == (
        f"managed standalone Codex install not found at {BIN}; install Codex first\n"
        "\n"
        "Install it with:\n"
        "  codex-daemon install\n"
        "or with the standalone installer:\n"
        "  curl -fsSL https://chatgpt.com/codex/install.sh | sh\n"
        "Then rerun the command you just tried."
    )


# -- managed_bin_path (SPEC §7.1) --------------------------------------------------------


def make_release(paths: DaemonPaths, name: str, binary: str) -> str:
    release = os.path.join(paths.releases, name)
    target = os.path.join(release, binary)
    os.makedirs(os.path.dirname(target))
    with open(target, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(target, 0o755)
    return release


def point_current(paths: DaemonPaths, release: str) -> None:
    os.symlink(release, paths.current)


@pytest.fixture
def paths(tmp_path: Path) -> DaemonPaths:
    return DaemonPaths(str(tmp_path / "h"))


def test_prefers_the_tarball_layout_as_rust_reports_it(paths: DaemonPaths) -> None:
    # Both present: the Rust daemon reports current/bin/codex, and managedCodexPath
    # must agree with it (SPEC §9).
    release = make_release(paths, "1.0.0-x", "codex")
    os.makedirs(os.path.join(release, "bin"))
    with open(os.path.join(release, "bin", "codex"), "w") as f:
        f.write("")
    point_current(paths, release)
    expected = os.path.join(paths.current, "bin", "codex")
    assert managed_bin_path(paths) == expected
    assert ensure_managed_bin(paths) == expected


def test_falls_back_to_tarball_layout(paths: DaemonPaths) -> None:
    point_current(paths, make_release(paths, "1.0.0-x", "bin/codex"))
    expected = os.path.join(paths.current, "bin", "codex")
    assert managed_bin_path(paths) == expected
    assert ensure_managed_bin(paths) == expected


def test_directory_named_codex_is_not_the_binary(paths: DaemonPaths) -> None:
    release = make_release(paths, "1.0.0-x", "bin/codex")
    os.makedirs(os.path.join(release, "codex"))
    point_current(paths, release)
    assert managed_bin_path(paths) == os.path.join(paths.current, "bin", "codex")


def test_symlinked_binary_is_followed(paths: DaemonPaths, tmp_path: Path) -> None:
    real = tmp_path / "real-codex"
    real.write_text("")
    release = os.path.join(paths.releases, "1.0.0-x")
    os.makedirs(release)
    os.symlink(real, os.path.join(release, "codex"))
    point_current(paths, release)
    assert managed_bin_path(paths) == os.path.join(paths.current, "codex")


@pytest.mark.parametrize("setup", ["nothing", "empty-release", "dangling-current", "dangling-bin"])
def test_missing_binary_reports_current_codex(
    paths: DaemonPaths, tmp_path: Path, setup: str
) -> None:
    if setup == "empty-release":
        release = os.path.join(paths.releases, "1.0.0-x")
        os.makedirs(release)
        point_current(paths, release)
    elif setup == "dangling-current":
        os.makedirs(paths.package_root)
        point_current(paths, os.path.join(paths.releases, "gone"))
    elif setup == "dangling-bin":
        release = os.path.join(paths.releases, "1.0.0-x")
        os.makedirs(os.path.join(release, "bin"))
        os.symlink(tmp_path / "gone", os.path.join(release, "bin", "codex"))
        point_current(paths, release)
    primary = os.path.join(paths.current, "codex")
    assert managed_bin_path(paths) == primary
    with pytest.raises(ManagedCodexError) as caught:
        ensure_managed_bin(paths)
    assert caught.value.message == missing_install_message(primary)
    assert render_error(caught.value).startswith(
        f"Error: managed standalone Codex install not found at {primary}; install Codex first\n"
    )


def test_dedicated_layout_uses_its_own_current_bin_codex(tmp_path: Path) -> None:
    home = tmp_path / "h"
    standalone = DaemonPaths(str(home))
    point_current(standalone, make_release(standalone, "1.0.0-x", "codex"))
    dedicated = home / "packages" / "app-server-daemon"
    release = dedicated / "releases" / "2.0.0-x"
    (release / "bin").mkdir(parents=True)
    (release / "bin" / "codex").write_text("")
    (dedicated / "current").symlink_to(release)
    paths = DaemonPaths.detect(str(home), {"HOME": str(home)})
    assert paths.layout is Layout.DEDICATED
    expected = str(dedicated / "current" / "bin" / "codex")
    assert managed_bin_path(paths) == expected
    assert ensure_managed_bin(paths) == expected


def test_dedicated_layout_reports_current_bin_codex_missing(tmp_path: Path) -> None:
    paths = DaemonPaths(str(tmp_path / "h"), Layout.DEDICATED)
    expected = str(tmp_path / "h" / "packages" / "app-server-daemon" / "current" / "bin" / "codex")
    assert managed_bin_path(paths) == expected
