"""The CLI's argparse-free reading of common invocations agrees with argparse (SPEC §2).

``daemonkit.cli`` reads ``[--codex-home PATH] COMMAND`` itself for commands without
options, to spare the common commands argparse's start-up cost. argparse stays the
definition: whatever the short path accepts, argparse must read identically, and the
short path must be taken for the invocations users type every day.
"""

from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemonkit.cli import (
    _SIMPLE_COMMANDS,
    Invocation,
    _argparse_invocation,
    _simple_invocation,
    parse_arguments,
)

pytestmark = pytest.mark.timeout(120)

COMMANDS = sorted(
    {*_SIMPLE_COMMANDS, "install", "update", "logs", "bootstrap", "stat", "Stop", "stop "}
)
TOKENS = st.one_of(
    st.sampled_from(
        [
            *COMMANDS,
            "--codex-home",
            "--codex-home=",
            "--codex-home=/tmp/h",
            "--codex-home=-x",
            "--codex",
            "--codex=/h",
            "-h",
            "--help",
            "--",
            "-V",
            "--yes",
            "--bytes",
            "12",
            "-x",
            "-1",
            "",
            "/tmp/dk-home",
            "a path with spaces",
        ]
    ),
    st.text(max_size=12),
)
# Arbitrary token lists, and lists shaped like the invocations the short path reads.
ARGVS = st.one_of(
    st.lists(TOKENS, max_size=4),
    st.tuples(st.just("--codex-home"), TOKENS, st.sampled_from(COMMANDS)).map(list),
    st.tuples(TOKENS, st.sampled_from(COMMANDS)).map(list),
)


def argparse_reading(argv: list[str]) -> Invocation | None:
    """argparse's invocation for argv, or None when it rejects it (exit 2) or exits 0."""
    with (
        contextlib.redirect_stderr(io.StringIO()),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        try:
            return _argparse_invocation(argv)
        except SystemExit:
            return None


@settings(max_examples=400, deadline=None, database=None)
@given(ARGVS)
def test_every_short_reading_is_argparse_reading(argv: list[str]) -> None:
    simple = _simple_invocation(argv)
    if simple is not None:
        assert simple == argparse_reading(argv)


@pytest.mark.parametrize("command", sorted(_SIMPLE_COMMANDS))
@pytest.mark.parametrize(
    ("prefix", "home"),
    [([], None), (["--codex-home", "/tmp/dk-h"], "/tmp/dk-h"), (["--codex-home=/x y"], "/x y")],
)
def test_everyday_invocations_take_the_short_path(
    command: str, prefix: list[str], home: str | None
) -> None:
    argv = [*prefix, command]
    simple = _simple_invocation(argv)
    assert simple is not None
    assert simple == Invocation(command, home)
    assert simple == argparse_reading(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["install"],
        ["logs"],
        ["update", "--yes"],
        ["--codex", "/h", "stop"],
        ["--codex-home", "-h", "stop"],
        ["stop", "--codex-home", "/h"],
        ["--codex-home", "/a", "--codex-home", "/b", "stop"],
        ["--", "stop"],
        ["-h"],
        [],
    ],
)
def test_everything_else_goes_to_argparse(argv: list[str]) -> None:
    assert _simple_invocation(argv) is None


def test_parse_arguments_exits_2_on_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_arguments(["stpo"])
    assert exited.value.code == 2
    assert "invalid choice: 'stpo'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["logs"], Invocation("logs")),
        (["logs", "--bytes", "12"], Invocation("logs", log_bytes=12)),
        (["update", "--yes"], Invocation("update", assume_yes=True)),
        (
            ["--codex-home", "/h", "install", "--channel", "npm", "--version", "1.2.3"],
            Invocation("install", "/h", channel="npm", install_version="1.2.3"),
        ),
        (["bootstrap", "--remote-control"], Invocation("bootstrap", remote_control=True)),
        (["enable", "--now"], Invocation("enable", now=True)),
        (["disable"], Invocation("disable")),
    ],
)
def test_argparse_reads_options_into_the_invocation(argv: list[str], expected: Invocation) -> None:
    assert parse_arguments(argv) == expected
