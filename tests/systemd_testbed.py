"""A real systemd, booted as pid 1 of private namespaces on a throwaway overlay of ``/``.

SPEC §15.4. The recipe, step by step (``boot()`` runs it; root only)::

    mkdir <cgroup2 mount>/dk-sysd-<id>          # the booted system's cgroup subtree
    echo $$ > <that>/cgroup.procs                # ... entered before the cgroup namespace
    env -i container=dk-testbed PATH=...         # systemd runs in its container mode
      setpriv --pdeathsig KILL                   # pytest dies => the launcher dies
              --bounding-set -sys_module,-sys_time
      unshare --mount --propagation private --pid --fork --kill-child=SIGKILL
              --uts --ipc --net --cgroup
      sh -c '                                    # now pid 1 of the new pid namespace
        mount -t overlay -o lowerdir=/,upperdir=U,workdir=W overlay R
        mount -t proc proc R/proc;  bind R/proc/sys (and sysrq-trigger, if any) read-only
        bind /sys read-only on R/sys;  mount -t cgroup2 cgroup2 R/sys/fs/cgroup
        bind /dev read-only on R/dev;  bind a log file on R/dev/console
        mount -t tmpfs tmpfs R/tmp
        exec chroot R /lib/systemd/systemd --system --unit=multi-user.target'

Commands run inside with ``nsenter -t <pid> -m -u -i -n -p -C -r -w`` after the nsenter
process has joined the booted system's cgroup; ``poweroff()`` is ``systemctl poweroff``
inside; ``reboot()`` boots again on the same upper directory.

What keeps the host safe (each one guards against something seen or likely):

* systemd never boots on the real root: the shell refuses to exec unless R is an
  overlay on a device other than ``/``'s, and ``run()`` refuses a target whose root is
  the host's. Booted on ``/``, systemd-tmpfiles empties the host's /tmp.
* Every write lands in the upper directory (under /var/tmp, never /tmp); the booted
  system's /tmp is a tmpfs of its own, so the host's /tmp is neither seen nor emptied.
  Corollary for tests: put what the booted system needs outside /tmp (the repo and the
  venv are visible through the lower layer), or ``write()`` it into the upper layer.
* Kernel state is shared, so the namespaces cover what they can (mounts, pids, hostname,
  IPC, network, cgroups), ``/proc/sys`` and ``/sys`` are read-only, the capability to
  load modules and set the clock is dropped, ``container=`` makes systemd skip what a
  container must not do (swapoff and loop/DM detach at shutdown, VT setup), and the
  units in ``MASKED`` are masked in the upper layer. A read-only ``/dev`` still lets
  root write to device nodes: the masks keep udev, fsck and fstrim from running.
* Nothing is stopped by name: the booted init is known by pid, it is powered off, then
  SIGKILLed by pid if it outlives its deadline (which ends the whole pid namespace).
  The overlay exists only in the booted system's mount namespace and goes with it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

SYSTEMD = "/lib/systemd/systemd"
# How the before-stop hook knows a booted test systemd: its cmdline starts so.
INIT_CMDLINE = f"{SYSTEMD}\0--system\0".encode()
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOOT_S = 60.0
POWEROFF_S = 30.0
POLL_S = 0.01

# Exit statuses of the in-namespace shell.
REFUSED = 97  # a mount the kernel refused: the machine cannot run the testbed
NOT_AN_OVERLAY = 98  # the guard against booting on the real root

# Units masked in the upper layer, and why. Whatever the host itself enabled under
# /etc/systemd/system/*.wants is masked too (see host_enabled_units).
MASKED: dict[str, str] = {
    # uevents and device state are not namespaced: udev would re-trigger and re-rule
    # the host's devices.
    "systemd-udevd.service": "udev acts on the host's devices",
    "systemd-udevd-control.socket": "udev acts on the host's devices",
    "systemd-udevd-kernel.socket": "udev acts on the host's devices",
    "systemd-udev-trigger.service": "udev acts on the host's devices",
    "systemd-udev-settle.service": "udev acts on the host's devices",
    # Kernel settings, modules and the clock are global.
    "systemd-sysctl.service": "sysctls outside the network namespace are the host's",
    "systemd-binfmt.service": "binfmt_misc handlers are the host kernel's",
    "proc-sys-fs-binfmt_misc.automount": "binfmt_misc handlers are the host kernel's",
    "systemd-modules-load.service": "would load modules into the host kernel",
    "kmod-static-nodes.service": "would create device nodes in the host's /dev",
    "modprobe@.service": "would load modules into the host kernel",
    "systemd-timesyncd.service": "would set the host's clock",
    "systemd-pstore.service": "would move the host's crash records out of pstore",
    "systemd-fsck-root.service": "would check the host's disk",
    "systemd-fsck@.service": "would check the host's disks",
    # Terminals are the host's.
    "getty@.service": "would take the host's virtual consoles",
    "autovt@.service": "would take the host's virtual consoles",
    "serial-getty@.service": "would take the host's serial console",
    "console-getty.service": "would take the host's console",
    "container-getty@.service": "no terminals here",
    # Networking: the private network namespace has only lo, which systemd raises.
    "systemd-networkd.service": "no network to configure in the private namespace",
    "systemd-networkd.socket": "no network to configure in the private namespace",
    "systemd-networkd-wait-online.service": "no network to wait for",
    "networking.service": "no network to configure in the private namespace",
    "ifupdown-pre.service": "no network to configure in the private namespace",
    # /dev is the host's, bound read-only: these mount points cannot be made.
    "dev-hugepages.mount": "/dev is read-only here",
    "dev-mqueue.mount": "/dev is read-only here",
}

# Never masked, whatever the host enabled: logins and user managers need them.
NEEDED = frozenset(
    {
        "dbus.service",
        "dbus.socket",
        "systemd-logind.service",
        "systemd-journald.service",
        "user@.service",
        "user-runtime-dir@.service",
    }
)

LOGIND_CONF = "/etc/systemd/logind.conf.d/dk-testbed.conf"
JOURNALD_CONF = "/etc/systemd/journald.conf.d/dk-testbed.conf"
JOURNALD_DROP_IN = "/etc/systemd/system/systemd-journald.service.d/dk-testbed.conf"


class BootedSystemError(Exception):
    """The testbed could not do what was asked; the message carries the evidence."""


class RefusedError(BootedSystemError):
    """The machine refuses a step the testbed needs (not root, no overlayfs, namespaces
    or cgroup2 denied): tests skip with this message."""


def host_enabled_units() -> list[str]:
    """Units the host's admin enabled (postgresql, apt and fstrim timers, gettys...):
    none is needed by the tests, some act on the host's disks, all cost boot time."""
    etc = Path("/etc/systemd/system")
    names = {link.name for pattern in ("*.wants/*", "*.requires/*") for link in etc.glob(pattern)}
    return sorted(names - NEEDED)


def cgroup2_mount() -> Path:
    """Where the host mounts the cgroup2 hierarchy (``/sys/fs/cgroup`` or, on a hybrid
    host, ``/sys/fs/cgroup/unified``)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[0] == "cgroup2":
            return Path(left.split()[4])
    raise RefusedError("no cgroup2 hierarchy is mounted on the host (systemd needs one)")


# The launcher's first step: enter the booted system's cgroup, then exec the rest.
JOIN_CGROUP = 'echo $$ >"$1" && shift && exec "$@"'
# Then: should pytest die, the launcher dies and takes the booted init with it
# (--pdeathsig, --kill-child); no module loading, no clock setting; new namespaces.
LAUNCH = shlex.split(
    "setpriv --pdeathsig KILL --bounding-set -sys_module,-sys_time"
    " unshare --mount --propagation private --pid --fork --kill-child=SIGKILL"
    " --uts --ipc --net --cgroup"
)

# Runs as pid 1 of the new pid namespace, in the new mount namespace. Only the overlay
# and cgroup2 mounts are the kernel's to refuse (a kernel without overlayfs, an overlay
# on an overlay, a cgroup2 it will not mount here): those exit REFUSED and tests skip.
# Any other step failing is the testbed's own fault, and tests fail.
BOOT_SCRIPT = f"""
root=$1 upper=$2 work=$3 console=$4
refused() {{ echo "refused: $*" >&2; exit {REFUSED}; }}
mount -t overlay dk-testbed -o "lowerdir=/,upperdir=$upper,workdir=$work" "$root" ||
  refused "an overlay with lowerdir=/ at $root"
if [ "$(stat -f -c %T "$root")" != overlayfs ] || [ "$(stat -c %d "$root")" = "$(stat -c %d /)" ]
then echo "not booting: $root is not an overlay" >&2; exit {NOT_AN_OVERLAY}
fi
mount -t proc proc "$root/proc"
mount --bind -o ro "$root/proc/sys" "$root/proc/sys"
if [ -e "$root/proc/sysrq-trigger" ]
then mount --bind -o ro "$root/proc/sysrq-trigger" "$root/proc/sysrq-trigger"
fi
mount --bind -o ro /sys "$root/sys"
mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup" || refused "a cgroup2 mount in a cgroup namespace"
mount --bind -o ro /dev "$root/dev"
mount --bind "$console" "$root/dev/console"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
exec chroot "$root" {SYSTEMD} --system --unit=multi-user.target
"""


def parent_pid(pid: int) -> int | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(data[data.rfind(b")") + 2 :].split()[1])


def children(pid: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and parent_pid(int(p)) == pid]


def read_cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def env_pairs(env: Mapping[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in env.items()]


class BootedSystem:
    """One throwaway system: its overlay directories, and its init while booted.

    The upper and work directories live under ``/var/tmp/dk-sysd-*`` and outlive
    ``poweroff()`` (``reboot()`` boots on them again); ``close()`` removes them.
    """

    def __init__(self, *, kill_user_processes: bool = True) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="dk-sysd-", dir="/var/tmp"))
        self.upper = self.base / "upper"
        self.work = self.base / "work"
        self.root = self.base / "root"
        self.console = self.base / "console.log"
        self.launch_log = self.base / "launch.log"
        for directory in (self.upper, self.work, self.root):
            directory.mkdir()
        self.cgroup: Path | None = None
        self.launcher: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.spawned: list[subprocess.Popen[str]] = []
        self.uids: dict[str, int] = {}
        self.boot_s: float | None = None
        self.poweroff_s: float | None = None
        self.prepare_upper(kill_user_processes=kill_user_processes)

    # -- the upper layer, written while powered off --------------------------------

    def in_upper(self, path: str) -> Path:
        """Where ``path`` goes in the upper layer, its directory made. Only while powered
        off: the overlay's behaviour when its layers change under it is undefined."""
        if self.pid is not None:
            raise BootedSystemError(f"cannot change {path} in the upper layer while booted")
        target = self.upper / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write(self, path: str, text: str) -> None:
        """Put a file into the upper layer: what the next boot sees at ``path``."""
        self.in_upper(path).write_text(text)

    def mask(self, unit: str) -> None:
        """Mask ``unit`` for the next boot."""
        link = self.in_upper(f"/etc/systemd/system/{unit}")
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")

    def prepare_upper(self, *, kill_user_processes: bool) -> None:
        for unit in [*MASKED, *host_enabled_units()]:
            self.mask(unit)
        # KillExcludeUsers= left empty still exempts root (SPEC §15.2); nobody is
        # never logged in. No VTs: logind would allocate the host's.
        self.write(
            LOGIND_CONF,
            "[Login]\n"
            f"KillUserProcesses={'yes' if kill_user_processes else 'no'}\n"
            "KillExcludeUsers=nobody\n"
            "NAutoVTs=0\n"
            "ReserveVT=0\n",
        )
        # The journal is about this system: the host kernel's ring buffer would
        # drown the tail that a failed boot prints.
        self.write(JOURNALD_CONF, "[Journal]\nReadKMsg=no\n")
        # ... nor should journald's own messages land in the host kernel's log.
        self.write(JOURNALD_DROP_IN, "[Service]\nEnvironment=SYSTEMD_LOG_TARGET=console\n")

    # -- boot ----------------------------------------------------------------------

    def preflight(self) -> None:
        if os.geteuid() != 0:
            raise RefusedError("booting a test systemd needs root (overlayfs, namespaces, chroot)")
        missing = [tool for tool in ("unshare", "nsenter", "setpriv") if not shutil.which(tool)]
        if missing or not os.access(SYSTEMD, os.X_OK):
            absent = missing or [SYSTEMD]
            raise RefusedError(f"not installed: {absent} (Debian: systemd, util-linux)")
        if "overlay" not in Path("/proc/filesystems").read_text().split():
            raise RefusedError("the kernel has no overlayfs")

    def make_cgroup(self) -> Path:
        cgroup = cgroup2_mount() / self.base.name
        try:
            cgroup.mkdir()
        except OSError as exc:
            raise RefusedError(f"cannot make a cgroup2 subtree at {cgroup}: {exc}") from exc
        return cgroup

    def boot(self, timeout: float = BOOT_S) -> None:
        """Boot and wait until ``systemctl is-system-running`` says running or degraded.

        Raises ``RefusedError`` when the kernel refuses a step, ``BootedSystemError`` when the
        booted system does not come up (with its failed units and journal tail).
        """
        if self.pid is not None:
            raise BootedSystemError(f"already booted (pid {self.pid})")
        self.preflight()
        if self.cgroup is None:
            self.cgroup = self.make_cgroup()
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        self.console.write_bytes(b"")
        join = ["sh", "-c", JOIN_CGROUP, "sh", str(self.cgroup / "cgroup.procs")]
        paths = [str(self.root), str(self.upper), str(self.work), str(self.console)]
        with self.launch_log.open("wb") as log:
            self.launcher = subprocess.Popen(
                [*join, *LAUNCH, "sh", "-euc", BOOT_SCRIPT, "dk-testbed", *paths],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={"container": "dk-testbed", "PATH": PATH},
            )
        self.pid = self.wait_for_init(deadline)
        self.wait_until_running(max(deadline - time.monotonic(), 1.0))
        self.boot_s = time.monotonic() - started

    def wait_for_init(self, deadline: float) -> int:
        """The host pid of the booted systemd, once it has exec'd and its private bus
        socket is up (systemctl needs it)."""
        launcher = self.launcher
        assert launcher is not None
        while True:
            status = launcher.poll()
            if status is not None:
                self.launcher = None
                log = self.launch_log.read_text(errors="replace").strip()
                if status == REFUSED or "unshare failed" in log or log.startswith("setpriv:"):
                    raise RefusedError(f"the kernel refused to set up the testbed: {log}")
                raise BootedSystemError(f"the testbed's launcher exited with {status}: {log}")
            for pid in children(launcher.pid):
                if (
                    is_testbed_init(pid)
                    and Path(f"/proc/{pid}/root/run/systemd/private").is_socket()
                ):
                    return pid
            if time.monotonic() > deadline:
                self.kill_launcher()
                raise BootedSystemError(
                    "systemd did not start within the boot deadline; launcher log: "
                    + self.launch_log.read_text(errors="replace")
                )
            time.sleep(POLL_S)

    def wait_until_running(self, timeout: float = BOOT_S) -> str:
        """``systemctl is-system-running --wait``: running, or degraded (failed units
        printed); anything else, or no answer in time, raises with the evidence."""
        try:
            done = self.run(["systemctl", "is-system-running", "--wait"], timeout=timeout)
            state = done.stdout.strip()
        except subprocess.TimeoutExpired:
            state = f"no answer within {timeout} s"
        if state == "degraded":
            print(f"booted system is degraded; failed units:\n{self.failed_units()}")
        elif state != "running":
            raise BootedSystemError(
                f"the booted system is not running: {state}\n"
                f"failed units:\n{self.failed_units()}\n"
                f"jobs:\n{self.run(['systemctl', 'list-jobs', '--no-pager'], timeout=10).stdout}"
                f"journal tail:\n{self.journal_tail()}"
            )
        return state

    def failed_units(self) -> str:
        return self.run(["systemctl", "--failed", "--no-legend", "--plain"], timeout=10).stdout

    def journal_tail(self, lines: int = 40) -> str:
        argv = ["journalctl", "-b", "--no-pager", "-o", "short-monotonic", "-n", str(lines)]
        return self.run(argv, timeout=10).stdout

    # -- running commands inside ---------------------------------------------------

    def booted_pid(self) -> int:
        """The booted init's host pid, after checking it still is that init, in a root
        of its own: nothing must ever run through nsenter on the host's root."""
        pid = self.pid
        if pid is None or self.launcher is None:
            raise BootedSystemError("the test system is not booted")
        if not is_testbed_init(pid) or parent_pid(pid) != self.launcher.pid:
            raise BootedSystemError(f"pid {pid} is no longer the booted systemd")
        inside, host = os.stat(f"/proc/{pid}/root"), os.stat("/")
        if (inside.st_dev, inside.st_ino) == (host.st_dev, host.st_ino):
            raise BootedSystemError(f"pid {pid} runs on the host's root; refusing to enter it")
        return pid

    def uid(self, user: str) -> int:
        if user not in self.uids:
            done = self.run(["id", "-u", user], timeout=10, check=True)
            self.uids[user] = int(done.stdout)
        return self.uids[user]

    def command(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        login: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> list[str]:
        """The host argv that runs ``argv`` inside: as root in a clean environment, as
        ``user`` (``runuser -u``, with its XDG_RUNTIME_DIR and bus), or in a login
        session of ``user`` (``runuser -l``: PAM, so pam_systemd registers a logind
        session and the command runs in its ``session-<id>.scope``)."""
        env = dict(env or {})
        base = ["env", "-i", f"PATH={PATH}", "LANG=C.UTF-8"]
        if login:
            if user is None:
                raise ValueError("login=True needs a user")
            inner = [
                *base,
                "runuser",
                "-l",
                user,
                "-c",
                shlex.join(["env", *env_pairs(env), *argv]),
            ]
        elif user is not None:
            uid = self.uid(user)
            session = {
                "XDG_RUNTIME_DIR": f"/run/user/{uid}",
                "DBUS_SESSION_BUS_ADDRESS": f"unix:path=/run/user/{uid}/bus",
            }
            inner = [*base, "runuser", "-u", user, "--", "env", *env_pairs(session | env), *argv]
        else:
            inner = [*base, *env_pairs(env), *argv]
        assert self.cgroup is not None
        enter = ["nsenter", "-t", str(self.booted_pid()), "-m", "-u", "-i", "-n", "-p", "-C"]
        # Joining the booted system's cgroup first puts the command inside its tree, so
        # /proc/self/cgroup reads "0::/" and logind can move it into a session scope.
        join = ["sh", "-c", JOIN_CGROUP, "sh", str(self.cgroup / "cgroup.procs")]
        return [*join, *enter, "-r", "-w", "--", *inner]

    def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        login: bool = False,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside and wait; see ``command`` for ``user`` and ``login``."""
        done = subprocess.run(
            self.command(argv, user=user, login=login, env=env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise BootedSystemError(
                f"{shlex.join(argv)} exited with {done.returncode} inside: {done.stderr.strip()}"
            )
        return done

    def spawn(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        login: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[str]:
        """Start ``argv`` inside without waiting; ``close()`` kills it by pid if it is
        still running (and poweroff ends whatever it left inside)."""
        process = subprocess.Popen(
            self.command(argv, user=user, login=login, env=env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.spawned.append(process)
        return process

    def add_user(self, name: str) -> int:
        """Create ``name`` inside (in the upper layer's /etc/passwd, never the host's)."""
        self.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
        return self.uid(name)

    def start_user_manager(self, user: str) -> None:
        """Start ``user``'s manager, or wait for the start that linger or a login
        queued: ``systemctl --user`` fails until its socket is up."""
        self.run(["systemctl", "start", f"user@{self.uid(user)}.service"], check=True)

    # -- power ---------------------------------------------------------------------

    def poweroff(self, timeout: float = POWEROFF_S) -> None:
        """``systemctl poweroff`` inside, then wait for the init to exit; past the
        deadline, SIGKILL it by pid, which ends everything in its pid namespace."""
        launcher, pid = self.launcher, self.pid
        if launcher is None or pid is None:
            return
        started = time.monotonic()
        deadline = started + timeout
        try:
            self.run(["systemctl", "poweroff"], timeout=timeout)
        except (subprocess.TimeoutExpired, BootedSystemError):
            # Judged below by whether the init exits; so is a failed call, since
            # systemd may go before it answers.
            pass
        try:
            launcher.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            # Still unreaped by the launcher, so the pid cannot have been reused.
            if parent_pid(pid) == launcher.pid:
                os.kill(pid, signal.SIGKILL)
            launcher.wait(timeout=10)
            raise BootedSystemError(
                f"systemd (pid {pid}) did not power off within {timeout} s; killed it. "
                f"Its console:\n{self.console.read_text(errors='replace')}"
            ) from None
        finally:
            self.pid = None
            self.launcher = None
        self.poweroff_s = time.monotonic() - started

    def kill_launcher(self) -> None:
        """SIGKILL our launcher, unshare, whose --kill-child then SIGKILLs the init it
        forked, and with it the whole pid namespace."""
        if self.launcher is not None:
            self.launcher.kill()
            self.launcher.wait(timeout=10)
        self.launcher = None
        self.pid = None

    def reboot(self, timeout: float = BOOT_S) -> None:
        """Power off and boot again on the same upper directory."""
        self.poweroff()
        self.boot(timeout)

    def close(self) -> None:
        """Power off if booted, stop what ``spawn`` started, remove the cgroup subtree
        and the overlay's directories. Safe to call more than once."""
        try:
            self.poweroff()
        finally:
            self.kill_launcher()  # a boot that never got as far as a pid
            for process in self.spawned:
                if process.poll() is None:
                    process.kill()
                process.communicate(timeout=10)
            self.spawned.clear()
            self.remove_cgroup()
            self.unmount_leftovers()
            shutil.rmtree(self.base, ignore_errors=True)

    def cgroup_procs(self) -> list[int]:
        """Host pids of the processes in the booted system's cgroup subtree."""
        if self.cgroup is None:
            return []
        return [
            int(pid)
            for procs in self.cgroup.rglob("cgroup.procs")
            for pid in procs.read_text().split()
        ]

    def remove_cgroup(self) -> None:
        if self.cgroup is None:
            return
        # Deepest first: systemd leaves its empty init.scope (and more) behind.
        for directory in sorted(self.cgroup.rglob("*/"), key=lambda p: -len(p.parts)):
            directory.rmdir()
        self.cgroup.rmdir()
        self.cgroup = None

    def unmount_leftovers(self) -> None:
        """The overlay is mounted only in the booted system's mount namespace and goes
        with it; should the host ever see a mount under our directory, detach it."""
        prefix = f"{self.base}/"
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            point = line.split()[4]
            if point.startswith(prefix):
                subprocess.run(["umount", "--lazy", point], check=True, timeout=30)


def boot_or_skip(system: BootedSystem) -> None:
    """Boot ``system``; skip the test where the machine refuses (the reason says what)."""
    try:
        system.boot()
    except RefusedError as refused:
        pytest.skip(f"cannot boot a test systemd here: {refused}")


def is_testbed_init(pid: int) -> bool:
    """Whether ``pid`` is a booted test systemd (the before-stop hook's pattern)."""
    return read_cmdline(pid).startswith(INIT_CMDLINE)


def booted_inits() -> list[int]:
    return [
        int(p) for p in os.listdir("/proc") if p.isdigit() and p != "1" and is_testbed_init(int(p))
    ]
