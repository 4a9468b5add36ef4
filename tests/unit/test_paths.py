"""CODEX_HOME resolution and the derived layout (SPEC §2.1, §3.1, §13.1 row 3)."""

from __future__ import annotations

import os
import pwd
from typing import TYPE_CHECKING

import pytest

from daemonkit.errors import HomeError
from daemonkit.paths import (
    DaemonPaths,
    Layout,
    detect_layout,
    home_digest,
    kit_private_dir,
    resolve_codex_home,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(30)

NO_PASSWD_UID = 54_321


def passwd_home() -> str:
    return pwd.getpwuid(os.getuid()).pw_dir


def test_flag_beats_env_and_home() -> None:
    environ = {"CODEX_HOME": "/env/codex", "HOME": "/home/u"}
    assert resolve_codex_home("/flag/codex", environ) == "/flag/codex"


def test_env_beats_home() -> None:
    assert resolve_codex_home(None, {"CODEX_HOME": "/env/codex", "HOME": "/home/u"}) == (
        "/env/codex"
    )


def test_home_dot_codex_last() -> None:
    assert resolve_codex_home(None, {"HOME": "/home/u"}) == "/home/u/.codex"


def test_empty_codex_home_is_ignored() -> None:
    assert resolve_codex_home(None, {"CODEX_HOME": "", "HOME": "/home/u"}) == "/home/u/.codex"


def test_no_home_variable_uses_the_password_database() -> None:
    expected = os.path.join(passwd_home(), ".codex")
    assert resolve_codex_home(None, {}) == expected
    assert resolve_codex_home(None, {"HOME": ""}) == expected
    assert resolve_codex_home(None, {"HOME": "", "CODEX_HOME": ""}) == expected


def test_flag_is_used_without_any_environment() -> None:
    assert resolve_codex_home("/flag", {}) == "/flag"


def test_paths_are_not_required_to_exist(tmp_path: Path) -> None:
    missing = str(tmp_path / "does" / "not" / "exist")
    assert resolve_codex_home(missing, {}) == missing
    assert not os.path.exists(missing)


def test_relative_flag_and_env_are_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cwd = os.getcwd()
    assert resolve_codex_home("rel/home", {}) == os.path.join(cwd, "rel", "home")
    assert resolve_codex_home(None, {"CODEX_HOME": "envrel"}) == os.path.join(cwd, "envrel")
    assert resolve_codex_home(None, {"HOME": "u"}) == os.path.join(cwd, "u", ".codex")


def test_symlinks_are_not_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    monkeypatch.chdir(tmp_path)
    cwd = os.getcwd()
    assert resolve_codex_home("link/h", {}) == os.path.join(cwd, "link", "h")
    absolute = str(tmp_path / "link" / "h")
    assert resolve_codex_home(absolute, {}) == absolute
    assert resolve_codex_home(None, {"CODEX_HOME": absolute}) == absolute


def test_dot_dot_after_a_symlink_keeps_its_kernel_meaning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `link/../h` names the `h` next to link's TARGET; collapsing `..` lexically (without
    # resolving the symlink) would silently pick a different directory.
    (tmp_path / "deep" / "target").mkdir(parents=True)
    (tmp_path / "deep" / "h").mkdir()
    (tmp_path / "h").mkdir()  # the wrong directory a lexical collapse would pick
    (tmp_path / "link").symlink_to(tmp_path / "deep" / "target")
    monkeypatch.chdir(tmp_path)
    resolved = resolve_codex_home("link/../h", {})
    assert os.path.isabs(resolved)
    assert os.path.samefile(resolved, tmp_path / "deep" / "h")
    given = str(tmp_path / "link" / ".." / "h")
    assert os.path.samefile(resolve_codex_home(given, {}), tmp_path / "deep" / "h")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as a uid without passwd entry")
def test_no_home_and_no_passwd_entry_fails() -> None:
    try:
        pwd.getpwuid(NO_PASSWD_UID)
    except KeyError:
        pass
    else:
        pytest.skip(f"uid {NO_PASSWD_UID} has a passwd entry here")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become a uid without a passwd entry, report, and _exit
        status = 1
        try:
            os.close(read_end)
            os.setgid(NO_PASSWD_UID)
            os.setuid(NO_PASSWD_UID)
            try:
                resolve_codex_home(None, {"HOME": "", "CODEX_HOME": ""})
            except HomeError as exc:
                os.write(write_end, f"HomeError:{exc}".encode())
            else:
                os.write(write_end, b"no error")
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        report = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report == "HomeError:failed to resolve CODEX_HOME"


def test_layout_derived_from_home() -> None:
    paths = DaemonPaths("/tmp/dk-x/h")
    s = "/tmp/dk-x/h/app-server-daemon"
    p = "/tmp/dk-x/h/packages/standalone"
    assert paths.state_dir == s
    assert paths.socket == "/tmp/dk-x/h/app-server-control/app-server-control.sock"
    assert paths.operation_lock == f"{s}/daemon.lock"
    assert paths.settings == f"{s}/settings.json"
    assert paths.settings_tmp == f"{s}/settings.tmp"
    assert paths.desired_state == f"{s}/desired-state.json"
    assert paths.updater_state == f"{s}/app-server-updater.state.json"
    assert paths.updater_socket == f"{s}/app-server-updater.sock"
    assert paths.app_server.record == f"{s}/app-server.pid"
    assert paths.app_server.lock == f"{s}/app-server.pid.lock"
    assert paths.app_server.tmp == f"{s}/app-server.pid.tmp"
    assert paths.app_server.log == f"{s}/app-server.stderr.log"
    assert paths.app_server.previous_log == f"{s}/app-server.stderr.log.previous"
    assert paths.updater.record == f"{s}/app-server-updater.pid"
    assert paths.updater.lock == f"{s}/app-server-updater.pid.lock"
    assert paths.updater.log == f"{s}/app-server-updater.stderr.log"
    assert paths.package_root == p
    assert paths.releases == f"{p}/releases"
    assert paths.current == f"{p}/current"
    assert paths.previous == f"{p}/previous"
    assert paths.install_lock == f"{p}/install.lock"
    assert paths.managed_bin_candidates == (f"{p}/current/codex", f"{p}/current/bin/codex")


def test_dedicated_layout_names() -> None:
    # What `codex app-server daemon start` of 0.169 sets up in a fresh home (SPEC §16).
    paths = DaemonPaths("/tmp/dk-x/h", Layout.DEDICATED)
    s = "/tmp/dk-x/h/app-server-daemon"
    d = "/tmp/dk-x/h/packages/app-server-daemon"
    p = "/tmp/dk-x/h/packages/standalone"
    assert paths.layout is Layout.DEDICATED
    assert paths.operation_lock == f"{s}/daemon.lock"
    assert paths.settings == f"{s}/settings.json"
    assert paths.app_server.record == f"{s}/daemon.pid"
    assert paths.app_server.lock == f"{s}/daemon.pid.lock"
    assert paths.app_server.log == f"{s}/daemon.stderr.log"
    assert paths.updater.record == f"{s}/daemon-updater.pid"
    assert paths.updater.lock == f"{s}/daemon-updater.pid.lock"
    assert paths.updater.log == f"{s}/daemon-updater.stderr.log"
    assert paths.updater_socket == f"{s}/daemon-updater.sock"
    assert paths.managed_bin_candidates == (f"{d}/current/bin/codex",)
    # Installs never target the dedicated root (SPEC §16).
    assert paths.package_root == p
    assert paths.install_lock == f"{p}/install.lock"


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")


def test_a_fresh_home_is_standalone(tmp_path: Path) -> None:
    # Rust would pick the dedicated root here; the kit never creates it (SPEC §16).
    assert detect_layout(str(tmp_path / "missing")) is Layout.STANDALONE
    assert detect_layout(str(tmp_path)) is Layout.STANDALONE
    paths = DaemonPaths.detect(str(tmp_path), {"HOME": "/home/u"})
    assert paths.app_server.record.endswith("/app-server.pid")
    # A standalone home is the kit's: its own files stay in <S>.
    assert paths.kit_dir == paths.state_dir
    assert paths.kit_updater_socket == paths.updater_socket


def test_dedicated_current_wins_over_everything(tmp_path: Path) -> None:
    _touch(tmp_path / "app-server-daemon" / "app-server.pid")
    _touch(tmp_path / "app-server-daemon" / "app-server.stderr.log")
    (tmp_path / "packages" / "standalone").mkdir(parents=True)
    (tmp_path / "packages" / "standalone" / "current").symlink_to(tmp_path / "gone")
    (tmp_path / "packages" / "app-server-daemon").mkdir(parents=True)
    # A dangling `current` exists as a name: Rust checks existence of the link.
    (tmp_path / "packages" / "app-server-daemon" / "current").symlink_to(tmp_path / "gone")
    assert detect_layout(str(tmp_path)) is Layout.DEDICATED
    paths = DaemonPaths.detect(str(tmp_path), {"HOME": "/home/u"})
    assert paths.app_server.record == str(tmp_path / "app-server-daemon" / "daemon.pid")
    # Rust's layout: only desired-state.json of the kit's files stays in the home.
    digest = home_digest(str(tmp_path))
    assert paths.kit_dir == f"/home/u/.local/state/codex-daemonkit/homes/{digest}"
    assert paths.desired_state == str(tmp_path / "app-server-daemon" / "desired-state.json")
    kit_files = (paths.updater_state, paths.binary_cache, paths.kit_updater_socket)
    assert all(path.startswith(paths.kit_dir + "/") for path in kit_files)
    assert paths.updater_socket == str(tmp_path / "app-server-daemon" / "daemon-updater.sock")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"HOME": "/h", "XDG_STATE_HOME": "/x"}, "/x/codex-daemonkit/homes"),
        ({"HOME": "/h"}, "/h/.local/state/codex-daemonkit/homes"),
        # The XDG spec: a relative value is invalid and ignored.
        ({"HOME": "/h", "XDG_STATE_HOME": "rel"}, "/h/.local/state/codex-daemonkit/homes"),
        ({"HOME": "/h", "XDG_STATE_HOME": ""}, "/h/.local/state/codex-daemonkit/homes"),
    ],
)
def test_the_private_dir_follows_xdg_state_home(environ: dict[str, str], expected: str) -> None:
    assert kit_private_dir("/srv/c", environ) == f"{expected}/{home_digest('/srv/c')}"


def test_each_home_gets_its_own_private_dir() -> None:
    assert home_digest("/a/.codex") != home_digest("/b/.codex")
    assert home_digest("/a/.codex") == home_digest("/a/.codex")
    assert len(home_digest("/a/.codex")) == 12


@pytest.mark.parametrize(
    ("artifact", "expected"),
    [
        ("daemon.pid", Layout.DEDICATED),
        ("daemon.stderr.log", Layout.DEDICATED),
        ("daemon-updater.pid", Layout.DEDICATED),
        ("daemon-updater.stderr.log", Layout.DEDICATED),
        ("app-server.pid", Layout.STANDALONE),
        ("app-server.stderr.log", Layout.STANDALONE),
        ("app-server-updater.pid", Layout.STANDALONE),
        ("app-server-updater.stderr.log", Layout.STANDALONE),
        # Neither a lock, settings nor kit state is a launch artifact.
        ("daemon.lock", Layout.STANDALONE),
        ("daemon.pid.lock", Layout.STANDALONE),
        ("settings.json", Layout.STANDALONE),
    ],
)
def test_launch_artifacts_pick_the_layout(tmp_path: Path, artifact: str, expected: Layout) -> None:
    (tmp_path / "packages" / "standalone").mkdir(parents=True)
    (tmp_path / "packages" / "standalone" / "current").symlink_to(tmp_path / "gone")
    _touch(tmp_path / "app-server-daemon" / artifact)
    assert detect_layout(str(tmp_path)) is expected


def test_dedicated_artifacts_come_before_standalone_ones(tmp_path: Path) -> None:
    _touch(tmp_path / "app-server-daemon" / "app-server.stderr.log")
    _touch(tmp_path / "app-server-daemon" / "daemon.stderr.log")
    assert detect_layout(str(tmp_path)) is Layout.DEDICATED
