"""``codex-daemon-updater`` / ``python -m updater``: the updater's command line (SPEC §8.1)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codex-daemon-updater",
        description="Keep the managed Codex app-server of a CODEX_HOME up to date.",
    )
    parser.add_argument("--codex-home", metavar="PATH", help="the CODEX_HOME to update")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser("run", help="run the update loop (or serve one request)")
    run.add_argument("--once", action="store_true", help="serve one update request, then exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    build_parser().parse_args(argv)
    # The update loop (SPEC §8.2-§8.10) is not part of this release of the kit; fail
    # plainly rather than pretend to keep anything up to date.
    sys.stderr.write("Error: the updater loop is not available in this version of the kit\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
