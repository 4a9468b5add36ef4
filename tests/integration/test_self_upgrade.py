"""The updater re-execs onto a changed kit, and costs nothing else while idle (SPEC §14.7, §14.2).

The updater runs from a copy of the kit's packages that the test can change, as
``pip install -U`` or ``apt upgrade`` would change an installed kit under it. Auto-update
and the health check are off, so the self-upgrade check (every 10 minutes, scaled) is
the only thing that wakes the updater: a re-exec proves the check runs on its own.
The exec is proven by the process image: the same pid and start ticks, the re-exec
marker in the environment the kernel shows for the new image, and code that only the
changed copy has running under that pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import daemonkit
from tests.harness import (
    REPO,
    SUPERVISION_ONLY,
    Result,
    is_alive,
    read_regular,
    scheduled_updater,
    start_ticks,
    wait_for,
    write_settings,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.harness import Home

pytestmark = pytest.mark.timeout(90)

REEXEC_MARKER = b"CODEX_DAEMONKIT_UPDATER_REEXEC="
SELF_CHECK_S = 600.0
NEW_VERSION = "9.9.9"


def use_hooks(home: Home, check_every_s: float) -> None:
    """Scale the updater's clock so that its 10-minute self-check comes every ``check_every_s``."""
    home.extra_env["CODEX_DAEMONKIT_TEST_HOOKS"] = "1"
    home.extra_env["CODEX_DAEMONKIT_TIME_SCALE"] = repr(check_every_s / SELF_CHECK_S)


def copy_kit(home: Home) -> Path:
    """The kit's packages copied where only this test changes them; the CLI, and the
    updater it spawns, import them from there."""
    kit = home.root / "kit"
    for package in ("daemonkit", "updater"):
        shutil.copytree(REPO / package, kit / package, ignore=shutil.ignore_patterns("__pycache__"))
    home.extra_env["PYTHONPATH"] = str(kit)
    return kit


def start(home: Home) -> tuple[int, int]:
    """`start`; the server's pid and the updater it keeps for supervision, once serving.

    Run outside the checkout: ``-m`` puts the working directory ahead of PYTHONPATH.
    """
    done = subprocess.run(
        home.argv("start"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=home.env(),
        cwd=home.user_home,
        timeout=60,
        check=False,
    )
    started = Result(done.returncode, done.stdout.decode(), done.stderr.decode()).json
    assert started["status"] == "started"
    server = started["pid"]
    assert isinstance(server, int)
    updater = scheduled_updater(home)
    wait_for(lambda: os.path.exists(home.paths.updater_socket), what="the request socket")
    return server, updater


def environ(pid: int) -> list[bytes]:
    """The environment the kernel keeps for the process's current exec image."""
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


def log_lines(home: Home) -> list[dict[str, object]]:
    raw = read_regular(home.paths.updater.log) or b""
    return [json.loads(line) for line in raw.splitlines() if line.startswith(b"{")]


def self_upgrades(home: Home) -> list[dict[str, object]]:
    return [line for line in log_lines(home) if line.get("event") == "self_upgrade"]


def reexecs(home: Home) -> list[dict[str, object]]:
    return [line for line in log_lines(home) if line.get("stage") == "reexec"]


def holds_for(predicate: Callable[[], bool], seconds: float, *, what: str) -> None:
    """A negative check: ``predicate`` stays true for ``seconds``, polled throughout."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), what
        time.sleep(0.02)


def replacement_of(home: Home, old: int) -> int:
    def new_pid() -> int | None:
        raw = read_regular(home.paths.app_server.record)
        if not raw:
            return None
        pid = json.loads(raw)["pid"]
        return pid if pid != old and is_alive(pid) else None

    found = wait_for(new_pid, what=f"a server to replace {old}", timeout=20)
    assert found is not None
    return found


def voluntary_switches(pid: int) -> int:
    """How many times the process has gone to sleep: once per wait of its loop."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError(f"no voluntary_ctxt_switches in /proc/{pid}/status")


def test_a_changed_kit_is_picked_up_by_the_same_updater_process(home: Home) -> None:
    kit = copy_kit(home)
    use_hooks(home, check_every_s=0.5)
    home.install_fake()
    write_settings(home, SUPERVISION_ONLY)
    server, updater = start(home)
    [path] = [e for e in environ(updater) if e.startswith(b"PYTHONPATH=")]
    assert path.removeprefix(b"PYTHONPATH=").split(b":")[0] == bytes(kit)  # runs the copy
    assert REEXEC_MARKER not in b"\0".join(environ(updater))
    ticks = start_ticks(updater)
    cmdline = Path(f"/proc/{updater}/cmdline").read_bytes()
    record = read_regular(home.paths.updater.record)

    # An upgrade: a new version, and a module whose new code says which process runs it.
    witness = home.root / "new-code.pids"
    init = kit / "daemonkit" / "__init__.py"
    init.write_text(
        init.read_text().replace(
            f'__version__ = "{daemonkit.__version__}"', f'__version__ = "{NEW_VERSION}"'
        )
    )
    with (kit / "updater" / "loop.py").open("a") as f:
        f.write(
            "\n# Added by the self-upgrade test: only the upgraded code does this.\n"
            f"with open({str(witness)!r}, 'a') as _witness:\n"
            "    _witness.write(f'{os.getpid()}\\n')\n"
        )

    wait_for(lambda: reexecs(home), what="the updater to re-exec onto the changed kit")
    [upgrade] = self_upgrades(home)
    assert upgrade["processPid"] == updater
    assert upgrade["details"] == {
        "fromVersion": daemonkit.__version__,
        "toVersion": NEW_VERSION,
        "changedFiles": 2,
        "changed": ["daemonkit/__init__.py", "updater/loop.py"],
    }
    [reexec] = reexecs(home)
    assert reexec["processPid"] == updater
    assert reexec["outcome"] == "succeeded"

    # The same process (pid and start ticks), with a new exec image running the new code.
    assert is_alive(updater)
    assert start_ticks(updater) == ticks
    assert Path(f"/proc/{updater}/cmdline").read_bytes() == cmdline
    assert any(entry.startswith(REEXEC_MARKER) for entry in environ(updater))
    wait_for(
        lambda: str(updater) in (read_regular(str(witness)) or b"").decode().split(),
        what="the upgraded code to run in the updater's process",
    )
    assert read_regular(home.paths.updater.record) == record

    # It serves its request socket again, re-execs only once, and still supervises.
    wait_for(lambda: os.path.exists(home.paths.updater_socket), what="the request socket")
    holds_for(lambda: len(reexecs(home)) == 1, 1.5, what="one re-exec for one upgrade")
    os.kill(server, signal.SIGKILL)
    replacement_of(home, server)
    assert scheduled_updater(home) == updater


@pytest.mark.parametrize("broken", ["does-not-compile", "compiles-but-lacks-its-entry-point"])
def test_a_broken_kit_is_not_exec_d_into_until_it_is_whole(home: Home, broken: str) -> None:
    kit = copy_kit(home)
    use_hooks(home, check_every_s=0.5)
    home.install_fake()
    write_settings(home, SUPERVISION_ONLY)
    _, updater = start(home)
    ticks = start_ticks(updater)
    loop = kit / "updater" / "loop.py"
    source = loop.read_text()

    # An install that stopped part-way through a file: exec'ing would kill the updater.
    # Cut inside a statement, the file does not compile; cut at a line boundary before
    # run_updater, it compiles and the new image would fail to import its entry point.
    if broken == "does-not-compile":
        loop.write_text(source[: len(source) // 2] + "\ndef cut_short(:\n")
        refusal = f"not re-executing onto the changed kit: {loop}: "
    else:
        loop.write_text(source[: source.index("\ndef run_updater(")] + "\n")
        refusal = (
            "not re-executing onto the changed kit: the new code does not import: "
            "ImportError: cannot import name 'run_updater'"
        )
    wait_for(
        lambda: refusal.encode() in (read_regular(home.paths.updater.log) or b""),
        what="the updater to refuse the broken kit",
    )
    assert reexecs(home) == []
    assert self_upgrades(home) == []
    assert REEXEC_MARKER not in b"\0".join(environ(updater))

    # The install completes: the kit is whole again, and new.
    loop.write_text(source + "\n# upgraded\n")
    wait_for(lambda: reexecs(home), what="the updater to re-exec onto the completed kit")
    [upgrade] = self_upgrades(home)
    assert upgrade["details"]["changed"] == ["updater/loop.py"]  # type: ignore[index]
    assert [line["outcome"] for line in reexecs(home)] == ["succeeded"]
    assert start_ticks(updater) == ticks
    assert any(entry.startswith(REEXEC_MARKER) for entry in environ(updater))


def test_an_idle_updater_wakes_only_for_the_self_upgrade_check(home: Home) -> None:
    check_every_s = 1.5
    use_hooks(home, check_every_s=check_every_s)
    home.install_fake()
    write_settings(home, SUPERVISION_ONLY)
    server, updater = start(home)
    # Let the start-up settle: registration, the command's watch notification.
    wait_for(lambda: voluntary_switches(updater) > 0, what="the updater to wait")
    time.sleep(check_every_s / 2)

    window_s = 3 * check_every_s
    before = voluntary_switches(updater)
    holds_for(lambda: is_alive(updater) and is_alive(server), window_s, what="an idle home")
    woke = voluntary_switches(updater) - before
    # One wait per check; a window of three periods sees at most four checks.
    assert woke <= 4, f"{woke} wake-ups in {window_s} s with a check every {check_every_s} s"
    assert woke >= 2, f"the self-upgrade check did not run every {check_every_s} s"
    assert self_upgrades(home) == []
