"""The subcommands of ``python -m lirpa_diffai``, one module each (see ``__main__``)."""
