#!/usr/bin/env python3
# ruff: noqa: SLF001
# SLF001: argparse has no public API to list a parser's actions; every man page
# generator (argparse-manpage, sphinx-argparse) reads _actions the same way.
"""Generate the man pages and bash completions from the CLIs' own argparse parsers.

``codex-daemon(1)`` and ``codex-daemon-updater(1)`` (SPEC §12.5) and the bash
completions are written under ``packaging/`` and committed; the packaging tests
regenerate them and fail on any difference, so they never drift from ``--help``.
The commands, options, choices and help texts come from ``daemonkit.cli.build_parser``
and ``updater.__main__.build_parser``; the sections a parser cannot know (files,
settings, exit status, recovery) are written below once, from SPEC §2, §3 and §8.

    python3 packaging/gen_manpages.py            # rewrite the generated files
    python3 packaging/gen_manpages.py --check    # exit 1 and name the files that drifted

Stdlib only, and deterministic: no dates, no terminal-width dependence.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

PACKAGING = Path(__file__).resolve().parent
REPO = PACKAGING.parent
_UNESCAPED_MINUS = re.compile(r"(?<!\\)-")


# -- roff ---------------------------------------------------------------------------


def esc(text: str) -> str:
    r"""Escape plain text for roff: backslashes and minus signs.

    Every ``-`` becomes ``\-`` so options, paths and commands copy and paste as ASCII
    hyphen-minus from the rendered page.
    """
    return text.replace("\\", "\\e").replace("-", "\\-")


def bold(text: str) -> str:
    return rf"\fB{esc(text)}\fR"


def ital(text: str) -> str:
    return rf"\fI{esc(text)}\fR"


def _line(text: str) -> str:
    """One roff text line; a leading ``.`` or ``'`` would be read as a request.

    Minus signs that are not escaped yet (in the hand-written sections) are escaped.
    """
    if text.startswith((".SY", ".RS", ".RE", ".TP")):
        return text
    text = _UNESCAPED_MINUS.sub(r"\\-", text)
    return rf"\&{text}" if text.startswith((".", "'")) else text


@dataclass(frozen=True, slots=True)
class Item:
    """A tagged paragraph (``.TP``): the tag is roff, the body is a list of roff lines."""

    tag: str
    body: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    paragraphs: tuple[str | Item, ...] = field(default=())


def render_section(section: Section) -> list[str]:
    lines = [f".SH {section.title}"]
    previous: str | Item | None = None
    for paragraph in section.paragraphs:
        match paragraph:
            case Item(tag=tag, body=body):
                lines += [".TP", _line(tag), *(_line(line) for line in body)]
            case str():
                if previous is not None:
                    lines.append(".PP")
                lines.append(_line(paragraph))
        previous = paragraph
    return lines


# -- argparse introspection ---------------------------------------------------------


def _subcommands(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def commands_of(
    parser: argparse.ArgumentParser,
) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, help, subparser)`` for each subcommand, in the parser's order."""
    sub = _subcommands(parser)
    if sub is None:
        return []
    helps = {choice.dest: choice.help or "" for choice in sub._choices_actions}
    return [(name, helps.get(name, ""), child) for name, child in sub.choices.items()]


def options_of(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        action
        for action in parser._actions
        if action.option_strings and action.help != argparse.SUPPRESS
    ]


def takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def value_name(action: argparse.Action) -> str:
    if action.choices is not None:
        return "|".join(str(choice) for choice in action.choices)
    if isinstance(action.metavar, str):
        return action.metavar
    return action.dest.upper()


def help_text(action: argparse.Action, prog: str) -> str:
    """The option's help with argparse's ``%(...)s`` substitutions applied."""
    text = action.help or ""
    if "%" in text:
        params = dict(vars(action), prog=prog)
        if action.choices is not None:
            params["choices"] = ", ".join(str(choice) for choice in action.choices)
        text = text % params
    return text


def _roff_value(action: argparse.Action) -> str:
    if action.choices is not None:
        return "|".join(bold(str(choice)) for choice in action.choices)
    return ital(value_name(action))


def option_tag(action: argparse.Action) -> str:
    names = ", ".join(bold(name) for name in action.option_strings)
    return f"{names} {_roff_value(action)}" if takes_value(action) else names


def option_usage(action: argparse.Action) -> str:
    """``[--name VALUE]`` for a synopsis, with the longest spelling of the option."""
    name = bold(max(action.option_strings, key=len))
    inner = f"{name} {_roff_value(action)}" if takes_value(action) else name
    return inner if action.required else f"[{inner}]"


# -- the pages ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    """What the parser cannot say about a program: the hand-written sections."""

    name: str
    build_parser: Callable[[], argparse.ArgumentParser]
    version: str
    extra_description: tuple[str, ...]
    sections: tuple[Section, ...]


def _synopsis(parser: argparse.ArgumentParser) -> list[str]:
    prog = parser.prog
    top = [action for action in options_of(parser) if action.dest != "help"]
    lines = [".SY " + esc(prog), *(option_usage(action) for action in top)]
    sub = _subcommands(parser)
    if sub is not None:
        lines.append(ital(sub.metavar if isinstance(sub.metavar, str) else "COMMAND"))
        lines.append(rf"[{ital('OPTIONS')}]")
    lines.append(".YS")
    # One line per command, with the global options that take a value (--codex-home).
    global_usage = [option_usage(action) for action in top if takes_value(action)]
    for name, _, child in commands_of(parser):
        lines += [".SY " + esc(prog), *global_usage, bold(name)]
        lines += [option_usage(action) for action in options_of(child) if action.dest != "help"]
        lines.append(".YS")
    return lines


def _options_section(parser: argparse.ArgumentParser) -> Section:
    return Section(
        "OPTIONS",
        tuple(
            Item(option_tag(action), (esc(help_text(action, parser.prog)),))
            for action in options_of(parser)
        ),
    )


def _commands_section(parser: argparse.ArgumentParser) -> Section:
    items: list[Item] = []
    for name, text, child in commands_of(parser):
        body = [esc(text)]
        options = [action for action in options_of(child) if action.dest != "help"]
        if options:
            body.append(".RS")
            for action in options:
                body += [".TP", option_tag(action), esc(help_text(action, child.prog))]
            body.append(".RE")
        items.append(Item(bold(name), tuple(body)))
    return Section("COMMANDS", tuple(items))


def _sentences(text: str) -> tuple[str, str]:
    """The first sentence of a description (for NAME) and the rest."""
    head, dot, rest = text.partition(". ")
    if not dot:
        return text.rstrip("."), ""
    return head, rest.strip()


def render_manpage(page: Page) -> str:
    parser = page.build_parser()
    description = parser.description or ""
    summary, rest = _sentences(description)
    summary = summary[:1].lower() + summary[1:]
    lines = [
        f".\\\" Generated by packaging/gen_manpages.py from {page.name}'s argparse parser.",
        '.\\" Do not edit: change the parser or the generator and regenerate.',
        (
            f'.TH {esc(page.name.upper())} 1 "" "codex\\-daemonkit {esc(page.version)}" '
            '"User Commands"'
        ),
        # No hyphenation, ragged right: option and file names must stay whole. HY=0
        # keeps it off after .YS, which restores hyphenation from that register.
        ".nr HY 0",
        ".nh",
        ".ad l",
        ".SH NAME",
        f"{esc(page.name)} \\- {esc(summary)}",
        ".SH SYNOPSIS",
        *_synopsis(parser),
    ]
    paragraphs = [esc(text) for text in (rest, parser.epilog or "") if text]
    lines += render_section(Section("DESCRIPTION", (*paragraphs, *page.extra_description)))
    lines += render_section(_options_section(parser))
    lines += render_section(_commands_section(parser))
    for section in page.sections:
        lines += render_section(section)
    return "\n".join(lines) + "\n"


def _files_item(path: str, *body: str) -> Item:
    return Item(ital("CODEX_HOME") + bold(path), body)


_STATE = "/app-server-daemon/"

_COMMON_ENVIRONMENT = Section(
    "ENVIRONMENT",
    (
        Item(
            bold("CODEX_HOME"),
            (
                (
                    f"The Codex home when {bold('--codex-home')} is not given and the variable is "
                    f"set and not empty; otherwise {ital('$HOME')}{bold('/.codex')}. A relative "
                    "path is made absolute against the current directory; symbolic links in it "
                    "are not resolved."
                ),
            ),
        ),
        Item(
            bold("HOME"),
            ("The user's home directory; the password database is used when it is unset.",),
        ),
        Item(
            bold("XDG_RUNTIME_DIR") + ", " + bold("XDG_CONFIG_HOME"),
            (
                (
                    f"Where {bold('enable')}, {bold('disable')} and {bold('status')} find the "
                    "user manager (/run/user/UID when unset) and the user unit directory "
                    "(~/.config when unset)."
                ),
            ),
        ),
        Item(
            bold("CODEX_DAEMONKIT_DEBUG"),
            (f"Set to {bold('1')} to print a Python traceback with an error.",),
        ),
    ),
)

_SYSTEMD = Section(
    "SYSTEMD",
    (
        (
            f"To keep the app-server of a Codex home running across logout and reboot, run "
            f"{bold('codex-daemon enable --now')} as the user who runs Codex. It needs a "
            f"systemd user manager ({bold('systemctl --user')} must work), writes a user unit "
            f"for the home into {ital('$XDG_CONFIG_HOME')}{bold('/systemd/user/')} (default "
            f"{bold('~/.config/systemd/user/')}), enables it, starts it with "
            f"{bold('--now')}, and turns lingering on for the user "
            f"({bold('loginctl enable-linger')}), so the user manager, and the server, run "
            "from boot to shutdown without a login session. That is the only setup needed."
        ),
        Item(
            bold("the unit"),
            (
                (
                    f"{bold('codex-daemon.service')} for {ital('$HOME')}{bold('/.codex')}, "
                    f"{bold('codex-daemon-')}{ital('hash')}{bold('.service')} for any other "
                    f"home. It runs {bold('codex-daemon --codex-home')} {ital('home')} "
                    f"{bold('start')} when started and {bold('stop')} when stopped, with the "
                    "absolute path of the installation that wrote it. The server and the "
                    "updater live in the unit's cgroup: stopping the unit stops both. The "
                    "packaged units in /usr/lib/systemd/user/ are what it is written from; they "
                    "need not be enabled by hand."
                ),
            ),
        ),
        Item(
            bold("lingering"),
            (
                (
                    "Without it the user manager stops when the last session ends. When polkit "
                    f"refuses the change, {bold('enable')} warns and prints the command to run "
                    f"as root. {bold('disable')} turns lingering off again only if "
                    "enable turned it on and no other Codex home's unit is still enabled; it "
                    f"remembers that in {bold('~/.local/state/codex-daemonkit/linger.json')}."
                ),
            ),
        ),
        Item(
            bold("login sessions"),
            (
                (
                    f"{bold('start')}, {bold('restart')} and {bold('bootstrap')} run from a "
                    "login session (SSH, a desktop) with lingering on place the server and the "
                    f"updater in a transient scope of the user manager ({bold('systemd-run')} "
                    f"{bold('--user --scope')}), so logind's KillUserProcesses=yes does not end "
                    "them at logout; same pid, same pid record. With lingering off and "
                    "KillUserProcesses=yes they warn that the server will stop at logout."
                ),
            ),
        ),
        (
            f"{bold('codex-daemon disable --now')} stops the unit, disables it and removes "
            f"its file. {bold('codex-daemon status')} reports {bold('persistence')}: "
            f"{bold('systemd')} is enabled, disabled or unavailable, {bold('linger')} true, "
            "false or null. Without systemd nothing of this runs and nothing changes."
        ),
    ),
)

_COMMON_FILES: tuple[Item, ...] = (
    _files_item(
        _STATE + "settings.json",
        (
            f"Settings (see {bold('SETTINGS')}); optional. Written pretty-printed, keeping "
            "unknown keys and their order."
        ),
    ),
    _files_item(
        _STATE + "app-server.pid",
        (
            "The managed app-server's pid record (JSON: pid, start time, boot id, "
            f"executable). {bold('app-server.pid.lock')} is its reservation lock, "
            f"{bold('app-server.pid.tmp')} its publish temporary."
        ),
    ),
    _files_item(
        _STATE + "app-server-updater.pid",
        "The updater's pid record, with its own .lock and .tmp.",
    ),
    _files_item(
        _STATE + "app-server.stderr.log",
        (
            f"The app-server's standard error; rotated to {bold('.previous')} at each start. "
            f"{bold('app-server-updater.stderr.log')} is the updater's log of JSON lines."
        ),
    ),
    _files_item(
        _STATE + "daemon.lock",
        "The operation lock that serialises commands that change state; never deleted.",
    ),
    _files_item(
        _STATE + "desired-state.json",
        "Whether the user last started or stopped the server; an updater never starts a "
        "server that was stopped.",
    ),
    _files_item(
        _STATE + "app-server-updater.state.json",
        "The updater's last check, result, error, backoff and quarantined releases.",
    ),
    _files_item(
        _STATE + "app-server-updater.sock",
        f"The updater's request socket, used by {bold('codex-daemon update')}.",
    ),
    _files_item(
        "/app-server-control/app-server-control.sock",
        "The app-server's control socket (created by the app-server).",
    ),
    _files_item(
        "/packages/standalone/current",
        (
            "Symbolic link to the managed Codex release in "
            f"{bold('releases/')}; {bold('previous')} names the release to roll back to."
        ),
    ),
)

_SETTINGS = Section(
    "SETTINGS",
    (
        (
            f"{ital('CODEX_HOME')}{bold(_STATE + 'settings.json')} is a JSON object; every key is "
            "optional and unknown keys are kept."
        ),
        Item(
            bold("remoteControlEnabled") + " (boolean, default false)",
            ("Start the app-server with remote control enabled.",),
        ),
        Item(
            bold("shutdownGraceSeconds") + " (integer 0 to 300, default 60)",
            ("How long stop waits after SIGTERM before it sends SIGKILL.",),
        ),
        Item(
            bold("updater.autoUpdateEnabled") + " (boolean, default true)",
            ("Install new Codex releases on a schedule and restart the app-server onto them.",),
        ),
        Item(
            bold("updater.updateIntervalMinutes") + " (integer 1 or more, default 60)",
            ("Minutes between scheduled update checks.",),
        ),
        Item(
            bold("updater.channel") + f" ({bold('script')} or {bold('npm')}, default script)",
            ("Where new Codex releases come from.",),
        ),
        Item(
            bold("updater.installScriptUrl")
            + " (URL, default "
            + bold("https://chatgpt.com/codex/install.sh")
            + ")",
            ("The installer script of the script channel; https only, or file://.",),
        ),
        Item(
            bold("supervisor.restartOnExit") + " (boolean, default true)",
            (
                (
                    "Restart an app-server that dies on its own (at once, then after 1, 2, 4 "
                    "up to 60 seconds; five exits within five minutes give up until the next "
                    "start). An updater runs when this or updater.autoUpdateEnabled is true."
                ),
            ),
        ),
        Item(
            bold("supervisor.healthCheckIntervalSeconds") + " (0, or 5 to 3600, default 60)",
            (
                (
                    "Probe the app-server this often; three failed probes of a live server "
                    "stop and restart it. 0 turns the health check off."
                ),
            ),
        ),
    ),
)

_RECOVERY = Section(
    "RECOVERING FROM A CORRUPT PID RECORD",
    (
        (
            "A record that cannot be read fails commands with "
            f"{bold('invalid pid file contents in')} {ital('path')}, and "
            f"{bold('codex-daemon status')} warns about it. The kit never "
            "signals a process it cannot identify, so the record must be removed by hand:"
        ),
        Item(
            "1.",
            (
                (
                    "Check whether an app-server of this Codex home still runs: the record may "
                    f"still show its pid, and {bold('codex-daemon version')} or "
                    f"{bold('ps -ef | grep app-server')} find it; if one does, stop it with "
                    f"{bold('kill')} {ital('pid')}."
                ),
            ),
        ),
        Item(
            "2.",
            (
                (
                    f"Delete the record ({bold('app-server.pid')} or "
                    f"{bold('app-server-updater.pid')}). "
                    f"Leave the {bold('.lock')} files alone: lock files are never deleted."
                ),
            ),
        ),
        Item("3.", (f"Run {bold('codex-daemon start')} again.",)),
    ),
)


def _daemon_page() -> Page:
    from daemonkit import __version__  # noqa: PLC0415
    from daemonkit.cli import build_parser  # noqa: PLC0415

    return Page(
        name="codex-daemon",
        build_parser=build_parser,
        version=__version__,
        extra_description=(
            (
                "That object is compact, ends with a newline and is the only thing written "
                "on standard output. On failure a command prints nothing on standard output "
                f"and an {bold('Error:')} message, possibly followed by {bold('Caused by:')} "
                f"lines, on standard error. Warnings are single {bold('warning:')} lines on "
                "standard error and never change the exit status."
            ),
            (
                "An app-server is managed when its pid record names a live process with the "
                "recorded identity; only managed processes are ever signalled. A server that "
                "answers on the control socket without such a record is reported as "
                "unmanaged and is never stopped or restarted, until "
                f"{bold('codex-daemon adopt')} records it: only a Codex app-server of the "
                "same user is adopted, and from then on every command, and the updater's "
                "supervision, manage it."
            ),
            (
                "The updater supervises the managed app-server: one that dies on its own is "
                "started again as start would start it, at once the first time, then after "
                "1, 2, 4 up to 60 seconds; five exits within five minutes make it give up "
                "until the next start, restart or bootstrap. It never restarts after a stop. "
                f"{bold('codex-daemon status')} reports it under {bold('supervisor')}: "
                f"{bold('state')} (watching, restarting, backingOff, gaveUp, interrupted or "
                f"off), {bold('restartOnExit')}, {bold('restarts')} since the last user start, "
                f"{bold('lastExit')} (time, pid and reason of the last unexpected exit), and "
                f"for interrupted the {bold('reason')}: a Codex daemon command stopped the "
                "updater, or the Codex daemon's own updater, which does not supervise, holds "
                "its record. The next start restores supervision."
            ),
            (
                "A home the Codex daemon set up in its dedicated package layout "
                "(packages/app-server-daemon) is managed in place, under its file names; "
                "updates there are the Codex daemon's own: the updater runs the managed "
                f"binary's {bold('codex app-server daemon pid-update-loop')} and installs "
                "nothing itself, and the kit's own files for that home are kept in "
                "$XDG_STATE_HOME/codex-daemonkit/homes/."
            ),
        ),
        sections=(
            Section(
                "EXIT STATUS",
                (
                    Item(bold("0"), ("Success; one JSON object was printed.",)),
                    Item(bold("1"), ("Error; the message is on standard error.",)),
                    Item(bold("2"), ("Usage error (unknown command, option or value).",)),
                ),
            ),
            _COMMON_ENVIRONMENT,
            Section("FILES", _COMMON_FILES),
            _SETTINGS,
            _RECOVERY,
            _SYSTEMD,
            Section(
                "SEE ALSO",
                (
                    (
                        f"{bold('codex-daemon-updater')}(1), {bold('systemctl')}(1), "
                        f"{bold('loginctl')}(1)"
                    ),
                ),
            ),
        ),
    )


def _updater_page() -> Page:
    from daemonkit import __version__  # noqa: PLC0415
    from updater.__main__ import build_parser  # noqa: PLC0415

    return Page(
        name="codex-daemon-updater",
        build_parser=build_parser,
        version=__version__,
        extra_description=(
            (
                f"{bold('codex-daemon')} starts the updater detached next to the app-server "
                "when updater.autoUpdateEnabled or supervisor.restartOnExit is true; it can "
                "also run under systemd. Only "
                "one updater runs per Codex home: a second one exits with status 0. An "
                "updater that finds no pid record registers itself in "
                f"{bold('app-server-updater.pid')}."
            ),
            (
                "The update loop waits 300 seconds, then checks the configured channel every "
                "updater.updateIntervalMinutes. A new release is installed, the running "
                "managed app-server is restarted onto it and must report the new version, "
                "or the previous release is restored. A server the user stopped is never "
                "started. The updater also supervises: it waits on the app-server's exit and "
                "restarts a server that died on its own, and it re-executes itself when the "
                "kit on disk is upgraded. It exits when updater.autoUpdateEnabled and "
                "supervisor.restartOnExit are both false."
            ),
        ),
        sections=(
            Section(
                "SIGNALS",
                (
                    Item(
                        bold("SIGTERM"),
                        (
                            (
                                "Stop: an idle updater exits within 200 ms; an installer run is "
                                "stopped; a restart in progress is finished first."
                            ),
                        ),
                    ),
                ),
            ),
            Section(
                "EXIT STATUS",
                (
                    Item(
                        bold("0"),
                        (
                            (
                                "Normal exit, also when another updater already runs for the "
                                "Codex home."
                            ),
                        ),
                    ),
                    Item(bold("1"), ("Error; the message is on standard error.",)),
                    Item(bold("2"), ("Usage error.",)),
                ),
            ),
            _COMMON_ENVIRONMENT,
            Section("FILES", _COMMON_FILES),
            _SETTINGS,
            _SYSTEMD,
            Section(
                "SEE ALSO",
                (f"{bold('codex-daemon')}(1), {bold('systemctl')}(1)",),
            ),
        ),
    )


# -- bash completion ----------------------------------------------------------------


def _words(values: Sequence[str]) -> str:
    return " ".join(values)


def _option_names(options: Sequence[argparse.Action]) -> list[str]:
    return [name for action in options for name in action.option_strings]


def _value_cases(scope: str, options: Sequence[argparse.Action]) -> list[str]:
    """``case`` arms completing the value after an option that takes one."""
    arms = []
    for action in options:
        if not takes_value(action):
            continue
        pattern = "|".join(f'"{scope}:{name}"' for name in action.option_strings)
        if action.choices is not None:
            words = _words([str(choice) for choice in action.choices])
            reply = f'mapfile -t COMPREPLY < <(compgen -W "{words}" -- "$cur")'
        elif value_name(action) == "PATH":
            reply = (
                'compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- "$cur")'
            )
        else:
            reply = "COMPREPLY=()"
        arms.append(f"        {pattern}) {reply}; return ;;")
    return arms


def render_bash_completion(name: str, parser: argparse.ArgumentParser) -> str:
    function = "_" + name.replace("-", "_")
    top_options = options_of(parser)
    commands = commands_of(parser)
    takes_arg = [n for action in top_options if takes_value(action) for n in action.option_strings]
    cases = _value_cases("", top_options)
    command_arms = []
    for command, _, child in commands:
        child_options = options_of(child)
        cases += _value_cases(command, child_options)
        command_arms.append(f'        {command}) opts="{_words(_option_names(child_options))}" ;;')
    top_words = _words(_option_names(top_options))
    command_words = _words([command for command, _, _ in commands])
    lines = [
        f"# bash completion for {name}",
        f"# Generated by packaging/gen_manpages.py from {name}'s argparse parser; do not edit.",
        "",
        f"{function}()",
        "{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" command="" i opts',
        '    (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"',
        "    for (( i = 1; i < COMP_CWORD; i++ )); do",
        '        case "${COMP_WORDS[i]}" in',
        *([f"            {'|'.join(takes_arg)}) (( i++ )) ;;"] if takes_arg else []),
        "            -*) ;;",
        '            *) command="${COMP_WORDS[i]}"; break ;;',
        "        esac",
        "    done",
        '    case "$command:$prev" in',
        *cases,
        "    esac",
        '    if [[ -z "$command" ]]; then',
        '        if [[ "$cur" == -* ]]; then',
        f'            mapfile -t COMPREPLY < <(compgen -W "{top_words}" -- "$cur")',
        "        else",
        f'            mapfile -t COMPREPLY < <(compgen -W "{command_words}" -- "$cur")',
        "        fi",
        "        return",
        "    fi",
        '    case "$command" in',
        *command_arms,
        '        *) opts="" ;;',
        "    esac",
        '    [[ "$cur" == -* ]] && mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")',
        "    return 0",
        "}",
        f"complete -F {function} {name}",
    ]
    return "\n".join(lines) + "\n"


# -- driver -------------------------------------------------------------------------


def generated_files() -> dict[str, str]:
    """Relative path under packaging/ -> content, for every generated file."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    files: dict[str, str] = {}
    for page in (_daemon_page(), _updater_page()):
        files[f"man/{page.name}.1"] = render_manpage(page)
        files[f"completion/{page.name}"] = render_bash_completion(page.name, page.build_parser())
    return files


def drifted(root: Path) -> list[str]:
    """The generated files under ``root`` that are missing or differ."""
    stale = []
    for relative, content in generated_files().items():
        path = root / relative
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != content:
            stale.append(relative)
    return stale


def write_files(root: Path) -> list[str]:
    written = []
    for relative, content in generated_files().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(relative)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gen_manpages.py",
        description="Generate codex-daemonkit's man pages and bash completions.",
    )
    parser.add_argument(
        "--output", metavar="DIR", type=Path, default=PACKAGING, help="default: packaging/"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is out of date"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = drifted(args.output)
        for relative in stale:
            sys.stderr.write(f"out of date: {args.output / relative}\n")
        if stale:
            sys.stderr.write(f"regenerate with: python3 {os.path.relpath(__file__)}\n")
        return 1 if stale else 0
    for relative in write_files(args.output):
        sys.stdout.write(f"wrote {args.output / relative}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
