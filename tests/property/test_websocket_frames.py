"""Property tests of the probe's WebSocket frame reader (hypothesis; SPEC §6.1 rule 3).

Server frames are built here from random opcode sequences — text messages split into
continuation fragments, pings with payloads, pongs, (fragmented) binary frames,
7/16/64-bit length fields (also non-minimal ones), masked and unmasked — and written
into one end of an ``AF_UNIX`` socketpair; the other end is handed to
``daemonkit.probe.WebSocketConnection``. ``read_message`` must return exactly the JSON
messages sent, reassembled, and answer every ping with a masked pong carrying the
ping's payload. Invalid input (a declared length over 16 MiB, a Close frame, EOF in the
middle of a frame, a silent peer, arbitrary bytes) may only raise ``ProbeError``
(``ProbeTimeoutError`` is one), always within the connection's deadline.
"""

from __future__ import annotations

import itertools
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemonkit.errors import ProbeError, ProbeTimeoutError
from daemonkit.probe import MAX_MESSAGE_BYTES, WebSocketConnection

pytestmark = pytest.mark.timeout(180)

FAST = settings(max_examples=100, deadline=None, database=None)
SLOW = settings(max_examples=15, deadline=None, database=None)

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
SOCKET_PATH = "/nonexistent/app-server-control.sock"  # only named in error texts
DEADLINE_S = 5.0  # generous: a healthy read takes milliseconds
SILENT_DEADLINE_S = 0.1
SLACK_S = 1.0


# -- building server frames ------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    fin: bool
    opcode: int
    payload: bytes
    length_bits: int  # 7, 16 or 64: how the length is encoded (maybe non-minimally)
    mask: bytes | None  # a 4-byte key, or None for an unmasked frame

    def encode(self) -> bytes:
        header = bytearray([(0x80 if self.fin else 0) | self.opcode])
        mask_bit = 0x80 if self.mask is not None else 0
        length = len(self.payload)
        if self.length_bits == 7:
            assert length < 126
            header.append(mask_bit | length)
        elif self.length_bits == 16:
            assert length < 1 << 16
            header.append(mask_bit | 126)
            header += struct.pack("!H", length)
        else:
            header.append(mask_bit | 127)
            header += struct.pack("!Q", length)
        if self.mask is None:
            return bytes(header) + self.payload
        header += self.mask
        return bytes(header) + mask_bytes(self.payload, self.mask)


def mask_bytes(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@st.composite
def frame_format(draw: st.DrawFn, length: int) -> tuple[int, bytes | None]:
    """A length encoding able to carry ``length`` (non-minimal ones too) and a mask."""
    choices = [64]
    if length < 1 << 16:
        choices.append(16)
    if length < 126:
        choices.append(7)
    bits = draw(st.sampled_from(choices))
    mask = draw(st.none() | st.binary(min_size=4, max_size=4))
    return bits, mask


@st.composite
def frames_of(draw: st.DrawFn, opcode: int, payload: bytes, *, fin: bool = True) -> Frame:
    bits, mask = draw(frame_format(len(payload)))
    return Frame(fin=fin, opcode=opcode, payload=payload, length_bits=bits, mask=mask)


@st.composite
def split(draw: st.DrawFn, data: bytes, max_parts: int = 5) -> list[bytes]:
    """``data`` cut into 1..max_parts pieces (empty pieces allowed; UTF-8 may be cut)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=max_parts - 1)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)
json_messages: st.SearchStrategy[dict[str, object]] = st.dictionaries(
    st.text(max_size=8), json_values, max_size=5
)


@dataclass
class Script:
    """What the server sends, and what the client must make of it."""

    frames: list[Frame]
    messages: list[dict[str, object]]  # the JSON messages, in order
    pings: list[bytes]  # the ping payloads sent before the last message ended


@st.composite
def noise(draw: st.DrawFn) -> tuple[list[Frame], list[bytes]]:
    """Pings and pongs, allowed between any two frames (RFC 6455 §5.4, §5.5)."""
    frames: list[Frame] = []
    pings: list[bytes] = []
    for opcode in draw(st.lists(st.sampled_from([OP_PING, OP_PONG]), max_size=3)):
        payload = draw(st.binary(max_size=125))
        frames.append(draw(frames_of(opcode, payload)))
        if opcode == OP_PING:
            pings.append(payload)
    return frames, pings


@st.composite
def binary_message(draw: st.DrawFn) -> list[Frame]:
    parts = draw(split(draw(st.binary(max_size=300)), max_parts=3))
    return [
        draw(frames_of(OP_BINARY if i == 0 else OP_CONT, part, fin=i == len(parts) - 1))
        for i, part in enumerate(parts)
    ]


@st.composite
def scripts(draw: st.DrawFn) -> Script:
    messages = draw(st.lists(json_messages, min_size=1, max_size=3))
    frames: list[Frame] = []
    pings: list[bytes] = []
    for message in messages:
        # Between messages: whole binary messages and control frames.
        for _ in range(draw(st.integers(0, 2))):
            frames += draw(binary_message())
        between, between_pings = draw(noise())
        frames += between
        pings += between_pings
        text = json.dumps(message, ensure_ascii=draw(st.booleans())).encode("utf-8")
        parts = draw(split(text))
        for i, part in enumerate(parts):
            if i > 0:
                # Control frames may be injected between fragments (RFC 6455 §5.4).
                inner, inner_pings = draw(noise())
                frames += inner
                pings += inner_pings
            opcode = OP_TEXT if i == 0 else OP_CONT
            frames.append(draw(frames_of(opcode, part, fin=i == len(parts) - 1)))
    return Script(frames=frames, messages=messages, pings=pings)


# -- running the client against a socketpair -----------------------------------------------------


class Peer:
    """The server end of a socketpair: writes bytes from a thread, collects the client's frames."""

    def __init__(self, data: bytes, *, eof: bool = True) -> None:
        self.server, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.client = client
        self.data = data
        self.eof = eof
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    def _write(self) -> None:
        try:
            self.server.sendall(self.data)
            if self.eof:
                self.server.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the client gave up and closed its end: fine for the invalid cases

    def connection(self, deadline_s: float = DEADLINE_S) -> WebSocketConnection:
        return WebSocketConnection(self.client, SOCKET_PATH, time.monotonic() + deadline_s)

    def received(self) -> bytes:
        """Everything the client wrote, once it closed its end."""
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the writer thread is stuck"
        self.server.settimeout(10)
        chunks = []
        while chunk := self.server.recv(65536):
            chunks.append(chunk)
        self.server.close()
        return b"".join(chunks)

    def close(self) -> None:
        self.client.close()
        self.server.close()
        self.thread.join(timeout=10)


def parse_client_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, unmasked payload) of each client frame; every one must be masked and final."""
    frames = []
    at = 0
    while at < len(data):
        first, second = data[at], data[at + 1]
        at += 2
        assert first & 0x80, "client frames are never fragmented here"
        assert second & 0x80, "client frames must be masked (RFC 6455 §5.3)"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", data[at : at + 2])
            at += 2
        elif length == 127:
            (length,) = struct.unpack("!Q", data[at : at + 8])
            at += 8
        key = data[at : at + 4]
        at += 4
        payload = data[at : at + length]
        assert len(payload) == length, "truncated client frame"
        at += length
        frames.append((first & 0x0F, mask_bytes(payload, key)))
    return frames


def read_within_deadline(conn: WebSocketConnection, deadline_s: float) -> object:
    """``read_message`` once; return its value or the ``ProbeError``; check the deadline."""
    started = time.monotonic()
    try:
        result: object = conn.read_message("initialize response")
    except ProbeError as exc:  # anything else propagates and fails the test
        result = exc
    assert time.monotonic() - started < deadline_s + SLACK_S, "read_message outlived its deadline"
    return result


# -- valid streams ------------------------------------------------------------------------------


@FAST
@given(scripts())
def test_messages_are_reassembled_and_pings_answered(script: Script) -> None:
    data = b"".join(frame.encode() for frame in script.frames)
    peer = Peer(data)
    try:
        conn = peer.connection()
        for message in script.messages:
            got = read_within_deadline(conn, DEADLINE_S)
            assert not isinstance(got, ProbeError), f"{got!r} (cause {got.__cause__!r})"
            assert got == json.loads(json.dumps(message))
        conn.close_socket()
        replies = parse_client_frames(peer.received())
    finally:
        peer.close()
    assert replies == [(OP_PONG, payload) for payload in script.pings]


@SLOW
@given(
    st.integers(126, 70_000),
    st.binary(min_size=1, max_size=125),
    st.none() | st.binary(min_size=4, max_size=4),
)
def test_large_fragments_with_a_ping_between(size: int, ping: bytes, mask: bytes | None) -> None:
    text = json.dumps({"id": 1, "result": {"userAgent": "a/1.0.0", "pad": "x" * size}}).encode()
    half = len(text) // 2
    frames = [
        Frame(False, OP_TEXT, text[:half], 16 if half < 1 << 16 else 64, mask),
        Frame(True, OP_PING, ping, 7, None),
        Frame(True, OP_CONT, text[half:], 64, mask),
    ]
    peer = Peer(b"".join(frame.encode() for frame in frames))
    try:
        conn = peer.connection()
        got = read_within_deadline(conn, DEADLINE_S)
        conn.close_socket()
        replies = parse_client_frames(peer.received())
    finally:
        peer.close()
    assert got == json.loads(text)
    assert replies == [(OP_PONG, ping)]


# -- invalid streams ----------------------------------------------------------------------------


@FAST
@given(
    st.integers(MAX_MESSAGE_BYTES + 1, 2**64 - 1),
    st.sampled_from([OP_TEXT, OP_BINARY, OP_CONT, OP_PING]),
    st.booleans(),
)
def test_declared_length_over_16_mib_is_refused(length: int, opcode: int, masked: bool) -> None:
    header = bytes([0x80 | opcode, (0x80 if masked else 0) | 127]) + struct.pack("!Q", length)
    # Some payload follows, far less than declared: nothing may wait for the rest.
    peer = Peer(header + b"\0" * 64, eof=False)
    try:
        got = read_within_deadline(peer.connection(), DEADLINE_S)
    finally:
        peer.close()
    assert isinstance(got, ProbeError)
    assert not isinstance(got, ProbeTimeoutError), "refused on the header, not by waiting"
    assert str(got) == "failed to parse app-server JSON-RPC message"


@FAST
@given(noise(), st.lists(binary_message(), max_size=2), st.binary(max_size=125), st.booleans())
def test_close_frame_ends_the_read(
    control: tuple[list[Frame], list[bytes]],
    binaries: list[list[Frame]],
    payload: bytes,
    masked: bool,
) -> None:
    # A Close frame, maybe after pings, pongs and binary messages, before any text.
    frames = [*control[0], *(frame for message in binaries for frame in message)]
    frames.append(Frame(True, OP_CLOSE, payload, 7, b"\1\2\3\4" if masked else None))
    peer = Peer(b"".join(frame.encode() for frame in frames), eof=False)
    try:
        conn = peer.connection()
        got = read_within_deadline(conn, DEADLINE_S)
        conn.close_socket()
        replies = parse_client_frames(peer.received())
    finally:
        peer.close()
    assert isinstance(got, ProbeError)
    assert not isinstance(got, ProbeTimeoutError)
    assert str(got) == "app-server closed the control socket"
    assert replies == [(OP_PONG, ping) for ping in control[1]]


@FAST
@given(scripts(), st.data())
def test_eof_in_the_middle_of_a_frame(script: Script, data: st.DataObject) -> None:
    stream = b"".join(frame.encode() for frame in script.frames)
    last = script.frames[-1].encode()
    # Cut inside the last frame, which ends the last message: no message is complete
    # before the cut for the final read.
    cut = data.draw(st.integers(len(stream) - len(last), len(stream) - 1), label="cut")
    peer = Peer(stream[:cut])
    try:
        conn = peer.connection()
        results = [read_within_deadline(conn, DEADLINE_S) for _ in script.messages]
    finally:
        peer.close()
    # Every message before the last arrives intact; the last read fails cleanly.
    for got, message in zip(results[:-1], script.messages[:-1], strict=True):
        assert got == json.loads(json.dumps(message))
    assert isinstance(results[-1], ProbeError)
    assert str(results[-1]) == "app-server closed the control socket"


@SLOW
@given(scripts(), st.data())
def test_silent_peer_times_out_at_the_deadline(script: Script, data: st.DataObject) -> None:
    stream = b"".join(frame.encode() for frame in script.frames)
    last = len(script.frames[-1].encode())
    # Up to somewhere in the last frame, then silence (no EOF).
    cut = data.draw(st.integers(len(stream) - last, len(stream) - 1), label="cut")
    peer = Peer(stream[:cut], eof=False)
    try:
        conn = peer.connection(SILENT_DEADLINE_S)
        results = [read_within_deadline(conn, SILENT_DEADLINE_S) for _ in script.messages]
    finally:
        peer.close()
    assert isinstance(results[-1], ProbeTimeoutError)
    assert str(results[-1]) == "timed out waiting for initialize response"


@FAST
@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_a_message_or_a_probe_error(raw: bytes) -> None:
    peer = Peer(raw)
    try:
        conn = peer.connection(SILENT_DEADLINE_S)
        got = read_within_deadline(conn, SILENT_DEADLINE_S)
    finally:
        peer.close()
    assert isinstance(got, ProbeError | dict)
