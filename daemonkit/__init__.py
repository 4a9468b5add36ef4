"""codex-daemonkit: keep a Codex app-server running on a Unix machine nobody is logged in to.

Every ``codex-daemon`` call imports this package, so its modules keep start-up cheap:
``TYPE_CHECKING = False`` stands for ``typing.TYPE_CHECKING`` (mypy and ruff read it
the same way; importing ``typing`` costs about 7 ms), value types derive from
``daemonkit.value.Value``, and what only some commands need is imported by them.
"""

# The single version source (SPEC §12.1); a constant, so the CLI never imports
# importlib.metadata on its hot path.
__version__ = "0.1.0"
