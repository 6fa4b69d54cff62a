"""Commands of this package, merged into the ``fastdis`` command line by fastdis/cli.py."""

import typer

app = typer.Typer()
