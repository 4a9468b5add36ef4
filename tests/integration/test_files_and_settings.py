"""Settings, the missing install, permissions and refused state files, through the CLI.

SPEC §3.2-§3.6 and §7.1-§7.3; §13.6 rows 22-24 (symlinked, foreign-owned and
non-regular state files refused with their targets untouched; 0700/0600 whatever the
umask; strict settings errors for start/restart/version while stop and status still
work), and the missing-install error of §7.3.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from daemonkit import __version__
from tests.harness import Result, is_alive, write_settings_text
from tests.updates import put_fake_npm_on_path

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = pytest.mark.timeout(60)

FOREIGN_UID = 65534
IS_ROOT = os.geteuid() == 0
MISSING_INSTALL_TAIL = (
    "\n"
    "Install it with:\n"
    "  codex-daemon install\n"
    "or with the standalone installer:\n"
    "  curl -fsSL https://chatgpt.com/codex/install.sh | sh\n"
    "Then rerun the command you just tried.\n"
)
STARTED = (
    '{"status":"started","backend":"pid","pid":<pid>,"managedCodexPath":"<bin>",'
    '"managedCodexVersion":"1.0.0","socketPath":"<sock>","cliVersion":"<kitver>",'
    '"appServerVersion":"1.0.0"}'
)
STOPPED = (
    '{"status":"stopped","backend":"pid","managedCodexPath":"<bin>",'
    '"managedCodexVersion":"1.0.0","socketPath":"<sock>","cliVersion":"<kitver>"}'
)


def _json_text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


def golden(
    home: Home, template: str, *, pid: int | None = None, bin_path: str | None = None
) -> str:
    line = (
        template.replace("<bin>", _json_text(bin_path or home.paths.managed_bin_candidates[0]))
        .replace("<sock>", _json_text(home.paths.socket))
        .replace("<kitver>", _json_text(__version__))
    )
    if pid is not None:
        line = line.replace("<pid>", str(pid))
    assert "<" not in line, line
    return line + "\n"


def assert_error(result: Result, expected_stderr: str) -> None:
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert result.stderr == expected_stderr
    assert "Traceback" not in result.stderr


def refusal(path: str, reason: str) -> str:
    return f"Error: refusing to use {path}: {reason}\n"


def make_state_dir(home: Home) -> str:
    os.makedirs(home.paths.state_dir, mode=0o700, exist_ok=True)
    return home.paths.state_dir


def run_with_umask(home: Home, mask: int, *args: str) -> Result:
    """Run the CLI with the given umask, set by a shell right before exec."""
    argv = ["sh", "-c", f'umask {mask:03o}; exec "$0" "$@"', *home.argv(*args)]
    done = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, env=home.env(), timeout=60, check=False
    )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


def mode_of(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- the missing install (SPEC §7.1, §7.3) ---------------------------------------------------


@pytest.mark.parametrize("command", ["start", "restart"])
@pytest.mark.parametrize("layout", ["no-current", "empty-release", "dangling-current"])
def test_missing_install_is_the_exact_paragraph(home: Home, command: str, layout: str) -> None:
    package_root = Path(home.paths.package_root)
    if layout == "empty-release":
        release = Path(home.paths.releases) / "1.0.0-x86_64-unknown-linux-musl"
        release.mkdir(parents=True)
        home.point_current(release)
    elif layout == "dangling-current":
        package_root.mkdir(parents=True)
        os.symlink(str(package_root / "releases" / "gone"), home.paths.current)
    result = home.run(command)
    bin_path = home.paths.managed_bin_candidates[0]
    assert_error(
        result,
        f"Error: managed standalone Codex install not found at {bin_path}; install Codex first\n"
        + MISSING_INSTALL_TAIL,
    )
    # Only the state directory with its locks and the recorded intent: no record, no
    # log, no settings, no control socket directory, no package tree.
    assert set(os.listdir(home.paths.state_dir)) <= {
        "daemon.lock",
        "app-server.pid.lock",
        "desired-state.json",
    }
    assert "daemon.lock" in os.listdir(home.paths.state_dir)
    assert not os.path.exists(os.path.dirname(home.paths.socket))
    if layout == "no-current":
        assert not package_root.exists()


def test_tarball_layout_current_bin_codex_is_accepted(home: Home) -> None:
    release = home.install_fake("1.0.0", current=False)
    (release / "bin").mkdir()
    (release / "codex").rename(release / "bin" / "codex")
    (release / "fake-codex.json").rename(release / "bin" / "fake-codex.json")
    home.point_current(release)
    tarball_bin = home.paths.managed_bin_candidates[1]
    assert tarball_bin.endswith("/current/bin/codex")

    started = home.run("start")
    pid = home.record_pid()
    assert pid is not None
    assert (started.returncode, started.stderr) == (0, ""), started
    assert started.stdout == golden(home, STARTED, pid=pid, bin_path=tarball_bin)
    stopped = home.run("stop")
    assert stopped.stdout == golden(home, STOPPED, bin_path=tarball_bin)
    assert not is_alive(pid)


# -- settings (SPEC §3.5, §3.6) ---------------------------------------------------------------

# name -> (file text, the strict error's first line, its cause or None)
BAD_SETTINGS: dict[str, tuple[str, str, str | None]] = {
    "not-json": ("not json", "failed to parse settings <settings>", ""),
    "grace-301": (
        '{"shutdownGraceSeconds": 301}',
        ("invalid value for shutdownGraceSeconds in <settings>: must be between 0 and 300 seconds"),
        None,
    ),
    "unknown-channel": (
        '{"updater": {"channel": "ftp"}}',
        ('invalid value for updater.channel in <settings>: must be "script" or "npm", not "ftp"'),
        None,
    ),
}
MORE_BAD_SETTINGS: dict[str, tuple[str, str, str | None]] = {
    "not-an-object": ("[1, 2]", "failed to parse settings <settings>", ""),
    "grace-true": (
        '{"shutdownGraceSeconds": true}',
        "failed to parse settings <settings>",
        "invalid type for shutdownGraceSeconds: expected a non-negative integer",
    ),
    "grace-float": (
        '{"shutdownGraceSeconds": 60.0}',
        "failed to parse settings <settings>",
        "invalid type for shutdownGraceSeconds: expected a non-negative integer",
    ),
    "grace-negative": (
        '{"shutdownGraceSeconds": -1}',
        "failed to parse settings <settings>",
        "invalid type for shutdownGraceSeconds: expected a non-negative integer",
    ),
    "interval-zero": (
        '{"updater": {"updateIntervalMinutes": 0}}',
        ("invalid value for updater.updateIntervalMinutes in <settings>: must be positive"),
        None,
    ),
    "interval-negative": (
        '{"updater": {"updateIntervalMinutes": -1}}',
        "failed to parse settings <settings>",
        "invalid type for updater.updateIntervalMinutes: expected a non-negative integer",
    ),
    "updater-not-object": (
        '{"updater": 5}',
        "failed to parse settings <settings>",
        "invalid type for updater: expected an object",
    ),
    "http-url": (
        '{"updater": {"installScriptUrl": "http://example.com/install.sh"}}',
        (
            "invalid value for updater.installScriptUrl in <settings>: "
            "must use https: http://example.com/install.sh"
        ),
        None,
    ),
}


def assert_settings_error(home: Home, result: Result, message: str, cause: str | None) -> None:
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    first_line = f"Error: {message.replace('<settings>', home.paths.settings)}"
    if cause is None:
        assert result.stderr == first_line + "\n"
        return
    lines = result.stderr.split("\n")
    assert lines[:3] == [first_line, "", "Caused by:"], result.stderr
    assert len(lines) == 5, result.stderr  # exactly one (unnumbered) cause, then the newline
    assert lines[3].startswith("    ")
    assert not lines[3].startswith("    0: ")
    if cause:
        assert lines[3] == f"    {cause}"  # the key a wrong type was found at (SPEC §3.6)
    assert lines[4] == ""


def lenient_warning(home: Home, message: str) -> str:
    """The warning stop and status give for a file strict loading rejects with ``message``."""
    settings = home.paths.settings
    text = message.replace("<settings>", settings)
    if text.startswith("invalid value for "):
        # The strict error, ignored: the file first, then the key and the reason.
        key, _, reason = text.removeprefix("invalid value for ").partition(f" in {settings}: ")
        return f"ignoring invalid settings {settings}: invalid value for {key}: {reason}"
    return f"ignoring invalid settings {settings}: {text}"


@pytest.mark.parametrize("command", ["start", "restart", "version"])
@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_strict_commands_fail_on_bad_settings(fake_home: Home, case: str, command: str) -> None:
    text, message, cause = BAD_SETTINGS[case]
    write_settings_text(fake_home, text)
    result = fake_home.run(command)
    assert_settings_error(fake_home, result, message, cause)
    assert fake_home.record() is None
    assert not os.path.exists(fake_home.paths.app_server.log)  # nothing was spawned
    assert Path(fake_home.paths.settings).read_text() == text  # never rewritten


@pytest.mark.parametrize("case", sorted(MORE_BAD_SETTINGS))
def test_start_fails_on_each_kind_of_bad_setting(fake_home: Home, case: str) -> None:
    text, message, cause = MORE_BAD_SETTINGS[case]
    write_settings_text(fake_home, text)
    assert_settings_error(fake_home, fake_home.run("start"), message, cause)
    assert fake_home.record() is None


@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_stop_and_status_work_with_bad_settings(fake_home: Home, case: str) -> None:
    pid = fake_home.run("start").json["pid"]
    assert isinstance(pid, int)
    text, message, cause = BAD_SETTINGS[case]
    write_settings_text(fake_home, text)
    settings = fake_home.paths.settings
    warning = lenient_warning(fake_home, message)
    prefix = f"warning: {warning}"

    status = fake_home.run("status")
    assert status.returncode == 0, status
    report = status.json
    assert report["status"] == "running"
    warnings = report["warnings"]
    assert isinstance(warnings, list)
    assert len(warnings) == 1
    if cause is None:
        assert warnings[0] == warning
    else:
        assert warnings[0].startswith(warning)

    stopped = fake_home.run("stop")
    assert stopped.returncode == 0, stopped  # a warning never changes the exit code
    assert stopped.stdout == golden(fake_home, STOPPED)
    lines = stopped.stderr.splitlines()
    assert len(lines) == 1, stopped.stderr
    if cause is None:
        assert lines[0] == prefix
    else:
        assert lines[0].startswith(prefix)
    assert not is_alive(pid)
    assert fake_home.record() is None
    assert Path(settings).read_text() == text


def test_valid_settings_are_accepted_and_never_rewritten(fake_home: Home) -> None:
    text = (
        '{"custom": {"keep": [1, 2]}, "shutdownGraceSeconds": 0, "remoteControlEnabled": false,'
        ' "updater": {"autoUpdateEnabled": false, "updateIntervalMinutes": 999999,'
        ' "channel": "npm", "installScriptUrl": "http://127.0.0.1:9/install.sh"},'
        ' "supervisor": {"restartOnExit": false, "healthCheckIntervalSeconds": 3600}}'
    )
    write_settings_text(fake_home, text)
    assert fake_home.run("start").json["status"] == "started"
    report = fake_home.run("status").json
    assert report["warnings"] == []
    assert report["updater"] == {
        "status": "notRunning",
        "autoUpdateEnabled": False,
        "channel": "npm",
        "updateIntervalMinutes": 525600,
    }
    assert report["supervisor"] == {
        "state": "off",
        "restartOnExit": False,
        "restarts": 0,
        "lastExit": None,
    }
    assert fake_home.run("stop").json["status"] == "stopped"
    assert Path(fake_home.paths.settings).read_text() == text


# -- directories and modes (SPEC §3.2) -----------------------------------------------------------


@pytest.mark.parametrize("preexisting", [None, 0o755, 0o777])
def test_state_dir_0700_and_files_0600_under_umask_000(
    fake_home: Home, preexisting: int | None
) -> None:
    state_dir = fake_home.paths.state_dir
    if preexisting is not None:
        os.mkdir(state_dir)
        os.chmod(state_dir, preexisting)
    started = run_with_umask(fake_home, 0o000, "start")
    assert started.returncode == 0, started
    assert mode_of(state_dir) == 0o700
    restarted = run_with_umask(fake_home, 0o000, "restart")
    assert restarted.returncode == 0, restarted
    expected = {
        "daemon.lock",
        "desired-state.json",
        "app-server.pid",
        "app-server.pid.lock",
        "app-server.stderr.log",
        "app-server.stderr.log.previous",
    }
    assert expected <= set(os.listdir(state_dir))
    _assert_all_0600(state_dir)
    stopped = run_with_umask(fake_home, 0o000, "stop")
    assert stopped.returncode == 0, stopped
    _assert_all_0600(state_dir)
    assert mode_of(state_dir) == 0o700
    # start and stop never create settings.json (SPEC §3.7)
    assert not os.path.exists(fake_home.paths.settings)
    assert not any(name.endswith(".tmp") for name in os.listdir(state_dir))


def _assert_all_0600(state_dir: str) -> None:
    """Every entry the kit (or a process it spawned) made in <S>: a file or socket, 0600."""
    infos = {name: os.lstat(os.path.join(state_dir, name)) for name in os.listdir(state_dir)}
    modes = {name: stat.S_IMODE(info.st_mode) for name, info in infos.items()}
    assert modes == dict.fromkeys(modes, 0o600)
    kinds = {
        name: stat.S_ISREG(info.st_mode) or stat.S_ISSOCK(info.st_mode)
        for name, info in infos.items()
    }
    assert kinds == dict.fromkeys(kinds, True)


def test_missing_codex_home_is_created_0700(home: Home) -> None:
    codex_home = os.path.join(str(home.root), "fresh", "h")
    stopped = run_with_umask(home, 0o000, "--codex-home", codex_home, "stop")
    assert stopped.returncode == 0, stopped
    assert json.loads(stopped.stdout)["status"] == "notRunning"
    # SPEC §2.1, §3.1: <H> is created 0700, and so is every missing level above it.
    for level in ("fresh", "fresh/h", "fresh/h/app-server-daemon"):
        assert mode_of(os.path.join(str(home.root), level)) == 0o700, level


@pytest.mark.parametrize("mask", [0o022, 0o000], ids=["umask-022", "umask-000"])
def test_npm_install_creates_every_missing_level_0700(home: Home, mask: int) -> None:
    put_fake_npm_on_path(home, latest="2.0.0")
    codex_home = os.path.join(str(home.root), "fresh", "h")
    installed = run_with_umask(
        home, mask, "--codex-home", codex_home, "install", "--channel", "npm"
    )
    assert installed.returncode == 0, installed
    assert json.loads(installed.stdout)["status"] == "installed"
    levels = ("fresh", "fresh/h", "fresh/h/packages", "fresh/h/packages/standalone")
    modes = {level: mode_of(os.path.join(str(home.root), level)) for level in levels}
    assert modes == dict.fromkeys(levels, 0o700)
    assert mode_of(os.path.join(codex_home, "packages", "standalone", "releases")) == 0o700


@pytest.mark.parametrize("command", ["status", "logs", "version"])
def test_read_only_commands_create_nothing(home: Home, command: str) -> None:
    codex_home = os.path.join(str(home.root), "fresh", "h")
    result = home.run("--codex-home", codex_home, command)
    assert result.returncode == (1 if command == "version" else 0), result
    assert not os.path.exists(os.path.join(str(home.root), "fresh"))


# -- refused state files (SPEC §3.3, §4.10) ----------------------------------------------------


def _outside_target(home: Home, *, exists: bool) -> Path:
    target = home.root / "outside.txt"  # outside <H>
    if exists:
        target.write_text("precious\n")
        target.chmod(0o644)
    return target


def _assert_target_untouched(target: Path, *, existed: bool) -> None:
    if existed:
        assert target.read_text() == "precious\n"
        assert mode_of(str(target)) == 0o644
    else:
        assert not os.path.lexists(target)


def _state_path(home: Home, name: str) -> str:
    return os.path.join(home.paths.state_dir, name)


@pytest.mark.parametrize("target_exists", [True, False], ids=["target", "dangling"])
@pytest.mark.parametrize(
    "name", ["app-server.pid", "app-server.pid.lock", "daemon.lock", "settings.json"]
)
def test_start_refuses_symlinked_state_files(
    fake_home: Home, name: str, target_exists: bool
) -> None:
    make_state_dir(fake_home)
    target = _outside_target(fake_home, exists=target_exists)
    link = _state_path(fake_home, name)
    os.symlink(target, link)
    result = fake_home.run("start")
    assert_error(result, refusal(link, "it is a symbolic link"))
    assert os.path.islink(link)
    _assert_target_untouched(target, existed=target_exists)
    if name != "app-server.pid":
        assert fake_home.record() is None
    assert not os.path.exists(fake_home.paths.app_server.log)


@pytest.mark.parametrize("command", ["stop", "restart"])
def test_stop_and_restart_refuse_a_symlinked_pid_file(fake_home: Home, command: str) -> None:
    make_state_dir(fake_home)
    target = _outside_target(fake_home, exists=True)
    link = fake_home.paths.app_server.record
    os.symlink(target, link)
    assert_error(fake_home.run(command), refusal(link, "it is a symbolic link"))
    assert os.path.islink(link)
    _assert_target_untouched(target, existed=True)


def test_status_reports_a_symlinked_pid_file_as_a_warning(fake_home: Home) -> None:
    make_state_dir(fake_home)
    target = _outside_target(fake_home, exists=True)
    link = fake_home.paths.app_server.record
    os.symlink(target, link)
    report = fake_home.run("status").json
    assert report["status"] == "notRunning"
    assert "backend" not in report
    assert report["warnings"] == [f"refusing to use {link}: it is a symbolic link"]
    _assert_target_untouched(target, existed=True)


def test_stop_ignores_a_symlinked_settings_file_with_a_warning(fake_home: Home) -> None:
    pid = fake_home.run("start").json["pid"]
    assert isinstance(pid, int)
    target = _outside_target(fake_home, exists=True)
    target.write_text('{"shutdownGraceSeconds": 1}')
    target.chmod(0o644)
    settings = fake_home.paths.settings
    os.symlink(target, settings)
    stopped = fake_home.run("stop")
    assert stopped.returncode == 0, stopped
    assert stopped.stdout == golden(fake_home, STOPPED)
    assert stopped.stderr == (
        f"warning: ignoring invalid settings {settings}: "
        f"refusing to use {settings}: it is a symbolic link\n"
    )
    assert not is_alive(pid)
    assert os.path.islink(settings)
    assert target.read_text() == '{"shutdownGraceSeconds": 1}'
    version = fake_home.run("version")
    assert_error(version, refusal(settings, "it is a symbolic link"))


@pytest.mark.parametrize("command", ["start", "stop", "restart"])
def test_fifo_at_the_pid_path_is_refused_without_hanging(fake_home: Home, command: str) -> None:
    make_state_dir(fake_home)
    fifo = fake_home.paths.app_server.record
    os.mkfifo(fifo, 0o600)
    try:
        result = fake_home.run(command, timeout=30)
        assert_error(result, refusal(fifo, "not a regular file"))
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
        report = fake_home.run("status", timeout=30).json
        assert report["warnings"] == [f"refusing to use {fifo}: not a regular file"]
    finally:
        # The harness's teardown reads the record path with a blocking open.
        os.unlink(fifo)


def test_fifo_as_settings_is_refused_without_hanging(fake_home: Home) -> None:
    make_state_dir(fake_home)
    fifo = fake_home.paths.settings
    os.mkfifo(fifo, 0o600)
    assert_error(fake_home.run("start", timeout=30), refusal(fifo, "not a regular file"))
    stopped = fake_home.run("stop", timeout=30)
    assert stopped.returncode == 0, stopped
    assert stopped.stderr == (
        f"warning: ignoring invalid settings {fifo}: refusing to use {fifo}: not a regular file\n"
    )


@pytest.mark.skipif(not IS_ROOT, reason="needs root to create another user's files")
@pytest.mark.parametrize("name", ["app-server.pid", "daemon.lock", "settings.json"])
def test_foreign_owned_state_files_are_refused(fake_home: Home, name: str) -> None:
    make_state_dir(fake_home)
    path = _state_path(fake_home, name)
    Path(path).write_text("{}" if name == "settings.json" else "")
    os.chown(path, FOREIGN_UID, FOREIGN_UID)
    before = Path(path).read_bytes()
    assert_error(
        fake_home.run("start"),
        refusal(path, f"owned by uid {FOREIGN_UID}, expected {os.geteuid()}"),
    )
    assert Path(path).read_bytes() == before
    assert os.stat(path).st_uid == FOREIGN_UID


@pytest.mark.skipif(not IS_ROOT, reason="needs root to create another user's directory")
def test_foreign_owned_state_dir_is_refused(fake_home: Home) -> None:
    state_dir = make_state_dir(fake_home)
    os.chmod(state_dir, 0o755)
    os.chown(state_dir, FOREIGN_UID, FOREIGN_UID)
    result = fake_home.run("start")
    assert_error(
        result,
        f"Error: refusing to use daemon state directory {state_dir}: owned by uid "
        f"{FOREIGN_UID}, expected {os.geteuid()}\n",
    )
    assert mode_of(state_dir) == 0o755  # not tightened: not ours
    assert os.listdir(state_dir) == []
