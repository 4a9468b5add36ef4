"""The managed binary's version as the updater reads it: through ``sh`` (SPEC §7.2).

The updater runs ``<bin> --version`` with ``sh`` (``_tty_out=False``, 5 s) rather than
``subprocess``; its content digests come from ``daemonkit.digest``.
"""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING

from daemonkit.errors import ManagedCodexError
from daemonkit.managed import parse_version_output, render_exit_status

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["read_version_with_sh"]

VERSION_TIMEOUT_S = 5.0


def read_version_with_sh(path: str, env: Mapping[str, str]) -> str:
    """``<path> --version`` through ``sh`` (5 s, no tty, stdin empty, stderr discarded)."""
    import sh  # noqa: PLC0415 - sh is the updater's dependency only, loaded on first use

    out = io.BytesIO()
    try:
        sh.Command(path)(
            "--version",
            _tty_out=False,
            _in="",
            _out=out,
            _err=os.devnull,
            _env=dict(env),
            _timeout=VERSION_TIMEOUT_S,
        )
    except sh.TimeoutException:
        raise ManagedCodexError.version_timed_out(path) from None
    except sh.ErrorReturnCode as exc:
        status = render_exit_status(int(exc.exit_code))
        raise ManagedCodexError.version_exited(path, status) from None
    except (sh.CommandNotFound, sh.ForkException, OSError) as exc:
        raise ManagedCodexError.version_not_run(path) from exc
    return parse_version_output(out.getvalue(), path)
