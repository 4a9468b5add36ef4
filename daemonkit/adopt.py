"""adopt: record the unmanaged app-server on the control socket as managed (SPEC §14.12).

Desktop's SSH flow starts its own ``codex app-server --listen unix://`` when nothing
answers (upstream #24542, #33750); every managed command then refuses it as "not
managed". ``adopt`` checks who listens and records that process as ``start`` would
have recorded a server it spawned::

    connect <sock> --no socket, refused--> nothing to adopt
        --SO_PEERCRED--> pid, uid --ours? pid > 1? alive? `codex ... app-server`?--no--> AdoptError
        --initialize--> appServerVersion
        --reserve R, same identity still?, publish {pid, start time, identity}--> adopted

The record carries the identity /proc gives (SPEC §4.2), so that stop signals exactly
that process and the supervisor watches it. It has no ``executableIdentity`` (the key
is optional): the kit did not choose the binary, and /proc/<pid>/exe may name a file
replaced since the exec; the updater then compares versions, not digests (§8.5).
"""

from __future__ import annotations

import os

from daemonkit.errors import AdoptError, ProbeError
from daemonkit.pidfile import Running, reserve_pid_file
from daemonkit.pidrecord import PidRecord
from daemonkit.probe import PROBE_BUDGET_S, connect_unix, peer_credentials, probe
from daemonkit.procinfo import inspect_process, read_command, runs_codex_app_server, start_ticks
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

    from daemonkit.paths import PidPaths
    from daemonkit.probe import AppServerInfo
    from daemonkit.procinfo import ProcessSnapshot

__all__ = ["Listener", "find_listener", "record_listener"]


class Listener(Value):
    """The adoptable server on the socket: its process as /proc shows it, and its answer."""

    __slots__ = ("info", "snapshot")

    def __init__(self, *, snapshot: ProcessSnapshot, info: AppServerInfo) -> None:
        self.snapshot: Final = snapshot
        self.info: Final = info

    @property
    def pid(self) -> int:
        return self.snapshot.pid


def refusal(socket_path: str, why: str) -> AdoptError:
    return AdoptError(f"cannot adopt the app server on {socket_path}: {why}")


def find_listener(socket_path: str) -> Listener | None:
    """The server that answers on ``socket_path``, checked adoptable; None if none answers.

    Raises ``AdoptError`` saying why a server that answers is refused. A server the
    Rust dedicated layout records never gets here: the kit manages that layout with
    Rust's record names (SPEC §16), so ``adopt`` finds it managed already.
    """
    pid = _peer_pid(socket_path)
    if pid is None:
        return None
    snapshot = _checked_process(socket_path, pid)
    try:
        info = probe(socket_path)
    except ProbeError as exc:
        why = f"process {pid} did not answer the initialize handshake"
        raise refusal(socket_path, why) from exc
    return Listener(snapshot=snapshot, info=info)


def _peer_pid(socket_path: str) -> int | None:
    """The pid that listens on ``socket_path``, if it is our user's; None if none listens."""
    try:
        sock = connect_unix(socket_path, PROBE_BUDGET_S)
    except (FileNotFoundError, ConnectionRefusedError):
        return None  # no socket, or a stale one that nobody listens on
    except OSError as exc:
        raise refusal(socket_path, "cannot connect to it") from exc
    try:
        peer = peer_credentials(sock)
    finally:
        sock.close()
    if peer is None:
        raise refusal(socket_path, "no peer credentials")
    if peer.uid != os.geteuid():
        raise refusal(socket_path, f"it runs as uid {peer.uid}, not {os.geteuid()}")
    if peer.pid <= 1:
        # 0: the listener is in a pid namespace this one cannot see.
        raise refusal(socket_path, f"the kernel gives its pid as {peer.pid}")
    return peer.pid


def _checked_process(socket_path: str, pid: int) -> ProcessSnapshot:
    """``pid`` as /proc shows it, if it is alive and a Codex app-server."""
    snapshot = inspect_process(pid)
    if snapshot is None:
        raise refusal(socket_path, f"process {pid} exited")
    command = read_command(pid)
    # The command must be the snapshot's process, not one that reused the pid since.
    if start_ticks(pid) != snapshot.identity.start_ticks:
        raise refusal(socket_path, f"process {pid} exited")
    if command is None:
        raise refusal(socket_path, f"cannot read the command line of process {pid}")
    if not runs_codex_app_server(pid, command):
        import shlex  # noqa: PLC0415 - only this refusal quotes an argv

        argv = shlex.join(command.argv)
        raise refusal(socket_path, f"process {pid} is not a Codex app-server ({argv})")
    return snapshot


def record_listener(paths: PidPaths, listener: Listener, socket_path: str) -> bool:
    """Publish the record naming ``listener`` (SPEC §4.6: reserve, identity, publish).

    Returns False, writing nothing, when an active record appeared meanwhile (only a
    process that ignores ``daemon.lock`` can publish one). Raises ``AdoptError`` if the
    process is no longer the one checked, and ``PidFileError`` if the record cannot be
    reserved or published.
    """
    reservation = reserve_pid_file(paths)
    if isinstance(reservation, Running):
        return False
    # Checked again with the reservation held: a record names a live process only.
    now = inspect_process(listener.pid)
    if now is None or now.identity != listener.snapshot.identity:
        reservation.abandon()
        raise refusal(socket_path, f"process {listener.pid} exited")
    reservation.publish(
        PidRecord(pid=now.pid, process_start_time=now.lstart, identity=now.identity)
    )
    return True
