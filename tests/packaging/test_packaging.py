"""Packaging: man pages, completions, systemd units and the distro builds (SPEC §12).

SPEC §13.11 rows 45 and 46. The first group of tests is fast and always runs: the
committed man pages and completions equal freshly generated ones (so they never drift
from ``--help``), the pages render without groff warnings and document every command,
the completions complete in a real bash, and the units say what SPEC §12.4 says and
pass ``systemd-analyze verify``. Tools that are missing (man, systemd-analyze) skip
those checks, except in packaging mode.

The second group builds real packages. It is marked ``packaging`` and runs only with
``DK_PACKAGING_TESTS=1`` (as root on Debian bookworm with the build tools installed;
.ci/run sets it). There, a missing tool is a failure, not a skip:

- the .deb is built from the checkout (lintian --pedantic must be clean), installed
  with apt, driven through ``/usr/bin/codex-daemon`` against the fake Codex, and purged
  (a codex-daemonkit package installed before the test is purged too);
- the rpm and Arch recipes are smoke-built and their packages inspected and run;
- ``python -m build`` makes the wheel and sdist, and ``pipx install`` gives working
  commands.
"""

from __future__ import annotations

import argparse
import configparser
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from daemonkit import __version__
from daemonkit.cli import build_parser as build_daemon_parser
from tests.harness import REPO, UPDATER_OFF, Result, is_alive, write_settings
from updater.__main__ import build_parser as build_updater_parser

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from types import ModuleType

    from tests.harness import Home

pytestmark = pytest.mark.timeout(60)

PACKAGING = REPO / "packaging"
PACKAGING_MODE = os.environ.get("DK_PACKAGING_TESTS") == "1"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
PAGES: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "codex-daemon": build_daemon_parser,
    "codex-daemon-updater": build_updater_parser,
}

packaging_build = pytest.mark.skipif(
    not PACKAGING_MODE, reason="builds and installs distro packages; set DK_PACKAGING_TESTS=1"
)


def need_tool(name: str) -> str:
    """The tool's path; skip without it, except in packaging mode, where it must exist."""
    path = shutil.which(name, path=SYSTEM_PATH) or shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if PACKAGING_MODE:
            pytest.fail(f"{message} (packaging mode: .ci/run installs it)")
        pytest.skip(message)
    return path


def run(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
) -> Result:
    done = subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return Result(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def parser_of(name: str) -> argparse.ArgumentParser:
    return PAGES[name]()


# -- generated man pages and completions ---------------------------------------------


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_manpages", PACKAGING / "gen_manpages.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is created.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return _load_generator()


@pytest.fixture(scope="module")
def generated(generator: ModuleType) -> dict[str, str]:
    files = generator.generated_files()
    assert isinstance(files, dict)
    return files


def test_generated_files_are_the_committed_ones(generated: dict[str, str]) -> None:
    """The man pages and completions in git are what the parsers generate today."""
    assert set(generated) == {
        "man/codex-daemon.1",
        "man/codex-daemon-updater.1",
        "completion/codex-daemon",
        "completion/codex-daemon-updater",
    }
    stale = []
    for relative, content in generated.items():
        path = PACKAGING / relative
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            stale.append(relative)
    assert not stale, (
        f"generated files out of date under packaging/: {stale}; "
        "regenerate with: python3 packaging/gen_manpages.py"
    )
    leftovers = {
        f"{folder}/{path.name}"
        for folder in ("man", "completion")
        for path in (PACKAGING / folder).iterdir()
    } - set(generated)
    assert not leftovers, f"files under packaging/ the generator no longer makes: {leftovers}"


def test_generator_check_mode_reports_drift(tmp_path: Path) -> None:
    """--check exits 1 and names the file when a page differs, 0 once regenerated."""
    script = str(PACKAGING / "gen_manpages.py")
    written = run([sys.executable, script, "--output", str(tmp_path)])
    assert written.returncode == 0, written.stderr
    assert run([sys.executable, script, "--check", "--output", str(tmp_path)]).returncode == 0
    page = tmp_path / "man" / "codex-daemon.1"
    page.write_text(page.read_text().replace("logs", "log"))
    drifted = run([sys.executable, script, "--check", "--output", str(tmp_path)])
    assert drifted.returncode == 1
    assert f"out of date: {page}" in drifted.stderr


def _render(page: Path) -> Result:
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MANPAGER="cat", PAGER="cat")
    return run(["man", "-l", str(page)], env=env)


def _words(text: str) -> str:
    """Whitespace-normalised text; typographic dashes and quotes made ASCII."""
    for fancy, plain in (("\u2010", "-"), ("\u2212", "-"), ("\u2019", "'"), ("\u2018", "'")):
        text = text.replace(fancy, plain)
    return " ".join(text.split())


def _commands(parser: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """Each subcommand's help and parser, as argparse holds them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._get_subactions()}
            return {name: (helps[name], child) for name, child in action.choices.items()}
    return {}


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if action.option_strings]


@pytest.mark.parametrize("name", sorted(PAGES))
def test_manpage_renders_cleanly_and_documents_the_parser(name: str) -> None:
    need_tool("man")
    page = PACKAGING / "man" / f"{name}.1"
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    # What lintian runs: any groff warning is a defect of the page.
    checked = run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(page)], env=env)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == ""
    rendered = _render(page)
    assert rendered.returncode == 0, rendered.stderr
    text = _words(rendered.stdout)
    parser = parser_of(name)
    assert f"{name} - " in text  # the NAME line whatis and apropos read
    for action in _options(parser):
        for option in action.option_strings:
            assert option in text
        assert _words(action.help or "") in text
    commands = _commands(parser)
    assert commands
    for command, (help_text, child) in commands.items():
        assert f"{name} [--codex-home PATH] {command}" in text
        assert _words(help_text) in text
        for action in _options(child):
            assert all(option in text for option in action.option_strings)
            assert _words(action.help or "") in text
    # SPEC §12.5: commands, files (§3.1), settings (§3.5), exit codes.
    for heading in ("SYNOPSIS", "COMMANDS", "EXIT STATUS", "FILES", "SETTINGS", "ENVIRONMENT"):
        assert f"\n{heading}\n" in rendered.stdout
    for key in ("shutdownGraceSeconds", "updater.autoUpdateEnabled", "updater.channel"):
        assert key in text
    for file in ("app-server.pid", "daemon.lock", "settings.json", "app-server.stderr.log"):
        assert file in text


def test_daemon_manpage_explains_corrupt_record_recovery() -> None:
    """SPEC §12.5: how to recover from a corrupt pid record (check, then delete it)."""
    need_tool("man")
    rendered = _render(PACKAGING / "man" / "codex-daemon.1")
    assert "\nRECOVERING FROM A CORRUPT PID RECORD\n" in rendered.stdout
    section = rendered.stdout.split("\nRECOVERING FROM A CORRUPT PID RECORD\n")[1]
    section = _words(section.split("\nSYSTEMD\n")[0])
    assert "invalid pid file contents in" in section
    assert section.index("Check whether") < section.index("Delete the record")
    assert "lock files are never deleted" in section


def _complete(name: str, words: Sequence[str]) -> set[str]:
    """What the committed bash completion offers for the last word of ``words``."""
    function = "_" + name.replace("-", "_")
    script = (
        f"source {shlex.quote(str(PACKAGING / 'completion' / name))}\n"
        f"COMP_WORDS=({' '.join(shlex.quote(word) for word in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        f"{function} 2>/dev/null\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = run(["bash", "--norc", "--noprofile", "-c", script])
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return {line for line in done.stdout.splitlines() if line}


def test_bash_completion_of_codex_daemon(tmp_path: Path) -> None:
    need_tool("bash")
    parser = parser_of("codex-daemon")
    commands = set(_commands(parser))
    assert _complete("codex-daemon", ["codex-daemon", ""]) == commands
    assert _complete("codex-daemon", ["codex-daemon", "st"]) == {
        c for c in commands if c.startswith("st")
    }
    assert _complete("codex-daemon", ["codex-daemon", "--"]) == {
        option for action in _options(parser) for option in action.option_strings
    } - {"-h", "-V"}
    # The value of --codex-home is a directory and is not taken for the command.
    assert _complete("codex-daemon", ["codex-daemon", "--codex-home", "/tmp", "re"]) == {
        c for c in commands if c.startswith("re")
    }
    (tmp_path / "home-a").mkdir()
    (tmp_path / "home-file").write_text("")
    assert _complete("codex-daemon", ["codex-daemon", "--codex-home", f"{tmp_path}/home"]) == {
        f"{tmp_path}/home-a"
    }
    assert _complete("codex-daemon", ["codex-daemon", "install", "--channel", ""]) == {
        "npm",
        "script",
    }
    assert _complete("codex-daemon", ["codex-daemon", "logs", "--"]) == {"--help", "--bytes"}
    assert _complete("codex-daemon", ["codex-daemon", "logs", "--bytes", ""]) == set()
    assert _complete("codex-daemon", ["codex-daemon", "start", ""]) == set()


def test_bash_completion_of_the_updater() -> None:
    need_tool("bash")
    assert _complete("codex-daemon-updater", ["codex-daemon-updater", ""]) == set(
        _commands(parser_of("codex-daemon-updater"))
    )
    assert _complete("codex-daemon-updater", ["codex-daemon-updater", "run", "--"]) == {
        "--help",
        "--once",
    }


# -- systemd user units ------------------------------------------------------------


def _unit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, delimiters=("=",), strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((PACKAGING / "systemd" / name).read_text())
    return unit


def test_app_server_unit_is_spec_12_4() -> None:
    unit = _unit("codex-daemon.service")
    assert dict(unit["Service"]) == {
        "Type": "oneshot",
        "RemainAfterExit": "yes",
        "ExecStart": "/usr/bin/codex-daemon start",
        "ExecStop": "/usr/bin/codex-daemon stop",
        "TimeoutStartSec": "120",
        # Longer than the largest shutdown grace (300 s, SPEC §3.5) plus the CLI's
        # own margin; systemd's default 90 s would SIGKILL a server mid-drain.
        "TimeoutStopSec": "400",
    }
    assert dict(unit["Install"]) == {"WantedBy": "default.target"}
    assert unit["Unit"]["Documentation"] == "man:codex-daemon(1)"


def test_updater_unit_is_spec_12_4() -> None:
    unit = _unit("codex-daemon-updater.service")
    assert dict(unit["Service"]) == {
        "Type": "simple",
        "ExecStart": "/usr/bin/codex-daemon-updater run",
        "Restart": "on-failure",
        "RestartSec": "30",
        # SIGTERM to the updater only: an app-server it restarted lives in this
        # cgroup and must survive `systemctl --user stop codex-daemon-updater`.
        "KillMode": "process",
        "TimeoutStopSec": "400",
    }
    assert dict(unit["Install"]) == {"WantedBy": "default.target"}
    assert unit["Unit"]["Documentation"] == "man:codex-daemon-updater(1)"


def _verify_units(units: Sequence[Path], work: Path, manpath: Path | None = None) -> Result:
    """``systemd-analyze --user verify``; it needs a runtime dir, not a running systemd."""
    runtime = work / "runtime"
    runtime.mkdir(mode=0o700)
    env = {"PATH": SYSTEM_PATH, "HOME": str(work), "XDG_RUNTIME_DIR": str(runtime)}
    if manpath is not None:
        env["MANPATH"] = str(manpath)
    return run(["systemd-analyze", "--user", "verify", *map(str, units)], env=env)


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """The committed units, with ExecStart pointing at the checkout's bin/ wrappers
    (verify requires an executable) and MANPATH at the generated pages (verify runs
    man for Documentation=). systemd reports bad settings on stderr and still exits
    0, so any output fails the test."""
    need_tool("systemd-analyze")
    need_tool("man")
    units = tmp_path / "units"
    units.mkdir()
    manpath = tmp_path / "man"
    (manpath / "man1").mkdir(parents=True)
    for page in (PACKAGING / "man").glob("*.1"):
        shutil.copy(page, manpath / "man1" / page.name)
    for source in sorted((PACKAGING / "systemd").glob("*.service")):
        text = source.read_text().replace("/usr/bin/", f"{REPO}/bin/")
        (units / source.name).write_text(text)
    verified = _verify_units(sorted(units.iterdir()), tmp_path, manpath)
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == ""
    assert verified.stdout == ""


# -- recipes -------------------------------------------------------------------------


def test_recipes_carry_the_kit_version() -> None:
    changelog = (PACKAGING / "debian" / "changelog").read_text().splitlines()[0]
    assert changelog.startswith(f"codex-daemonkit ({__version__}-")
    spec = (PACKAGING / "rpm" / "codex-daemonkit.spec").read_text().splitlines()
    assert f"Version:        {__version__}" in spec
    pkgbuild = (PACKAGING / "arch" / "PKGBUILD").read_text().splitlines()
    assert f"pkgver={__version__}" in pkgbuild


def _control_paragraphs() -> list[dict[str, str]]:
    """debian/control as deb822 paragraphs, continuation lines folded."""
    paragraphs: list[dict[str, str]] = []
    for block in (PACKAGING / "debian" / "control").read_text().split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith((" ", "\t")):
                fields[key] += " " + line.strip()
            else:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        paragraphs.append(fields)
    return paragraphs


def test_debian_source_package_is_spec_12_3() -> None:
    source, binary = _control_paragraphs()
    build_depends = {dep.strip() for dep in source["Build-Depends"].split(",") if dep.strip()}
    assert {
        "debhelper-compat (= 13)",
        "dh-sequence-python3",
        "pybuild-plugin-pyproject",
        "python3-all",
        "python3-setuptools",
    } <= build_depends
    assert source["Rules-Requires-Root"] == "no"
    assert binary["Architecture"] == "all"
    depends = {dep.strip() for dep in binary["Depends"].split(",") if dep.strip()}
    assert depends == {"${misc:Depends}", "${python3:Depends}"}
    rules = (PACKAGING / "debian" / "rules").read_text()
    assert "dh_installsystemduser --no-enable" in rules
    manpages = (PACKAGING / "debian" / "codex-daemonkit.manpages").read_text().split()
    assert manpages == [f"packaging/man/{name}.1" for name in PAGES]
    for line in (PACKAGING / "debian" / "codex-daemonkit.install").read_text().splitlines():
        source_path, _, _ = line.partition(" ")
        assert (REPO / source_path).is_file(), line


# -- builds (opt-in) -------------------------------------------------------------------


def build_with(script: str, out: Path, *, timeout: float) -> Path:
    """Run a packaging/build-*.sh script; return the package path it prints."""
    built = run([str(PACKAGING / script), str(out)], timeout=timeout, cwd=REPO)
    assert built.returncode == 0, f"{script} failed:\n{built.stderr[-6000:]}"
    package = Path(built.stdout.splitlines()[-1])
    assert package.is_file(), built.stdout
    return package


def installed_env(home: Home, **extra: str) -> dict[str, str]:
    """The test's environment without the checkout on PYTHONPATH."""
    env = home.env(**extra)
    del env["PYTHONPATH"]
    return env


def lifecycle_through(exe: Path, home: Home, env: dict[str, str]) -> None:
    """start, version, stop of the fake Codex through an installed ``codex-daemon``."""
    # No updater for this cycle: only the app-server's lifecycle is under test here.
    write_settings(home, UPDATER_OFF)
    started = run([str(exe), "start"], env=env).json
    assert started["status"] == "started"
    assert started["cliVersion"] == __version__
    pid = started["pid"]
    assert isinstance(pid, int)
    assert home.record_pid() == pid
    assert is_alive(pid)
    version = run([str(exe), "version"], env=env).json
    assert version["status"] == "running"
    assert version["backend"] == "pid"
    assert version["appServerVersion"] == "1.0.0"
    stopped = run([str(exe), "stop"], env=env).json
    assert stopped["status"] == "stopped"
    assert home.record() is None
    assert not is_alive(pid)


@pytest.fixture
def apt_package() -> Iterator[list[str]]:
    """Purges codex-daemonkit after the test, whatever happened; yields the purge log."""
    log: list[str] = []
    yield log
    purged = run(["apt-get", "purge", "-y", "-q", "codex-daemonkit"], timeout=120)
    log.append(purged.stdout + purged.stderr)
    assert purged.returncode == 0, purged.stderr
    assert not Path("/usr/bin/codex-daemon").exists()


@pytest.mark.packaging
@packaging_build
@pytest.mark.timeout(360)
def test_deb_builds_installs_runs_and_purges(
    fake_home: Home, tmp_path: Path, apt_package: list[str]
) -> None:
    for tool in ("dpkg-buildpackage", "lintian", "apt-get", "man", "systemd-analyze"):
        need_tool(tool)
    assert os.geteuid() == 0, "installs with apt: run as root"
    deb = build_with("build-deb.sh", tmp_path / "deb", timeout=240)
    info = run(["dpkg-deb", "--field", str(deb), "Package", "Version", "Architecture", "Depends"])
    assert f"Version: {__version__}-" in info.stdout
    assert "Architecture: all" in info.stdout
    for dependency in ("python3-daemon", "python3-sh", "python3-packaging"):
        assert dependency in info.stdout

    env = {"PATH": SYSTEM_PATH, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
    installed = run(["apt-get", "install", "-y", "-q", str(deb)], env=env, timeout=180)
    assert installed.returncode == 0, installed.stderr

    files = run(["dpkg", "-L", "codex-daemonkit"]).stdout.splitlines()
    for path in (
        "/usr/bin/codex-daemon",
        "/usr/bin/codex-daemon-updater",
        "/usr/lib/systemd/user/codex-daemon.service",
        "/usr/lib/systemd/user/codex-daemon-updater.service",
        "/usr/share/bash-completion/completions/codex-daemon",
        "/usr/lib/python3/dist-packages/daemonkit/cli.py",
        "/usr/lib/python3/dist-packages/updater/__main__.py",
    ):
        assert path in files
    assert Path("/usr/bin/codex-daemon").read_text().startswith("#!/usr/bin/python3\n")

    env = installed_env(fake_home)
    helped = run(["/usr/bin/codex-daemon", "--help"], env=env)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: codex-daemon ")
    updater_help = run(["/usr/bin/codex-daemon-updater", "--help"], env=env)
    assert updater_help.returncode == 0, updater_help.stderr
    for name in PAGES:
        where = run(["man", "-w", name], env=env)
        assert where.stdout.strip() == f"/usr/share/man/man1/{name}.1.gz", where.stderr
    # The installed kit, on bookworm's interpreter and python3-daemon, is what runs.
    origin = run(
        ["/usr/bin/python3", "-c", "import daemon, daemonkit; print(daemonkit.__file__)"],
        env=env,
        cwd=tmp_path,  # -c puts the current directory first on sys.path
    )
    assert origin.stdout.strip() == "/usr/lib/python3/dist-packages/daemonkit/__init__.py"
    lifecycle_through(Path("/usr/bin/codex-daemon"), fake_home, env)
    # The updater reads the managed version through sh: bookworm's python3-sh is 1.14.
    fake = Path(fake_home.paths.current) / "codex"
    code = (
        "import os, sys; from updater.cycle import read_version_with_sh; "
        "print(read_version_with_sh(sys.argv[1], os.environ))"
    )
    version = run(["/usr/bin/python3", "-c", code, str(fake)], env=env, cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout == "1.0.0\n"

    units = ("codex-daemon.service", "codex-daemon-updater.service")
    (tmp_path / "verify").mkdir()
    verified = _verify_units(
        [Path("/usr/lib/systemd/user") / name for name in units], tmp_path / "verify"
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == ""


def _extract_and_run_help(root: Path, env: dict[str, str]) -> None:
    """Run the packaged ``codex-daemon --help`` from an unpacked package tree."""
    inits = sorted(root.glob("usr/lib/python3*/*-packages/daemonkit/__init__.py"))
    assert len(inits) == 1, inits
    site = inits[0].parent.parent
    env = dict(env, PYTHONPATH=str(site), PATH=SYSTEM_PATH)
    for name in PAGES:
        helped = run([str(root / "usr" / "bin" / name), "--help"], env=env)
        assert helped.returncode == 0, helped.stderr
        assert helped.stdout.startswith(f"usage: {name} ")


_PACKAGED = (
    "usr/bin/codex-daemon",
    "usr/bin/codex-daemon-updater",
    "usr/lib/systemd/user/codex-daemon.service",
    "usr/lib/systemd/user/codex-daemon-updater.service",
    "usr/share/bash-completion/completions/codex-daemon",
    "usr/share/bash-completion/completions/codex-daemon-updater",
    "usr/share/man/man1/codex-daemon.1.gz",
    "usr/share/man/man1/codex-daemon-updater.1.gz",
)


@pytest.mark.packaging
@packaging_build
@pytest.mark.timeout(180)
def test_rpm_smoke_build(home: Home, tmp_path: Path) -> None:
    for tool in ("rpmbuild", "rpm2cpio", "cpio"):
        need_tool(tool)
    rpm = build_with("build-rpm.sh", tmp_path / "rpm", timeout=150)
    assert rpm.name == f"codex-daemonkit-{__version__}-1.noarch.rpm"
    listing = {line.lstrip("/") for line in run(["rpm", "-qpl", str(rpm)]).stdout.splitlines()}
    assert set(_PACKAGED) <= listing
    # rpm's Python dependency generator reads them from the wheel's metadata
    # (Fedora adds python3dist(...), Debian's rpm python3.11dist(...)).
    requires = run(["rpm", "-qp", "--requires", str(rpm)]).stdout
    for requirement in ("python-daemon) >= 2.3", "sh) >= 1.14", "packaging) >= 23"):
        assert re.search(
            rf"^python3(\.\d+)?dist\({re.escape(requirement)}$", requires, re.MULTILINE
        )
    root = tmp_path / "root"
    root.mkdir()
    unpacked = subprocess.run(
        f"rpm2cpio {shlex.quote(str(rpm))} | cpio -idm --quiet",
        shell=True,
        cwd=root,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert unpacked.returncode == 0, unpacked.stderr
    _extract_and_run_help(root, installed_env(home))


@pytest.mark.packaging
@packaging_build
@pytest.mark.timeout(180)
def test_arch_smoke_build(home: Home, tmp_path: Path) -> None:
    for tool in ("makepkg", "bsdtar", "fakeroot"):
        need_tool(tool)
    package = build_with("build-arch.sh", tmp_path / "arch", timeout=150)
    assert package.name.startswith(f"codex-daemonkit-{__version__}-1-any.pkg.tar.")
    root = tmp_path / "root"
    root.mkdir()
    unpacked = run(["bsdtar", "-xf", str(package), "-C", str(root)])
    assert unpacked.returncode == 0, unpacked.stderr
    pkginfo = (root / ".PKGINFO").read_text().splitlines()
    assert f"pkgver = {__version__}-1" in pkginfo
    for depend in ("python", "python-daemon", "python-sh", "python-packaging"):
        assert f"depend = {depend}" in pkginfo
    for path in _PACKAGED:
        assert (root / path).is_file(), path
    _extract_and_run_help(root, installed_env(home))


def _source_copy(tmp_path: Path) -> Path:
    """The checkout's source files, so builds never write into the work tree."""
    source = tmp_path / "src"
    copied = run([str(PACKAGING / "copy-tree.sh"), str(source)])
    assert copied.returncode == 0, copied.stderr
    return source


@pytest.mark.packaging
@pytest.mark.network
@packaging_build
@pytest.mark.timeout(180)
def test_wheel_and_sdist_build(tmp_path: Path) -> None:
    if importlib.util.find_spec("build") is None:
        pytest.fail("the build module is not installed (pip install build)")
    out = tmp_path / "dist"
    built = run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(_source_copy(tmp_path))],
        timeout=170,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    wheel = out / f"codex_daemonkit-{__version__}-py3-none-any.whl"
    sdist = out / f"codex_daemonkit-{__version__}.tar.gz"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"codex_daemonkit-{__version__}.dist-info"
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        metadata = archive.read(f"{info}/METADATA").decode().splitlines()
    assert {
        "daemonkit/__init__.py",
        "daemonkit/cli.py",
        "daemonkit/py.typed",
        "updater/__main__.py",
        "updater/py.typed",
    } <= names
    assert {name.split("/")[0] for name in names} == {"daemonkit", "updater", info}
    assert "codex-daemon = daemonkit.cli:run" in entry_points
    assert "codex-daemon-updater = updater.__main__:main" in entry_points
    assert "Requires-Python: >=3.11" in metadata
    for requirement in ("python-daemon>=2.3", "sh>=1.14", "packaging>=23"):
        assert f"Requires-Dist: {requirement}" in metadata
    with tarfile.open(sdist) as archive:
        members = set(archive.getnames())
    root = f"codex_daemonkit-{__version__}"
    assert {
        f"{root}/pyproject.toml",
        f"{root}/daemonkit/cli.py",
        f"{root}/updater/__main__.py",
    } <= (members)


@pytest.mark.packaging
@pytest.mark.network
@packaging_build
@pytest.mark.timeout(240)
def test_pipx_install_gives_working_commands(fake_home: Home, tmp_path: Path) -> None:
    pipx = need_tool("pipx")
    bin_dir = tmp_path / "pipx-bin"
    env = installed_env(fake_home, PIPX_HOME=str(tmp_path / "pipx-home"), PIPX_BIN_DIR=str(bin_dir))
    installed = run([pipx, "install", str(_source_copy(tmp_path))], env=env, timeout=220)
    assert installed.returncode == 0, installed.stderr[-4000:]
    for name in PAGES:
        helped = run([str(bin_dir / name), "--help"], env=env)
        assert helped.returncode == 0, helped.stderr
        assert helped.stdout.startswith(f"usage: {name} ")
    # start spawns through python-daemon: pipx brought the dependencies along.
    lifecycle_through(bin_dir / "codex-daemon", fake_home, env)
