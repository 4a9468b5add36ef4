"""Pure parts of the probe: user-agent version parsing and the RFC 6455 accept key.

SPEC §6.1-§6.3, §13.8 row 29 (missing `/`, empty version).
"""

from __future__ import annotations

import pytest

from daemonkit.errors import ProbeError, render_error
from daemonkit.probe import accept_key, parse_user_agent_version

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("user_agent", "version"),
    [
        ("codex_cli_rs/0.169.0 (Debian 12.0.0; x86_64) xterm", "0.169.0"),
        ("codex_app_server_daemon/1.2.3 (Linux 6.8.0; x86_64) codex_cli_rs/1.2.3", "1.2.3"),
        ("codex_cli_rs/0.169.0", "0.169.0"),
        ("codex_cli_rs/  0.169.0  ", "0.169.0"),
        ("codex_cli_rs/\t2.0.0\n(Mac OS)", "2.0.0"),
        ("a/b/c d", "b/c"),
        ("/1.0", "1.0"),
        ("codex_cli_rs/v1.0.0-alpha+build.5 (x)", "v1.0.0-alpha+build.5"),
        ("codex/é.1 x", "é.1"),
    ],
)
def test_version_is_the_first_token_after_the_first_slash(user_agent: str, version: str) -> None:
    assert parse_user_agent_version(user_agent) == version


@pytest.mark.parametrize("user_agent", ["", "codex_cli_rs", "codex_cli_rs 0.169.0 (Linux)"])
def test_no_slash(user_agent: str) -> None:
    with pytest.raises(ProbeError) as caught:
        parse_user_agent_version(user_agent)
    assert caught.value.message == "app-server user-agent omitted version separator"
    assert render_error(caught.value) == "Error: app-server user-agent omitted version separator"


@pytest.mark.parametrize("user_agent", ["x/", "/", "codex_cli_rs/ ", "codex_cli_rs/\t\n"])
def test_empty_version(user_agent: str) -> None:
    with pytest.raises(ProbeError) as caught:
        parse_user_agent_version(user_agent)
    assert caught.value.message == "app-server user-agent omitted version"


def test_accept_key_rfc6455_example() -> None:
    # RFC 6455 section 1.3.
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accept_key_reference_exchange() -> None:
    # The key and accept value of the captured 0.169.0 exchange (SPEC §6.5).
    assert accept_key("usuCoxhh/+fKvG3vXSIs8w==") == "bA66EG7Gk2IYYcxgs4Q/sMGlSVk="
