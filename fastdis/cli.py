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
from rich.table import Table

from .metrics import METRICS, study_metrics

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
    from .data.cli import app as data_app  # data make | show | list
    from .train.cli import app as train_app  # train, sweep

    app.add_typer(data_app, name="data", help="Ground-truth data sets: list, make, show.")
    app.add_typer(train_app)
    app.add_typer(batch_app)


_register_subcommands()

#: Metrics `demo` runs: the study suite plus IRS (the rest need several models or are
#: test-only configurations in the reference).
DEMO_METRICS = [spec.name for spec in study_metrics()] + ["irs"]


@app.command("metrics")
def list_metrics():
    """List the registered metrics, their inputs and study sample sizes."""
    table = Table(title="fastdis metrics (registry)")
    table.add_column("name", no_wrap=True)
    for column in ("study", "inputs", "sizes", "description"):
        table.add_column(column, overflow="fold")
    for spec in METRICS.values():
        sizes = ", ".join(f"{k}={v}" for k, v in spec.sizes.items())
        table.add_row(spec.name, "yes" if spec.study else "", spec.inputs, sizes,
                      spec.description)
    _out.print(table)


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
                results[kind][name] = evaluate_metric(
                    name, data, representation(kind), random_seed=seed, scale=scale
                )
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
        for key in _headline_keys(results[kinds[0]][name]):
            table.add_row(f"  {key}", *(f"{results[kind][name][key]:.4f}" for kind in kinds), "")
    _out.print(table)


def _headline_keys(result):
    """The keys worth a row: scalar scores, skipping per-factor detail and timings."""
    keys = []
    for key, value in result.items():
        if key == "elapsed_time" or "factor_" in key or "num_active_dims" in key:
            continue
        if key.split(":")[-1].startswith(("min_", "train_accuracy_factor")):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            keys.append(key)
    return keys


def main():  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
