"""The ``baton`` command line (``runtime.cli.main.app``)."""
