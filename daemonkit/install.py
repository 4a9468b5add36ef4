"""Installing Codex releases: npm and script channels, verification, the `current` flip.

Layout (SPEC §7.4)::

    <P>/releases/<version>-<target>/{codex -> bin/codex, bin/codex, ...}
    <P>/releases/.staging.<random>/     during an npm install; removed after
    <P>/current  -> <P>/releases/<release>   absolute symlink, flipped atomically
    <P>/previous -> <P>/releases/<release>   the rollback target
    <P>/install.lock                          held for a whole install

A candidate becomes ``current`` only after its own ``--version`` proved it runs.
"""

from __future__ import annotations

import collections
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading

from daemonkit.errors import InstallError, ManagedCodexError, VerificationError
from daemonkit.files import fsync_dir, make_private_dirs
from daemonkit.hooks import crash_point
from daemonkit.locks import held_lock
from daemonkit.managed import read_codex_version, render_exit_status, versions_equal
from daemonkit.pidfile import Running, read_pid_state
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import IO, Final

    from daemonkit.paths import DaemonPaths

__all__ = ["InstallResult", "flip_symlink", "install_npm", "install_script", "read_link"]

INSTALL_LOCK_TIMEOUT_S = 15 * 60.0
INSTALL_RUN_TIMEOUT_S = 15 * 60.0
SCRIPT_FETCH_TIMEOUT_S = 60.0
SCRIPT_MAX_BYTES = 1 << 20
NPM_PACKAGE = "@openai/codex"
STDERR_TAIL_LINES = 20
_RELEASE_NAME = re.compile(
    r"^[0-9]+\.[0-9]+\.[0-9]+[0-9A-Za-z.+-]*-(?:x86_64|aarch64)-"
    r"(?:unknown-linux-(?:musl|gnu)|apple-darwin)$"
)
KEEP_NEWEST = 2


class InstallResult(Value):
    __slots__ = ("changed", "previous", "release", "version")

    def __init__(self, *, release: str, version: str, previous: str | None, changed: bool) -> None:
        self.release: Final = release
        self.version: Final = version
        self.previous: Final = previous
        self.changed: Final = changed  # False when `current` already pointed at the release


def host_targets() -> list[str]:
    """Rust target triples this host runs, most preferred first."""
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    if sys.platform == "darwin":
        return [f"{arch}-apple-darwin"]
    return [f"{arch}-unknown-linux-musl", f"{arch}-unknown-linux-gnu"]


def read_link(path: str) -> str | None:
    """The absolute target of the symlink ``path``, or None if it is not one."""
    try:
        target = os.readlink(path)
    except OSError:
        return None
    return os.path.normpath(os.path.join(os.path.dirname(path), target))


def flip_symlink(link: str, target: str) -> None:
    """Point ``link`` at ``target`` atomically: a new link renamed over the old one."""
    tmp = f"{link}.tmp.{os.getpid()}"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(os.path.dirname(link))


def _ensure_package_root(paths: DaemonPaths) -> None:
    try:
        make_private_dirs(paths.releases)
    except OSError as exc:
        raise InstallError(f"failed to create package directory {paths.releases}") from exc


def _remove_staging_leftovers(paths: DaemonPaths) -> None:
    for name in os.listdir(paths.releases):
        if name.startswith(".staging."):
            shutil.rmtree(os.path.join(paths.releases, name), ignore_errors=True)


def _release_binary(release: str) -> str | None:
    for candidate in (os.path.join(release, "codex"), os.path.join(release, "bin", "codex")):
        if os.path.isfile(candidate):
            return candidate
    return None


def _verify(release: str, env: Mapping[str, str], expected: str | None) -> str:
    """Run the candidate's own ``--version``; a failure names the release."""
    binary = _release_binary(release)
    if binary is None:
        raise VerificationError(
            f"installed Codex {release} failed verification", release
        ) from FileNotFoundError(2, "No such file or directory")
    try:
        got = read_codex_version(binary, env)
    except ManagedCodexError as exc:
        raise VerificationError(f"installed Codex {binary} failed verification", release) from exc
    if expected is not None and not versions_equal(got, expected):
        raise VerificationError(
            f"staged Codex {binary} reported version {got}, expected {expected}", release
        )
    return got


def _run_streaming(
    argv: list[str], *, env: Mapping[str, str], cwd: str, stdin: bytes | None, sink: IO[str]
) -> tuple[int, list[str]]:
    """Run a child whose output goes to ``sink`` (never our stdout); keep its last lines.

    The child is killed when it outlives the install run timeout.
    """
    process = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env),
        cwd=cwd,
    )
    timer = threading.Timer(INSTALL_RUN_TIMEOUT_S, process.kill)
    timer.start()
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    try:
        if stdin is not None and process.stdin is not None:
            process.stdin.write(stdin)
            process.stdin.close()
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            tail.append(line)
            sink.write(line + "\n")
            sink.flush()
        returncode = process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    return returncode, list(tail)


def _npm_payload(staging: str, version: str) -> tuple[str, str]:
    scope = os.path.join(staging, "npm", "node_modules", "@openai")
    for target in host_targets():
        for name in sorted(os.listdir(scope)):
            if not name.startswith("codex-"):
                continue
            payload = os.path.join(scope, name, "vendor", target)
            if _release_binary(payload) is not None:
                return payload, target
    raise InstallError(
        f"npm package {NPM_PACKAGE}@{version} has no Codex binary for {host_targets()[0]}"
    )


def _finish(paths: DaemonPaths, release: str, version: str, before: str | None) -> InstallResult:
    """Make ``release`` current (if it is not already) and prune old releases."""
    previous = read_link(paths.previous)
    if before == release:
        return InstallResult(release=release, version=version, previous=previous, changed=False)
    # `previous` first: a crash between the two flips then leaves previous == current
    # (harmless) instead of a new `current` with no rollback target.
    if before is not None:
        flip_symlink(paths.previous, before)
        previous = before
    flip_symlink(paths.current, release)
    crash_point("after-flip")
    prune_releases(paths)
    return InstallResult(release=release, version=version, previous=previous, changed=True)


def install_npm(
    paths: DaemonPaths, env: Mapping[str, str], version: str | None, sink: IO[str]
) -> InstallResult:
    """Install ``@openai/codex@<version or latest>`` from the npm registry (SPEC §7.7)."""
    npm = shutil.which("npm", path=env.get("PATH"))
    if npm is None:
        raise InstallError("npm not found on PATH; install Node.js or use the script channel")
    spec_version = version or "latest"
    _ensure_package_root(paths)
    with held_lock(
        paths.install_lock,
        INSTALL_LOCK_TIMEOUT_S,
        f"timed out waiting for install lock {paths.install_lock}",
        f"failed to open install lock {paths.install_lock}",
    ):
        _remove_staging_leftovers(paths)
        before = read_link(paths.current)
        staging = tempfile.mkdtemp(prefix=".staging.", dir=paths.releases)
        try:
            argv = [
                npm, "install", "--prefix", os.path.join(staging, "npm"), "--no-save",
                "--no-package-lock", "--no-audit", "--no-fund", "--ignore-scripts",
                f"{NPM_PACKAGE}@{spec_version}",
            ]  # fmt: skip
            code, tail = _run_streaming(argv, env=env, cwd=staging, stdin=None, sink=sink)
            if code != 0:
                raise InstallError(
                    f"npm install of {NPM_PACKAGE}@{spec_version} failed with status "
                    f"{render_exit_status(code)}"
                ) from InstallError("\n".join(tail) or "npm printed nothing")
            package_json = os.path.join(staging, "npm", "node_modules", "@openai", "codex")
            with open(os.path.join(package_json, "package.json"), "rb") as f:
                installed = str(json.load(f)["version"])
            payload, target = _npm_payload(staging, installed)
            crash_point("after-stage")
            release = os.path.join(paths.releases, f"{installed}-{target}")
            if not os.path.isdir(release):
                os.rename(payload, release)
            alias = os.path.join(release, "codex")
            if not os.path.lexists(alias) and os.path.isfile(os.path.join(release, "bin", "codex")):
                os.symlink(os.path.join("bin", "codex"), alias)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        verified = _verify(release, env, installed)
        return _finish(paths, release, verified, before)


def fetch_script(url: str) -> bytes:
    """GET the installer script (60 s, at most 1 MiB) with the stdlib client."""
    import http.client  # noqa: PLC0415 - urllib.request is slow to import; install only
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    try:
        with urllib.request.urlopen(url, timeout=SCRIPT_FETCH_TIMEOUT_S) as response:  # noqa: S310 - scheme validated by settings
            status = getattr(response, "status", 200) or 200
            if not 200 <= status < 300:
                raise InstallError(f"standalone Codex updater request failed with status {status}")
            body: bytes = response.read(SCRIPT_MAX_BYTES + 1)
            # http.client returns a short body without complaint when the peer closes
            # before Content-Length; half a shell script must never reach /bin/sh.
            missing = getattr(response, "length", None)
            if len(body) <= SCRIPT_MAX_BYTES and isinstance(missing, int) and missing > 0:
                raise InstallError(
                    "failed to fetch standalone Codex updater: connection closed after "
                    f"{len(body)} bytes, {missing} more expected"
                )
    except urllib.error.HTTPError as exc:
        raise InstallError(
            f"standalone Codex updater request failed with status {exc.code}"
        ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InstallError(f"failed to fetch standalone Codex updater: {reason}") from None
    if len(body) > SCRIPT_MAX_BYTES:
        raise InstallError("failed to fetch standalone Codex updater: script larger than 1 MiB")
    return body


def install_script(
    paths: DaemonPaths, env: Mapping[str, str], url: str, cwd: str, sink: IO[str]
) -> InstallResult:
    """Run the standalone installer script with /bin/sh -s (SPEC §7.6)."""
    _ensure_package_root(paths)
    with held_lock(
        paths.install_lock,
        INSTALL_LOCK_TIMEOUT_S,
        f"timed out waiting for install lock {paths.install_lock}",
        f"failed to open install lock {paths.install_lock}",
    ):
        _remove_staging_leftovers(paths)
        before = read_link(paths.current)
        script = fetch_script(url)
        code, _ = _run_streaming(["/bin/sh", "-s"], env=env, cwd=cwd, stdin=script, sink=sink)
        if code != 0:
            _restore_current(paths, before)
            raise InstallError(
                f"standalone Codex updater exited with status {render_exit_status(code)}"
            )
        release = read_link(paths.current)
        if release is None:
            _restore_current(paths, before)
            raise InstallError(f"installed Codex {paths.current} failed verification")
        try:
            version = _verify(release, env, None)
        except InstallError:
            _restore_current(paths, before)
            raise
        if before is not None and before != release:
            flip_symlink(paths.previous, before)
        previous = read_link(paths.previous)
        return InstallResult(
            release=release, version=version, previous=previous, changed=before != release
        )


def _restore_current(paths: DaemonPaths, before: str | None) -> None:
    """Undo a script's flip of `current`: a candidate that failed is never current.

    ``before`` was read under the install lock, which is still held.
    """
    if before is not None and read_link(paths.current) != before:
        flip_symlink(paths.current, before)


def _in_use_releases(paths: DaemonPaths) -> set[str]:
    in_use: set[str] = set()
    try:
        state = read_pid_state(paths.app_server, may_write=False)
    except OSError:
        return in_use
    if isinstance(state, Running):
        try:
            exe = os.readlink(f"/proc/{state.record.pid}/exe")
        except OSError:
            return in_use
        rel = os.path.relpath(exe, paths.releases)
        if not rel.startswith(".."):
            in_use.add(os.path.join(paths.releases, rel.split(os.sep)[0]))
    return in_use


def prune_releases(paths: DaemonPaths) -> None:
    """Delete releases other than current, previous, in use, and the two newest (SPEC §7.8)."""
    keep = {read_link(paths.current), read_link(paths.previous), *_in_use_releases(paths)}
    candidates = [
        os.path.join(paths.releases, name)
        for name in os.listdir(paths.releases)
        if _RELEASE_NAME.match(name)
    ]
    candidates.sort(key=lambda path: os.lstat(path).st_mtime, reverse=True)
    keep.update(candidates[:KEEP_NEWEST])
    for path in candidates:
        if path not in keep:
            shutil.rmtree(path, ignore_errors=True)
