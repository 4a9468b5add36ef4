"""SO_PEERCRED of a Unix socket: who is at the other end (SPEC §8.3, §14.12).

The updater's request socket refuses another user's requests with it, and ``adopt``
learns the pid of the server that listens on the control socket from it.
"""

from __future__ import annotations

import os
import socket

from daemonkit.probe import PeerCredentials, peer_credentials


def test_a_socket_pair_names_this_process() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        expected = PeerCredentials(pid=os.getpid(), uid=os.geteuid(), gid=os.getegid())
        assert peer_credentials(left) == expected
        assert peer_credentials(right) == expected


def test_a_closed_socket_has_no_credentials() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    right.close()
    left.close()
    assert peer_credentials(left) is None
