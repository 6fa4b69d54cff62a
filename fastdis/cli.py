"""The ``fastdis`` command line: thin commands over the library API.

Results go to stdout, progress and messages to stderr; failures exit non-zero with the
library's message.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.padding import Padding
from rich.table import Table

from .metrics import METRICS, get_metric, study_metrics

app = typer.Typer(
    help="fastdis: fast, exact disentanglement metrics (a drop-in backend for "
    "disentanglement_lib).",
    no_args_is_help=True,
    add_completion=False,
)
_out = Console()
_err = Console(stderr=True)


def _register_subcommands():
    """Each package owns its commands; this is the one place that mounts them."""
    from .batch.cli import app as batch_app  # encode, score, report
    from .bench_cli import app as bench_app  # bench metrics | ... | compare
    from .data.cli import app as data_app  # data make | show | list
    from .train.cli import app as train_app  # train, sweep

    app.add_typer(data_app, name="data", help="Ground-truth data sets: list, make, show.")
    app.add_typer(train_app)
    app.add_typer(batch_app)
    app.add_typer(bench_app, name="bench")


_register_subcommands()

#: Metrics `demo` runs: the study suite plus IRS (the rest need several models or are
#: test-only configurations in the reference).
DEMO_METRICS = [spec.name for spec in study_metrics()] + ["irs"]


#: Below this terminal width the registry is listed one metric per block instead of a table:
#: five columns cannot share 80 characters without folding descriptions word by word.
_TABLE_MIN_WIDTH = 120


@app.command("metrics")
def list_metrics():
    """List the registered metrics, their inputs and study sample sizes."""
    console = Console()  # the width in force now (COLUMNS, the terminal), not at import
    rows = [(spec.name, "study" if spec.study else "", spec.inputs,
             ", ".join(f"{k}={v}" for k, v in spec.sizes.items()), spec.description)
            for spec in METRICS.values()]
    if console.width >= _TABLE_MIN_WIDTH:
        table = Table(title="fastdis metrics (registry)")
        table.add_column("name", no_wrap=True)
        for column in ("study", "inputs", "sizes", "description"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    console.print("[bold]fastdis metrics (registry)[/bold]")
    for name, study, inputs, sizes, description in rows:
        console.print()
        console.print(f"[bold]{name}[/bold]  {inputs}" + (f"  [green]{study}[/green]"
                                                          if study else ""))
        # Padding indents the wrapped lines too, so a long description stays one block.
        console.print(Padding(description, (0, 0, 0, 2), expand=False), highlight=False)
        console.print(Padding(f"[dim]sizes: {sizes or '-'}[/dim]", (0, 0, 0, 2), expand=False),
                      highlight=False)


@app.command()
def quickstart(
    out: Annotated[str, typer.Option(help="Folder for data, runs, store, scores and report.")] = (
        "fastdis-quickstart"),
    steps: Annotated[int, typer.Option(help="Training steps per model.")] = 150,
    seeds: Annotated[int, typer.Option(help="Models (seeds) per method.")] = 2,
    scale: Annotated[float, typer.Option(help="Scale of the study's evaluation sizes.")] = 0.1,
    workers: Annotated[
        int | None, typer.Option(help="Scoring processes (default: one per core).")] = None,
):
    """The whole pipeline on built-in data, in a few minutes on 2 cores.

    Renders the small dSprites look-alike, trains each of the study's six methods briefly,
    encodes every checkpoint once into a Zarr store, scores every metric into a Parquet table
    and draws the report. Running it again resumes where it stopped.
    """
    from .quickstart import run_quickstart

    try:
        run_quickstart(out, steps=steps, seeds=seeds, scale=scale, workers=workers,
                       log=lambda line: _err.print(line, soft_wrap=True, highlight=False))
    except (ValueError, FileNotFoundError) as exc:
        _err.print(f"[red]{exc}[/red]")
        raise typer.Exit(code=2) from exc


@app.command()
def demo(
    scale: Annotated[
        float, typer.Option(help="Scale the study's sample sizes (e.g. 0.1 for a quick look).")
    ] = 1.0,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", help="Metric to run (repeatable); default: study + irs."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the evaluation (study: 0).")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print all results as JSON.")] = False,
):
    """Score three built-in representations on the study's metrics and print a table.

    The data are dSprites-sized synthetic factors ([3, 6, 40, 32, 32]); the representations are
    disentangled, entangled and pure noise (10 codes each). Every metric runs the reference's
    protocol (same sampling, same study settings) through fastdis' compat layer.
    """
    from .compat.disentanglement_lib.study import evaluate_metric, runnable_metrics
    from .demo import SyntheticFactors, representation

    names = metric or DEMO_METRICS
    runnable = runnable_metrics()
    for name in names:
        if name not in runnable:
            _err.print(f"[red]demo cannot run {name!r}; choose from {', '.join(runnable)}.[/red]")
            raise typer.Exit(code=2)
    if not scale > 0:
        _err.print(f"[red]--scale must be positive; got {scale}.[/red]")
        raise typer.Exit(code=2)
    data = SyntheticFactors()
    kinds = ("disentangled", "entangled", "noise")
    results = {kind: {} for kind in kinds}
    with _err.status("scoring") as status:
        for name in names:
            for kind in kinds:
                status.update(f"{name} on the {kind} representation")
                try:
                    results[kind][name] = evaluate_metric(
                        name, data, representation(kind), random_seed=seed, scale=scale
                    )
                except ValueError as exc:  # e.g. a --scale too small for the metric's sizes
                    _err.print(f"[red]{name} at --scale {scale}: {exc}[/red]")
                    raise typer.Exit(code=2) from exc
                _err.print(f"  {name:38s} {kind:13s} "
                           f"{results[kind][name]['elapsed_time']:7.2f} s")
    if json_out:
        json.dump(results, sys.stdout, indent=1, default=float)
        sys.stdout.write("\n")
        return
    table = Table(title=f"fastdis demo (scale {scale}, seed {seed})")
    # Scores never wrap; the score names fold when the terminal (or a pipe) is narrow.
    table.add_column("metric / score", overflow="fold")
    for kind in kinds:
        table.add_column(kind, justify="right", no_wrap=True)
    table.add_column("seconds", justify="right", no_wrap=True)
    for name in names:
        seconds = sum(results[kind][name]["elapsed_time"] for kind in kinds) / len(kinds)
        table.add_row(f"[bold]{name}[/bold]", *([""] * len(kinds)), f"{seconds:.2f}")
        for key in _headline_keys(name, results[kinds[0]][name]):
            table.add_row(f"  {key}", *(f"{results[kind][name][key]:.4f}" for kind in kinds), "")
    _out.print(table)


def _headline_keys(name, result):
    """The registry's headline keys of ``name`` in ``result``; every scalar key of a metric
    that declares none (the demo can still run it)."""
    keys = get_metric(name).headline_keys(result)
    return keys or [key for key, value in result.items() if key != "elapsed_time"
                    and isinstance(value, (int, float)) and not isinstance(value, bool)]


def main():  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
