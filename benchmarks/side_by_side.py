"""Kit versus the Rust `codex app-server daemon`, side by side on one real Codex binary.

Both manage the same pinned real Codex (npm `@openai/codex`), each in its own fresh
CODEX_HOME in the legacy standalone layout, with auto-update off so neither spawns an
updater. Runs alternate kit and Rust; each run is start (cold to ready), version
(running), restart, stop. Prints medians, p90 and the kit/Rust ratio per operation
(SPEC §11); the floors any Python CLI pays before its own code runs (interpreter,
console-script wrapper, the modules a command cannot do without), timed in the same
runs; the idle updater's CPU and memory. Writes JSON with --json PATH.

    python benchmarks/side_by_side.py [--runs 11] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness import REAL_CODEX_VERSION, TARGET, real_codex_binary  # noqa: E402

OPERATIONS = ("start", "version", "restart", "stop")


def ensure_real_codex() -> Path:
    """The pinned real Codex, installed from the npm registry into .ci-cache if missing."""
    binary = real_codex_binary()
    if binary is not None:
        return binary
    prefix = REPO / ".ci-cache" / f"codex-{REAL_CODEX_VERSION}" / "npm"
    print(f"installing @openai/codex@{REAL_CODEX_VERSION} into {prefix} ...", file=sys.stderr)
    subprocess.run(
        ["npm", "install", "--prefix", str(prefix), "--no-save", "--no-package-lock",
         "--no-audit", "--no-fund", "--ignore-scripts", f"@openai/codex@{REAL_CODEX_VERSION}"],
        check=True, stdout=sys.stderr,
    )  # fmt: skip
    binary = real_codex_binary()
    if binary is None:
        sys.exit("the npm install did not produce the Codex binary")
    return binary


def install_kit(into: Path) -> Path:
    """A fresh venv with the kit installed as users install it (`pip install '.[blake3]'`).

    The development venv's editable install adds an import hook that loads pathlib at
    every interpreter start (about 20 ms here), which no user pays; pip also compiles
    the installed modules, as a distro package does. The blake3 extra makes the kit
    digest the binary into its record as the Rust daemon does, so both do the same work.
    """
    print(f"installing the kit into {into} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(into)], check=True)
    subprocess.run(
        [str(into / "bin" / "pip"), "install", "--quiet", f"{REPO}[blake3]"],
        check=True,
        stdout=sys.stderr,
    )
    return into / "bin" / "codex-daemon"


def make_home(binary: Path) -> Path:
    home = Path(tempfile.mkdtemp(prefix="dk-bench-", dir="/tmp"))
    release = home / "packages" / "standalone" / "releases" / f"{REAL_CODEX_VERSION}-{TARGET}"
    (release / "bin").mkdir(parents=True)
    (release / "bin" / "codex").symlink_to(binary)
    (release / "codex").symlink_to("bin/codex")
    (home / "packages" / "standalone" / "current").symlink_to(release)
    state = home / "app-server-daemon"
    state.mkdir(mode=0o700)
    # Both off: the kit's updater also runs to supervise (SPEC §14.1), and Rust's
    # start spawns none with updates off.
    (state / "settings.json").write_text(
        '{"updater": {"autoUpdateEnabled": false}, "supervisor": {"restartOnExit": false}}'
    )
    # A launch artifact in <S> makes Rust 0.169.0 pick the legacy standalone layout
    # (SPEC §9), the one both daemons share.
    (state / "app-server.stderr.log").touch(mode=0o600)
    return home


class Runner:
    def __init__(self, name: str, argv_prefix: list[str], home: Path) -> None:
        self.name = name
        self.argv_prefix = argv_prefix
        self.home = home
        self.env = {**os.environ, "CODEX_HOME": str(home)}
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)

    def timed(self, operation: str) -> float:
        started = time.perf_counter()
        done = subprocess.run(
            [*self.argv_prefix, operation],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=self.env,
            check=False,
        )
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip()
            raise SystemExit(f"{self.name} {operation} failed: {message}")
        return elapsed

    def recorded_pid(self, name: str = "app-server.pid") -> int | None:
        try:
            return int(json.loads((self.home / "app-server-daemon" / name).read_bytes())["pid"])
        except (OSError, ValueError, KeyError):
            return None

    def kill_recorded(self) -> None:
        """SIGKILL what this home's records name: the server, and the updater's group."""
        for name, kill in (("app-server.pid", os.kill), ("app-server-updater.pid", os.killpg)):
            pid = self.recorded_pid(name)
            if pid is not None:
                try:
                    kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def median_p90(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered), p90


def _proc_cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def measure_idle_updater(kit_cli: Path, binary: Path, idle_s: float) -> dict[str, float]:
    """Start the kit with auto-update on; watch its updater idle; time its SIGTERM exit.

    The updater's first check is 5 minutes away, so the window is pure idling: any
    CPU it uses is a polling loop it must not have (SPEC §8.2, §11).
    """
    home = make_home(binary)
    (home / "app-server-daemon" / "settings.json").write_text("{}")
    runner = Runner("kit", [str(kit_cli)], home)
    try:
        runner.timed("start")
        record = home / "app-server-daemon" / "app-server-updater.pid"
        pid = int(json.loads(record.read_bytes())["pid"])
        time.sleep(1.0)  # let it finish importing and reach its select()
        ticks_before = _proc_cpu_ticks(pid)
        time.sleep(idle_s)
        cpu_s = (_proc_cpu_ticks(pid) - ticks_before) / os.sysconf("SC_CLK_TCK")
        rss_mib = _proc_rss_kib(pid) / 1024
        started = time.perf_counter()
        os.kill(pid, signal.SIGTERM)
        while os.path.exists(f"/proc/{pid}") and _proc_state(pid) not in ("Z", "X"):
            time.sleep(0.001)
        exit_ms = (time.perf_counter() - started) * 1000
        runner.timed("stop")
    finally:
        runner.kill_recorded()
        shutil.rmtree(home, ignore_errors=True)
    return {"idleSeconds": idle_s, "cpuSeconds": cpu_s, "rssMiB": rss_mib, "sigtermExitMs": exit_ms}


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except OSError:
        return "X"


# What any Python CLI pays before its own code runs, timed in the same runs: the
# interpreter; the console script pip writes (it imports re) plus json, which every
# command needs; and the probe's socket and hashlib, which `version` needs.
FLOORS = {
    "interpreter": "pass",
    "wrapper+json": "import re, json",
    "version floor": "import re, json, socket, hashlib, base64",
}


def time_python(python: Path, code: str) -> float:
    started = time.perf_counter()
    subprocess.run([str(python), "-c", code], check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument(
        "--idle", type=float, default=30.0, help="seconds to watch the idle updater (default 30)"
    )
    args = parser.parse_args()
    binary = ensure_real_codex()
    venv = Path(tempfile.mkdtemp(prefix="dk-bench-venv-", dir="/tmp"))
    kit_cli = install_kit(venv)
    kit = Runner("kit", [str(kit_cli)], make_home(binary))
    rust = Runner("rust", [str(binary), "app-server", "daemon"], make_home(binary))
    samples: dict[str, dict[str, list[float]]] = {
        r.name: {op: [] for op in OPERATIONS} for r in (kit, rust)
    }
    floors: dict[str, list[float]] = {name: [] for name in FLOORS}
    try:
        for warmup in (kit, rust):  # first starts initialise each home's Codex state
            warmup.timed("start")
            warmup.timed("stop")
        for run in range(args.runs):
            order = (kit, rust) if run % 2 == 0 else (rust, kit)
            for runner in order:
                for operation in OPERATIONS:
                    samples[runner.name][operation].append(runner.timed(operation))
            for name, code in FLOORS.items():
                floors[name].append(time_python(venv / "bin" / "python", code))
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    finally:
        for runner in (kit, rust):
            runner.kill_recorded()
            shutil.rmtree(runner.home, ignore_errors=True)
    figures: dict[str, object] = {"runs": args.runs, "codexVersion": REAL_CODEX_VERSION}
    header = ("operation", "kit ms", "rust ms", "kit p90", "rust p90", "ratio")
    print(f"{header[0]:<10} " + " ".join(f"{h:>9}" for h in header[1:]))
    for operation in OPERATIONS:
        kit_median, kit_p90 = median_p90(samples["kit"][operation])
        rust_median, rust_p90 = median_p90(samples["rust"][operation])
        ratio = kit_median / rust_median
        figures[operation] = {
            "kitMedianMs": round(kit_median * 1000, 1),
            "rustMedianMs": round(rust_median * 1000, 1),
            "kitP90Ms": round(kit_p90 * 1000, 1),
            "rustP90Ms": round(rust_p90 * 1000, 1),
            "ratio": round(ratio, 3),
        }
        print(
            f"{operation:<10} {kit_median * 1000:9.1f} {rust_median * 1000:9.1f} "
            f"{kit_p90 * 1000:9.1f} {rust_p90 * 1000:9.1f} {ratio:7.2f}"
        )
    rust_version = statistics.median(samples["rust"]["version"])
    floor_figures: dict[str, object] = {}
    for name, code in FLOORS.items():
        floor = statistics.median(floors[name])
        floor_figures[name] = {"code": code, "medianMs": round(floor * 1000, 1)}
        print(
            f"{name:<14} python -c {code!r}: {floor * 1000:.1f} ms "
            f"({floor / rust_version:.2f} x rust version)"
        )
    figures["floors"] = floor_figures
    updater = measure_idle_updater(kit_cli, binary, args.idle)
    shutil.rmtree(venv, ignore_errors=True)
    figures["updater"] = updater
    print(
        f"idle updater over {updater['idleSeconds']:.0f} s: {updater['cpuSeconds']:.2f} s CPU, "
        f"RSS {updater['rssMiB']:.1f} MiB, exit after SIGTERM {updater['sigtermExitMs']:.0f} ms"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
