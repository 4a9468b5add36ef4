"""The launcher's exec through a transient scope keeps the record exact (SPEC §4.6, §4.7, §15.2).

A stand-in for ``systemd-run --user --scope`` does what systemd 252's does after the
manager created the scope: it adds ``INVOCATION_ID`` (honouring ``--setenv``) and execs
the command in place. Spawned through it, the app-server must have the pid, start
ticks, argv and environment (in order) it would have had without it. Whether a real
user manager moves the process is for the booted-systemd fixture.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness import UPDATER_OFF, start_ticks, wait_for, write_settings

if TYPE_CHECKING:
    from tests.harness import Home

pytestmark = pytest.mark.timeout(60)

FAKE_INVOCATION_ID = "0123456789abcdef0123456789abcdef"

# What systemd-run does once the manager has made the scope (run.c, start_transient_scope):
# environ, then INVOCATION_ID, then --setenv values, merged in place (strv_env_merge keeps
# the order), and execvpe of the command. A shell would reorder the environment.
_FAKE_SYSTEMD_RUN = """#!{python}
import os, sys
args = sys.argv[1:]
with open({witness!r}, "w") as f:
    f.write("\\n".join([str(os.getpid()), *args]) + "\\n")
env = dict(os.environ)
env["INVOCATION_ID"] = {invocation_id!r}
end = args.index("--")
for option in args[:end]:
    if option.startswith("--setenv="):
        key, _, value = option.removeprefix("--setenv=").partition("=")
        env[key] = value
os.execve(args[end + 1], args[end + 1 :], env)
"""

# Spawns the managed app-server as the Daemon does, through the given scope command.
_DRIVER = """
import json, os, sys
from daemonkit.backend import SpawnRequest, spawn_recorded
from daemonkit.environment import child_environment
from daemonkit.lifecycle import app_server_argv
from daemonkit.managed import canonical_bin, managed_bin_path
from daemonkit.paths import DaemonPaths
from daemonkit.placement import ScopeCommand
from daemonkit.systemd import find_tool

paths = DaemonPaths(os.environ["CODEX_HOME"])
argv = app_server_argv(
    canonical_bin(managed_bin_path(paths)), remote_control=False, codex_version="1.0.0"
)
env = child_environment(os.environ, paths.codex_home, remote_control=False)
scope = ScopeCommand(
    systemd_run=sys.argv[1],
    env_tool=find_tool("env", os.environ),
    what="app-server",
    description="Codex app-server for " + paths.codex_home + " (codex-daemonkit)",
    invocation_id=env.get("INVOCATION_ID"),
)
spawned = spawn_recorded(SpawnRequest(
    paths=paths.app_server, state_dir=paths.state_dir, argv=argv, env=env,
    cwd=paths.state_dir, what="app-server", scope=scope,
))
print(json.dumps({"pid": spawned.pid, "argv": argv, "env": list(env.items())}))
"""


def fake_systemd_run(home: Home, text: str | None = None) -> Path:
    """Write the stand-in (or ``text``) as an executable; it records to ``witness_of``."""
    script = home.root / "fake-systemd-run"
    if text is None:
        text = _FAKE_SYSTEMD_RUN.format(
            python=sys.executable, witness=str(witness_of(home)), invocation_id=FAKE_INVOCATION_ID
        )
    script.write_text(text)
    script.chmod(0o755)
    return script


def witness_of(home: Home) -> Path:
    return home.root / "systemd-run.witness"


def proc_list(pid: int, name: str) -> list[str]:
    raw = Path(f"/proc/{pid}/{name}").read_bytes()
    return [os.fsdecode(item) for item in raw.split(b"\0")[:-1]]


class Spawned:
    """What the driver spawned: the pid, and the argv and environment it asked for."""

    def __init__(self, value: dict[str, object]) -> None:
        pid, argv, env = value["pid"], value["argv"], value["env"]
        assert isinstance(pid, int)
        assert isinstance(argv, list)
        assert isinstance(env, list)
        self.pid = pid
        self.argv = [str(word) for word in argv]
        self.environ = [f"{key}={value}" for key, value in env]


def spawn_through_scope(home: Home, script: Path, **env: str) -> Spawned:
    write_settings(home, UPDATER_OFF)
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(script)],
        env=home.env(**env),
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr.decode()
    value = json.loads(done.stdout)
    assert isinstance(value, dict)
    return Spawned(value)


@pytest.mark.parametrize("caller_invocation_id", [None, "feedfacefeedfacefeedfacefeedface"])
def test_exec_through_the_scope_keeps_pid_record_argv_and_environment(
    fake_home: Home, caller_invocation_id: str | None
) -> None:
    extra = {} if caller_invocation_id is None else {"INVOCATION_ID": caller_invocation_id}
    spawned = spawn_through_scope(fake_home, fake_systemd_run(fake_home), **extra)
    pid, argv = spawned.pid, spawned.argv
    # The last exec has happened once /proc shows the server's own argv (the fake is a
    # script: the kernel puts its interpreter first).
    wait_for(lambda: proc_list(pid, "cmdline")[1:] == argv, what="the app-server's argv")
    recorded_pid, *scope_args = witness_of(fake_home).read_text().splitlines()
    assert int(recorded_pid) == pid  # systemd-run ran in the final process itself
    home_path = fake_home.paths.codex_home
    options = [
        "--user",
        "--scope",
        "--collect",
        "--quiet",
        "--no-ask-password",
        f"--unit=codex-app-server-{pid}",
        f"--description=Codex app-server for {home_path} (codex-daemonkit)",
    ]
    if caller_invocation_id is None:
        env_tool = scope_args[len(options) + 1]
        assert os.path.basename(env_tool) == "env"
        assert scope_args == [*options, "--", env_tool, "-u", "INVOCATION_ID", "--", *argv]
    else:
        assert scope_args == [
            *options,
            f"--setenv=INVOCATION_ID={caller_invocation_id}",
            "--",
            *argv,
        ]
    # The environment is exactly the spawn's, in order: systemd-run's INVOCATION_ID is
    # gone again, or the caller's value is back.
    assert proc_list(pid, "environ") == spawned.environ
    # The record the final process published before its first exec names it exactly.
    record = fake_home.record()
    assert record is not None
    assert record["pid"] == pid
    identity = record["processIdentity"]
    assert isinstance(identity, dict)
    assert identity["startTicks"] == start_ticks(pid)
    # Spawned by the launcher alone, nothing waited for readiness: it answers soon.
    wait_for(
        lambda: fake_home.run("status").json["status"] == "running", what="the server to answer"
    )
    assert fake_home.run("status").json["pid"] == pid
    stopped = fake_home.run("stop")
    assert stopped.json["status"] == "stopped"
    wait_for(lambda: not os.path.exists(f"/proc/{pid}/stat"), what="the server to exit")


def test_a_failing_scope_command_fails_the_start_with_its_words(fake_home: Home) -> None:
    """If systemd-run cannot create the scope it exits before the server runs: the
    readiness wait sees the process exit and shows its stderr, which is the log."""
    failing = "#!/bin/sh\necho 'Failed to start transient scope unit: nope' >&2\nexit 1\n"
    pid = spawn_through_scope(fake_home, fake_systemd_run(fake_home, failing)).pid
    wait_for(lambda: not os.path.exists(f"/proc/{pid}/stat"), what="the wrapper to exit")
    log = Path(fake_home.paths.app_server.log).read_text()
    assert "Failed to start transient scope unit: nope" in log
    # The record names a dead process: it counts as stale, as after any crash.
    assert fake_home.run("status").json["status"] == "notRunning"
