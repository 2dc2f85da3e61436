"""``python -m runtime.cli``: the ``baton`` command line."""

from runtime.cli.main import app

app(prog_name="baton")
