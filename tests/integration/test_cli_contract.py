"""The CLI's machine contract, through the CLI as a subprocess (SPEC §2.1-§2.3, §2.15).

SPEC §13.1 rows 1-4: golden success lines compared byte for byte (key order, omitted
keys, nulls), the exact ``Error:``/``Caused by:`` rendering with an empty stdout and
exit 1, usage errors with exit 2, CODEX_HOME precedence, and nothing from children
on stdout.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from typing import TYPE_CHECKING

import pytest

from daemonkit import __version__
from tests.harness import Result, is_alive, write_settings_text

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = pytest.mark.timeout(60)

# Golden lines: `<bin>`, `<sock>`, `<kitver>` and `<pid>` are substituted (see `golden`).
STARTED = (
    '{"status":"started","backend":"pid","pid":<pid>,"managedCodexPath":"<bin>",'
    '"managedCodexVersion":"1.0.0","socketPath":"<sock>","cliVersion":"<kitver>",'
    '"appServerVersion":"1.0.1"}'
)
ALREADY_RUNNING = (
    '{"status":"alreadyRunning","backend":"pid","managedCodexPath":"<bin>",'
    '"managedCodexVersion":"1.0.0","socketPath":"<sock>","cliVersion":"<kitver>",'
    '"appServerVersion":"1.0.1"}'
)
RUNNING = (
    '{"status":"running","backend":"pid","managedCodexPath":"<bin>",'
    '"managedCodexVersion":"1.0.0","socketPath":"<sock>","cliVersion":"<kitver>",'
    '"appServerVersion":"1.0.1"}'
)
RESTARTED = (
    '{"status":"restarted","backend":"pid","pid":<pid>,"managedCodexPath":"<bin>",'
    '"managedCodexVersion":"1.0.0","socketPath":"<sock>","cliVersion":"<kitver>",'
    '"appServerVersion":"1.0.1"}'
)
STOPPED = (
    '{"status":"stopped","backend":"pid","managedCodexPath":"<bin>",'
    '"managedCodexVersion":"1.0.0","socketPath":"<sock>","cliVersion":"<kitver>"}'
)
NOT_RUNNING = (
    '{"status":"notRunning","managedCodexPath":"<bin>","managedCodexVersion":"1.0.0",'
    '"socketPath":"<sock>","cliVersion":"<kitver>"}'
)
NOT_RUNNING_NO_INSTALL = (
    '{"status":"notRunning","managedCodexPath":"<bin>","managedCodexVersion":null,'
    '"socketPath":"<sock>","cliVersion":"<kitver>"}'
)


def _json_text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


def golden(home: Home, template: str, *, pid: int | None = None) -> str:
    """The expected stdout: the template with this home's values, plus one newline."""
    line = (
        template.replace("<bin>", _json_text(home.paths.managed_bin_candidates[0]))
        .replace("<sock>", _json_text(home.paths.socket))
        .replace("<kitver>", _json_text(__version__))
    )
    if pid is not None:
        line = line.replace("<pid>", str(pid))
    assert "<" not in line, line
    return line + "\n"


def error_text(message: str, *causes: str) -> str:
    """The anyhow-style rendering of SPEC §2.2, as the CLI writes it to stderr."""
    text = f"Error: {message}\n"
    if len(causes) == 1:
        text += f"\nCaused by:\n    {causes[0]}\n"
    elif causes:
        text += "\nCaused by:\n" + "".join(f"    {i}: {c}\n" for i, c in enumerate(causes))
    return text


def run_cli(
    home: Home, *args: str, env: dict[str, str] | None = None, cwd: str | None = None
) -> Result:
    """``home.run`` with a working directory of our choice."""
    done = subprocess.run(
        home.argv(*args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env if env is not None else home.env(),
        cwd=cwd,
        timeout=60,
        check=False,
    )
    return Result(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def assert_success(result: Result, expected: str) -> None:
    assert (result.returncode, result.stderr) == (0, ""), result
    assert result.stdout == expected


def assert_error(result: Result, expected_stderr: str) -> None:
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert result.stderr == expected_stderr
    assert "Traceback" not in result.stderr


def make_stale_socket(path: str) -> None:
    """A bound-then-closed AF_UNIX socket file: connecting to it is refused."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)


# -- golden success lines (row 1) ---------------------------------------------------------


def test_every_lifecycle_status_is_one_golden_line(home: Home) -> None:
    # The probe reports 1.0.1 while `--version` says 1.0.0: each key has its own source.
    home.install_fake("1.0.0", server_version="1.0.1")

    started = home.run("start")
    first_pid = home.record_pid()
    assert first_pid is not None
    assert_success(started, golden(home, STARTED, pid=first_pid))

    assert_success(home.run("start"), golden(home, ALREADY_RUNNING))
    assert_success(home.run("version"), golden(home, RUNNING))

    restarted = home.run("restart")
    second_pid = home.record_pid()
    assert second_pid is not None
    assert second_pid != first_pid
    assert_success(restarted, golden(home, RESTARTED, pid=second_pid))
    assert not is_alive(first_pid)

    assert_success(home.run("stop"), golden(home, STOPPED))
    assert not is_alive(second_pid)
    assert home.record() is None
    assert_success(home.run("stop"), golden(home, NOT_RUNNING))


def test_restart_with_nothing_running_starts(fake_home: Home) -> None:
    result = fake_home.run("restart")
    pid = fake_home.record_pid()
    assert pid is not None
    expected = RESTARTED.replace('"appServerVersion":"1.0.1"', '"appServerVersion":"1.0.0"')
    assert_success(result, golden(fake_home, expected, pid=pid))


def test_stop_without_install_has_null_managed_version(home: Home) -> None:
    assert_success(home.run("stop"), golden(home, NOT_RUNNING_NO_INSTALL))


def test_children_never_write_to_stdout(home: Home) -> None:
    marker = "CHILD-STDERR-MARKER"
    home.install_fake(stderr_text=marker, notifications_before_response=3)
    result = home.run("start")
    assert result.returncode == 0, result
    assert result.stdout.count("\n") == 1
    assert result.stdout.endswith("}\n")
    assert json.loads(result.stdout)["status"] == "started"
    assert marker not in result.stdout
    assert result.stderr == ""
    with open(home.paths.app_server.log, encoding="utf-8") as log:
        assert marker in log.read()  # the child did write; it went to its log


def test_locale_changes_neither_output_nor_identity(fake_home: Home) -> None:
    env = fake_home.env(LANG="oops", LC_TIME="de_DE.UTF-8", LC_MESSAGES="fr_FR.UTF-8")
    env.pop("LC_ALL", None)
    result = fake_home.run("start", env=env)
    pid = fake_home.record_pid()
    assert pid is not None
    expected = STARTED.replace('"appServerVersion":"1.0.1"', '"appServerVersion":"1.0.0"')
    assert_success(result, golden(fake_home, expected, pid=pid))
    record = fake_home.record()
    assert record is not None
    c_env = {key: value for key, value in os.environ.items() if not key.startswith("LC_")}
    c_env["LC_ALL"] = "C"
    lstart = subprocess.run(
        ["ps", "-p", str(pid), "-o", "lstart="],
        capture_output=True,
        env=c_env,
        check=True,
        text=True,
    ).stdout.strip()
    assert record["processStartTime"] == lstart
    assert_success(fake_home.run("stop", env=env), golden(fake_home, STOPPED))


# -- errors (row 2) -------------------------------------------------------------------------


NOT_RUNNING_HINT = "hint: the app server is not running; start it with codex-daemon start\n"


def test_version_with_nothing_running_is_enoent(fake_home: Home) -> None:
    sock = fake_home.paths.socket
    assert_error(
        fake_home.run("version"),
        error_text(f"failed to connect to {sock}", "No such file or directory (os error 2)")
        + NOT_RUNNING_HINT,
    )


def test_version_with_stale_socket_is_refused(fake_home: Home) -> None:
    sock = fake_home.paths.socket
    make_stale_socket(sock)
    assert_error(
        fake_home.run("version"),
        error_text(f"failed to connect to {sock}", "Connection refused (os error 111)")
        + NOT_RUNNING_HINT,
    )
    assert os.path.exists(sock)  # the kit never unlinks the control socket (SPEC §9)


def test_version_gives_no_hint_when_something_listens(fake_home: Home) -> None:
    # A listener that reads the upgrade request and hangs up: something runs, so
    # "start it" would be wrong.
    sock = fake_home.paths.socket
    os.makedirs(os.path.dirname(sock), mode=0o700)

    def read_then_hang_up(listener: socket.socket) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(sock)
        listener.listen()
        server = threading.Thread(target=read_then_hang_up, args=(listener,), daemon=True)
        server.start()
        result = fake_home.run("version")
        server.join(timeout=10)
    assert_error(
        result,
        error_text(f"failed to upgrade {sock}", "connection closed during upgrade"),
    )


# -- output that cannot be written (issue 10) -------------------------------------------------


def run_with_streams(home: Home, *args: str, stdout: int, stderr: int) -> Result:
    """``home.run`` with stdout or stderr a descriptor of the test's choice.

    The other stream is captured; a stream the test passes shows as empty here.
    """
    done = subprocess.run(
        home.argv(*args),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=home.env(),
        timeout=60,
        check=False,
    )
    return Result(
        done.returncode,
        (done.stdout or b"").decode("utf-8", "replace"),
        (done.stderr or b"").decode("utf-8", "replace"),
    )


def closed_pipe() -> int:
    """The write end of a pipe whose read end is already closed: a write gets EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


@pytest.mark.parametrize("command", ["status", "stop", "logs"])
def test_stdout_on_a_full_device_is_an_error(home: Home, command: str) -> None:
    with open("/dev/full", "wb") as full:
        result = run_with_streams(home, command, stdout=full.fileno(), stderr=subprocess.PIPE)
    assert_error(
        result,
        error_text("failed to write to stdout", "No space left on device (os error 28)"),
    )


def test_stdout_a_closed_pipe_is_an_error(home: Home) -> None:
    write_end = closed_pipe()
    try:
        result = run_with_streams(home, "status", stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert_error(result, error_text("failed to write to stdout", "Broken pipe (os error 32)"))


def test_stdout_closed_is_an_error(home: Home) -> None:
    # With descriptor 1 closed Python has no sys.stdout, and the kit's next open
    # would get descriptor 1: the JSON must never go there.
    argv = ["sh", "-c", 'exec "$0" "$@" >&-', *home.argv("stop")]
    done = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=home.env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.decode() == error_text(
        "failed to write to stdout", "Bad file descriptor (os error 9)"
    )
    with open(home.paths.operation_lock, "rb") as lock:
        assert lock.read() == b""


@pytest.mark.parametrize("stream", ["full", "closed-pipe"])
def test_stderr_that_cannot_be_written_fails_the_command_quietly(home: Home, stream: str) -> None:
    # The warning about the bad settings cannot be written; neither can the error, so
    # the exit code alone says the command failed, and stdout stays empty.
    write_settings_text(home, "not json")
    if stream == "full":
        with open("/dev/full", "wb") as full:
            result = run_with_streams(home, "stop", stdout=subprocess.PIPE, stderr=full.fileno())
    else:
        write_end = closed_pipe()
        try:
            result = run_with_streams(home, "stop", stdout=subprocess.PIPE, stderr=write_end)
        finally:
            os.close(write_end)
    assert (result.returncode, result.stdout) == (1, "")


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        pytest.param([], "the following arguments are required: COMMAND", id="no-command"),
        pytest.param(["frobnicate"], "invalid choice: 'frobnicate'", id="unknown-command"),
        pytest.param(["start", "--frob"], "unrecognized arguments: --frob", id="unknown-flag"),
        pytest.param(["--frob", "status"], "unrecognized arguments: --frob", id="unknown-global"),
        pytest.param(["version", "extra"], "unrecognized arguments: extra", id="extra-arg"),
        pytest.param(
            ["logs", "--bytes", "0"], "byte count must be between 1 and 1048576", id="bytes-0"
        ),
        pytest.param(
            ["logs", "--bytes", "1048577"],
            "byte count must be between 1 and 1048576",
            id="bytes-too-big",
        ),
        pytest.param(["logs", "--bytes", "ten"], "invalid byte count ten", id="bytes-nan"),
        pytest.param(
            ["install", "--version", "bad version"], "invalid version bad version", id="bad-version"
        ),
        pytest.param(
            ["install", "--channel", "npm", "--version", "-1.0"],
            "invalid version -1.0",
            id="npm-dash-version",
        ),
        pytest.param(
            ["install", "--channel", "script", "--version", "1.0.0"],
            "the script channel cannot install a specific version; use --channel npm",
            id="script-with-version",
        ),
        pytest.param(["install", "--channel", "ftp"], "invalid choice: 'ftp'", id="bad-channel"),
    ],
)
def test_usage_errors_exit_2_with_nothing_on_stdout(
    fake_home: Home, args: list[str], complaint: str
) -> None:
    result = fake_home.run(*args)
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert result.stderr.startswith("usage: codex-daemon")
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(fake_home.paths.state_dir)  # a usage error touches nothing


def test_usage_error_for_script_version_also_when_script_is_the_settings_default(
    fake_home: Home,
) -> None:
    result = fake_home.run("install", "--version", "1.0.0")
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert (
        "error: the script channel cannot install a specific version; use --channel npm"
        in result.stderr
    )


def test_help_is_the_only_non_json_stdout(fake_home: Home) -> None:
    result = fake_home.run("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: codex-daemon")
    assert result.stderr == ""


# -- CODEX_HOME resolution (row 3) ----------------------------------------------------------


def _socket_under(home_dir: str) -> str:
    return os.path.join(home_dir, "app-server-control", "app-server-control.sock")


@pytest.mark.parametrize(
    "case",
    [
        "flag-beats-env",
        "env-beats-home",
        "empty-env-falls-back-to-home",
        "unset-env-falls-back-to-home",
        "relative-flag",
        "relative-env",
        "absolute-flag-with-symlink",
    ],
)
def test_codex_home_resolution(home: Home, case: str) -> None:
    root = str(home.root)
    real = os.path.join(root, "real")
    os.mkdir(real)
    os.symlink(real, os.path.join(root, "link"))
    other = os.path.join(root, "other")
    env = home.env()
    args: list[str] = []
    cwd = os.path.join(root, "link")  # getcwd() in the child reports the physical path
    physical_cwd = os.path.realpath(cwd)
    match case:
        case "flag-beats-env":
            args = ["--codex-home", other]
            expected_home = other
        case "env-beats-home":
            env["CODEX_HOME"] = other
            expected_home = other
        case "empty-env-falls-back-to-home":
            env["CODEX_HOME"] = ""
            expected_home = os.path.join(str(home.user_home), ".codex")
        case "unset-env-falls-back-to-home":
            del env["CODEX_HOME"]
            expected_home = os.path.join(str(home.user_home), ".codex")
        case "relative-flag":
            cwd = root
            physical_cwd = os.path.realpath(root)
            args = ["--codex-home", "link/h"]
            expected_home = os.path.join(physical_cwd, "link", "h")  # symlink kept
        case "relative-env":
            env["CODEX_HOME"] = "sub/h"
            expected_home = os.path.join(physical_cwd, "sub", "h")
        case "absolute-flag-with-symlink":
            args = ["--codex-home", os.path.join(root, "link", "h")]
            expected_home = os.path.join(root, "link", "h")
        case _:
            raise AssertionError(case)
    result = run_cli(home, *args, "status", env=env, cwd=cwd)
    output = result.json
    assert output["socketPath"] == _socket_under(expected_home)
    assert output["managedCodexPath"] == os.path.join(
        expected_home, "packages", "standalone", "current", "codex"
    )
    assert not os.path.exists(expected_home)  # status creates nothing (SPEC §2.1, §2.12)


EVERY_COMMAND = [
    ["start"],
    ["restart"],
    ["stop"],
    ["status"],
    ["version"],
    ["logs"],
    ["install"],
    ["install", "--channel", "npm"],
    ["bootstrap"],
    ["enable-remote-control"],
    ["disable-remote-control"],
    ["update", "--yes"],
    ["adopt"],
]


@pytest.mark.parametrize("given_by", ["flag", "env"])
@pytest.mark.parametrize("args", EVERY_COMMAND, ids=" ".join)
def test_codex_home_that_is_a_file_fails_every_command(
    home: Home, args: list[str], given_by: str
) -> None:
    not_a_dir = home.root / "codex-home-file"
    not_a_dir.write_text("precious\n")
    if given_by == "flag":
        result = home.run("--codex-home", str(not_a_dir), *args)
    else:
        result = home.run(*args, env=home.env(CODEX_HOME=str(not_a_dir)))
    assert_error(result, error_text(f"CODEX_HOME {not_a_dir} is not a directory"))
    assert not_a_dir.read_text() == "precious\n"


def test_codex_home_below_a_file_is_not_a_directory(home: Home) -> None:
    below = home.root / "codex-home-file" / "h"
    below.parent.write_text("")
    assert_error(
        home.run("--codex-home", str(below), "status"),
        error_text(f"CODEX_HOME {below} is not a directory", "Not a directory (os error 20)"),
    )


def test_flag_home_is_where_the_server_starts(fake_home: Home) -> None:
    other = os.path.join(str(fake_home.root), "other")
    env = fake_home.env(CODEX_HOME=other)
    started = fake_home.run("--codex-home", str(fake_home.path), "start", env=env).json
    assert started["status"] == "started"
    assert started["socketPath"] == fake_home.paths.socket
    assert started["pid"] == fake_home.record_pid()
    assert os.path.exists(fake_home.paths.socket)
    assert not os.path.exists(other)
    stopped = fake_home.run("--codex-home", str(fake_home.path), "stop", env=env)
    assert_success(stopped, golden(fake_home, STOPPED))
