"""``python -m daemonkit``: the codex-daemon CLI."""

import sys

from daemonkit.cli import main

sys.exit(main())
