"""Readers of /proc: boot id, start ticks, zombie state, and the lstart rendering.

This is the only module that inspects other processes, so tests can reason about
identity with real processes and no patching of ``os``.
"""

from __future__ import annotations

import errno
import os
import time
from functools import cache

from daemonkit.pidrecord import LinuxIdentity, PidRecord
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "ProcessSnapshot",
    "boot_id",
    "format_lstart",
    "inspect_process",
    "record_matches",
]

# ``ps -o lstart=`` prints C-locale names whatever LANG says; spelling them out keeps
# the record identical for every caller's locale (upstream issue #43608).
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
LEGACY_TOLERANCE_S = 2


class ProcessSnapshot(Value):
    """What /proc says about a live, non-zombie process we may signal."""

    __slots__ = ("identity", "pid", "start_epoch_s")

    def __init__(self, *, pid: int, identity: LinuxIdentity, start_epoch_s: int) -> None:
        self.pid: Final = pid
        self.identity: Final = identity
        self.start_epoch_s: Final = start_epoch_s

    @property
    def lstart(self) -> str:
        return format_lstart(self.start_epoch_s)


@cache
def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
        return f.read().strip()


@cache
def _btime() -> int:
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            if line.startswith("btime "):
                return int(line.split()[1])
    raise OSError(errno.ENODATA, "no btime in /proc/stat")


@cache
def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def format_lstart(epoch_s: int) -> str:
    """Render a start time as ``ps -o lstart=`` does (local time, C locale)."""
    t = time.localtime(epoch_s)
    return (
        f"{_DAYS[t.tm_wday]} {_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {t.tm_year}"
    )


def parse_lstart(text: str) -> int | None:
    """Parse a C-locale lstart string back to epoch seconds (local time), or None."""
    try:
        parsed = time.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return None
    return int(time.mktime(parsed))


def _read_stat(pid: int) -> tuple[str, int] | None:
    """Return (state, start ticks) from /proc/<pid>/stat, or None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: fields start after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return fields[0].decode("ascii"), int(fields[19])
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def start_ticks(pid: int) -> int | None:
    stat = _read_stat(pid)
    return None if stat is None else stat[1]


def is_signalable(pid: int) -> bool:
    """True if ``kill(pid, 0)`` succeeds: the pid exists and is ours to signal."""
    if pid <= 1:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        # ESRCH: gone. EPERM: another user's process, never ours (SPEC §4.3).
        return False
    return True


def inspect_process(pid: int) -> ProcessSnapshot | None:
    """Snapshot a live process we may signal; None if gone, foreign, zombie or unreadable."""
    if not is_signalable(pid):
        return None
    stat = _read_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return None
    ticks = stat[1]
    return ProcessSnapshot(
        pid=pid,
        identity=LinuxIdentity(boot_id=boot_id(), start_ticks=ticks),
        start_epoch_s=_btime() + ticks // _clock_ticks(),
    )


def snapshot_identity(pid: int, ticks: int) -> ProcessSnapshot:
    """Build the snapshot of a process we just spawned and whose ticks it reported."""
    return ProcessSnapshot(
        pid=pid,
        identity=LinuxIdentity(boot_id=boot_id(), start_ticks=ticks),
        start_epoch_s=_btime() + ticks // _clock_ticks(),
    )


def record_matches(record: PidRecord, snapshot: ProcessSnapshot | None) -> bool:
    """True iff ``record`` names the live process ``snapshot`` describes (SPEC §4.3)."""
    if record.pid <= 1 or record.pid == os.getpid():
        return False
    identity = record.identity
    if isinstance(identity, LinuxIdentity) and identity.boot_id != boot_id():
        # A different boot proves staleness without looking at the pid at all.
        return False
    if snapshot is None or snapshot.pid != record.pid:
        return False
    if isinstance(identity, LinuxIdentity):
        return identity == snapshot.identity
    if identity is not None:
        return False  # a macOS identity never matches a Linux process
    if record.process_start_time.strip() == snapshot.lstart:
        return True
    recorded = parse_lstart(record.process_start_time)
    # WSL2 re-derives the clock, so ps and /proc may disagree by a second or two
    # (upstream issue #44037).
    return recorded is not None and abs(recorded - snapshot.start_epoch_s) <= LEGACY_TOLERANCE_S
