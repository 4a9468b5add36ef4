"""Counters for RELIABILITY.md: what the fault suite tried and what it proved (issue 7).

Each test adds its counts as JSON lines to one file, so parallel or separate runs
never overwrite each other::

    {"figure":"crash_points_tried","count":1,"test":"tests/faults/test_crash_points.py::..."}

The file is ``$DK_FIGURES`` if set (remove it before a run to start from zero),
else ``dk-figures.jsonl`` in the pytest session's base temporary directory.
``python -m tests.faults.figures [FILE]`` prints the totals as one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

__all__ = ["FIGURES", "Figures", "figures_path", "totals"]

ENV_VAR = "DK_FIGURES"
FILE_NAME = "dk-figures.jsonl"

# The figures RELIABILITY.md reports, in its order.
FIGURES = (
    "crash_points_tried",
    "crash_points_recovered",
    "storm_operations",
    "storm_invariant_checks",
    "pid_reuse_records_planted",
    "hostile_files_tried",
    "hostile_files_safe",
    "hostile_peers_tried",
    "hostile_peers_safe",
    "write_failures_tried",
    "write_failures_safe",
    "descriptor_exhaustion_tried",
    "descriptor_exhaustion_safe",
    "fd_hygiene_checks",
    "updater_faults_tried",
    "updater_faults_safe",
    "update_storm_operations",
    "update_storm_invariant_checks",
)


def figures_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        return Path(explicit)
    return tmp_path_factory.getbasetemp() / FILE_NAME


class Figures:
    """Appends counts for one test to the figures file."""

    def __init__(self, path: Path, test: str) -> None:
        self.path = path
        self.test = test

    @classmethod
    def for_test(
        cls, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
    ) -> Figures:
        return cls(figures_path(tmp_path_factory), request.node.nodeid)

    def add(self, figure: str, count: int = 1) -> None:
        assert figure in FIGURES, figure
        line = json.dumps(
            {"figure": figure, "count": count, "test": self.test}, separators=(",", ":")
        )
        # One write of one line with O_APPEND: concurrent writers never interleave.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


def totals(path: Path) -> dict[str, int]:
    """Sum the counts in ``path`` per figure, every known figure present (0 if unseen)."""
    counts: Counter[str] = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                counts[str(entry["figure"])] += int(entry["count"])
    return {figure: counts[figure] for figure in FIGURES} | dict(counts)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        path = Path(argv[1])
    elif os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR])
    else:
        sys.stderr.write(f"usage: python -m tests.faults.figures FILE (or set ${ENV_VAR})\n")
        return 2
    sys.stdout.write(json.dumps(totals(path), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
