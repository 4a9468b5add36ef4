"""A cache of the managed binary's ``--version``, keyed by the file's identity.

Every lifecycle output reports ``managedCodexVersion``; running a 300 MB binary for it
on each command costs more than the rest of ``version``. The answer is cached in
``<S>/managed-codex-version.json`` against the canonical path and the file's device,
inode, size, mtime and ctime: replacing or rewriting the binary changes at least one
of them, and a stale answer is never returned for a different file.
"""

from __future__ import annotations

import json
import os

from daemonkit.files import read_state_file, write_atomic
from daemonkit.managed import try_codex_version

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["cached_codex_version"]

CACHE_LIMIT = 4096


def _identity(path: str) -> list[object] | None:
    try:
        canonical = os.path.realpath(path, strict=True)
        info = os.stat(canonical)
    except OSError:
        return None
    return [canonical, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def _lookup(cache_path: str, identity: list[object]) -> str | None:
    try:
        raw = read_state_file(cache_path, CACHE_LIMIT)
        entry = json.loads(raw.decode("utf-8")) if raw else None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None  # a cache that cannot be read is a miss, never an error
    if isinstance(entry, dict) and entry.get("identity") == identity:
        version = entry.get("version")
        return version if isinstance(version, str) else None
    return None


def cached_codex_version(
    path: str, env: Mapping[str, str], cache_path: str, *, may_write: bool
) -> str | None:
    """``try_codex_version`` with the cache; ``may_write=False`` for read-only commands."""
    identity = _identity(path)
    if identity is None:
        return None
    cached = _lookup(cache_path, identity)
    if cached is not None:
        return cached
    version = try_codex_version(path, env)
    if version is not None and may_write and os.path.isdir(os.path.dirname(cache_path)):
        data = json.dumps({"identity": identity, "version": version}).encode("utf-8")
        try:
            # A per-process temp name: `version` holds no lock, so writers may race;
            # the last rename wins and every candidate is a complete, correct entry.
            write_atomic(cache_path, f"{cache_path}.{os.getpid()}.tmp", data, durable=False)
        except OSError:
            pass  # the next command will try again
    return version
