"""The everyday commands load only what they use (issue 5: no heavy imports on the CLI path).

Speed is measured by ``benchmarks/side_by_side.py``, not here. What this suite pins is
the import graph the benchmark depends on: a ``start``, ``version``, ``stop`` or
``status`` never loads argparse, typing, dataclasses or the installer's modules, and a
``stop`` of a running server never loads the probe's socket and hashlib.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = pytest.mark.timeout(60)

# Runs the CLI's main as the console script does, then reports the modules it loaded
# (not those the interpreter's site set-up had loaded already).
DRIVER = """
import sys
before = set(sys.modules)
from daemonkit.cli import main
code = main(sys.argv[1:])
import json
sys.stderr.write("\\nLOADED " + json.dumps(sorted(set(sys.modules) - before)) + "\\n")
sys.exit(code)
"""
NEVER = (
    "argparse",
    "typing",
    "dataclasses",
    "inspect",
    "urllib",
    "ipaddress",
    "shutil",
    "tempfile",
    "sh",
    "packaging",
    "daemonkit.install",
    "daemonkit.decisions",
    "updater",
)
# The first start runs the new binary's --version; later commands read the cache.
CACHED = ("subprocess",)
PROBE_ONLY = ("socket", "hashlib", "daemonkit.probe")


def run_driver(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", DRIVER, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=home.env(),
        timeout=60,
        check=False,
    )


def loaded_by(home: Home, command: str) -> set[str]:
    done = run_driver(home, command)
    assert done.returncode == 0, done.stderr
    _, _, listing = done.stderr.rpartition("\nLOADED ")
    modules: list[str] = json.loads(listing)
    return set(modules)


def assert_none_loaded(loaded: set[str], names: tuple[str, ...], command: str) -> None:
    unexpected = sorted(name for name in names if name in loaded)
    assert unexpected == [], f"`{command}` loaded {unexpected}"


def test_start_version_status_and_stop_stay_lean(fake_home: Home) -> None:
    assert_none_loaded(loaded_by(fake_home, "start"), NEVER, "start")
    for command in ("version", "status"):
        assert_none_loaded(loaded_by(fake_home, command), NEVER + CACHED, command)
    stop = loaded_by(fake_home, "stop")
    assert_none_loaded(stop, NEVER + CACHED + PROBE_ONLY, "stop of a running server")
    assert fake_home.run("version").returncode == 1  # it did stop


def test_the_driver_sees_what_a_command_loads(fake_home: Home) -> None:
    # A command that needs argparse (an option) loads it: the check above can fail.
    done = run_driver(fake_home, "logs", "--bytes", "10")
    assert done.returncode == 0, done.stderr
    assert "argparse" in json.loads(done.stderr.rpartition("\nLOADED ")[2])


def test_adopt_stays_lean(fake_home: Home) -> None:
    # Nothing to adopt, then a managed server: neither loads more than start does.
    assert_none_loaded(loaded_by(fake_home, "adopt"), NEVER, "adopt of nothing")
    assert fake_home.run("start").returncode == 0
    adopt = loaded_by(fake_home, "adopt")
    assert_none_loaded(adopt, NEVER + CACHED, "adopt of a managed server")
