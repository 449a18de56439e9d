"""``python -m dhns``: the same command line as the ``dhns`` console script."""

from dhns.cli import app

app(prog_name="dhns")
