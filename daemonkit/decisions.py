"""Pure decisions of the updater: restart or not, re-exec or not, and the loop breakers.

Nothing here performs an effect; the updater (``updater.cycle``) does what these
functions select. The names mirror the seed's ``lib.rs`` (``restart_decision``,
``should_reexec_updater``, ``RestartMode::IfVersionChanged``) so the two read side by side
(SPEC §8.5, §8.6, §8.8, §8.10).
"""

from __future__ import annotations

from enum import Enum, auto
from typing import assert_never

from daemonkit.managed import versions_equal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from daemonkit.probe import AppServerInfo

__all__ = [
    "BACKOFF_CAP_S",
    "QUARANTINE_S",
    "RESTART_CAP",
    "RESTART_WINDOW_S",
    "RestartDecision",
    "RestartMode",
    "RestartOutcome",
    "UpdaterRefreshMode",
    "active_quarantine",
    "backoff_delay_s",
    "is_quarantined",
    "recent_restarts",
    "restart_cap_reached",
    "restart_decision",
    "should_reexec_updater",
    "update_modes_for_identities",
]

QUARANTINE_S = 24 * 60 * 60.0
BACKOFF_CAP_S = 24 * 60 * 60.0
RESTART_CAP = 4
RESTART_WINDOW_S = 60 * 60.0


class RestartMode(Enum):
    """Whether a running server is restarted only onto a different version."""

    IF_VERSION_CHANGED = auto()
    ALWAYS = auto()


class UpdaterRefreshMode(Enum):
    """Whether the updater re-executes itself after a validated restart."""

    NONE = auto()
    REEXEC_IF_MANAGED_BINARY_CHANGED = auto()


class RestartDecision(Enum):
    NOT_READY = auto()
    ALREADY_CURRENT = auto()
    RESTART = auto()


class RestartOutcome(Enum):
    """What one try-restart did (the seed's ``RestartIfRunningOutcome`` plus rollback)."""

    BUSY = auto()  # daemon.lock is held by someone else; retry in 50 ms
    NOT_RUNNING = auto()  # nothing managed runs, or the user stopped it
    NOT_READY = auto()  # a managed record is active but the server does not answer
    ALREADY_CURRENT = auto()  # the server already runs the managed version
    RESTARTED = auto()  # restarted onto the managed binary and validated
    ROLLED_BACK = auto()  # validation failed; the previous release serves again
    FAILED = auto()  # validation and rollback failed; nothing serves


def restart_decision(
    mode: RestartMode, info: AppServerInfo | None, managed_version: str | None
) -> RestartDecision:
    """The seed's table (SPEC §8.6); versions compare normalised (SPEC §7.2).

    ``info`` is the probe of the running server, ``managed_version`` what the managed
    binary reports. A managed version that is unknown while the server answers means
    restart, as in the seed.
    """
    match mode:
        case RestartMode.ALWAYS:
            return RestartDecision.RESTART
        case RestartMode.IF_VERSION_CHANGED:
            if info is None:
                return RestartDecision.NOT_READY
            if managed_version is not None and versions_equal(
                info.app_server_version, managed_version
            ):
                return RestartDecision.ALREADY_CURRENT
            return RestartDecision.RESTART
        case _:
            assert_never(mode)


def should_reexec_updater(refresh: UpdaterRefreshMode, outcome: RestartOutcome) -> bool:
    """True only for a validated restart when the managed binary changed (SPEC §8.8)."""
    match refresh:
        case UpdaterRefreshMode.NONE:
            return False
        case UpdaterRefreshMode.REEXEC_IF_MANAGED_BINARY_CHANGED:
            return outcome is RestartOutcome.RESTARTED
        case _:
            assert_never(refresh)


def update_modes_for_identities(
    reference_digest: str | None, managed_digest: str
) -> tuple[RestartMode, UpdaterRefreshMode]:
    """Modes from the digest the running server was started from (SPEC §8.5).

    Unknown or equal reference: restart only onto a new version; a different one means
    the binary was replaced under the same version, so restart and refresh the updater.
    """
    if reference_digest is None or reference_digest.lower() == managed_digest.lower():
        return RestartMode.IF_VERSION_CHANGED, UpdaterRefreshMode.NONE
    return RestartMode.ALWAYS, UpdaterRefreshMode.REEXEC_IF_MANAGED_BINARY_CHANGED


def backoff_delay_s(interval_s: float, consecutive_failures: int, cap_s: float) -> float:
    """``min(interval x 2^n, cap)`` after n consecutive failed cycles (SPEC §8.10)."""
    if consecutive_failures <= 0:
        return min(interval_s, cap_s)
    # Past 2^64 the cap has long won; bounding the exponent keeps the float finite.
    return min(interval_s * 2.0 ** min(consecutive_failures, 64), cap_s)


def active_quarantine(quarantine: Mapping[str, int], now_ms: int) -> dict[str, int]:
    """The quarantine entries that have not expired at ``now_ms``."""
    return {release: until for release, until in quarantine.items() if until > now_ms}


def is_quarantined(quarantine: Mapping[str, int], release: str, now_ms: int) -> bool:
    until = quarantine.get(release)
    return until is not None and until > now_ms


def recent_restarts(restarts_at_ms: Iterable[int], now_ms: int, window_ms: int) -> list[int]:
    """The restart timestamps inside the rolling window ending at ``now_ms``."""
    return sorted(at for at in restarts_at_ms if now_ms - window_ms < at <= now_ms)


def restart_cap_reached(
    restarts_at_ms: Iterable[int], now_ms: int, window_ms: int, cap: int = RESTART_CAP
) -> bool:
    """True when ``cap`` unattended restarts already happened in the window (SPEC §8.10)."""
    return len(recent_restarts(restarts_at_ms, now_ms, window_ms)) >= cap
