"""update: ask the updater to check now and relay its one JSON answer (SPEC §2.11, §8.3)."""

from __future__ import annotations

import json
import os
import sys
import time

from daemonkit.errors import UpdaterError
from daemonkit.output import write_stderr
from daemonkit.paths import Layout
from daemonkit.probe import connect_unix
from daemonkit.settings import load_settings
from daemonkit.updater_control import (
    dedicated_update_refusal,
    foreign_updater_pid,
    is_updater_active,
    spawn_updater,
)
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping
    from typing import Final

    from daemonkit.paths import DaemonPaths

__all__ = ["RelayedOutput", "request_update"]

CONNECT_RETRY_S = 10.0
LIVENESS_CHECK_S = 1.0
REPLY_LIMIT = 1 << 20
PROMPT = (
    "Install the latest Codex and restart the running app server if it changes? "
    "Active or queued work may be interrupted. [y/N] "
)


class RelayedOutput(Value):
    """The updater's UpdateOutput, printed exactly as the updater (kit or Rust) built it."""

    __slots__ = ("value",)

    def __init__(self, *, value: dict[str, object]) -> None:
        self.value: Final = value

    def to_json(self) -> dict[str, object]:
        return self.value


class _NoListenerError(UpdaterError):
    """No updater listened, so the request never left this process."""


def _confirmed(assume_yes: bool) -> bool:
    """Ask only a person at a terminal; scripts and SSH clients are never prompted."""
    if assume_yes or not (sys.stdin.isatty() and sys.stderr.isatty()):
        return True
    write_stderr(PROMPT)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _connect(path: str, paths: DaemonPaths) -> socket.socket:
    """Connect, retrying for 10 s while a fresh updater binds (SPEC §2.11 step 5)."""
    deadline = time.monotonic() + CONNECT_RETRY_S
    delay = 0.005
    while True:
        try:
            return connect_unix(path, CONNECT_RETRY_S)
        except OSError as exc:
            if time.monotonic() >= deadline or not is_updater_active(paths):
                raise _NoListenerError(
                    f"failed to connect to updater request socket {path}"
                ) from exc
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _read_reply(sock: socket.socket, paths: DaemonPaths) -> bytes:
    """Read until EOF; no overall timeout while the updater's record stays active."""
    sock.settimeout(LIVENESS_CHECK_S)
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if not is_updater_active(paths):
                raise UpdaterError("updater exited before answering the update request") from None
            continue
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > REPLY_LIMIT:
            raise UpdaterError("updater reply exceeds 1 MiB")


def _ask(paths: DaemonPaths, environ: Mapping[str, str], *, once: bool) -> bytes:
    """Find or spawn the updater, send ``update``, and return its raw reply."""
    if not is_updater_active(paths):
        spawn_updater(paths, environ, once=once)
    sock = _connect(paths.updater_socket, paths)
    try:
        sock.sendall(b"update\n")
        raw = _read_reply(sock, paths)
    except OSError as exc:
        raise UpdaterError("updater exited before answering the update request") from exc
    finally:
        sock.close()
    if not raw:
        raise UpdaterError("updater exited before answering the update request")
    return raw


def request_update(
    paths: DaemonPaths, environ: Mapping[str, str], *, assume_yes: bool
) -> RelayedOutput:
    settings = load_settings(paths.settings)
    # In the dedicated layout Rust's loop answers; the kit's updater runs it only with
    # auto-update on, and never installs into Rust's layout itself (SPEC §16).
    if (
        paths.layout is Layout.DEDICATED
        and not settings.auto_update_enabled
        and foreign_updater_pid(paths) is None
    ):
        raise UpdaterError(dedicated_update_refusal(paths))
    if not _confirmed(assume_yes):
        raise UpdaterError("update cancelled")
    try:
        raw = _ask(paths, environ, once=not settings.wants_updater)
    except _NoListenerError:
        # A one-shot updater may have answered someone else and exited between our
        # check and our connect: nothing received our request, so asking anew is safe.
        raw = _ask(paths, environ, once=not settings.wants_updater)
    try:
        reply = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UpdaterError("failed to parse the updater's reply") from exc
    if isinstance(reply, dict) and isinstance(reply.get("Ok"), dict):
        return RelayedOutput(value=reply["Ok"])
    if isinstance(reply, dict) and isinstance(reply.get("Err"), str):
        raise UpdaterError(reply["Err"])
    raise UpdaterError("failed to parse the updater's reply") from ValueError(
        f"unexpected reply {os.fsdecode(raw[:200])!r}"
    )
