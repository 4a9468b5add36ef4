"""codex-daemonkit: keep a Codex app-server running on a Unix machine nobody is logged in to.

Every ``codex-daemon`` call imports this package, so its modules keep start-up cheap:
``TYPE_CHECKING = False`` stands for ``typing.TYPE_CHECKING`` (mypy and ruff read it
the same way; importing ``typing`` costs about 7 ms), value types derive from
``daemonkit.value.Value``, and what only some commands need is imported by them.

The modules form layers, highest first. A module imports only from its own layer and
the layers below it, and no two modules import each other, even indirectly; imports
inside functions and under ``TYPE_CHECKING`` count too. ``updater/``, the updater
process, may import every module here but ``cli`` and ``__main__``; nothing here
imports it (the CLI starts it as ``python -m updater``). tests/unit/test_layers.py
reads the drawing below and enforces it::

    cli         cli __main__
    commands    remote report persistence update_client install_command
    lifecycle   lifecycle
    processes   launcher backend readiness adopt install updater_control
    records     pidrecord procinfo pidfile probe rpc binarycache digest decisions
                units systemd placement
    base        __init__ errors value hooks environment paths files locks output
                managed settings intent logtail logfiles jsonget

``base``: errors, values, the home's paths, state files and settings, the managed
binary. ``records``: what the kit learns and records about processes, binaries and the
system (pid records, /proc, the control socket, the binary cache, systemd).
``processes``: spawning, stopping, installing and waiting. ``lifecycle``: ``Daemon``,
the app-server's commands and the steps other commands compose under its lock.
``commands``: every other command.
"""

# The single version source (SPEC §12.1); a constant, so the CLI never imports
# importlib.metadata on its hot path.
__version__ = "0.1.0"
