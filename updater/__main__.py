"""``codex-daemon-updater`` / ``python -m updater``: the updater's command line (SPEC §8.1)."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codex-daemon-updater",
        description=(
            "Keep the managed Codex app-server of a CODEX_HOME up to date: install new "
            "releases from the configured channel, restart the running server onto them, "
            "validate it and roll back on failure. Normally started detached by "
            "codex-daemon; exits 0 if another updater already runs."
        ),
        epilog=(
            "CODEX_HOME is --codex-home, else $CODEX_HOME, else $HOME/.codex. "
            "Exit status: 0 done or another updater runs, 1 error, 2 usage error."
        ),
    )
    parser.add_argument("--codex-home", metavar="PATH", help="the CODEX_HOME to update")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run", help="run the update loop: first cycle after 5 minutes, then every interval"
    )
    run.add_argument(
        "--once",
        action="store_true",
        help="serve one update request on the request socket, then exit (60 s idle limit)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported after parsing: the man-page generator only needs build_parser().
    from daemonkit.errors import DaemonError, PlatformError, render_error  # noqa: PLC0415

    try:
        if os.name != "posix":
            raise PlatformError(
                "codex app-server daemon lifecycle is only supported on Unix platforms"
            )
        from daemonkit.paths import DaemonPaths, resolve_codex_home  # noqa: PLC0415
        from updater.loop import run_updater  # noqa: PLC0415

        home = resolve_codex_home(args.codex_home, os.environ)
        paths = DaemonPaths.detect(home, os.environ)
        return run_updater(paths, os.environ, once=args.once)
    except (DaemonError, OSError) as exc:
        if os.environ.get("CODEX_DAEMONKIT_DEBUG") == "1":
            traceback.print_exc()
        sys.stderr.write(render_error(exc) + "\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
