"""codex-daemonkit: keep a Codex app-server running on a Unix machine nobody is logged in to."""

# The single version source (SPEC §12.1); a constant, so the CLI never imports
# importlib.metadata on its hot path.
__version__ = "0.1.0"
