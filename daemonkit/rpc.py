"""The remote-control RPC on the app-server's control socket (SPEC §6.6).

On its own connection: upgrade, ``initialize`` (id 1) with the capabilities 0.169.0
sends, ``initialized``, then request id 2 ``remoteControl/enable`` or ``/disable``
with ``{"ephemeral": true}``; an older server rejects the params with -32602 and
enable is retried without them.
"""

from __future__ import annotations

import time

from daemonkit.errors import ProbeTimeoutError, RpcError
from daemonkit.probe import PROBE_BUDGET_S, WebSocketConnection, client_info, initialize
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = ["RemoteControlState", "set_remote_control"]

READ_TIMEOUT_S = 2.0
CONNECTING_WAIT_S = 10.0
INVALID_PARAMS = -32602
STATUS_CHANGED = "remoteControl/status/changed"


class RemoteControlState(Value):
    __slots__ = ("environment_id", "server_name", "status", "timed_out")

    def __init__(
        self,
        *,
        status: str,
        server_name: str | None,
        environment_id: str | None,
        timed_out: bool = False,
    ) -> None:
        self.status: Final = status
        self.server_name: Final = server_name
        self.environment_id: Final = environment_id
        self.timed_out: Final = timed_out


class _RejectedParamsError(Exception):
    """The server answered -32602 (invalid params)."""


def _state_from(value: object) -> RemoteControlState:
    data = value if isinstance(value, dict) else {}
    status = data.get("status")
    server = data.get("serverName")
    environment = data.get("environmentId")
    return RemoteControlState(
        status=status if isinstance(status, str) else "errored",
        server_name=server if isinstance(server, str) else None,
        environment_id=environment if isinstance(environment, str) else None,
    )


def _call(
    conn: WebSocketConnection, method: str, params: dict[str, object] | None
) -> RemoteControlState:
    request: dict[str, object] = {"id": 2, "method": method}
    if params is not None:
        request["params"] = params
    conn.set_deadline(time.monotonic() + READ_TIMEOUT_S)
    conn.send_json(request)
    while True:
        conn.set_deadline(time.monotonic() + READ_TIMEOUT_S)
        try:
            message = conn.read_message(f"{method} response")
        except ProbeTimeoutError:
            raise RpcError(f"timed out waiting for {method} response") from None
        if message.get("id") != 2:
            continue  # remoteControl/status/changed and other notifications
        error = message.get("error")
        if isinstance(error, dict):
            if error.get("code") == INVALID_PARAMS:
                raise _RejectedParamsError
            raise RpcError(f"{method} failed: {error.get('message', 'unknown error')}")
        return _state_from(message.get("result"))


def _await_connected(conn: WebSocketConnection, state: RemoteControlState) -> RemoteControlState:
    """While enable reports ``connecting``, wait up to 10 s for another status."""
    deadline = time.monotonic() + CONNECTING_WAIT_S
    while state.status == "connecting":
        if time.monotonic() >= deadline:
            return RemoteControlState(
                status=state.status,
                server_name=state.server_name,
                environment_id=state.environment_id,
                timed_out=True,
            )
        conn.set_deadline(min(deadline, time.monotonic() + READ_TIMEOUT_S))
        try:
            message = conn.read_message("remoteControl/status/changed")
        except ProbeTimeoutError:
            continue
        if message.get("method") == STATUS_CHANGED:
            state = _state_from(message.get("params"))
    return state


def set_remote_control(socket_path: str, *, enable: bool) -> RemoteControlState:
    """Switch remote control on the live server; raise ``RpcError`` or ``ProbeError``."""
    conn = WebSocketConnection.open(socket_path, time.monotonic() + PROBE_BUDGET_S)
    try:
        params = client_info()
        params["capabilities"] = {
            "experimentalApi": True,
            "requestAttestation": False,
            "optOutNotificationMethods": None,
        }
        initialize(conn, params)
        if enable:
            method = "remoteControl/enable"
            try:
                state = _call(conn, method, {"ephemeral": True})
            except _RejectedParamsError:
                try:
                    state = _call(conn, method, None)
                except _RejectedParamsError:
                    raise RpcError("remoteControl/enable rejected legacy params") from None
            return _await_connected(conn, state)
        try:
            return _call(conn, "remoteControl/disable", {"ephemeral": True})
        except _RejectedParamsError:
            raise RpcError("remoteControl/disable rejected ephemeral params") from None
    finally:
        conn.close()
