"""Hostile peers on the control socket: the probe fails with the right text, never hangs.

SPEC §6.1-§6.4, §2.15, §13.8 row 29. A small threaded AF_UNIX server in this test
listens at ``<H>/app-server-control/app-server-control.sock`` and misbehaves in one way
per case: garbage instead of HTTP, HTTP 500, a wrong accept key, a frame declaring more
than 16 MiB, a message fragmented into many continuation frames, pings and
notifications before the response, silence, a close mid-frame, a non-JSON frame, a
response without ``userAgent``, floods that never end, a slow drip of bytes. Each case
is driven through ``codex-daemon version`` (one probe, 2 s budget): the error must be
the catalogue's text for that failure, and the CLI must return within the budget plus
start-up slack (a loose bound: the budget is behaviour, SPEC §4.11). The success
variants are also run through ``daemonkit.probe.probe`` directly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from daemonkit.errors import ProbeError
from daemonkit.probe import probe
from tests.faults.figures import Figures
from tests.harness import wait_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.harness import Home, Result

pytestmark = pytest.mark.timeout(60)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MIB = 1024 * 1024
# The probe budget is 2 s; the rest is interpreter start-up on a loaded 2-core machine.
RETURN_WITHIN_S = 7.0
USER_AGENT = "codex_cli_rs/9.9.9 (Hostile 1.0; x86_64) test"


# -- the peer --------------------------------------------------------------------------


class Reader:
    """Buffered reads of the client's bytes, bounded so a broken test cannot hang."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buffer += chunk

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._more()
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def take(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self._more()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def frame(self) -> tuple[int, bytes]:
        first, second = self.take(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self.take(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self.take(8))
        mask = self.take(4) if second & 0x80 else b"\0\0\0\0"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.take(length)))
        return first & 0x0F, payload


def frame(opcode: int, payload: bytes, *, fin: bool = True, declared: int | None = None) -> bytes:
    """A server frame (unmasked); ``declared`` lies about the payload length."""
    length = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | opcode])
    if length < 126:
        head += bytes([length])
    elif length < 1 << 16:
        head += bytes([126]) + struct.pack("!H", length)
    else:
        head += bytes([127]) + struct.pack("!Q", length)
    return head + payload


def text(message: object) -> bytes:
    return frame(OP_TEXT, json.dumps(message).encode())


@dataclass
class Conn:
    sock: socket.socket
    reader: Reader
    stop: threading.Event
    seen: list[tuple[int, bytes]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)  # behaviour returned

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_request(self) -> dict[str, str]:
        head = self.reader.until(b"\r\n\r\n").decode("latin-1")
        headers = {}
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return headers

    def upgrade(self, *, accept: str | None = None, trailing: bytes = b"") -> None:
        key = self.read_request()["sec-websocket-key"]
        digest = hashlib.sha1(key.encode() + GUID).digest()
        accept = accept or base64.b64encode(digest).decode()
        self.send(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n"
            b"sec-websocket-accept: " + accept.encode() + b"\r\n\r\n" + trailing
        )

    def read_initialize(self) -> dict[str, object]:
        opcode, payload = self.reader.frame()
        assert opcode == OP_TEXT, opcode
        message = json.loads(payload)
        assert message["method"] == "initialize", message
        assert isinstance(message, dict)
        return message

    def drain(self) -> None:
        """Record the client's frames (pong, initialized, close) until it hangs up."""
        try:
            while True:
                self.seen.append(self.reader.frame())
        except (EOFError, OSError):
            return

    def hold(self) -> None:
        """Keep the connection open, silent, until the test ends."""
        self.stop.wait(30)


class HostilePeer:
    """A threaded AF_UNIX server running one behaviour per accepted connection."""

    def __init__(self, path: str, behaviour: Callable[[Conn], None]) -> None:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.listener.bind(path)
        self.listener.listen(8)
        self.behaviour = behaviour
        self.stop = threading.Event()
        self.conns: list[Conn] = []
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self.threads.append(accept)

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            sock.settimeout(10)
            conn = Conn(sock, Reader(sock), self.stop)
            self.conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, conn: Conn) -> None:
        try:
            self.behaviour(conn)
        except (EOFError, OSError):
            pass  # the client gave up, which is what several cases are about
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            conn.sock.close()
            conn.done.set()

    def close(self) -> None:
        self.stop.set()
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in self.conns:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self.threads:
            thread.join(timeout=10)
        assert self.errors == [], self.errors


# -- behaviours ------------------------------------------------------------------------


def respond(conn: Conn, *before: bytes, response: bytes | None = None) -> None:
    """Upgrade, read initialize, send ``before`` frames then the response, drain."""
    conn.upgrade()
    conn.read_initialize()
    for data in before:
        conn.send(data)
    conn.send(
        text({"id": 1, "result": {"userAgent": USER_AGENT}}) if response is None else response
    )
    conn.drain()


def garbage(conn: Conn) -> None:
    conn.reader.until(b"\r\n\r\n")
    conn.send(b"\x00\xff\xfeSSH-2.0-OpenSSH_9.2 \x80\x81 not http\r\n\r\n")


def http_500(conn: Conn) -> None:
    conn.read_request()
    conn.send(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")


def wrong_accept(conn: Conn) -> None:
    conn.upgrade(accept=base64.b64encode(b"x" * 20).decode())
    conn.hold()


def endless_headers(conn: Conn) -> None:
    conn.read_request()
    conn.send(b"HTTP/1.1 101 Switching Protocols\r\n")
    for _ in range(100):
        conn.send(b"x-padding: " + b"a" * 1000 + b"\r\n")
    conn.hold()


def slow_drip(conn: Conn) -> None:
    conn.read_request()
    for byte in b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n":
        conn.send(bytes([byte]))
        if conn.stop.wait(0.05):
            return


def oversize_frame(conn: Conn) -> None:
    conn.upgrade()
    conn.read_initialize()
    conn.send(frame(OP_TEXT, b"", declared=16 * MIB + 1))
    conn.hold()


def absurd_frame(conn: Conn) -> None:
    conn.upgrade()
    conn.read_initialize()
    conn.send(frame(OP_TEXT, b"", declared=(1 << 63) - 1))
    conn.hold()


def oversize_fragments(conn: Conn) -> None:
    conn.upgrade()
    conn.read_initialize()
    chunk = b" " * MIB
    conn.send(frame(OP_TEXT, chunk, fin=False))
    for _ in range(16):
        conn.send(frame(OP_CONT, chunk, fin=False))
    conn.send(frame(OP_CONT, b"{}"))
    conn.hold()


def silent_accept(conn: Conn) -> None:
    conn.hold()


def silent_after_upgrade(conn: Conn) -> None:
    conn.upgrade()
    conn.read_initialize()
    conn.hold()


def close_mid_frame(conn: Conn) -> None:
    conn.upgrade()
    conn.read_initialize()
    whole = text({"id": 1, "result": {"userAgent": USER_AGENT}})
    conn.send(whole[: len(whole) // 2])


def close_frame_first(conn: Conn) -> None:
    conn.upgrade()
    conn.read_initialize()
    conn.send(frame(OP_CLOSE, struct.pack("!H", 1001) + b"going away"))
    conn.drain()


def notification_flood(conn: Conn) -> None:
    conn.upgrade()
    conn.read_initialize()
    note = text({"method": "configWarning", "params": {"summary": "again"}})
    while not conn.stop.is_set():
        conn.send(note * 64)


def ping_flood(conn: Conn) -> None:
    conn.upgrade()
    conn.read_initialize()
    threading.Thread(target=conn.drain, daemon=True).start()
    while not conn.stop.is_set():
        conn.send(frame(OP_PING, b"still there?") * 64)


def fragmented(conn: Conn) -> None:
    conn.upgrade()
    conn.read_initialize()
    data = json.dumps({"id": 1, "result": {"userAgent": USER_AGENT}}).encode()
    pieces = [data[i : i + 3] for i in range(0, len(data), 3)]
    conn.send(frame(OP_TEXT, pieces[0], fin=False))
    for index, piece in enumerate(pieces[1:-1]):
        conn.send(frame(OP_CONT, piece, fin=False))
        if index % 10 == 0:  # control frames may interleave with fragments (RFC 6455 §5.4)
            conn.send(frame(OP_PING, b"mid"))
    conn.send(frame(OP_CONT, pieces[-1]))
    conn.drain()


def pings_first(conn: Conn) -> None:
    respond(conn, *(frame(OP_PING, f"ping {i}".encode()) for i in range(3)))


def notifications_first(conn: Conn) -> None:
    notes = [
        text({"method": "configWarning", "params": {"summary": "s", "details": None}}),
        text({"method": "remoteControl/status/changed", "params": {"status": "disabled"}}),
        text({"id": 7, "result": {"unrelated": True}}),
        frame(OP_BINARY, b"\x00\x01 binary frames carry no JSON-RPC"),
    ]
    respond(conn, *notes)


def long_response(conn: Conn) -> None:
    padding = "p" * 70_000  # a 64-bit length field
    respond(conn, response=text({"id": 1, "result": {"userAgent": USER_AGENT, "x": padding}}))


def glued_to_headers(conn: Conn) -> None:
    """The first frames arrive in the same packet as the 101 (SPEC §6.1 step 2)."""
    note = text({"method": "configWarning", "params": {}})
    key = conn.read_request()["sec-websocket-key"]
    digest = hashlib.sha1(key.encode() + GUID).digest()
    conn.send(
        b"HTTP/1.1 101 Switching Protocols\r\nsec-websocket-accept: "
        + base64.b64encode(digest)
        + b"\r\n\r\n"
        + note
        + note
    )
    conn.read_initialize()
    conn.send(text({"id": 1, "result": {"userAgent": USER_AGENT}}))
    conn.drain()


def non_json(conn: Conn) -> None:
    respond(conn, response=frame(OP_TEXT, b"this is not json {"))


def non_utf8(conn: Conn) -> None:
    respond(conn, response=frame(OP_TEXT, b'{"id":1,"result":{"userAgent":"\xff\xfe"}}'))


def json_array(conn: Conn) -> None:
    respond(conn, response=text([1, 2, 3]))


def deep_nesting(conn: Conn) -> None:
    respond(conn, response=frame(OP_TEXT, b"[" * 200_000 + b"]" * 200_000))


def no_user_agent(conn: Conn) -> None:
    respond(conn, response=text({"id": 1, "result": {"codexHome": "/x"}}))


def error_response(conn: Conn) -> None:
    respond(conn, response=text({"id": 1, "error": {"code": -32600, "message": "no"}}))


def no_separator(conn: Conn) -> None:
    respond(conn, response=text({"id": 1, "result": {"userAgent": "codex_cli_rs 1.0"}}))


def no_version(conn: Conn) -> None:
    respond(conn, response=text({"id": 1, "result": {"userAgent": "codex_cli_rs/   "}}))


@dataclass(frozen=True)
class Case:
    behaviour: Callable[[Conn], None]
    error: str | None  # the first line after "Error: "; None means success
    cause: str | None = None  # a substring of the cause, when it matters


FAILURES: dict[str, Case] = {
    "garbage-instead-of-http": Case(garbage, "failed to upgrade <sock>", "unexpected HTTP"),
    "http-500": Case(http_500, "failed to upgrade <sock>", "500"),
    "wrong-accept-key": Case(wrong_accept, "failed to upgrade <sock>", "Sec-WebSocket-Accept"),
    "endless-headers": Case(endless_headers, "failed to upgrade <sock>"),
    "slow-drip-headers": Case(slow_drip, "timed out probing app-server control socket <sock>"),
    "frame-over-16-mib": Case(oversize_frame, "failed to parse app-server JSON-RPC message"),
    "frame-of-2-63-bytes": Case(absurd_frame, "failed to parse app-server JSON-RPC message"),
    "fragments-over-16-mib": Case(
        oversize_fragments, "failed to parse app-server JSON-RPC message"
    ),
    "accepts-never-answers": Case(
        silent_accept, "timed out probing app-server control socket <sock>"
    ),
    "silent-after-upgrade": Case(silent_after_upgrade, "timed out waiting for initialize response"),
    "closes-mid-frame": Case(close_mid_frame, "app-server closed the control socket"),
    "close-frame-first": Case(close_frame_first, "app-server closed the control socket"),
    "notification-flood": Case(notification_flood, "timed out waiting for initialize response"),
    "ping-flood": Case(ping_flood, "timed out waiting for initialize response"),
    "non-json-text-frame": Case(non_json, "failed to parse app-server JSON-RPC message"),
    "non-utf8-text-frame": Case(non_utf8, "failed to parse app-server JSON-RPC message"),
    "json-array": Case(json_array, "failed to parse app-server JSON-RPC message"),
    "nesting-200000-deep": Case(deep_nesting, "failed to parse app-server JSON-RPC message"),
    "response-without-user-agent": Case(no_user_agent, "failed to parse initialize response"),
    "error-response": Case(error_response, "failed to parse initialize response"),
    "user-agent-without-slash": Case(
        no_separator, "app-server user-agent omitted version separator"
    ),
    "user-agent-without-version": Case(no_version, "app-server user-agent omitted version"),
}
SUCCESSES: dict[str, Case] = {
    "fragmented-with-pings-between": Case(fragmented, None),
    "pings-before-response": Case(pings_first, None),
    "notifications-before-response": Case(notifications_first, None),
    "response-over-64-kib": Case(long_response, None),
    "frames-glued-to-the-101": Case(glued_to_headers, None),
}


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
def figures(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Figures:
    return Figures.for_test(tmp_path_factory, request)


@pytest.fixture
def serve(home: Home) -> Iterator[Callable[[Callable[[Conn], None]], HostilePeer]]:
    peers: list[HostilePeer] = []

    def start(behaviour: Callable[[Conn], None]) -> HostilePeer:
        peer = HostilePeer(home.paths.socket, behaviour)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.close()


def timed_run(home: Home, *args: str) -> tuple[Result, float]:
    started = time.monotonic()
    try:
        result = home.run(*args, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`codex-daemon {' '.join(args)}` hung against a hostile peer")
    return result, time.monotonic() - started


# -- tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FAILURES))
def test_hostile_peer_fails_version_with_the_catalogue_text(
    home: Home,
    serve: Callable[[Callable[[Conn], None]], HostilePeer],
    name: str,
    figures: Figures,
) -> None:
    figures.add("hostile_peers_tried")
    case = FAILURES[name]
    assert case.error is not None
    serve(case.behaviour)
    result, elapsed = timed_run(home, "version")
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    first = result.stderr.split("\n", 1)[0]
    message = case.error.replace("<sock>", home.paths.socket)
    assert first == "Error: " + message, result.stderr
    assert result.stderr.count(message) == 1, f"the error repeats itself as a cause: {result}"
    if case.cause is not None:
        assert "Caused by:" in result.stderr
        assert case.cause in result.stderr, result.stderr
    assert elapsed < RETURN_WITHIN_S, f"version took {elapsed:.1f} s against {name}"
    figures.add("hostile_peers_safe")


@pytest.mark.parametrize("name", list(SUCCESSES))
def test_awkward_but_valid_peer_is_understood(
    home: Home,
    serve: Callable[[Callable[[Conn], None]], HostilePeer],
    name: str,
    figures: Figures,
) -> None:
    figures.add("hostile_peers_tried")
    peer = serve(SUCCESSES[name].behaviour)
    info = probe(home.paths.socket)
    assert info.app_server_version == "9.9.9"
    assert info.user_agent == USER_AGENT

    result, elapsed = timed_run(home, "version")
    value = result.json
    assert value["status"] == "running"
    assert value["appServerVersion"] == "9.9.9"
    assert "backend" not in value, "nobody recorded this server"
    assert elapsed < RETURN_WITHIN_S
    # The client's last frames sit in the socket until the peer's thread reads them;
    # the CLI may well have exited first.
    wait_for(
        lambda: all(conn.done.is_set() for conn in peer.conns),
        what="the peer to read what the client sent",
    )
    if name == "pings-before-response":
        pongs = [payload for conn in peer.conns for op, payload in conn.seen if op == OP_PONG]
        assert pongs[:3] == [b"ping 0", b"ping 1", b"ping 2"], "each ping is answered in kind"
    for conn in peer.conns:
        opcodes = [op for op, _ in conn.seen if op != OP_PONG]
        assert opcodes == [OP_TEXT, OP_CLOSE], "initialized, then a Close frame (SPEC §6.2)"
        assert json.loads(conn.seen[[op for op, _ in conn.seen].index(OP_TEXT)][1]) == {
            "method": "initialized"
        }
    figures.add("hostile_peers_safe")


@pytest.mark.parametrize("name", ["accepts-never-answers", "ping-flood", "slow-drip-headers"])
def test_probe_gives_up_within_its_budget(
    home: Home,
    serve: Callable[[Callable[[Conn], None]], HostilePeer],
    name: str,
) -> None:
    """In-process, without interpreter start-up: the 2 s budget is the whole probe."""
    serve(FAILURES[name].behaviour)
    started = time.monotonic()
    with pytest.raises(ProbeError):
        probe(home.paths.socket)
    assert time.monotonic() - started < 4.0


@pytest.mark.parametrize("command", ["status", "stop"])
def test_status_and_stop_do_not_hang_on_a_silent_peer(
    home: Home,
    serve: Callable[[Callable[[Conn], None]], HostilePeer],
    command: str,
    figures: Figures,
) -> None:
    figures.add("hostile_peers_tried")
    serve(silent_accept)
    result, elapsed = timed_run(home, command)
    assert result.json["status"] == "notRunning"
    assert "backend" not in result.json
    assert elapsed < RETURN_WITHIN_S
    figures.add("hostile_peers_safe")
