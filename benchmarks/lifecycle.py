"""Wall time of whole `codex-daemon` CLI processes (SPEC §11), medians and p90 in ms.

Usage: .venv/bin/python benchmarks/lifecycle.py [--runs 11] [--json PATH] [--no-real] [--no-rust]

Each run does, per backend and interleaved, start (cold -> ready) -> version (running)
-> restart -> stop (running server that exits on SIGTERM), plus two baselines: the
interpreter's own start-up (`python -c pass`) and `python -m daemonkit --help`.
Backends, each in its own fresh /tmp/dk-* CODEX_HOME:
- fake: the kit managing the test suite's stdlib fake codex;
- real: the kit managing the real Codex 0.169.0 (installed by `bash .ci/run`);
- rust: Codex 0.169.0's own `codex app-server daemon` managing the same binary, the
  reference of SPEC §11 (its first start installs its package and its updater: one
  untimed warm-up run absorbs that, so later starts find the updater running).
Everything this script starts carries a per-home environment mark and is stopped by
pid on exit, also on Ctrl-C or SIGTERM (tests.harness.Home.close).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemonkit import __version__  # noqa: E402
from tests.harness import Home, real_codex_binary  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

OPERATIONS = ("start", "version", "restart", "stop")
EXPECTED = {"start": "started", "version": "running", "restart": "restarted", "stop": "stopped"}
LABELS = {
    "start": "start (cold -> ready)",
    "version": "version (running)",
    "restart": "restart",
    "stop": "stop (running)",
}
# SPEC §11's Rust reference medians on a 2-vCPU VM, for orientation only.
RUST_REFERENCE_MS = {"version": 22, "start": 156, "stop": 65, "restart": 211}
RUN_TIMEOUT_S = 60
DESCRIPTION = "Wall time of whole codex-daemon CLI processes (SPEC §11)."


class BenchmarkError(Exception):
    pass


class Backend:
    """One CODEX_HOME and the argv prefix of the CLI that manages it."""

    def __init__(self, name: str, home: Home, cli: list[str]) -> None:
        self.name = name
        self.home = home
        self.cli = cli
        self.env = home.env()


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def timed(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run ``argv`` to completion; return (wall ms, stdout). Fails on a non-zero exit."""
    start = time.perf_counter()
    done = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    elapsed_ms = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace").strip()
        raise BenchmarkError(f"{' '.join(argv)} exited with {done.returncode}:\n{stderr}")
    return elapsed_ms, done.stdout.decode("utf-8", "replace")


def run_operation(backend: Backend, operation: str) -> float:
    elapsed_ms, stdout = timed([*backend.cli, operation], backend.env)
    # The Rust daemon prints progress lines on stderr; stdout is one JSON line for both.
    status = json.loads(stdout.splitlines()[-1])["status"]
    if status != EXPECTED[operation]:
        raise BenchmarkError(f"{backend.name} {operation}: status {status!r}")
    return elapsed_ms


def make_backends(backends: list[Backend], use_real: bool, use_rust: bool) -> None:
    """Fill ``backends`` as homes are created, so that an interrupt still cleans them up."""
    kit = [sys.executable, "-m", "daemonkit"]
    fake = Home()
    backends.append(Backend("fake", fake, kit))
    fake.install_fake("1.0.0")
    binary = real_codex_binary()
    if binary is None and (use_real or use_rust):
        print("real Codex not installed (bash .ci/run installs it): fake only", file=sys.stderr)
        return
    if use_real:
        real = Home()
        backends.append(Backend("real", real, kit))
        real.install_real()
    if use_rust and binary is not None:
        rust = Home()
        backends.append(Backend("rust", rust, [str(binary), "app-server", "daemon"]))
        rust.install_real()


def socket_targets(home: Home) -> list[Path]:
    """Physical sockets the real Codex binds under /tmp/codex-daemon-<euid>/ (SPEC §9)."""
    state = home.path / "app-server-daemon"
    aliases = [
        home.path / "app-server-control" / "app-server-control.sock",
        state / "daemon-updater.sock",
        state / "app-server-updater.sock",
    ]
    shared = Path(f"/tmp/codex-daemon-{os.geteuid()}")
    targets = []
    for alias in aliases:
        try:
            target = Path(os.readlink(alias))
        except OSError:
            continue
        if target.parent == shared:
            targets.append(target)
    return targets


def close_all(backends: list[Backend]) -> None:
    """Stop by pid everything each home started, then remove the sockets left in /tmp."""
    for backend in backends:
        targets = socket_targets(backend.home)
        leaked = backend.home.close()
        if leaked:
            # The Rust daemon's updater outlives `stop` by design (SPEC §2.7).
            print(f"{backend.name}: stopped leftover pids {leaked}", file=sys.stderr)
        for target in targets:
            try:
                target.unlink()
            except OSError:
                pass


def summary(samples: list[float]) -> dict[str, object]:
    ordered = sorted(samples)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(p90, 2),
        "samples_ms": [round(value, 2) for value in samples],
    }


def benchmark(backends: list[Backend], runs: int, warmup: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"python -c pass": [], "python -m daemonkit --help": []}
    for backend in backends:
        for operation in OPERATIONS:
            samples[f"{backend.name} {operation}"] = []
    baseline_env = backends[0].env
    for index in range(warmup + runs):
        measured = index >= warmup
        pass_ms, _ = timed([sys.executable, "-c", "pass"], baseline_env)
        help_ms, _ = timed([sys.executable, "-m", "daemonkit", "--help"], baseline_env)
        if measured:
            samples["python -c pass"].append(pass_ms)
            samples["python -m daemonkit --help"].append(help_ms)
        # Rotate the backend order so no backend always runs right after another.
        shift = index % len(backends)
        for backend in backends[shift:] + backends[:shift]:
            for operation in OPERATIONS:
                elapsed_ms = run_operation(backend, operation)
                if measured:
                    samples[f"{backend.name} {operation}"].append(elapsed_ms)
        print(f"run {index + 1}/{warmup + runs}{'' if measured else ' (warm-up)'}", file=sys.stderr)
    return samples


def render(samples: dict[str, list[float]], names: list[str]) -> str:
    header = f"{'operation':<36}{'median ms':>11}{'p90 ms':>10}{'kit/rust':>10}{'§11 ref':>9}"
    lines = [header, "-" * len(header)]
    for row in ("python -c pass", "python -m daemonkit --help"):
        figures = summary(samples[row])
        lines.append(f"{row:<36}{figures['median_ms']:>11.1f}{figures['p90_ms']:>10.1f}")
    for name in names:
        for operation in OPERATIONS:
            figures = summary(samples[f"{name} {operation}"])
            ratio = ""
            if name == "real" and "rust" in names:
                rust = statistics.median(samples[f"rust {operation}"])
                ratio = f"{statistics.median(samples[f'real {operation}']) / rust:.2f}"
            reference = f"{RUST_REFERENCE_MS[operation]}" if name == "rust" else ""
            label = f"{name:<5} {LABELS[operation]}"
            lines.append(
                f"{label:<36}{figures['median_ms']:>11.1f}{figures['p90_ms']:>10.1f}"
                f"{ratio:>10}{reference:>9}"
            )
    return "\n".join(line.rstrip() for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--runs", type=int, default=11, help="measured runs (default 11)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--no-real", action="store_true", help="skip the kit + real Codex")
    parser.add_argument("--no-rust", action="store_true", help="skip Codex's own Rust daemon")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be >= 1 and --warmup >= 0")

    # SIGINT too: a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    backends: list[Backend] = []
    try:
        make_backends(backends, not args.no_real, not args.no_rust)
        samples = benchmark(backends, args.runs, args.warmup)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        # Block further interrupts while stopping what we started, by pid.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        close_all(backends)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})

    names = [backend.name for backend in backends]
    print(
        f"codex-daemonkit {__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, {args.runs} runs (+{args.warmup} warm-up)"
    )
    print(render(samples, names))
    if args.json:
        figures = {
            "cliVersion": __version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "runs": args.runs,
            "warmup": args.warmup,
            "results": {row: summary(values) for row, values in samples.items()},
        }
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
