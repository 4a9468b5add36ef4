"""enable / disable and status's persistence (SPEC §15.1, §15.3).

Here, without a booted systemd: the CLI fails cleanly and writes nothing, status says
"unavailable", the rendered units pass ``systemd-analyze verify``, and the command logic
runs against a fake systemd (``FakeHost``: systemctl's enable/disable links, start/stop
states, loginctl's linger) through the ``SystemdHost`` seam. What only a real user
manager can show (the unit starting the server at boot, linger keeping it across
logout) is left to the booted-systemd fixture.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from daemonkit import __version__
from daemonkit.errors import SystemdError, UnitFileError
from daemonkit.output import PersistenceOutput, PersistenceStatus
from daemonkit.paths import DaemonPaths
from daemonkit.persistence import disable_persistence, enable_persistence, persistence_report
from daemonkit.systemd import SystemdHost, ToolResult, UserManager
from daemonkit.units import GENERATED_MARK, daemon_command, render_unit
from daemonkit.updater_control import KIT_ROOT
from tests.harness import REPO

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from tests.harness import Home

pytestmark = pytest.mark.timeout(60)


class FakeManager(UserManager):
    """systemctl --user as far as enable/disable use it, over a real unit directory."""

    def __init__(self, host: FakeHost) -> None:
        super().__init__("/fake/systemctl", {})
        self.host = host

    def run(self, *args: str, timeout_s: float = 30.0) -> ToolResult:
        self.host.calls.append(args)
        verb, *units = args
        out, code, err = "", 0, ""
        match verb:
            case "enable" | "reenable":
                (unit,) = units
                path = self.host.unit_dir / unit
                link = self.host.unit_dir / "default.target.wants" / unit
                if verb == "reenable":
                    link.unlink(missing_ok=True)
                if not path.is_file():
                    code, err = 1, f"Failed to enable unit: Unit file {unit} does not exist.\n"
                elif link.is_symlink() and link.readlink() != path:
                    code = 1
                    err = f"Failed to enable unit: File {link} already exists and is a symlink.\n"
                else:
                    link.parent.mkdir(parents=True, exist_ok=True)
                    if not link.is_symlink():
                        link.symlink_to(path)
            case "disable":
                (self.host.unit_dir / "default.target.wants" / units[0]).unlink(missing_ok=True)
            case "start":
                if self.host.fail_start:
                    code, err = 1, "Job for x failed because the control process exited.\n"
                else:
                    self.host.active.add(units[0])
            case "stop":
                self.host.active.discard(units[0])
            case "is-active":
                out = "active\n" if units[0] in self.host.active else "inactive\n"
                code = 0 if units[0] in self.host.active else 3
            case "daemon-reload" | "show":
                pass
            case _:
                pytest.fail(f"unexpected systemctl {args}")
        return ToolResult(
            argv=["systemctl", "--user", *args], returncode=code, stdout=out, stderr=err
        )


class FakeHost(SystemdHost):
    def __init__(self, unit_dir: Path, *, linger: bool = False, allow_linger: bool = True) -> None:
        self.unit_dir = unit_dir
        self.linger = linger
        self.allow_linger = allow_linger
        self.fail_start = False
        self.active: set[str] = set()
        self.calls: list[tuple[str, ...]] = []
        self.linger_calls: list[bool] = []

    def user_manager_problem(self, environ: Mapping[str, str]) -> str | None:
        return None

    def connect(self, environ: Mapping[str, str]) -> UserManager:
        return FakeManager(self)

    def current_user(self) -> str:
        return "me"

    def linger_enabled(self, user: str) -> bool:
        assert user == "me"
        return self.linger

    def set_linger(self, user: str, *, on: bool, environ: Mapping[str, str]) -> str | None:
        self.linger_calls.append(on)
        if not self.allow_linger:
            return "Could not enable linger: Access denied\n"
        self.linger = on
        return None


class World:
    """A user home with its own Codex homes, and the fake systemd around them."""

    def __init__(self, root: Path, **host: bool) -> None:
        self.user_home = root / "me"
        self.user_home.mkdir()
        self.environ = {"HOME": str(self.user_home), "PATH": os.defpath}
        self.unit_dir = self.user_home / ".config" / "systemd" / "user"
        self.host = FakeHost(self.unit_dir, **host)
        self.warnings: list[str] = []
        self.note = self.user_home / ".local" / "state" / "codex-daemonkit" / "linger.json"

    def paths(self, home: str | None = None) -> DaemonPaths:
        return DaemonPaths(home or str(self.user_home / ".codex"))

    def enable(self, home: str | None = None, *, now: bool = False) -> PersistenceOutput:
        return enable_persistence(
            self.paths(home), self.environ, self.warnings.append, now=now, host=self.host
        )

    def disable(self, home: str | None = None, *, now: bool = False) -> PersistenceOutput:
        return disable_persistence(
            self.paths(home), self.environ, self.warnings.append, now=now, host=self.host
        )

    def enabled_units(self) -> list[str]:
        wants = self.unit_dir / "default.target.wants"
        return sorted(p.name for p in wants.iterdir()) if wants.is_dir() else []


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def expected_text(home: str) -> str:
    return render_unit(home, daemon_command(str(REPO), sys.executable, os.path.isfile))


# -- this host: no user manager ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [("enable",), ("enable", "--now"), ("disable",), ("disable", "--now")]
)
def test_without_a_user_manager_enable_and_disable_fail_and_write_nothing(
    home: Home, args: tuple[str, ...]
) -> None:
    before = sorted(p.relative_to(home.root) for p in home.root.rglob("*"))
    result = home.run(*args)
    assert result.returncode == 1
    assert result.stdout == ""
    first, *rest = result.stderr.splitlines()
    assert first.startswith("Error: systemd user manager not available: "), result.stderr
    assert rest == []
    assert sorted(p.relative_to(home.root) for p in home.root.rglob("*")) == before


def test_status_says_unavailable_without_a_user_manager(home: Home) -> None:
    assert home.run("status").json["persistence"] == {"systemd": "unavailable", "linger": None}


def test_usage_errors(home: Home) -> None:
    result = home.run("enable", "--later")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "unrecognized arguments: --later" in result.stderr


def test_this_checkout_is_what_the_unit_runs() -> None:
    assert str(REPO) == KIT_ROOT
    assert daemon_command(KIT_ROOT, sys.executable, os.path.isfile) == (
        sys.executable,
        str(REPO / "bin" / "codex-daemon"),
    )


# -- enable ----------------------------------------------------------------------------------


def test_enable_writes_the_unit_enables_it_and_turns_linger_on(world: World) -> None:
    out = world.enable()
    home = str(world.user_home / ".codex")
    assert out == PersistenceOutput(
        status=PersistenceStatus.ENABLED,
        unit="codex-daemon.service",
        linger=True,
        codex_home=home,
        cli_version=__version__,
    )
    unit = world.unit_dir / "codex-daemon.service"
    assert unit.read_text() == expected_text(home)
    assert world.host.calls == [
        ("daemon-reload",),
        ("enable", "codex-daemon.service"),
    ]
    assert world.enabled_units() == ["codex-daemon.service"]
    assert world.host.linger_calls == [True]
    assert json.loads(world.note.read_text())["user"] == "me"
    assert world.warnings == []
    report = persistence_report(home, world.environ, world.host)
    assert report.to_json() == {"systemd": "enabled", "linger": True}


def test_enable_is_idempotent(world: World) -> None:
    assert world.enable().status is PersistenceStatus.ENABLED
    world.host.calls.clear()
    again = world.enable()
    assert again.status is PersistenceStatus.ALREADY_ENABLED
    assert again.linger is True
    assert world.host.calls == []
    assert world.host.linger_calls == [True]


def test_enable_now_starts_the_unit_every_time(world: World) -> None:
    assert world.enable(now=True).status is PersistenceStatus.ENABLED
    assert ("start", "codex-daemon.service") in world.host.calls
    world.host.active.clear()  # stopped by hand since
    world.host.calls.clear()
    assert world.enable(now=True).status is PersistenceStatus.ALREADY_ENABLED
    assert world.host.calls == [("start", "codex-daemon.service")]


def test_a_failed_start_is_an_error_naming_the_unit(world: World) -> None:
    world.host.fail_start = True
    with pytest.raises(SystemdError, match=r"^failed to start codex-daemon\.service$") as caught:
        world.enable(now=True)
    assert "Job for x failed" in str(caught.value.__cause__)


def test_a_disabled_unit_with_the_same_text_is_enabled_again(world: World) -> None:
    world.enable()
    (world.unit_dir / "default.target.wants" / "codex-daemon.service").unlink()
    world.host.calls.clear()
    assert world.enable().status is PersistenceStatus.ENABLED
    assert world.host.calls == [("enable", "codex-daemon.service")]


def test_the_packaged_unit_enabled_by_hand_is_replaced_by_ours(world: World) -> None:
    wants = world.unit_dir / "default.target.wants"
    wants.mkdir(parents=True)
    (wants / "codex-daemon.service").symlink_to("/usr/lib/systemd/user/codex-daemon.service")
    assert world.enable().status is PersistenceStatus.ENABLED
    assert world.host.calls[-1] == ("reenable", "codex-daemon.service")
    link = wants / "codex-daemon.service"
    assert link.readlink() == world.unit_dir / "codex-daemon.service"
    world.host.calls.clear()
    assert world.enable().status is PersistenceStatus.ALREADY_ENABLED
    assert world.host.calls == []


def test_a_changed_unit_of_ours_is_rewritten(world: World) -> None:
    world.enable()
    unit = world.unit_dir / "codex-daemon.service"
    unit.write_text(GENERATED_MARK + "\n# an older kit's text\n")
    world.host.calls.clear()
    assert world.enable().status is PersistenceStatus.ENABLED
    assert unit.read_text() == expected_text(str(world.user_home / ".codex"))
    assert world.host.calls == [("daemon-reload",), ("enable", "codex-daemon.service")]


def test_a_unit_file_that_is_not_ours_is_never_replaced(world: World) -> None:
    world.unit_dir.mkdir(parents=True)
    unit = world.unit_dir / "codex-daemon.service"
    unit.write_text("[Service]\nExecStart=/usr/local/bin/my-own-codex\n")
    with pytest.raises(UnitFileError, match=f"^refusing to replace {unit}: it was not written"):
        world.enable()
    assert unit.read_text() == "[Service]\nExecStart=/usr/local/bin/my-own-codex\n"
    assert world.host.calls == []


def test_a_symlinked_unit_file_is_refused(world: World, tmp_path: Path) -> None:
    world.unit_dir.mkdir(parents=True)
    target = tmp_path / "elsewhere.service"
    target.write_text(expected_text(str(world.user_home / ".codex")))
    (world.unit_dir / "codex-daemon.service").symlink_to(target)
    with pytest.raises(UnitFileError, match="it is a symbolic link"):
        world.enable()


def test_another_home_gets_its_own_unit(world: World, tmp_path: Path) -> None:
    odd = str(tmp_path / "codex homes" / "100% $ok")
    out = world.enable(odd)
    assert out.unit.startswith("codex-daemon-")
    assert out.codex_home == odd
    text = (world.unit_dir / out.unit).read_text()
    assert text == expected_text(odd)
    assert '--codex-home "' in text
    assert world.enable().unit == "codex-daemon.service"
    assert world.enabled_units() == sorted([out.unit, "codex-daemon.service"])


def test_refused_linger_is_a_warning_with_the_command_to_run(world: World) -> None:
    world.host.allow_linger = False
    out = world.enable()
    assert out.status is PersistenceStatus.ENABLED
    assert out.linger is False
    (warning,) = world.warnings
    assert warning.startswith("failed to enable lingering for me: Could not enable linger:")
    assert warning.endswith(
        "run as root: loginctl enable-linger me (or: sudo loginctl enable-linger me)"
    )
    assert not world.note.exists()


def test_linger_already_on_is_left_alone_and_not_noted(tmp_path: Path) -> None:
    world = World(tmp_path, linger=True)
    assert world.enable().linger is True
    assert world.host.linger_calls == []
    assert not world.note.exists()
    # ... so disable leaves it on.
    assert world.disable().linger is True
    assert world.host.linger_calls == []


# -- disable ---------------------------------------------------------------------------------


def test_disable_reverses_enable(world: World) -> None:
    world.enable()
    world.host.calls.clear()
    out = world.disable()
    assert out.status is PersistenceStatus.DISABLED
    assert out.unit == "codex-daemon.service"
    assert out.linger is False
    assert world.host.calls == [
        ("disable", "codex-daemon.service"),
        ("is-active", "codex-daemon.service"),
        ("daemon-reload",),
    ]
    assert not (world.unit_dir / "codex-daemon.service").exists()
    assert world.host.linger_calls == [True, False]
    assert not world.note.exists()
    home = str(world.user_home / ".codex")
    assert persistence_report(home, world.environ, world.host).to_json() == {
        "systemd": "disabled",
        "linger": False,
    }


def test_disable_is_idempotent(world: World) -> None:
    assert world.disable().status is PersistenceStatus.ALREADY_DISABLED
    world.enable()
    assert world.disable().status is PersistenceStatus.DISABLED
    assert world.disable().status is PersistenceStatus.ALREADY_DISABLED
    assert world.host.linger_calls == [True, False]


def test_disable_now_stops_the_unit_first(world: World) -> None:
    world.enable(now=True)
    world.host.calls.clear()
    assert world.disable(now=True).status is PersistenceStatus.DISABLED
    assert world.host.calls[:3] == [
        ("is-active", "codex-daemon.service"),
        ("stop", "codex-daemon.service"),
        ("disable", "codex-daemon.service"),
    ]
    assert not (world.unit_dir / "codex-daemon.service").exists()


def test_a_running_unit_keeps_its_file_until_it_stops(world: World) -> None:
    world.enable(now=True)
    assert world.disable().status is PersistenceStatus.DISABLED
    assert (world.unit_dir / "codex-daemon.service").exists()
    (warning,) = world.warnings
    assert warning.startswith("codex-daemon.service still runs")
    assert world.enabled_units() == []
    # Linger went back off: nothing enabled needs it (the unit ends with the session).
    assert world.host.linger is False
    world.warnings.clear()
    assert world.disable(now=True).status is PersistenceStatus.ALREADY_DISABLED
    assert not (world.unit_dir / "codex-daemon.service").exists()
    assert world.warnings == []


def test_linger_stays_on_while_another_kit_unit_is_enabled(world: World, tmp_path: Path) -> None:
    other = str(tmp_path / "other")
    world.enable()  # turns linger on
    world.enable(other)
    assert world.disable().linger is True
    assert world.host.linger_calls == [True]
    assert world.note.exists()
    assert world.disable(other).linger is False
    assert world.host.linger_calls == [True, False]
    assert not world.note.exists()


def test_a_packaged_unit_enabled_by_hand_keeps_linger_on(world: World, tmp_path: Path) -> None:
    other = str(tmp_path / "other")
    world.enable(other)  # turns linger on
    wants = world.unit_dir / "default.target.wants"
    (wants / "codex-daemon.service").symlink_to("/usr/lib/systemd/user/codex-daemon.service")
    assert world.disable(other).linger is True
    assert world.host.linger_calls == [True]


def test_a_unit_file_that_is_not_ours_is_disabled_but_kept(world: World) -> None:
    world.unit_dir.mkdir(parents=True)
    unit = world.unit_dir / "codex-daemon.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=default.target\n")
    wants = world.unit_dir / "default.target.wants"
    wants.mkdir()
    (wants / "codex-daemon.service").symlink_to(unit)
    assert world.disable().status is PersistenceStatus.DISABLED
    assert unit.exists()
    assert world.enabled_units() == []


# -- what systemd itself makes of the unit ------------------------------------------------------


def _verify(units: list[Path], work: Path) -> subprocess.CompletedProcess[str]:
    runtime = work / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    manpath = work / "man"
    (manpath / "man1").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "packaging" / "man" / "codex-daemon.1", manpath / "man1")
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(work),
        "XDG_RUNTIME_DIR": str(runtime),
        "MANPATH": str(manpath),
    }
    return subprocess.run(
        ["systemd-analyze", "--user", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_units_for_odd_homes_and_checkouts(tmp_path: Path) -> None:
    """``verify`` checks that the quoted program exists (so its unquoting is right) and
    reports bad quoting or escapes on stderr; it must print nothing."""
    kit = tmp_path / 'a kit\'s "100%" \\ copy'
    (kit / "bin").mkdir(parents=True)
    wrapper = kit / "bin" / "codex-daemon"
    wrapper.write_text("#!/bin/sh\n")
    wrapper.chmod(0o755)
    (kit / "pyproject.toml").write_text("")
    command = daemon_command(str(kit), sys.executable, os.path.isfile)
    assert command == (sys.executable, str(wrapper))
    units = tmp_path / "units"
    units.mkdir()
    homes = ["/home/me/.codex", "/srv/codex home", '/srv/"quoted" \\ 100% $HOME ;', "/srv/ünï"]
    paths = []
    for index, home in enumerate(homes):
        unit = units / f"codex-daemon-{index:012x}.service"
        unit.write_text(render_unit(home, command))
        paths.append(unit)
    verified = _verify(paths, tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == ""
    assert verified.stdout == ""


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_reports_a_missing_program(tmp_path: Path) -> None:
    """The check above can fail: a unit whose program does not exist is reported."""
    unit = tmp_path / "codex-daemon-000000000000.service"
    unit.write_text(render_unit("/srv/x", (str(tmp_path / "no such" / "codex-daemon"),)))
    verified = _verify([unit], tmp_path)
    assert "no such/codex-daemon" in verified.stderr
