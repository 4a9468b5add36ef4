"""The independent updater process of codex-daemonkit (SPEC §8)."""
