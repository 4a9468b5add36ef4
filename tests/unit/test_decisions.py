"""The updater's pure decisions, row by row (SPEC §8.5, §8.6, §8.8, §8.10; §13.9 rows 32-33)."""

from __future__ import annotations

import itertools

import pytest

from daemonkit.decisions import (
    RESTART_CAP,
    RestartDecision,
    RestartMode,
    RestartOutcome,
    UpdaterRefreshMode,
    active_quarantine,
    backoff_delay_s,
    is_quarantined,
    recent_restarts,
    restart_cap_reached,
    restart_decision,
    should_reexec_updater,
    update_modes_for_identities,
)
from daemonkit.probe import AppServerInfo

pytestmark = pytest.mark.timeout(10)


def info(version: str) -> AppServerInfo:
    return AppServerInfo(app_server_version=version, user_agent=f"codex_cli_rs/{version} (x) y")


# mode, probe info, managed version, decision: SPEC §8.6's table, plus the seed's
# forced refresh rows and the normalisation that prevents restart loops (SPEC §7.2).
IVC = RestartMode.IF_VERSION_CHANGED
ALWAYS = RestartMode.ALWAYS
NOT_READY = RestartDecision.NOT_READY
CURRENT = RestartDecision.ALREADY_CURRENT
RESTART = RestartDecision.RESTART

DECISION_TABLE = [
    pytest.param(IVC, None, None, NOT_READY, id="ivc-no-probe"),
    pytest.param(IVC, None, "0.1.0", NOT_READY, id="ivc-no-probe-managed-known"),
    pytest.param(IVC, info("0.1.0"), "0.1.0", CURRENT, id="ivc-equal"),
    pytest.param(IVC, info("0.1.0"), "0.2.0", RESTART, id="ivc-different"),
    pytest.param(IVC, info("0.2.0"), "0.1.0", RESTART, id="ivc-downgrade"),
    pytest.param(IVC, info("0.1.0"), None, RESTART, id="ivc-managed-unknown"),
    pytest.param(IVC, info("v1.2.3"), "1.2.3", CURRENT, id="ivc-v-prefix"),
    pytest.param(IVC, info("1.2.3"), "rust-v1.2.3", CURRENT, id="ivc-rust-v-prefix"),
    pytest.param(IVC, info("1.2"), "1.2.0", CURRENT, id="ivc-pep440-equal"),
    pytest.param(IVC, info("nightly"), "nightly-2", RESTART, id="ivc-raw-strings"),
    pytest.param(ALWAYS, info("0.1.0"), "0.1.0", RESTART, id="always-equal"),
    pytest.param(ALWAYS, info("0.1.0"), "0.2.0", RESTART, id="always-different"),
    pytest.param(ALWAYS, None, None, RESTART, id="always-no-probe"),
    pytest.param(ALWAYS, None, "0.1.0", RESTART, id="always-no-probe-managed-known"),
]


@pytest.mark.parametrize(("mode", "probe_info", "managed", "expected"), DECISION_TABLE)
def test_restart_decision_table(
    mode: RestartMode,
    probe_info: AppServerInfo | None,
    managed: str | None,
    expected: RestartDecision,
) -> None:
    assert restart_decision(mode, probe_info, managed) is expected


REEXEC_CASES = [
    pytest.param(
        refresh,
        outcome,
        refresh is UpdaterRefreshMode.REEXEC_IF_MANAGED_BINARY_CHANGED
        and outcome is RestartOutcome.RESTARTED,
        id=f"{refresh.name}-{outcome.name}",
    )
    for refresh, outcome in itertools.product(UpdaterRefreshMode, RestartOutcome)
]


@pytest.mark.parametrize(("refresh", "outcome", "expected"), REEXEC_CASES)
def test_should_reexec_updater(
    refresh: UpdaterRefreshMode, outcome: RestartOutcome, expected: bool
) -> None:
    assert should_reexec_updater(refresh, outcome) is expected


def test_reexec_only_for_a_validated_restart_with_a_changed_binary() -> None:
    # The seed's two tests, restated over the kit's larger outcome set.
    reexecs = [
        (refresh, outcome)
        for refresh, outcome in itertools.product(UpdaterRefreshMode, RestartOutcome)
        if should_reexec_updater(refresh, outcome)
    ]
    assert reexecs == [
        (UpdaterRefreshMode.REEXEC_IF_MANAGED_BINARY_CHANGED, RestartOutcome.RESTARTED)
    ]


DIGEST_A = "ab" * 32
DIGEST_B = "cd" * 32


@pytest.mark.parametrize(
    ("reference", "managed", "expected"),
    [
        pytest.param(
            None,
            DIGEST_A,
            (RestartMode.IF_VERSION_CHANGED, UpdaterRefreshMode.NONE),
            id="unknown-reference",
        ),
        pytest.param(
            DIGEST_A,
            DIGEST_A,
            (RestartMode.IF_VERSION_CHANGED, UpdaterRefreshMode.NONE),
            id="equal",
        ),
        pytest.param(
            DIGEST_A.upper(),
            DIGEST_A,
            (RestartMode.IF_VERSION_CHANGED, UpdaterRefreshMode.NONE),
            id="equal-hex-case",
        ),
        pytest.param(
            DIGEST_A,
            DIGEST_B,
            (RestartMode.ALWAYS, UpdaterRefreshMode.REEXEC_IF_MANAGED_BINARY_CHANGED),
            id="different",
        ),
    ],
)
def test_update_modes_for_identities(
    reference: str | None, managed: str, expected: tuple[RestartMode, UpdaterRefreshMode]
) -> None:
    assert update_modes_for_identities(reference, managed) == expected


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(0, 3600.0), (1, 7200.0), (2, 14400.0), (4, 57600.0), (5, 86400.0), (1000, 86400.0)],
)
def test_backoff_doubles_up_to_the_cap(failures: int, expected: float) -> None:
    assert backoff_delay_s(3600.0, failures, 86400.0) == expected


def test_backoff_never_exceeds_the_cap_even_for_a_long_interval() -> None:
    assert backoff_delay_s(525_600 * 60.0, 0, 86400.0) == 86400.0


def test_quarantine_expires() -> None:
    quarantine = {
        "1.1.0-x86_64-unknown-linux-musl": 5_000,
        "1.0.9-x86_64-unknown-linux-musl": 1_000,
    }
    assert is_quarantined(quarantine, "1.1.0-x86_64-unknown-linux-musl", 4_999)
    assert not is_quarantined(quarantine, "1.1.0-x86_64-unknown-linux-musl", 5_000)
    assert not is_quarantined(quarantine, "1.2.0-x86_64-unknown-linux-musl", 0)
    assert active_quarantine(quarantine, 2_000) == {"1.1.0-x86_64-unknown-linux-musl": 5_000}


def test_restart_cap_counts_a_rolling_window() -> None:
    window = 3_600_000
    now = 10_000_000
    inside = [now - window + 1, now - 1000, now - 10, now]
    assert recent_restarts([now - window, *inside], now, window) == inside
    assert RESTART_CAP == 4
    assert restart_cap_reached(inside, now, window)
    assert not restart_cap_reached(inside[1:], now, window)
    # The oldest restart leaves the window: a fifth restart is allowed again.
    assert not restart_cap_reached(inside, now + 2, window)
