"""A cache of what is slow to learn about the managed binary, keyed by the file's identity.

Every lifecycle output reports ``managedCodexVersion``; running a 300 MB binary for it
on each command costs more than the rest of ``version``, and digesting it for the
record's ``executableIdentity`` costs about 0.2 s of CPU on each start. Both answers
are cached in ``managed-codex-cache.json`` (in ``DaemonPaths.kit_dir``) against the
canonical path and the file's device, inode, size, mtime and ctime: replacing or
rewriting the binary changes at least one of them, and an answer is never returned for
a different file.
"""

from __future__ import annotations

import json
import os

from daemonkit.files import read_state_file, write_atomic
from daemonkit.managed import try_codex_version
from daemonkit.paths import LEGACY_BINARY_CACHE_NAME

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["cached_codex_version", "file_key", "read_entry", "write_entry"]

CACHE_LIMIT = 4096


def file_key(path: str) -> list[object] | None:
    """The canonical path and the identity of the file it names, or None if missing."""
    try:
        canonical = os.path.realpath(path, strict=True)
        info = os.stat(canonical)
    except OSError:
        return None
    return [canonical, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def _read_cache(cache_path: str) -> bytes | None:
    raw = read_state_file(cache_path, CACHE_LIMIT)
    if raw is not None:
        return raw
    # A kit upgraded in place keeps the cache its older self wrote under the old name
    # until the first write under the new one; the old file is never written again.
    legacy = os.path.join(os.path.dirname(cache_path), LEGACY_BINARY_CACHE_NAME)
    return read_state_file(legacy, CACHE_LIMIT)


def read_entry(cache_path: str, key: list[object]) -> dict[str, object]:
    """The cached facts for ``key``; empty when the cache is about another file."""
    try:
        raw = _read_cache(cache_path)
        entry = json.loads(raw.decode("utf-8")) if raw else None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return {}  # a cache that cannot be read is a miss, never an error
    if isinstance(entry, dict) and entry.get("identity") == key:
        return entry
    return {}


def write_entry(cache_path: str, key: list[object], entry: dict[str, object]) -> None:
    if not os.path.isdir(os.path.dirname(cache_path)):
        return
    data = json.dumps({**entry, "identity": key}).encode("utf-8")
    try:
        # A per-process temp name: `version` holds no lock, so writers may race;
        # the last rename wins and every candidate is a complete, correct entry.
        write_atomic(cache_path, f"{cache_path}.{os.getpid()}.tmp", data, durable=False)
    except OSError:
        pass  # the next command will try again


def cached_codex_version(
    path: str, env: Mapping[str, str], cache_path: str, *, may_write: bool
) -> str | None:
    """``try_codex_version`` with the cache; ``may_write=False`` for read-only commands."""
    key = file_key(path)
    if key is None:
        return None
    entry = read_entry(cache_path, key)
    cached = entry.get("version")
    if isinstance(cached, str):
        return cached
    version = try_codex_version(path, env)
    if version is not None and may_write:
        write_entry(cache_path, key, {**entry, "version": version})
    return version
