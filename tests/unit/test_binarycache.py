"""The managed binary's cache: keyed by the file's identity, and kept across the rename
of its file from ``managed-codex-version.json`` to ``managed-codex-cache.json``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from daemonkit.binarycache import cached_codex_version, file_key
from daemonkit.paths import BINARY_CACHE_NAME, LEGACY_BINARY_CACHE_NAME, DaemonPaths

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def binary(tmp_path: Path) -> str:
    """A managed binary whose --version says 2.0.0: a cached answer differs from it."""
    path = tmp_path / "codex"
    path.write_text("#!/bin/sh\necho 'codex-cli 2.0.0'\n")
    path.chmod(0o755)
    return str(path)


def write_cache(path: Path, binary: str, version: str) -> None:
    key = file_key(binary)
    assert key is not None
    path.write_text(json.dumps({"version": version, "identity": key}))


def test_the_cache_is_named_for_what_it_holds(tmp_path: Path) -> None:
    paths = DaemonPaths(str(tmp_path))
    assert paths.binary_cache == f"{paths.kit_dir}/{BINARY_CACHE_NAME}"
    assert BINARY_CACHE_NAME == "managed-codex-cache.json"


def test_an_old_named_cache_is_read_and_only_the_new_name_written(
    tmp_path: Path, binary: str
) -> None:
    legacy = tmp_path / LEGACY_BINARY_CACHE_NAME
    write_cache(legacy, binary, "1.0.0")
    before = legacy.read_bytes()
    cache = tmp_path / BINARY_CACHE_NAME
    assert cached_codex_version(binary, {}, str(cache), may_write=True) == "1.0.0"
    assert not cache.exists(), "a hit writes nothing"

    # A miss (the binary was rewritten) runs it and writes the new name only.
    with open(binary, "a") as f:
        f.write("# rebuilt\n")
    assert cached_codex_version(binary, {}, str(cache), may_write=True) == "2.0.0"
    assert json.loads(cache.read_bytes())["version"] == "2.0.0"
    assert legacy.read_bytes() == before


def test_the_new_name_wins_over_the_old_one(tmp_path: Path, binary: str) -> None:
    write_cache(tmp_path / LEGACY_BINARY_CACHE_NAME, binary, "1.0.0")
    write_cache(tmp_path / BINARY_CACHE_NAME, binary, "1.5.0")
    cache = str(tmp_path / BINARY_CACHE_NAME)
    assert cached_codex_version(binary, {}, cache, may_write=False) == "1.5.0"


def test_a_prepared_binary_starts_from_the_cache(tmp_path: Path, binary: str) -> None:
    """What the updater stores before a restart is what the restart's spawn reads: the
    version without running the binary, and its identity without hashing it."""
    from daemonkit.digest import (  # noqa: PLC0415 - blake3 is an optional extra
        IdentityInBackground,
        executable_identity,
        prepare_cache,
    )

    cache = str(tmp_path / BINARY_CACHE_NAME)
    prepare_cache(binary, cache, "3.0.0")  # not what the binary says: proves no run
    assert cached_codex_version(binary, {}, cache, may_write=False) == "3.0.0"
    expected = executable_identity(binary)
    if expected is None:
        pytest.skip("blake3 is not installed")
    stored = json.loads((tmp_path / BINARY_CACHE_NAME).read_text())
    assert stored["digest"] == bytes(expected.digest).hex()
    assert IdentityInBackground(binary, cache).result() == expected
    # Prepared again with the same answers: nothing to write.
    before = (tmp_path / BINARY_CACHE_NAME).stat().st_mtime_ns
    prepare_cache(binary, cache, "3.0.0")
    assert (tmp_path / BINARY_CACHE_NAME).stat().st_mtime_ns == before
