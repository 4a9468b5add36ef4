#!/usr/bin/env python3
"""A stdlib-only fake of the `codex` CLI that speaks the real app-server handshake.

Tests install this file as a managed binary named `codex` (first line replaced by a shebang
naming the test's interpreter, mode 0755). It answers `codex --version` and runs the app-server,
and it misbehaves on request.

Command line, checked against the real binary's contract (SPEC §4.7) by the version it reports:
- from 0.169 on, what Rust 0.169.0's daemon spawns: `app-server [--remote-control]
  --listen unix:// --analytics-default-enabled --managed-daemon`. Remote control is on iff
  `--remote-control` is given and `CODEX_INTERNAL_APP_SERVER_REMOTE_CONTROL_DISABLED=1` is not
  set. The seed's `--enable remote_control` is accepted and ignored, as Codex 0.169 and 0.171
  do: the server then reports `disabled`.
- before 0.169, the seed's `[--enable remote_control] app-server --listen unix://`; the newer
  flags are usage errors (exit 2), as they are for those binaries.

Configuration, later sources overriding earlier ones:
1. the defaults of `Config` below;
2. `fake-codex.json` next to the real path of this script (so a symlinked `current/codex` reads
   the release's file), a JSON object whose keys are `Config`'s attribute names;
3. environment variables `FAKE_CODEX_<UPPER_KEY>`, JSON-decoded when they parse as JSON (a value
   of the wrong type falls back to the raw string for string keys).
An unknown key in the file or a value of the wrong type is an error (exit 2), so that a typo
cannot silently turn a misbehaviour test into a normal run.

Control socket: `$CODEX_HOME/app-server-control/app-server-control.sock`, or, when that path is
longer than 107 bytes, a physical socket `/tmp/codex-daemon-<euid>/<sha256 of the alias path>`
with the alias path as a symlink to it (as Codex 0.169.0 does).

Transport, RFC 6455 over the Unix socket (frames shown as <FIN,opcode,payload>):

    C->S GET / HTTP/1.1 ... Upgrade: websocket ... Sec-WebSocket-Key: <key>\\r\\n\\r\\n
    S->C HTTP/1.1 101 Switching Protocols ... sec-websocket-accept: <accept>\\r\\n\\r\\n
    C->S <1,text,{"id":1,"method":"initialize","params":{...}}>      (masked)
    S->C <1,text,{"method":"configWarning",...}>            (notifications_before_response times)
    S->C <1,text,{"id":1,"result":{"userAgent":"codex_cli_rs/<v> ...",...}}>
    S->C <1,text,{"method":"remoteControl/status/changed",...}>
    C->S <1,text,{"method":"initialized"}>
    C->S <1,close,>   S->C <1,close,>

Witness file (`witness`): one JSON line per event, each with the fake's `pid`: `start` (argv, cwd,
selected environment, open fds, umask, process group and session), `ready`, `sigterm`,
`request` (method, id, params), `exit` (code).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import select
import signal
import socket
import sys
import threading
import time

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs start-up time
if TYPE_CHECKING:
    import subprocess
    from types import FrameType

CONFIG_FILE = "fake-codex.json"
ENV_PREFIX = "FAKE_CODEX_"
SOCKET_DIR = "app-server-control"
SOCKET_NAME = "app-server-control.sock"
SUN_PATH_MAX = 107
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_REQUEST_HEAD = 65536
MAX_MESSAGE = 16 * 1024 * 1024
WITNESS_ENV = (
    "CODEX_HOME",
    "CODEX_INTERNAL_APP_SERVER_REMOTE_CONTROL_DISABLED",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "PYTHONPATH",
    "FAKE_MARK",
)
USAGE = (
    "usage: codex --version\n"
    "       codex [--enable FEATURE] app-server [--remote-control] --listen unix:// "
    "[--analytics-default-enabled] [--managed-daemon]   (the bracketed long flags: 0.169 on)\n"
    "       codex app-server daemon pid-update-loop   (0.169 on)\n"
)
UPDATE_LOOP_ARGS = ["app-server", "daemon", "pid-update-loop"]
# What Rust's loop answers offline (its installer is fetched from chatgpt.com).
OFFLINE_UPDATE_ERR = "failed to fetch standalone Codex updater: fake codex is offline"
# The first release whose app-server takes the managed-daemon flags.
MANAGED_DAEMON_SINCE = (0, 169)
MANAGED_DAEMON_FLAGS = ("--remote-control", "--analytics-default-enabled", "--managed-daemon")

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


class ConfigError(Exception):
    pass


class Config:
    """Behaviour switches. The annotation strings drive parsing (see `_coerce`)."""

    # --version
    version: str = "1.0.0"
    version_output: str | None = None
    version_output_hex: str | None = None
    version_exit: int = 0
    version_sleep: float = 0.0
    # identity reported by the app-server
    server_version: str | None = None
    user_agent: str | None = None
    # process lifecycle
    startup_delay: float = 0.0
    never_ready: bool = False
    exit_early: int | None = None
    exit_after: float | None = None
    ignore_sigterm: bool = False
    uninterruptible: bool = False
    term_delay: float = 0.0
    children: int = 0
    stderr_text: str = "fake codex app-server starting"
    stderr_hex: str | None = None
    witness: str | None = None
    # HTTP upgrade
    accept_but_silent: bool = False
    http_status: int | None = None
    bad_accept: bool = False
    close_before_upgrade: bool = False
    close_after_upgrade: bool = False
    # initialize exchange
    notifications_before_response: int = 1
    ping_before_response: bool = False
    fragment_response: bool = False
    response_delay: float = 0.0
    initialize_error: bool = False
    omit_user_agent: bool = False
    raw_response: str | None = None
    oversize_response: bool = False
    # remote control RPC
    remote_control_params_rejected: bool = False
    remote_control_connect_delay: float = 0.0


def _fits(kind: str, value: object) -> bool:
    optional = kind.endswith(" | None")
    base = kind.removesuffix(" | None")
    if value is None:
        return optional
    if base == "str":
        return isinstance(value, str)
    if base == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if base == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if base == "bool":
        return isinstance(value, bool)
    raise AssertionError(kind)


def _coerce(key: str, kind: str, value: object) -> object:
    if not _fits(kind, value):
        raise ConfigError(f"fake codex: config key {key!r} wants {kind}, got {value!r}")
    if kind.startswith("float") and isinstance(value, int):
        return float(value)
    return value


def load_config() -> Config:
    config = Config()
    kinds: dict[str, str] = dict(Config.__annotations__)
    here = os.path.dirname(os.path.realpath(__file__))
    path = os.path.join(here, CONFIG_FILE)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raw = b""
    except OSError as error:
        raise ConfigError(f"fake codex: cannot read {path}: {error}") from error
    if raw.strip():
        try:
            loaded = json.loads(raw)
        except ValueError as error:
            raise ConfigError(f"fake codex: {path} is not JSON: {error}") from error
        if not isinstance(loaded, dict):
            raise ConfigError(f"fake codex: {path} is not a JSON object")
        for key, value in loaded.items():
            if key not in kinds:
                raise ConfigError(f"fake codex: unknown config key {key!r} in {path}")
            setattr(config, key, _coerce(key, kinds[key], value))
    for key, kind in kinds.items():
        text = os.environ.get(ENV_PREFIX + key.upper())
        if text is None:
            continue
        decoded: object
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = text
        if not _fits(kind, decoded) and kind.startswith("str"):
            decoded = text
        setattr(config, key, _coerce(key, kind, decoded))
    return config


# --------------------------------------------------------------------------------------------
# small helpers


def now_ms() -> int:
    return int(time.time() * 1000)


def write_stderr(data: bytes) -> None:
    try:
        os.write(2, data)
    except OSError:
        pass


class Witness:
    def __init__(self, path: str | None) -> None:
        self.path = path

    def event(self, name: str, **fields: object) -> None:
        if self.path is None:
            return
        record: dict[str, object] = {"event": name, "pid": os.getpid()}
        record.update(fields)
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as error:
            write_stderr(f"fake codex: cannot open witness {self.path}: {error}\n".encode())
            return
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def open_fds() -> list[int]:
    try:
        dirfd = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        names = os.listdir(dirfd)
    finally:
        os.close(dirfd)
    # The listing also shows the descriptors used to read it (listdir dups `dirfd`); both are
    # closed now, so keep only the ones that are still open.
    return sorted(fd for fd in map(int, names) if is_open(fd))


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def current_umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def start_record(argv: list[str], remote_control: bool) -> dict[str, object]:
    env: dict[str, str | None] = {name: os.environ.get(name) for name in WITNESS_ENV}
    env.update({k: v for k, v in os.environ.items() if k.startswith("CODEX_DAEMONKIT_")})
    return {
        "argv": argv,
        "cwd": os.getcwd(),
        "env": env,
        "fds": open_fds(),
        "umask": current_umask(),
        "ppid": os.getppid(),
        "pgid": os.getpgrp(),
        "sid": os.getsid(0),
        "remote_control": remote_control,
    }


# --------------------------------------------------------------------------------------------
# command line


class Invocation:
    def __init__(self) -> None:
        self.mode = ""  # "version", "app-server" or "update-loop"
        self.features: list[str] = []
        self.remote_control_flag = False
        self.managed_daemon_flags: list[str] = []
        self.listen: str | None = None


def parse_args(args: list[str]) -> Invocation | None:
    inv = Invocation()
    if args in (["--version"], ["-V"]):
        inv.mode = "version"
        return inv
    if args == UPDATE_LOOP_ARGS:
        inv.mode = "update-loop"
        return inv
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--enable":
            if i + 1 >= len(args):
                return None
            inv.features.append(args[i + 1])
            i += 2
            continue
        if arg.startswith("--enable="):
            inv.features.append(arg.partition("=")[2])
        elif arg == "--listen":
            if i + 1 >= len(args):
                return None
            inv.listen = args[i + 1]
            i += 2
            continue
        elif arg.startswith("--listen="):
            inv.listen = arg.partition("=")[2]
        elif arg in MANAGED_DAEMON_FLAGS:
            inv.managed_daemon_flags.append(arg)
            inv.remote_control_flag = inv.remote_control_flag or arg == "--remote-control"
        elif arg == "app-server" and not inv.mode:
            inv.mode = "app-server"
        else:
            return None
        i += 1
    if inv.mode != "app-server" or inv.listen != "unix://":
        return None
    return inv


def run_version(config: Config) -> int:
    if config.version_sleep > 0:
        time.sleep(config.version_sleep)
    if config.version_output_hex is not None:
        data = bytes.fromhex(config.version_output_hex)
    elif config.version_output is not None:
        data = config.version_output.encode()
    else:
        data = f"codex-cli {config.version}\n".encode()
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except OSError:
        pass
    return config.version_exit


# --------------------------------------------------------------------------------------------
# WebSocket connection


def accept_key(key: str) -> str:
    digest = hashlib.sha1((key + WS_GUID).encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        head = bytes((first, size))
    elif size < 65536:
        head = bytes((first, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 127)) + size.to_bytes(8, "big")
    return head + payload


class PeerClosedError(Exception):
    pass


HTTP_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Connection:
    def __init__(self, server: AppServer, sock: socket.socket) -> None:
        self.server = server
        self.config = server.config
        self.sock = sock
        self.buffer = b""
        self.send_lock = threading.Lock()

    # -- raw I/O

    def recv_more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise PeerClosedError
        self.buffer += chunk

    def recv_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.recv_more()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def send(self, data: bytes) -> None:
        with self.send_lock:
            self.sock.sendall(data, socket.MSG_NOSIGNAL)

    def send_json(self, message: dict[str, object]) -> None:
        self.send(encode_frame(OP_TEXT, json.dumps(message, separators=(",", ":")).encode()))

    def notify(self, method: str, params: dict[str, object]) -> None:
        self.send_json({"method": method, "params": params, "emittedAtMs": now_ms()})

    def drain_until_eof(self) -> None:
        while self.sock.recv(65536):
            pass

    # -- HTTP upgrade

    def read_request_head(self) -> tuple[str, dict[str, str]]:
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > MAX_REQUEST_HEAD:
                raise PeerClosedError
            self.recv_more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return lines[0], headers

    def refuse(self, status: int) -> None:
        reason = HTTP_REASONS.get(status, "Status")
        self.send(
            f"HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
        )

    def upgrade(self) -> bool:
        request_line, headers = self.read_request_head()
        if self.config.close_before_upgrade:
            return False
        if self.config.http_status is not None:
            self.refuse(self.config.http_status)
            return False
        parts = request_line.split(" ")
        if len(parts) >= 2 and parts[1] == "/daemon/shutdown":
            self.refuse(403)  # as 0.169.0 on Unix
            return False
        key = headers.get("sec-websocket-key")
        if headers.get("upgrade", "").lower() != "websocket" or not key:
            self.refuse(400)
            return False
        accept = accept_key(key + "bad" if self.config.bad_accept else key)
        self.send(
            (
                "HTTP/1.1 101 Switching Protocols\r\n"
                "connection: Upgrade\r\n"
                "upgrade: websocket\r\n"
                f"sec-websocket-accept: {accept}\r\n"
                f"x-codex-websocket-max-unfragmented-message-bytes: {MAX_MESSAGE}\r\n"
                "\r\n"
            ).encode()
        )
        return not self.config.close_after_upgrade

    # -- frames

    def read_frame(self) -> tuple[bool, int, bytes]:
        first, second = self.recv_exact(2)
        fin = bool(first & 0x80)
        opcode = first & 0x0F
        masked = bool(second & 0x80)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(self.recv_exact(2), "big")
        elif size == 127:
            size = int.from_bytes(self.recv_exact(8), "big")
        if size > MAX_MESSAGE:
            raise PeerClosedError
        mask = self.recv_exact(4) if masked else b""
        payload = self.recv_exact(size)
        if masked and size:
            key = (mask * (size // 4 + 1))[:size]
            unmasked = int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")
            payload = unmasked.to_bytes(size, "big")
        return fin, opcode, payload

    def serve(self) -> None:
        try:
            if self.config.accept_but_silent:
                self.drain_until_eof()
                return
            if self.upgrade():
                self.message_loop()
        except (PeerClosedError, OSError):
            pass
        finally:
            try:
                self.sock.close()
            except OSError:
                pass

    def message_loop(self) -> None:
        parts: list[bytes] = []
        message_opcode = 0
        while True:
            fin, opcode, payload = self.read_frame()
            if opcode == OP_CLOSE:
                self.send(encode_frame(OP_CLOSE, payload[:2]))
                return
            if opcode == OP_PING:
                self.send(encode_frame(OP_PONG, payload))
                continue
            if opcode == OP_PONG:
                continue
            if opcode != OP_CONT:
                parts = []
                message_opcode = opcode
            parts.append(payload)
            if not fin:
                continue
            data = b"".join(parts)
            parts = []
            if message_opcode == OP_TEXT:
                self.handle_text(data)

    # -- JSON-RPC

    def handle_text(self, data: bytes) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            write_stderr(b"fake codex: ignoring a non-JSON message\n")
            return
        if not isinstance(message, dict):
            return
        method = message.get("method")
        if not isinstance(method, str):
            return  # a response to a server request; the fake sends none
        self.server.witness.event(
            "request", method=method, id=message.get("id"), params=message.get("params")
        )
        if "id" not in message:
            return  # notification, e.g. "initialized"
        request_id = message["id"]
        if method == "initialize":
            self.initialize(request_id)
        elif method in ("remoteControl/enable", "remoteControl/disable"):
            self.remote_control(request_id, method, message.get("params"))
        else:
            self.send_json(
                {"id": request_id, "error": {"code": -32601, "message": "method not found"}}
            )

    def user_agent(self) -> str:
        if self.config.user_agent is not None:
            return self.config.user_agent
        version = self.config.server_version or self.config.version
        return f"codex_cli_rs/{version} (Linux 6.0; x86_64) fake"

    def initialize(self, request_id: object) -> None:
        config = self.config
        for _ in range(config.notifications_before_response):
            self.notify("configWarning", {"summary": "fake", "details": None})
        if config.ping_before_response:
            self.send(encode_frame(OP_PING, b"fake"))
        if config.response_delay > 0:
            time.sleep(config.response_delay)
        if config.raw_response is not None:
            self.send(encode_frame(OP_TEXT, config.raw_response.encode()))
            return
        response: dict[str, object]
        if config.initialize_error:
            response = {"id": request_id, "error": {"code": -32603, "message": "fake failure"}}
        else:
            result: dict[str, object] = {
                "userAgent": self.user_agent(),
                "codexHome": self.server.codex_home,
                "platformFamily": "unix",
                "platformOs": "linux",
            }
            if config.omit_user_agent:
                del result["userAgent"]
            response = {"id": request_id, "result": result}
        payload = json.dumps(response, separators=(",", ":")).encode()
        if config.oversize_response:
            payload += b" " * (MAX_MESSAGE + 1 - len(payload))
        if config.fragment_response:
            cut = max(1, len(payload) // 2)
            self.send(encode_frame(OP_TEXT, payload[:cut], fin=False))
            self.send(encode_frame(OP_CONT, payload[cut:]))
        else:
            self.send(encode_frame(OP_TEXT, payload))
        self.notify("remoteControl/status/changed", self.server.status_params())

    def remote_control(self, request_id: object, method: str, params: object) -> None:
        if self.config.remote_control_params_rejected and params is not None:
            self.send_json(
                {"id": request_id, "error": {"code": -32602, "message": "invalid params"}}
            )
            return
        delay = self.config.remote_control_connect_delay
        if method == "remoteControl/disable":
            status = self.server.set_status("disabled")
        elif delay > 0:
            status = self.server.set_status("connecting")
        else:
            status = self.server.set_status("connected")
        self.notify("remoteControl/status/changed", status)
        self.send_json({"id": request_id, "result": status})
        if method == "remoteControl/enable" and delay > 0:
            timer = threading.Timer(delay, self.finish_connecting)
            timer.daemon = True
            timer.start()

    def finish_connecting(self) -> None:
        if self.server.status != "connecting":
            return
        status = self.server.set_status("connected")
        try:
            self.notify("remoteControl/status/changed", status)
        except OSError:
            pass


# --------------------------------------------------------------------------------------------
# app-server process


class AppServer:
    def __init__(self, config: Config, codex_home: str, remote_control: bool) -> None:
        self.config = config
        self.codex_home = codex_home
        self.witness = Witness(config.witness)
        self.status = "connected" if remote_control else "disabled"
        self.status_lock = threading.Lock()
        self.children: list[subprocess.Popen[bytes]] = []
        self.alias = os.path.join(codex_home, SOCKET_DIR, SOCKET_NAME)
        self.physical = self.alias
        self.bound_identity: tuple[int, int] | None = None
        self.listener: socket.socket | None = None
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.signals: list[int] = []

    # -- remote-control state

    def status_params(self) -> dict[str, object]:
        return {
            "status": self.status,
            "serverName": "fake",
            "installationId": "x",
            "environmentId": None,
        }

    def set_status(self, status: str) -> dict[str, object]:
        with self.status_lock:
            self.status = status
            return self.status_params()

    # -- signals

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signals.append(signum)
        try:
            os.write(self.wake_w, b"\0")
        except OSError:
            pass

    def install_signals(self) -> None:
        # Python ignores SIGPIPE and SIGXFSZ at start-up; a real binary inherits the caller's
        # dispositions, so restore the defaults (sockets send with MSG_NOSIGNAL).
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        if self.config.ignore_sigterm or self.config.uninterruptible:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        else:
            signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)

    def wait(self, timeout: float | None) -> None:
        """Sleep until a signal arrives or `timeout` seconds pass (None: forever)."""
        if timeout is not None and timeout <= 0:
            return
        readable, _, _ = select.select([self.wake_r], [], [], timeout)
        if readable:
            try:
                os.read(self.wake_r, 512)
            except OSError:
                pass

    # -- children

    def spawn_children(self) -> None:
        if self.config.children <= 0:
            return
        import subprocess  # noqa: PLC0415 - only this misbehaviour needs it

        for _ in range(self.config.children):
            child = subprocess.Popen(
                ["sleep", "3600"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.children.append(child)

    def reap_children(self) -> None:
        for child in self.children:
            try:
                child.kill()
            except OSError:
                pass
            child.wait()
        self.children = []

    # -- socket

    def bind(self) -> None:
        directory = os.path.dirname(self.alias)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        remove_stale(self.alias)
        if len(os.fsencode(self.alias)) > SUN_PATH_MAX:
            physical_dir = f"/tmp/codex-daemon-{os.geteuid()}"  # as upstream
            os.makedirs(physical_dir, mode=0o700, exist_ok=True)
            digest = hashlib.sha256(self.alias.encode()).hexdigest()
            self.physical = os.path.join(physical_dir, digest)
            remove_stale(self.physical)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_mask = os.umask(0o177)
        try:
            listener.bind(self.physical)
        finally:
            os.umask(old_mask)
        os.chmod(self.physical, 0o600)
        st = os.lstat(self.physical)
        self.bound_identity = (st.st_dev, st.st_ino)
        if self.physical != self.alias:
            os.symlink(self.physical, self.alias)
        listener.listen(64)
        self.listener = listener
        thread = threading.Thread(target=self.accept_loop, args=(listener,), daemon=True)
        thread.start()

    def accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            connection = Connection(self, sock)
            threading.Thread(target=connection.serve, daemon=True).start()

    def unbind(self) -> None:
        if self.listener is not None:
            try:
                self.listener.close()
            except OSError:
                pass
            self.listener = None
        if self.bound_identity is None:
            return
        try:
            st = os.lstat(self.physical)
        except OSError:
            return
        if (st.st_dev, st.st_ino) != self.bound_identity:
            return  # someone else's socket now
        if self.physical != self.alias:
            try:
                if os.readlink(self.alias) == self.physical:
                    os.unlink(self.alias)
            except OSError:
                pass
        try:
            os.unlink(self.physical)
        except OSError:
            pass

    # -- lifecycle

    def finish(self, code: int) -> int:
        self.unbind()
        self.reap_children()
        self.witness.event("exit", code=code)
        return code

    def run(self, record: dict[str, object]) -> int:
        config = self.config
        self.install_signals()
        self.witness.event("start", **record)
        write_stderr(config.stderr_text.encode() + b"\n")
        if config.stderr_hex is not None:
            write_stderr(bytes.fromhex(config.stderr_hex))
        self.spawn_children()
        if config.exit_early is not None:
            write_stderr(f"fake codex app-server exiting early ({config.exit_early})\n".encode())
            return self.finish(config.exit_early)

        bind_at = None if config.never_ready else time.monotonic() + config.startup_delay
        term_at: float | None = None
        exit_at: float | None = None
        while True:
            now = time.monotonic()
            if self.signals:
                self.signals.clear()
                if term_at is None:
                    self.witness.event("sigterm")
                    term_at = now + config.term_delay
            if term_at is not None and now >= term_at:
                write_stderr(b"fake codex app-server terminated\n")
                return self.finish(0)
            if bind_at is not None and self.listener is None and now >= bind_at:
                try:
                    self.bind()
                except OSError as error:
                    write_stderr(f"fake codex: cannot bind {self.alias}: {error}\n".encode())
                    return self.finish(1)
                self.witness.event("ready")
                if config.exit_after is not None:
                    exit_at = now + config.exit_after
            if exit_at is not None and now >= exit_at:
                write_stderr(b"fake codex app-server exiting (exit_after)\n")
                return self.finish(1)
            deadlines = [t for t in (term_at, exit_at) if t is not None]
            if self.listener is None and bind_at is not None:
                deadlines.append(bind_at)
            self.wait(min(deadlines) - now if deadlines else None)


def remove_stale(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    import stat  # noqa: PLC0415 - needed only when something is in the way

    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)


def takes_managed_daemon_flags(version: str) -> bool:
    numbers = []
    for part in version.removeprefix("v").split(".")[:2]:
        digits = part[: len(part) - len(part.lstrip("0123456789"))]
        if not digits:
            return True
        numbers.append(int(digits))
    return tuple(numbers) >= MANAGED_DAEMON_SINCE


def run_app_server(config: Config, inv: Invocation, argv: list[str]) -> int:
    codex_home = os.environ.get("CODEX_HOME", "")
    if not codex_home:
        write_stderr(b"fake codex: CODEX_HOME must be set for app-server\n")
        return 2
    disabled = os.environ.get("CODEX_INTERNAL_APP_SERVER_REMOTE_CONTROL_DISABLED") == "1"
    if takes_managed_daemon_flags(config.version):
        # `--enable remote_control` is accepted and ignored, as by the real 0.169+.
        remote_control = inv.remote_control_flag and not disabled
    elif inv.managed_daemon_flags:
        flag = inv.managed_daemon_flags[0]
        write_stderr(f"error: unexpected argument '{flag}' found\n\n{USAGE}".encode())
        return 2
    else:
        remote_control = "remote_control" in inv.features and not disabled
    record = start_record(argv, remote_control)  # before the fake opens descriptors of its own
    return AppServer(config, codex_home, remote_control).run(record)


def run_update_loop(config: Config) -> int:
    """Rust's ``pid-update-loop`` as far as the kit meets it (0.169 on): it binds the
    updater request socket of the layout Rust picks, ``daemon-updater.sock`` when
    ``packages/app-server-daemon/current`` exists, and answers ``update`` with what the
    real one answers offline; SIGTERM ends it. It never installs anything."""
    codex_home = os.environ.get("CODEX_HOME", "")
    if not codex_home or not takes_managed_daemon_flags(config.version):
        write_stderr(USAGE.encode())
        return 2
    witness = Witness(config.witness)
    dedicated = os.path.lexists(
        os.path.join(codex_home, "packages", "app-server-daemon", "current")
    )
    stem = "daemon-updater" if dedicated else "app-server-updater"
    path = os.path.join(codex_home, "app-server-daemon", f"{stem}.sock")
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    remove_stale(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    witness.event("update_loop_start", socket=path)
    try:
        while True:
            readable, _, _ = select.select([wake_r, listener.fileno()], [], [])
            if wake_r in readable:
                witness.event("exit", code=0)
                return 0
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(2)
                try:
                    line = conn.recv(64)
                except OSError:
                    continue
                witness.event("update_request", request=line.decode("utf-8", "replace"))
                err = OFFLINE_UPDATE_ERR if line == b"update\n" else "unknown updater request"
                try:
                    conn.sendall(json.dumps({"Err": err}).encode())
                except OSError:
                    pass
    finally:
        listener.close()
        os.unlink(path)


def main() -> int:
    argv = list(sys.argv)
    inv = parse_args(argv[1:])
    if inv is None:
        write_stderr(USAGE.encode())
        return 2
    try:
        config = load_config()
    except ConfigError as error:
        write_stderr(f"{error}\n".encode())
        return 2
    if inv.mode == "version":
        return run_version(config)
    if inv.mode == "update-loop":
        return run_update_loop(config)
    return run_app_server(config, inv, argv)


if __name__ == "__main__":
    sys.exit(main())
