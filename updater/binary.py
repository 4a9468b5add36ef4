"""The managed binary as the updater sees it: its version (through ``sh``) and its digest.

SPEC §7.2 has the updater run ``<bin> --version`` with ``sh`` (``_tty_out=False``, 5 s)
rather than ``subprocess``; §8.5 compares content digests, never mtimes: BLAKE3 when
the optional ``blake3`` package is installed, SHA-256 otherwise.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
from typing import TYPE_CHECKING

from daemonkit.errors import ManagedCodexError
from daemonkit.managed import parse_version_output, render_exit_status

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import ModuleType

__all__ = ["digest_kind", "file_digest", "read_version_with_sh"]

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
        raise ManagedCodexError(f"timed out running managed Codex binary {path}") from None
    except sh.ErrorReturnCode as exc:
        status = render_exit_status(int(exc.exit_code))
        raise ManagedCodexError(
            f"managed Codex binary {path} exited with status {status}"
        ) from None
    except (sh.CommandNotFound, sh.ForkException, OSError) as exc:
        raise ManagedCodexError(f"failed to invoke managed Codex binary {path}") from exc
    return parse_version_output(out.getvalue(), path)


def _blake3_module() -> ModuleType | None:
    # Optional extra: imported by name so type checking does not depend on whether
    # the package (and its stubs) is installed.
    try:
        return importlib.import_module("blake3")
    except ImportError:
        return None


def digest_kind() -> str:
    return "sha256" if _blake3_module() is None else "blake3"


def file_digest(path: str, kind: str) -> str:
    """Hex content digest of ``path``: BLAKE3 when installed, else SHA-256 (SPEC §8.5)."""
    with open(path, "rb") as f:
        module = _blake3_module() if kind == "blake3" else None
        if module is not None:
            hasher = module.blake3()
            while chunk := f.read(1 << 20):
                hasher.update(chunk)
            return str(hasher.hexdigest())
        return hashlib.file_digest(f, "sha256").hexdigest()
