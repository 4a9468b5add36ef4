"""codex-daemon: argparse to lifecycle to one JSON line; exit 0, 1 or 2 (SPEC §2).

Success prints exactly one compact JSON line on stdout. Errors print the anyhow-style
``Error:``/``Caused by:`` text on stderr and exit 1; usage errors exit 2. Heavy
modules (python-daemon, urllib, argparse for the common commands) are imported only
on the paths that need them.
"""

from __future__ import annotations

import os
import re
import signal
import sys

from daemonkit import __version__
from daemonkit.errors import (
    DaemonError,
    InterruptedByUserError,
    OutputError,
    PlatformError,
    ProbeError,
    render_error,
)
from daemonkit.output import emit, write_stderr
from daemonkit.value import Value

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from types import FrameType
    from typing import Final, NoReturn

    from daemonkit.output import JsonOutput

__all__ = ["Invocation", "build_parser", "main", "parse_arguments", "run"]

_VERSION_PATTERN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]*$")
# Commands that take no options of their own: `[--codex-home PATH] COMMAND` is all
# there is to parse.
_SIMPLE_COMMANDS = frozenset(
    {
        "start",
        "restart",
        "stop",
        "version",
        "status",
        "enable-remote-control",
        "disable-remote-control",
        "adopt",
    }
)
_PACKAGES = {"daemon": "python-daemon", "sh": "sh", "packaging": "packaging"}
DEFAULT_LOG_BYTES = 16384
MAX_LOG_BYTES = 1 << 20


class Invocation(Value):
    """One command line, read: the command, the home it names, and its options.

    Both readings of a command line (the short path and argparse) build this, so
    ``_run`` sees one type whichever read it. The option fields are argparse's
    ``dest`` names; an option a command does not take keeps its default.
    """

    __slots__ = (
        "assume_yes",
        "channel",
        "codex_home",
        "command",
        "install_version",
        "log_bytes",
        "now",
        "remote_control",
    )

    def __init__(
        self,
        command: str,
        codex_home: str | None = None,
        *,
        remote_control: bool = False,
        assume_yes: bool = False,
        channel: str | None = None,
        install_version: str | None = None,
        log_bytes: int = DEFAULT_LOG_BYTES,
        now: bool = False,
    ) -> None:
        self.command: Final = command
        self.codex_home: Final = codex_home
        self.remote_control: Final = remote_control
        self.assume_yes: Final = assume_yes
        self.channel: Final = channel
        self.install_version: Final = install_version
        self.log_bytes: Final = log_bytes
        self.now: Final = now


def _log_bytes(text: str) -> int:
    import argparse  # noqa: PLC0415 - only reached through build_parser

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid byte count {text}") from None
    if not 1 <= value <= MAX_LOG_BYTES:
        raise argparse.ArgumentTypeError(f"byte count must be between 1 and {MAX_LOG_BYTES}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The one definition of the command line: help, man pages and every usage error."""
    import argparse  # noqa: PLC0415 - see _simple_invocation

    parser = argparse.ArgumentParser(
        prog="codex-daemon",
        description=(
            "Install, start, supervise and stop a Codex app-server for this CODEX_HOME. "
            "Every command prints one JSON object on success."
        ),
        epilog=(
            "CODEX_HOME is --codex-home, else $CODEX_HOME, else $HOME/.codex. "
            "Exit status: 0 success, 1 error (Error: on stderr), 2 usage error."
        ),
    )
    parser.add_argument("--codex-home", metavar="PATH", help="the CODEX_HOME to manage")
    parser.add_argument("-V", "--cli-version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("start", help="start the app-server if it is not running; wait until ready")
    commands.add_parser("restart", help="stop the managed app-server (if any) and start it again")
    commands.add_parser("stop", help="stop the managed app-server (SIGTERM, then SIGKILL at grace)")
    commands.add_parser("version", help="probe the running app-server and report its version")
    bootstrap = commands.add_parser(
        "bootstrap",
        help="save settings, restart the app-server and start the updater in one call",
    )
    bootstrap.add_argument(
        "--remote-control", action="store_true", help="enable remote control for the server"
    )
    commands.add_parser(
        "enable-remote-control",
        help="enable remote control for future starts and a running managed server",
    )
    commands.add_parser(
        "disable-remote-control",
        help="disable remote control for future starts and a running managed server",
    )
    update = commands.add_parser(
        "update", help="ask the updater to install the newest Codex and restart onto it now"
    )
    update.add_argument(
        "--yes", action="store_true", dest="assume_yes", help="do not ask for confirmation"
    )
    commands.add_parser("status", help="report the app-server and updater; never fails if stopped")
    install = commands.add_parser(
        "install", help="install a managed Codex release without touching the running server"
    )
    install.add_argument(
        "--channel", choices=("npm", "script"), help="default: settings updater.channel"
    )
    install.add_argument(
        "--version", metavar="V", dest="install_version", help="exact version (npm channel only)"
    )
    logs = commands.add_parser("logs", help="print the sizes and tails of the stderr logs")
    logs.add_argument(
        "--bytes",
        type=_log_bytes,
        default=DEFAULT_LOG_BYTES,
        dest="log_bytes",
        metavar="N",
        help=f"tail size per log, 1-{MAX_LOG_BYTES} (default {DEFAULT_LOG_BYTES})",
    )
    commands.add_parser(
        "adopt",
        help="make the unmanaged Codex app-server that answers on the socket a managed one",
    )
    enable = commands.add_parser(
        "enable",
        help=(
            "keep this home's app-server running across logout and reboot: a systemd user "
            "unit, and lingering"
        ),
    )
    enable.add_argument("--now", action="store_true", help="also start the unit now")
    disable = commands.add_parser(
        "disable", help="remove this home's systemd user unit; lingering as it was before enable"
    )
    disable.add_argument(
        "--now", action="store_true", help="also stop the unit, its app-server and its updater"
    )
    return parser


def _simple_invocation(argv: Sequence[str]) -> Invocation | None:
    """``[--codex-home PATH] COMMAND`` for a command without options, or None.

    Importing argparse and building the parser costs about as much as the rest of a
    ``stop``, so the common invocations are read here. Anything else (help, options,
    abbreviations, typos) returns None and goes to argparse, which stays the one
    definition of the interface and of every usage error. A property test checks that
    argparse reads every invocation accepted here the same way.
    """
    match list(argv):
        case [command]:
            home = None
        case ["--codex-home", home, command] if not home.startswith("-"):
            pass
        case [option, command] if option.startswith("--codex-home="):
            home = option.removeprefix("--codex-home=")
        case _:
            return None
    if command not in _SIMPLE_COMMANDS:
        return None
    return Invocation(command, home)


def _argparse_invocation(argv: Sequence[str]) -> Invocation:
    """argparse's reading of ``argv``; exits 2 on a usage error."""
    # The parser's dest names are Invocation's parameters: a new option that is not
    # one fails here, on its first use, rather than being dropped.
    return Invocation(**vars(build_parser().parse_args(argv)))


def parse_arguments(argv: Sequence[str]) -> Invocation:
    """What argparse would make of ``argv``; exits 2 on a usage error, as argparse does."""
    simple = _simple_invocation(argv)
    if simple is not None:
        return simple
    return _argparse_invocation(argv)


def _usage_error(message: str) -> NoReturn:
    build_parser().error(message)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise InterruptedByUserError("interrupted")


def _warn(line: str) -> None:
    write_stderr(f"warning: {line}\n")


def _run(args: Invocation) -> JsonOutput:
    from daemonkit.files import check_codex_home  # noqa: PLC0415
    from daemonkit.paths import DaemonPaths, resolve_codex_home  # noqa: PLC0415

    home = resolve_codex_home(args.codex_home, os.environ)
    check_codex_home(home)
    paths = DaemonPaths.detect(home, os.environ)
    match args.command:
        case "status":
            from daemonkit.report import collect_status  # noqa: PLC0415

            return collect_status(paths, os.environ)
        case "logs":
            from daemonkit.report import collect_logs  # noqa: PLC0415

            output, warnings = collect_logs(paths, args.log_bytes)
            for line in warnings:
                _warn(line)
            return output
        case "install":
            from daemonkit.install_command import run_install  # noqa: PLC0415

            version = args.install_version
            if version is not None and not _VERSION_PATTERN.match(version):
                _usage_error(f"invalid version {version}")
            return run_install(paths, os.environ, args.channel, version, _warn, _usage_error)
        case "update":
            from daemonkit.update_client import request_update  # noqa: PLC0415

            return request_update(paths, os.environ, assume_yes=args.assume_yes)
        case "enable" | "disable":
            from daemonkit.persistence import (  # noqa: PLC0415
                disable_persistence,
                enable_persistence,
            )

            persist = enable_persistence if args.command == "enable" else disable_persistence
            return persist(paths, os.environ, _warn, now=args.now)
        case "bootstrap" | "enable-remote-control" | "disable-remote-control":
            from daemonkit.lifecycle import Daemon  # noqa: PLC0415
            from daemonkit.remote import bootstrap, set_remote_control_mode  # noqa: PLC0415

            daemon = Daemon(paths, os.environ, _warn)
            if args.command == "bootstrap":
                return bootstrap(daemon, remote_control=args.remote_control)
            return set_remote_control_mode(daemon, enable=args.command == "enable-remote-control")
        case _:
            from daemonkit.lifecycle import Daemon  # noqa: PLC0415

            daemon = Daemon(paths, os.environ, _warn)
            command = {
                "start": daemon.start,
                "restart": daemon.restart,
                "stop": daemon.stop,
                "version": daemon.version,
                "adopt": daemon.adopt,
            }[args.command]
            return command()


def _print_traceback() -> None:
    import traceback  # noqa: PLC0415 - debug only; costs start-up time otherwise

    traceback.print_exc()


def _ensure_supported_platform() -> None:
    if os.name != "posix":
        raise PlatformError("codex app-server daemon lifecycle is only supported on Unix platforms")


def _hint(command: str, exc: DaemonError) -> str | None:
    """A next step to print after the error block, where the error makes it obvious."""
    if command == "version" and isinstance(exc, ProbeError) and exc.nothing_listens:
        return "the app server is not running; start it with codex-daemon start"
    return None


def _report(text: str) -> int:
    """Write an error to stderr and return the exit status 1."""
    try:
        write_stderr(text + "\n")
    except OutputError:
        pass  # stderr itself cannot be written: the exit status is all that is left
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("CODEX_DAEMONKIT_DEBUG") == "1"
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        _ensure_supported_platform()
        # Inside the try: a stdout that cannot be written is an error like any other.
        emit(_run(args))
    except ModuleNotFoundError as exc:
        # Only spawn and install paths import third-party packages (SPEC §12.2).
        package = _PACKAGES.get(exc.name or "", exc.name)
        return _report(f"Error: {package} is not installed; install codex-daemonkit's dependencies")
    except KeyboardInterrupt:
        return _report(render_error(InterruptedByUserError("interrupted")))
    except DaemonError as exc:
        if debug:
            _print_traceback()
        hint = _hint(args.command, exc)
        # After the upstream error block, which stays exactly as upstream prints it.
        return _report(render_error(exc) + ("" if hint is None else f"\nhint: {hint}"))
    except Exception as exc:  # the outermost edge: never a traceback (SPEC §2.2)
        if debug:
            _print_traceback()
        return _report(render_error(exc))
    return 0


def run() -> NoReturn:
    """The console script: ``main()``, then exit without tearing the interpreter down.

    When ``main`` returns, the command's work is done and its output written and
    flushed (output.py flushes every write and reports a failed one; flushing again
    here would retry the failed bytes outside any error handling). The interpreter's
    finalisation, freeing every loaded module, would add about 8 ms (a tenth of a
    ``stop``) and nothing else: the kernel closes descriptors and drops flocks at
    exit, and no command leaves a thread or an atexit handler behind.
    """
    os._exit(main())


if __name__ == "__main__":
    run()
