"""Smoke tests for the fake `codex` binary (tests/fakes/fake_codex.py) that other tests install."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.sync.client import unix_connect

from tests.harness import remote_control_status

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

FAKE_SOURCE = Path(__file__).resolve().parents[1] / "fakes" / "fake_codex.py"
WAIT = 10.0
POLL = 0.02
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)

T = TypeVar("T")
Message = dict[str, Any]


def wait_for(predicate: Callable[[], T], *, what: str, timeout: float = WAIT) -> T:
    """Poll `predicate` until it returns a truthy value; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value:
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what} (last value: {value!r})")
        time.sleep(POLL)
        value = predicate()
    return value


class FakeCodex:
    """A fake `codex` installed under a short `/tmp/dk-XXXX` root, and the processes it runs."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dk-", dir="/tmp"))
        self.release = self.root / "release"
        self.release.mkdir()
        self.binary = self.release / "codex"
        lines = FAKE_SOURCE.read_text().splitlines(keepends=True)
        self.binary.write_text(f"#!{sys.executable}\n" + "".join(lines[1:]))
        self.binary.chmod(0o755)
        self.home = self.root / "h"
        self.witness = self.root / "witness.jsonl"
        self.stderr = self.root / "stderr.log"
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def sock(self) -> Path:
        return self.home / "app-server-control" / "app-server-control.sock"

    def configure(self, **values: object) -> None:
        values.setdefault("witness", str(self.witness))
        (self.release / "fake-codex.json").write_text(json.dumps(values))

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("FAKE_") and k != "CODEX_HOME"
        }
        env["CODEX_HOME"] = str(self.home)
        env["FAKE_MARK"] = self.root.name
        env.update(extra)
        return env

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(self.binary), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=self.env() if env is None else env,
            timeout=WAIT,
            check=False,
        )

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        argv = [str(self.binary), *(args or ("app-server", "--listen", "unix://"))]
        with self.stderr.open("ab") as err:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=self.env() if env is None else env,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def events(self) -> list[Message]:
        try:
            text = self.witness.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines()]

    def event_names(self, pid: int) -> list[str]:
        return [e["event"] for e in self.events() if e["pid"] == pid]

    def wait_event(self, proc: subprocess.Popen[bytes], name: str) -> None:
        wait_for(
            lambda: name in self.event_names(proc.pid) or proc.poll() is not None,
            what=f"witness event {name!r}",
        )
        assert proc.poll() is None, f"fake exited with {proc.returncode}: {self.stderr_text()}"

    def wait_exit(self, proc: subprocess.Popen[bytes]) -> int:
        return proc.wait(timeout=WAIT)

    def stderr_text(self) -> str:
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""

    def close(self) -> None:
        for proc in self.procs:
            # Each fake leads its own process group (start_new_session), which also holds the
            # `sleep` children it may have spawned.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=WAIT)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def fake() -> Iterator[FakeCodex]:
    harness = FakeCodex()
    try:
        yield harness
    finally:
        harness.close()


def initialize(sock: Path | str) -> tuple[list[Message], Message]:
    """Run the probe's exchange; return the messages seen before the response, and the response."""
    request = {
        "id": 1,
        "method": "initialize",
        "params": {"clientInfo": {"name": "smoke", "title": "Smoke", "version": "0"}},
    }
    before: list[Message] = []
    with unix_connect(str(sock), "ws://localhost/", open_timeout=5, compression=None) as ws:
        ws.send(json.dumps(request))
        while True:
            message: Message = json.loads(ws.recv(timeout=5))
            if message.get("id") == 1:
                break
            before.append(message)
        ws.send(json.dumps({"method": "initialized"}))
    return before, message


def call(sock: Path, method: str, params: object = None) -> tuple[Message, list[Message]]:
    """Initialize, then send request id 2; return its response and the notifications after it."""
    request: Message = {"id": 2, "method": method}
    if params is not None:
        request["params"] = params
    after: list[Message] = []
    with unix_connect(str(sock), "ws://localhost/", open_timeout=5, compression=None) as ws:
        ws.send(json.dumps({"id": 1, "method": "initialize", "params": {}}))
        while json.loads(ws.recv(timeout=5)).get("id") != 1:
            pass
        ws.send(json.dumps({"method": "initialized"}))
        ws.send(json.dumps(request))
        while True:
            message: Message = json.loads(ws.recv(timeout=5))
            if message.get("id") == 2:
                break
        response = message
        if response.get("result", {}).get("status") == "connecting":
            while not after or after[-1]["params"]["status"] == "connecting":
                after.append(json.loads(ws.recv(timeout=5)))
    return response, after


def sig_ignored(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigIgn line")


@pytest.mark.timeout(30)
def test_version_defaults_file_and_env(fake: FakeCodex) -> None:
    result = fake.run("--version")
    assert (result.returncode, result.stdout) == (0, b"codex-cli 1.0.0\n")

    fake.configure(version="2.3.4", version_exit=3)
    result = fake.run("--version")
    assert (result.returncode, result.stdout) == (3, b"codex-cli 2.3.4\n")

    result = fake.run("--version", env=fake.env(FAKE_CODEX_VERSION_OUTPUT_HEX="fffe0a"))
    assert result.stdout == b"\xff\xfe\n"
    result = fake.run("--version", env=fake.env(FAKE_CODEX_VERSION="1.0"))
    assert result.stdout == b"codex-cli 1.0\n"


@pytest.mark.timeout(30)
def test_bad_command_lines_and_config(fake: FakeCodex) -> None:
    assert fake.run("exec", "hello").returncode == 2
    assert fake.run("app-server").returncode == 2
    env = fake.env()
    del env["CODEX_HOME"]
    result = fake.run("app-server", "--listen", "unix://", env=env)
    assert result.returncode == 2
    assert b"CODEX_HOME" in result.stderr
    fake.configure(no_such_key=True)
    result = fake.run("--version")
    assert result.returncode == 2
    assert b"no_such_key" in result.stderr


@pytest.mark.timeout(30)
def test_handshake_and_clean_sigterm(fake: FakeCodex) -> None:
    fake.configure()
    proc = fake.start()
    fake.wait_event(proc, "ready")
    assert fake.sock.is_socket()
    assert fake.sock.stat().st_mode & 0o777 == 0o600

    before, response = initialize(fake.sock)
    assert [m["method"] for m in before] == ["configWarning"]
    assert response["result"] == {
        "userAgent": "codex_cli_rs/1.0.0 (Linux 6.0; x86_64) fake",
        "codexHome": str(fake.home),
        "platformFamily": "unix",
        "platformOs": "linux",
    }

    proc.send_signal(signal.SIGTERM)
    assert fake.wait_exit(proc) == 0
    assert not fake.sock.exists()
    events = fake.events()
    assert [e["event"] for e in events] == [
        "start",
        "ready",
        "request",
        "request",
        "sigterm",
        "exit",
    ]
    start = events[0]
    assert start["argv"][1:] == ["app-server", "--listen", "unix://"]
    assert start["env"]["CODEX_HOME"] == str(fake.home)
    assert start["env"]["FAKE_MARK"] == fake.root.name
    assert start["pgid"] == proc.pid
    assert start["fds"] == [0, 1, 2]
    assert start["remote_control"] is False
    assert [e.get("method") for e in events[2:4]] == ["initialize", "initialized"]
    assert events[-1]["code"] == 0
    assert "fake codex app-server starting" in fake.stderr_text()


@pytest.mark.timeout(30)
def test_initialize_misbehaviours_the_client_must_tolerate(fake: FakeCodex) -> None:
    fake.configure(
        notifications_before_response=3,
        ping_before_response=True,
        fragment_response=True,
        server_version="9.9.9",
    )
    proc = fake.start()
    fake.wait_event(proc, "ready")
    before, response = initialize(fake.sock)
    assert [m["method"] for m in before] == ["configWarning"] * 3
    assert response["result"]["userAgent"].startswith("codex_cli_rs/9.9.9 ")
    assert fake.run("--version").stdout == b"codex-cli 1.0.0\n"


@pytest.mark.timeout(30)
def test_remote_control_rpc(fake: FakeCodex) -> None:
    fake.configure(remote_control_params_rejected=True, remote_control_connect_delay=0.1)
    proc = fake.start("app-server", "--remote-control", "--listen", "unix://")
    fake.wait_event(proc, "ready")

    response, _ = call(fake.sock, "remoteControl/enable", {"ephemeral": True})
    assert response["error"]["code"] == -32602
    response, after = call(fake.sock, "remoteControl/enable")
    assert response["result"]["status"] == "connecting"
    assert after[-1]["method"] == "remoteControl/status/changed"
    assert after[-1]["params"]["status"] == "connected"
    response, _ = call(fake.sock, "remoteControl/disable")
    assert response["result"] == {
        "status": "disabled",
        "serverName": "fake",
        "installationId": "x",
        "environmentId": None,
    }
    response, _ = call(fake.sock, "thread/list")
    assert response["error"]["code"] == -32601
    assert fake.events()[0]["remote_control"] is True


@pytest.mark.timeout(30)
def test_remote_control_env_override(fake: FakeCodex) -> None:
    fake.configure()
    env = fake.env(CODEX_INTERNAL_APP_SERVER_REMOTE_CONTROL_DISABLED="1")
    proc = fake.start("app-server", "--remote-control", "--listen", "unix://", env=env)
    fake.wait_event(proc, "ready")
    start = fake.events()[0]
    assert start["remote_control"] is False
    assert start["env"]["CODEX_INTERNAL_APP_SERVER_REMOTE_CONTROL_DISABLED"] == "1"


MODERN = ("app-server", "--listen", "unix://", "--analytics-default-enabled", "--managed-daemon")
MODERN_RC = ("app-server", "--remote-control", *MODERN[1:])
SEED_RC = ("--enable", "remote_control", "app-server", "--listen", "unix://")


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("version", "argv", "status"),
    [
        ("0.169.0", MODERN_RC, "connected"),
        ("0.171.0", MODERN, "disabled"),
        # The seed's feature flag is accepted and ignored from 0.169 on (SPEC §4.7).
        ("0.169.0", SEED_RC, "disabled"),
        ("0.171.0", SEED_RC, "disabled"),
        ("0.168.0", SEED_RC, "connected"),
        ("0.168.0", SEED_RC[2:], "disabled"),
    ],
)
def test_remote_control_follows_the_real_argv_contract(
    fake: FakeCodex, version: str, argv: tuple[str, ...], status: str
) -> None:
    fake.configure(version=version)
    proc = fake.start(*argv)
    fake.wait_event(proc, "ready")
    assert fake.events()[0]["remote_control"] is (status == "connected")
    assert remote_control_status(str(fake.sock)) == status


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "flag", ["--remote-control", "--analytics-default-enabled", "--managed-daemon"]
)
def test_binaries_before_0_169_reject_the_managed_daemon_flags(fake: FakeCodex, flag: str) -> None:
    fake.configure(version="0.168.0")
    result = fake.run("app-server", "--listen", "unix://", flag)
    assert result.returncode == 2
    assert f"unexpected argument '{flag}'".encode() in result.stderr
    assert not fake.sock.exists()


@pytest.mark.timeout(30)
def test_long_socket_path_binds_in_tmp_behind_a_symlink(fake: FakeCodex) -> None:
    fake.home = fake.root / ("h" * 100)
    assert len(os.fsencode(fake.sock)) > 107
    fake.configure()
    proc = fake.start()
    fake.wait_event(proc, "ready")
    target = fake.sock.readlink()
    digest = hashlib.sha256(str(fake.sock).encode()).hexdigest()
    assert target == Path(f"/tmp/codex-daemon-{os.geteuid()}") / digest
    _, response = initialize(target)
    assert response["result"]["codexHome"] == str(fake.home)

    proc.send_signal(signal.SIGTERM)
    assert fake.wait_exit(proc) == 0
    assert not fake.sock.is_symlink()
    assert not target.exists()


@pytest.mark.timeout(30)
def test_ignore_sigterm_needs_sigkill(fake: FakeCodex) -> None:
    fake.configure(ignore_sigterm=True)
    proc = fake.start()
    fake.wait_event(proc, "ready")
    assert sig_ignored(proc.pid) & SIGTERM_BIT

    proc.send_signal(signal.SIGTERM)
    _, response = initialize(fake.sock)  # still serving after the TERM
    assert "userAgent" in response["result"]
    assert proc.poll() is None
    assert "sigterm" not in fake.event_names(proc.pid)

    proc.send_signal(signal.SIGKILL)
    assert fake.wait_exit(proc) == -signal.SIGKILL
    assert fake.sock.is_socket()  # stale: nobody cleaned up

    proc = fake.start()  # the next start replaces the stale socket
    fake.wait_event(proc, "ready")
    _, response = initialize(fake.sock)
    assert "userAgent" in response["result"]


@pytest.mark.timeout(30)
def test_sigterm_is_not_ignored_by_default(fake: FakeCodex) -> None:
    fake.configure()
    proc = fake.start()
    fake.wait_event(proc, "ready")
    assert not sig_ignored(proc.pid) & SIGTERM_BIT
    assert not sig_ignored(proc.pid) & (1 << (signal.SIGPIPE - 1))


@pytest.mark.timeout(30)
def test_never_ready(fake: FakeCodex) -> None:
    fake.configure(never_ready=True)
    proc = fake.start()
    fake.wait_event(proc, "start")
    assert not fake.sock.exists()
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert fake.wait_exit(proc) == 0
    assert "ready" not in fake.event_names(proc.pid)


@pytest.mark.timeout(30)
def test_exit_early(fake: FakeCodex) -> None:
    fake.configure(exit_early=3, stderr_hex="ff0a")
    proc = fake.start()
    assert fake.wait_exit(proc) == 3
    assert not fake.sock.exists()
    assert fake.stderr.read_bytes().startswith(b"fake codex app-server starting\n\xff\n")
    assert fake.event_names(proc.pid) == ["start", "exit"]


@pytest.mark.timeout(30)
def test_exit_after_removes_the_socket(fake: FakeCodex) -> None:
    fake.configure(exit_after=0.2)
    proc = fake.start()
    assert fake.wait_exit(proc) == 1
    assert fake.event_names(proc.pid) == ["start", "ready", "exit"]
    assert not fake.sock.exists()


@pytest.mark.timeout(30)
def test_http_status_403(fake: FakeCodex) -> None:
    fake.configure(http_status=403)
    proc = fake.start()
    fake.wait_event(proc, "ready")
    with pytest.raises(InvalidStatus) as caught:
        initialize(fake.sock)
    assert caught.value.response.status_code == 403


@pytest.mark.timeout(30)
def test_bad_accept_key(fake: FakeCodex) -> None:
    fake.configure(bad_accept=True)
    proc = fake.start()
    fake.wait_event(proc, "ready")
    with pytest.raises(InvalidHandshake):
        initialize(fake.sock)


@pytest.mark.timeout(30)
def test_children_are_reaped_on_sigterm(fake: FakeCodex) -> None:
    fake.configure(children=2)
    proc = fake.start()
    fake.wait_event(proc, "ready")
    children_file = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    children = [int(pid) for pid in children_file.read_text().split()]
    assert len(children) == 2
    for child in children:
        assert os.getpgid(child) == proc.pid
    proc.send_signal(signal.SIGTERM)
    assert fake.wait_exit(proc) == 0
    for child in children:
        assert not Path(f"/proc/{child}").exists()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"user_agent": "no-separator"}, {"result.userAgent": "no-separator"}),
        ({"omit_user_agent": True}, {"result.userAgent": None}),
        ({"initialize_error": True}, {"error.code": -32603}),
    ],
)
def test_initialize_response_variants(
    fake: FakeCodex, config: dict[str, object], expected: dict[str, object]
) -> None:
    fake.configure(**config)
    proc = fake.start()
    fake.wait_event(proc, "ready")
    _, response = initialize(fake.sock)
    for dotted, value in expected.items():
        section, key = dotted.split(".")
        assert response.get(section, {}).get(key) == value


@pytest.mark.timeout(30)
def test_accept_but_silent_and_close_before_upgrade(fake: FakeCodex) -> None:
    fake.configure(accept_but_silent=True)
    proc = fake.start()
    fake.wait_event(proc, "ready")
    with pytest.raises(TimeoutError):
        unix_connect(str(fake.sock), "ws://localhost/", open_timeout=0.3, legacy=True)
    proc.send_signal(signal.SIGTERM)
    assert fake.wait_exit(proc) == 0

    fake.configure(close_before_upgrade=True)
    proc = fake.start()
    fake.wait_event(proc, "ready")
    with pytest.raises(InvalidHandshake):
        initialize(fake.sock)
