"""``fastdis data list | make | show``: thin commands over :mod:`fastdis.data`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Ground-truth data sets: list what is found, render look-alikes, draw traversals.",
    no_args_is_help=True,
)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data folder (default: $FASTDIS_DATA, then "
                 "$DISENTANGLEMENT_LIB_DATA, then the current directory)."),
]


class Generated(StrEnum):
    dsprites = "dsprites"
    shapes3d = "shapes3d"


def _fail(exc: Exception):
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=1)


@app.command("list")
def list_datasets(
    data_dir: DataDir = None,
    check: Annotated[bool, typer.Option(
        "--check/--no-check", help="Open each data set whose files are present, as train and "
        "show do (--no-check: only look for the files).")] = True,
):
    """List the data sets, their factor sizes, the files they read and whether they are found
    and open (a truncated or misshapen file is listed as unusable, with the reason)."""
    from rich.console import Console
    from rich.table import Table

    from ._files import resolve_data_dir
    from .registry import DATASETS

    folder, origin = resolve_data_dir(data_dir)
    table = Table(title=f"data sets in {folder} (from {origin})")
    for column in ("name", "factor sizes", "files (in the data folder)", "found", "look-alike"):
        table.add_column(column, overflow="fold")
    for spec in DATASETS.values():
        files = "cars/*.mat (183)" if spec.name == "cars3d" else ", ".join(
            sorted({str(f.parent) + "/" for f in spec.files} if len(spec.files) > 2
                   else {str(f) for f in spec.files}))
        make = f"make {spec.make}" if spec.make else ""
        table.add_row(spec.name, "x".join(map(str, spec.factor_sizes)), files,
                      _found(spec, data_dir, check), make)
    Console().print(table)


def _found(spec, data_dir, check: bool) -> str:
    """"yes", "no (n missing)", "unusable: why", or "present (not checked)"."""
    from .registry import load_dataset

    missing = spec.missing_files(data_dir)
    if missing:
        return f"no ({len(missing)} missing)"
    if not check:
        return "present (not checked)"
    try:
        load_dataset(spec.name, data_dir)
    except (OSError, ValueError) as exc:
        return f"unusable: {exc}"
    return "yes"


@app.command()
def make(
    target: Annotated[Generated, typer.Argument(help="Which look-alike to render.")],
    out: Annotated[Path | None, typer.Option("--out", help="Data folder to write into "
                                              "(default: the data folder).")] = None,
    small: Annotated[bool, typer.Option("--small", help="A CI-sized grid.")] = False,
):
    """Render the TARGET look-alike (dsprites or shapes3d) in the real file's format.

    The files land where load_dataset(..., data_dir=OUT) looks for them; they are look-alikes,
    not pixel copies of the originals.
    """
    from ._files import resolve_data_dir
    from .render_dsprites import make_dsprites
    from .render_shapes3d import make_shapes3d

    folder = out if out is not None else resolve_data_dir(None)[0]
    render = make_dsprites if target is Generated.dsprites else make_shapes3d
    typer.echo(f"rendering {target.value}{' (small)' if small else ''} into {folder} ...",
               err=True)
    try:
        path = render(folder, small=small)
    except (OSError, ValueError) as exc:
        _fail(exc)
    typer.echo(str(path))


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="Data set name (see `fastdis data list`).")],
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")] = Path("grid.png"),
    data_dir: DataDir = None,
    columns: Annotated[int, typer.Option(help="Images per factor row.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the base point and variant draws.")] = 0,
):
    """Draw factor traversals of NAME (one row per factor) into a PNG."""
    from .registry import load_dataset
    from .show import save_traversals

    try:
        path = save_traversals(load_dataset(name, data_dir), out, columns=columns, seed=seed)
    except (OSError, ValueError) as exc:
        _fail(exc)
    typer.echo(str(path))
