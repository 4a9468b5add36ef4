"""``python -m daemonkit``: the codex-daemon CLI."""

from daemonkit.cli import run

run()
