"""The managed Codex binary: where it is, what version it reports (SPEC §7.1-§7.3)."""

from __future__ import annotations

import os
import signal

from daemonkit.errors import ManagedCodexError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from daemonkit.paths import DaemonPaths

__all__ = [
    "canonical_bin",
    "ensure_managed_bin",
    "managed_bin_path",
    "missing_install_message",
    "normalize_version",
    "parse_version_output",
    "read_codex_version",
    "render_exit_status",
    "try_codex_version",
    "versions_equal",
]

VERSION_TIMEOUT_S = 5.0


def managed_bin_path(paths: DaemonPaths) -> str:
    """`current/bin/codex` if it is a file, else `current/codex` (also the missing path).

    The tarball layout wins when both exist because the Rust daemon reports it, and
    `managedCodexPath` must agree with Rust's (SPEC §9); the dedicated root has only
    `current/bin/codex`.
    """
    candidates = paths.managed_bin_candidates
    for candidate in reversed(candidates):
        if os.path.isfile(candidate):
            return candidate
    return candidates[0]


def missing_install_message(path: str) -> str:
    return (
        f"managed standalone Codex install not found at {path}; install Codex first\n"
        "\n"
        "Install it with:\n"
        "  codex-daemon install\n"
        "or with the standalone installer:\n"
        "  curl -fsSL https://chatgpt.com/codex/install.sh | sh\n"
        "Then rerun the command you just tried."
    )


def ensure_managed_bin(paths: DaemonPaths) -> str:
    """Return the managed binary's path, or raise the missing-install error."""
    path = managed_bin_path(paths)
    if not os.path.isfile(path):
        raise ManagedCodexError(missing_install_message(path))
    return path


def canonical_bin(path: str) -> str:
    """Resolve symlinks, pinning the release a spawn uses (SPEC §4.7)."""
    try:
        resolved = os.path.realpath(path, strict=True)
    except OSError as exc:
        raise ManagedCodexError(f"failed to resolve managed Codex binary {path}") from exc
    return resolved


def render_exit_status(returncode: int) -> str:
    """Render a status as Rust's ExitStatus does: ``exit status: 3``, ``signal: 9 (SIGKILL)``."""
    if returncode >= 0:
        return f"exit status: {returncode}"
    number = -returncode
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"signal: {number}"
    return f"signal: {number} ({name})"


def parse_version_output(stdout: bytes, path: str) -> str:
    """``codex-cli 0.169.0`` -> ``0.169.0``: the second whitespace token."""
    try:
        text = stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise ManagedCodexError(f"managed Codex version was not utf-8: {path}") from None
    tokens = text.split()
    if len(tokens) < 2:
        raise ManagedCodexError("managed Codex version output was malformed")
    return tokens[1]


def read_codex_version(path: str, env: Mapping[str, str] | None = None) -> str:
    """Run ``<path> --version`` (5 s) and return the version it reports."""
    # subprocess costs more start-up time than the rest of `version`; with the version
    # cache warm, most commands never get here.
    import subprocess  # noqa: PLC0415

    try:
        result = subprocess.run(
            [path, "--version"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=None if env is None else dict(env),
            timeout=VERSION_TIMEOUT_S,
            check=False,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        raise ManagedCodexError.version_timed_out(path) from None
    except OSError as exc:
        raise ManagedCodexError.version_not_run(path) from exc
    if result.returncode != 0:
        raise ManagedCodexError.version_exited(path, render_exit_status(result.returncode))
    return parse_version_output(result.stdout, path)


def try_codex_version(path: str, env: Mapping[str, str] | None = None) -> str | None:
    """Best-effort version for outputs: None when missing or failing, never an error."""
    if not os.path.isfile(path):
        return None
    try:
        return read_codex_version(path, env)
    except ManagedCodexError:
        # managedCodexVersion is informational (SPEC §2.3); the command's own work
        # decides success, not this.
        return None


def normalize_version(version: str) -> str:
    """Strip a leading ``rust-v`` or ``v``: tags and --version output spell it differently."""
    for prefix in ("rust-v", "v"):
        if version.startswith(prefix):
            return version[len(prefix) :]
    return version


def versions_equal(left: str, right: str) -> bool:
    """Equal as strings after normalisation, or as PEP 440 versions (SPEC §7.2).

    Formatting differences must never cause restart loops (``v1.0.65`` vs ``1.0.65``).
    """
    a, b = normalize_version(left), normalize_version(right)
    if a == b:
        return True
    # packaging is imported only here: the CLI's hot paths compare nothing.
    from packaging.version import InvalidVersion, Version  # noqa: PLC0415

    try:
        return Version(a) == Version(b)
    except (InvalidVersion, ValueError):  # ValueError: a component past int's digit limit
        return False
