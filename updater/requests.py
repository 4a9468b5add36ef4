"""The updater's request socket: bind, accept, one request, one JSON reply (SPEC §8.3).

The wire, shared with the Rust updater (so either CLI can ask either updater)::

    C->S  update\\n                                  (at most 64 bytes, read within 2 s)
    S->C  {"Ok":<UpdateOutput>} | {"Err":"<rendered error chain>"}      then close

    C->S  watch\\n                    (kit only: a command started or replaced the server)
    S->C  close                       (the supervisor re-reads the record, SPEC §14.2)

The socket lives at ``<S>/app-server-updater.sock``; when that path does not fit
``sun_path`` the physical socket is ``/tmp/codex-daemon-<euid>/<sha256 of the alias>``
and the alias is a symlink to it, as upstream does. A socket that answers belongs to
another updater and is never stolen.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import stat
import time
from dataclasses import dataclass
from enum import Enum, auto
from typing import TYPE_CHECKING

from daemonkit.files import make_private_dirs
from daemonkit.probe import peer_credentials

if TYPE_CHECKING:
    from updater.log import EventLog

__all__ = [
    "BindOutcome",
    "Request",
    "RequestServer",
    "bind_request_socket",
    "encode_err",
    "encode_ok",
    "physical_socket_path",
    "send_reply",
]

SUN_PATH_MAX = 107
REQUEST_LIMIT = 64
REQUEST_READ_S = 2.0
LISTEN_BACKLOG = 8


class Request(Enum):
    UPDATE = auto()
    WATCH = auto()
    UNKNOWN = auto()


class BindOutcome(Enum):
    OTHER_UPDATER = auto()  # the path answers: another updater serves it
    NOT_SERVED = auto()  # a foreign file sits at the path; it is left alone


def encode_ok(output: dict[str, object]) -> bytes:
    return json.dumps({"Ok": output}, separators=(",", ":"), ensure_ascii=False).encode()


def encode_err(text: str) -> bytes:
    return json.dumps({"Err": text}, separators=(",", ":"), ensure_ascii=False).encode()


def physical_socket_path(alias: str) -> str | None:
    """Where the socket really lives when ``alias`` is too long for ``sun_path``."""
    if len(os.fsencode(alias)) <= SUN_PATH_MAX:
        return None
    digest = hashlib.sha256(os.fsencode(alias)).hexdigest()
    return os.path.join(f"/tmp/codex-daemon-{os.geteuid()}", digest)  # noqa: S108 - upstream's location


def _answers(path: str) -> bool | None:
    """True if a listener answers at ``path``; False if stale; None if unknown."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return None
    finally:
        probe.close()
    return True


def _ensure_private_dir(path: str) -> None:
    make_private_dirs(path)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise PermissionError(errno.EPERM, f"refusing to use socket directory {path}")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)


def _clear_stale(path: str, physical: str | None) -> BindOutcome | None:
    """Remove a stale socket (or our dangling alias) at ``path``; None when clear."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISSOCK(info.st_mode):
        answered = _answers(path)
        if answered:
            return BindOutcome.OTHER_UPDATER
        if answered is None:
            return BindOutcome.NOT_SERVED
        os.unlink(path)
        return None
    if not stat.S_ISLNK(info.st_mode):
        return BindOutcome.NOT_SERVED
    # An alias is probed through its target: the alias itself may be too long for
    # sun_path, which is why it exists.
    target = os.path.join(os.path.dirname(path), os.readlink(path))
    if _answers(target):
        return BindOutcome.OTHER_UPDATER
    if physical is not None and target == physical:
        os.unlink(path)  # our own dangling alias
        return None
    return BindOutcome.NOT_SERVED


@dataclass(frozen=True, slots=True)
class _Bound:
    path: str
    dev: int
    ino: int


class RequestServer:
    """A listening request socket this updater bound and will remove on exit."""

    def __init__(self, listener: socket.socket, alias: str, bound: _Bound, log: EventLog) -> None:
        self._listener = listener
        self._alias = alias
        self._bound = bound
        self._log = log

    def fileno(self) -> int:
        return self._listener.fileno()

    def accept(self) -> tuple[socket.socket, Request] | None:
        """Accept one connection and read its request; None if there is nothing to serve."""
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return None
        conn.setblocking(True)
        if not self._peer_is_us(conn):
            conn.close()
            return None
        request = _read_request(conn)
        if request is None:
            conn.close()
            return None
        return conn, request

    def _peer_is_us(self, conn: socket.socket) -> bool:
        peer = peer_credentials(conn)
        if peer is None:
            return True  # no SO_PEERCRED (macOS): the 0600 socket mode is the guard
        if peer.uid != os.geteuid():
            self._log.warn_line(f"refused updater request from pid {peer.pid} of uid {peer.uid}")
            return False
        return True

    def close(self) -> None:
        """Stop listening and remove the socket (and its alias) if they are still ours."""
        self._listener.close()
        try:
            info = os.lstat(self._bound.path)
            if stat.S_ISSOCK(info.st_mode) and (info.st_dev, info.st_ino) == (
                self._bound.dev,
                self._bound.ino,
            ):
                os.unlink(self._bound.path)
        except OSError:
            pass  # already gone, or replaced by someone else's: not ours to remove
        if self._bound.path != self._alias:
            try:
                if os.readlink(self._alias) == self._bound.path:
                    os.unlink(self._alias)
            except OSError:
                pass


def _read_request(conn: socket.socket) -> Request | None:
    deadline = time.monotonic() + REQUEST_READ_S
    data = b""
    try:
        while len(data) < REQUEST_LIMIT and b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            conn.settimeout(remaining)
            chunk = conn.recv(REQUEST_LIMIT - len(data))
            if not chunk:
                break
            data += chunk
    except (TimeoutError, OSError):
        pass
    if not data:
        return None
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    return {b"update": Request.UPDATE, b"watch": Request.WATCH}.get(line, Request.UNKNOWN)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # best effort while the bind error propagates


def send_reply(conn: socket.socket, payload: bytes) -> None:
    """Send the reply and close; a client that went away is not an error."""
    try:
        conn.settimeout(REQUEST_READ_S)
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        conn.close()


def bind_request_socket(alias: str, log: EventLog) -> RequestServer | BindOutcome:
    """Bind and listen at ``alias`` (or its physical path), or say why not.

    Raises ``OSError`` when binding fails for another reason.
    """
    physical = physical_socket_path(alias)
    outcome = _clear_stale(alias, physical)
    if outcome is None and physical is not None:
        _ensure_private_dir(os.path.dirname(physical))
        outcome = _clear_stale(physical, None)
    if outcome is not None:
        return outcome
    path = physical or alias
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    bound = False
    try:
        # bind() creates the socket file with the umask applied: 0600 from the start,
        # with no window in which another user could connect.
        previous_umask = os.umask(0o177)
        try:
            listener.bind(path)
        finally:
            os.umask(previous_umask)
        bound = True
        listener.listen(LISTEN_BACKLOG)
        listener.setblocking(False)
        info = os.lstat(path)
        if physical is not None:
            os.symlink(physical, alias)
    except BaseException:
        listener.close()
        if bound:
            _unlink_quietly(path)
        raise
    return RequestServer(listener, alias, _Bound(path, info.st_dev, info.st_ino), log)
