"""The ``libos`` subcommands, one module each; :mod:`tools.libos_cli` imports a module only when
its command is used (see :mod:`tools.lazy_group`)."""
