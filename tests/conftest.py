"""Fixtures shared by every layer: a fresh short CODEX_HOME and a leak sweep."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.harness import Home, marked_pids
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


@pytest.fixture
def script_server() -> Iterator[ScriptServer]:
    """A loopback HTTP server for the install script the updater fetches."""
    server = ScriptServer()
    try:
        yield server
    finally:
        server.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any process a test started is still alive at the end."""
    leftovers = marked_pids()
    if leftovers:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(  # type: ignore[union-attr]
            f"FAILED: processes started by tests still alive at session end: {leftovers}",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
