"""The readiness probe: a stdlib RFC 6455 client over AF_UNIX speaking JSON-RPC.

The wire, as Codex 0.169.0 answers it (SPEC §6.5; client frames are masked)::

    C->S  GET / HTTP/1.1 | Host: localhost | Connection: Upgrade | Upgrade: websocket
          Sec-WebSocket-Version: 13 | Sec-WebSocket-Key: <16 random bytes, base64>
    S->C  HTTP/1.1 101 Switching Protocols | sec-websocket-accept: <sha1(key+GUID), base64>
    C->S  {"id":1,"method":"initialize","params":{"clientInfo":{...}}}
    S->C  notifications..., {"id":1,"result":{"userAgent":"codex_cli_rs/0.169.0 (...) ..."}}
    C->S  {"method":"initialized"}
    C->S  Close frame (opcode 8, empty payload)

    frame: FIN|RSV|opcode (1 byte), MASK|len7 (1 byte), [len16 | len64], [mask key 4], payload

One JSON-RPC message per text frame, without a "jsonrpc" member. Messages above
16 MiB are refused. One probe has an overall budget of 2 s (SPEC §6.4).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import time

from daemonkit import __version__
from daemonkit.errors import ProbeError, ProbeTimeoutError
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "AppServerInfo",
    "PeerCredentials",
    "WebSocketConnection",
    "connect_unix",
    "parse_user_agent_version",
    "peer_credentials",
    "probe",
]

PROBE_BUDGET_S = 2.0
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
SUN_PATH_MAX = 107
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class AppServerInfo(Value):
    __slots__ = ("app_server_version", "user_agent")

    def __init__(self, *, app_server_version: str, user_agent: str) -> None:
        self.app_server_version: Final = app_server_version
        self.user_agent: Final = user_agent


class _ClosedError(Exception):
    """The peer sent Close or EOF."""


class _DeadlineError(Exception):
    """The deadline passed while waiting for bytes."""


def parse_user_agent_version(user_agent: str) -> str:
    """``codex_cli_rs/0.169.0 (Debian 12; x86_64) xterm`` -> ``0.169.0`` (SPEC §6.3)."""
    _, sep, rest = user_agent.partition("/")
    if not sep:
        raise ProbeError("app-server user-agent omitted version separator")
    tokens = rest.split()
    if not tokens:
        raise ProbeError("app-server user-agent omitted version")
    return tokens[0]


def accept_key(key: str) -> str:
    # SHA-1 is what RFC 6455 section 4.2.2 prescribes for the accept key, not a security choice.
    digest = hashlib.sha1(key.encode("ascii") + _GUID).digest()  # noqa: S324
    return base64.b64encode(digest).decode("ascii")


def connect_unix(path: str, timeout_s: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout_s)
    try:
        if len(os.fsencode(path)) <= SUN_PATH_MAX:
            sock.connect(path)
        else:
            # Too long for sun_path (upstream issue #27765): reach the socket through
            # an O_PATH descriptor of its directory.
            dir_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
            try:
                sock.connect(f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}")
            finally:
                os.close(dir_fd)
    except BaseException:
        sock.close()
        raise
    return sock


class PeerCredentials(Value):
    """Who is at the other end of a connected Unix socket, as the kernel recorded it."""

    __slots__ = ("gid", "pid", "uid")

    def __init__(self, *, pid: int, uid: int, gid: int) -> None:
        self.pid: Final = pid
        self.uid: Final = uid
        self.gid: Final = gid


def peer_credentials(sock: socket.socket) -> PeerCredentials | None:
    """SO_PEERCRED of a connected Unix socket; None where the platform has none (macOS).

    On a client's socket it names the process that called ``listen()`` on the server's,
    as it was then; on an accepted socket, the client that called ``connect()``. A
    peer in a pid namespace this process cannot see has pid 0.
    """
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except (OSError, AttributeError):  # AttributeError: no SO_PEERCRED constant at all
        return None
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


class WebSocketConnection:
    """A minimal RFC 6455 client on a connected Unix socket, bounded by one deadline."""

    def __init__(self, sock: socket.socket, socket_path: str, deadline: float) -> None:
        self._sock = sock
        self._path = socket_path
        self._deadline = deadline
        self._buffer = bytearray()

    @classmethod
    def open(cls, socket_path: str, deadline: float) -> WebSocketConnection:
        """Connect and upgrade; raise ``ProbeError`` naming the socket on failure."""
        remaining = deadline - time.monotonic()
        try:
            sock = connect_unix(socket_path, max(remaining, 0.001))
        except TimeoutError as exc:
            raise ProbeTimeoutError(
                f"timed out probing app-server control socket {socket_path}"
            ) from exc
        except OSError as exc:
            raise ProbeError(f"failed to connect to {socket_path}") from exc
        conn = cls(sock, socket_path, deadline)
        try:
            conn._upgrade()
        except BaseException:
            conn.close_socket()
            raise
        return conn

    def set_deadline(self, deadline: float) -> None:
        """Bound the next reads and writes by ``deadline`` (a monotonic time)."""
        self._deadline = deadline

    def _recv_some(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise _DeadlineError
        self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(65536)
        except TimeoutError:
            raise _DeadlineError from None
        if not chunk:
            raise _ClosedError
        self._buffer += chunk

    def _take(self, count: int) -> bytes:
        while len(self._buffer) < count:
            self._recv_some()
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def _upgrade(self) -> None:
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        request = (
            "GET / HTTP/1.1\r\n"
            "Host: localhost\r\n"
            "Connection: Upgrade\r\n"
            "Upgrade: websocket\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {key}\r\n\r\n"
        )
        fail = f"failed to upgrade {self._path}"
        try:
            self._send(request.encode("ascii"))
            while b"\r\n\r\n" not in self._buffer and len(self._buffer) <= MAX_HEADER_BYTES:
                self._recv_some()
        except _DeadlineError:
            raise ProbeTimeoutError(
                f"timed out probing app-server control socket {self._path}"
            ) from None
        except _ClosedError:
            raise ProbeError(fail) from ConnectionError("connection closed during upgrade")
        except OSError as exc:
            raise ProbeError(fail) from exc
        if b"\r\n\r\n" not in self._buffer:
            raise ProbeError(fail) from ValueError("response headers too large")
        end = self._buffer.index(b"\r\n\r\n")
        head = bytes(self._buffer[:end]).decode("latin-1")
        # Bytes after the header block already belong to the first frame.
        del self._buffer[: end + 4]
        status_line, *header_lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or parts[1] != "101":
            raise ProbeError(fail) from ValueError(f"unexpected HTTP response: {status_line}")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept") != accept_key(key):
            raise ProbeError(fail) from ValueError("invalid Sec-WebSocket-Accept")

    def _send(self, data: bytes) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise _DeadlineError
        self._sock.settimeout(remaining)
        try:
            self._sock.sendall(data)
        except TimeoutError:
            raise _DeadlineError from None

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytearray([0x80 | opcode])
        length = len(payload)
        if length < 126:
            header.append(0x80 | length)
        elif length < 1 << 16:
            header.append(0x80 | 126)
            header += struct.pack("!H", length)
        else:
            header.append(0x80 | 127)
            header += struct.pack("!Q", length)
        mask = os.urandom(4)
        header += mask
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._send(bytes(header) + masked)

    def send_json(self, message: dict[str, object]) -> None:
        data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        try:
            self._send_frame(_OP_TEXT, data)
        except _DeadlineError:
            raise ProbeTimeoutError(
                f"timed out probing app-server control socket {self._path}"
            ) from None
        except ProbeError:
            raise
        except OSError as exc:
            raise ProbeError("app-server closed the control socket") from exc

    def _read_frame(self) -> tuple[bool, int, bytes]:
        first, second = self._take(2)
        fin, opcode = bool(first & 0x80), first & 0x0F
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._take(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._take(8))
        if length > MAX_MESSAGE_BYTES:
            raise ProbeError("failed to parse app-server JSON-RPC message") from ValueError(
                f"frame of {length} bytes exceeds the 16 MiB limit"
            )
        mask = self._take(4) if second & 0x80 else None
        payload = self._take(length)
        if mask is not None:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return fin, opcode, payload

    def read_message(self, waiting_for: str) -> dict[str, object]:
        """Read the next JSON-RPC message; ``waiting_for`` names the timeout error."""
        try:
            return self._read_message()
        except _DeadlineError:
            raise ProbeTimeoutError(f"timed out waiting for {waiting_for}") from None
        except _ClosedError:
            raise ProbeError("app-server closed the control socket") from None
        except ProbeError:
            raise
        except OSError as exc:
            raise ProbeError("app-server closed the control socket") from exc

    def _read_message(self) -> dict[str, object]:
        parts: list[bytes] = []
        size = 0
        in_text = False
        while True:
            fin, opcode, payload = self._read_frame()
            if opcode == _OP_CLOSE:
                raise _ClosedError
            if opcode == _OP_PING:
                self._send_frame(_OP_PONG, payload)
                continue
            if opcode == _OP_PONG:
                continue
            if opcode == _OP_TEXT:
                parts, size, in_text = [payload], len(payload), True
            elif opcode == _OP_CONT and in_text:
                parts.append(payload)
                size += len(payload)
            else:
                in_text = False  # binary and its continuations carry no JSON-RPC
                continue
            if size > MAX_MESSAGE_BYTES:
                raise ProbeError("failed to parse app-server JSON-RPC message") from ValueError(
                    "message exceeds the 16 MiB limit"
                )
            if fin:
                return _decode_message(b"".join(parts))

    def close(self) -> None:
        """Send a Close frame (best effort) and close the socket."""
        try:
            self._send_frame(_OP_CLOSE, b"")
        except (OSError, _DeadlineError):
            pass  # the peer may be gone already; the socket is closed either way
        self.close_socket()

    def close_socket(self) -> None:
        self._sock.close()


def _decode_message(data: bytes) -> dict[str, object]:
    try:
        message = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProbeError("failed to parse app-server JSON-RPC message") from exc
    if not isinstance(message, dict):
        raise ProbeError("failed to parse app-server JSON-RPC message") from ValueError(
            "expected a JSON object"
        )
    return message


def initialize(conn: WebSocketConnection, params: dict[str, object]) -> AppServerInfo:
    """Send ``initialize`` (id 1), await its response, then ``initialized``."""
    conn.send_json({"id": 1, "method": "initialize", "params": params})
    while True:
        message = conn.read_message("initialize response")
        if message.get("id") != 1:
            continue  # notifications and other ids may arrive before the response
        result = message.get("result")
        user_agent = result.get("userAgent") if isinstance(result, dict) else None
        if "error" in message or not isinstance(user_agent, str):
            raise ProbeError("failed to parse initialize response")
        info = AppServerInfo(
            app_server_version=parse_user_agent_version(user_agent), user_agent=user_agent
        )
        conn.send_json({"method": "initialized"})
        return info


def client_info() -> dict[str, object]:
    return {
        "clientInfo": {
            "name": "codex_app_server_daemon",
            "title": "Codex App Server Daemon",
            "version": __version__,
        }
    }


def probe(socket_path: str, budget_s: float = PROBE_BUDGET_S) -> AppServerInfo:
    """Run one initialize handshake on ``socket_path`` within ``budget_s`` seconds."""
    conn = WebSocketConnection.open(socket_path, time.monotonic() + budget_s)
    try:
        return initialize(conn, client_info())
    finally:
        conn.close()
