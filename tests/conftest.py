"""Fixtures shared by every layer: a fresh short CODEX_HOME and a leak sweep."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from tests.harness import Home, RealCodex, marked_pids, real_codex_build
from tests.updates import ScriptServer

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def home() -> Iterator[Home]:
    """A fresh CODEX_HOME under /tmp/dk-*; teardown kills what the test started and
    fails the test if anything it started had to be swept up."""
    h = Home()
    try:
        yield h
    finally:
        leaked = h.close()
    if leaked:
        pytest.fail(f"processes leaked by the test (killed in teardown): {leaked}")


@pytest.fixture
def fake_home(home: Home) -> Home:
    """A home whose managed Codex is the fake, version 1.0.0."""
    home.install_fake()
    return home


@pytest.fixture(params=["pinned", "latest"])
def real_codex(request: pytest.FixtureRequest) -> RealCodex:
    """The pinned Codex release, then npm's latest as .ci/run resolved it at run time.

    Missing builds skip, or fail under ``DK_REAL_CODEX_REQUIRED=1`` (set by .ci/run):
    CI must not turn a broken Codex install into a green run.
    """
    label = request.param
    build = real_codex_build(label)
    if build is None:
        why = f"the {label} real Codex CLI is not installed (bash .ci/run installs it)"
        if os.environ.get("DK_REAL_CODEX_REQUIRED") == "1":
            pytest.fail(f"{why} (DK_REAL_CODEX_REQUIRED=1)")
        pytest.skip(why)
    request.node.user_properties.append(("real_codex", f"{build.label} {build.version}"))
    return build


@pytest.fixture
def script_server() -> Iterator[ScriptServer]:
    """A loopback HTTP server for the install script the updater fetches."""
    server = ScriptServer()
    try:
        yield server
    finally:
        server.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say which real Codex builds the e2e tests ran against, and how they fared."""
    outcomes: dict[str, dict[str, int]] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if not isinstance(report, pytest.TestReport):
                continue
            if report.when != "call":
                continue
            for key, value in report.user_properties:
                if key == "real_codex":
                    counts = outcomes.setdefault(str(value), {})
                    counts[report.outcome] = counts.get(report.outcome, 0) + 1
    for build, counts in sorted(outcomes.items()):
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        terminalreporter.write_line(f"real Codex {build}: {summary}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any process a test started is still alive at the end."""
    leftovers = marked_pids()
    if leftovers:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(  # type: ignore[union-attr]
            f"FAILED: processes started by tests still alive at session end: {leftovers}",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
