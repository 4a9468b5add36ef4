"""Content digests of the managed binary: BLAKE3 when the optional package is installed.

The app-server's pid record carries ``executableIdentity`` (SPEC §4.2), BLAKE3 of the
canonical executable's bytes and of its path, as the Rust daemon writes it; without
the ``blake3`` package the key is omitted. The updater compares content digests to
decide whether a running server is already on the managed binary (SPEC §8.5): BLAKE3
when installed, SHA-256 otherwise, and only digests of one kind with each other.
"""

from __future__ import annotations

import importlib
import threading

from daemonkit.binarycache import file_key, read_entry, write_entry
from daemonkit.pidrecord import ExecutableIdentity

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "IdentityInBackground",
    "digest_kind",
    "executable_identity",
    "file_digest",
    "prepare_cache",
]


def _blake3() -> ModuleType | None:
    # Optional extra: imported by name so that type checking does not depend on
    # whether the package (and its stubs) is installed.
    try:
        return importlib.import_module("blake3")
    except ImportError:
        return None


def digest_kind() -> str:
    return "sha256" if _blake3() is None else "blake3"


def _blake3_of_file(module: ModuleType, path: str) -> bytes:
    # The binary (about 300 MB for Codex 0.169.0) is hashed memory-mapped on every
    # core, as upstream does.
    hasher = module.blake3(max_threads=module.blake3.AUTO)
    hasher.update_mmap(path)
    return bytes(hasher.digest())


def file_digest(path: str, kind: str) -> str:
    """Hex content digest of ``path`` of the given kind (SPEC §8.5)."""
    module = _blake3() if kind == "blake3" else None
    if module is not None:
        return _blake3_of_file(module, path).hex()
    import hashlib  # noqa: PLC0415 - loads OpenSSL; only digest paths need it

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def executable_identity(canonical: str) -> ExecutableIdentity | None:
    """BLAKE3 of the executable's bytes and of its path, or None without blake3.

    An unreadable binary raises ``OSError``; the caller then omits the key (SPEC
    §4.6 step 5).
    """
    module = _blake3()
    if module is None:
        return None
    path = module.blake3(canonical.encode("utf-8", "surrogateescape"))
    return ExecutableIdentity(
        digest=tuple(_blake3_of_file(module, canonical)), path_digest=tuple(path.digest())
    )


def _cached(entry: dict[str, object]) -> ExecutableIdentity | None:
    digests = []
    for name in ("digest", "pathDigest"):
        value = entry.get(name)
        if not isinstance(value, str):
            return None
        try:
            digest = bytes.fromhex(value)
        except ValueError:
            return None
        if len(digest) != 32:  # BLAKE3 digests are 32 bytes
            return None
        digests.append(tuple(digest))
    return ExecutableIdentity(digest=digests[0], path_digest=digests[1])


class IdentityInBackground:
    """The binary's ``executableIdentity``, looked up or computed in a thread.

    On a cache miss, hashing the binary takes about as long as the server takes to
    get ready; in a thread the two overlap as far as the cores allow. The thread only
    reads: ``result()``, in the caller's thread, stores a fresh answer in the cache
    (see binarycache), so a command that exits while the daemon thread still hashes
    never leaves a half-written file behind. Callers join it before they fork again.
    """

    def __init__(self, canonical: str, cache_path: str) -> None:
        self._canonical = canonical
        self._cache_path = cache_path
        # Taken before the binary is read: should the file change while it is
        # hashed, the answer is stored under a key the file no longer has.
        self._key = file_key(canonical)
        self._entry: dict[str, object] = {}
        self._identity: ExecutableIdentity | None = None
        self._fresh = False
        self._thread: threading.Thread | None = threading.Thread(
            target=self._run, name="executable-identity", daemon=True
        )
        try:
            self._thread.start()
        except RuntimeError:  # out of threads: the key is optional, the start is not
            self._thread = None

    def _run(self) -> None:
        # The key is optional, and a thread must never print a traceback over the
        # command's output: any failure (an unreadable binary, no descriptors left
        # to load blake3 with) only omits it.
        try:
            self._look_up_or_hash()
        except Exception:
            self._identity = None
            self._fresh = False

    def _look_up_or_hash(self) -> None:
        if self._key is None or _blake3() is None:
            return
        self._entry = read_entry(self._cache_path, self._key)
        self._identity = _cached(self._entry)
        if self._identity is None:
            self._identity = executable_identity(self._canonical)
            self._fresh = self._identity is not None

    def result(self) -> ExecutableIdentity | None:
        if self._thread is None:
            return None
        self._thread.join()
        if self._fresh and self._identity is not None and self._key is not None:
            digests = {
                "digest": bytes(self._identity.digest).hex(),
                "pathDigest": bytes(self._identity.path_digest).hex(),
            }
            write_entry(self._cache_path, self._key, {**self._entry, **digests})
        return self._identity


def prepare_cache(canonical: str, cache_path: str, version: str) -> None:
    """Store ``version`` and the ``executableIdentity`` of a binary about to replace
    the running server, so that the restart, whose gap clients see, finds both in the
    cache instead of running ``--version`` and hashing ~300 MB (SPEC §8.6).

    ``version`` is what ``<canonical> --version`` reported to the caller. Best effort:
    a binary that cannot be read, or a cache that cannot be written, leaves the
    restart to do the work as before.
    """
    key = file_key(canonical)
    if key is None:
        return
    entry = read_entry(cache_path, key)
    changes: dict[str, object] = {}
    if entry.get("version") != version:
        changes["version"] = version
    if _cached(entry) is None:
        try:
            identity = executable_identity(canonical)
        except OSError:
            identity = None
        if identity is not None:
            changes["digest"] = bytes(identity.digest).hex()
            changes["pathDigest"] = bytes(identity.path_digest).hex()
    if changes:
        write_entry(cache_path, key, {**entry, **changes})
