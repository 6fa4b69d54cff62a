"""``fastdis encode | score | report``: thin commands over :mod:`fastdis.batch`.

Merged into the ``fastdis`` command line by fastdis/cli.py. zarr, pandas, dask, matplotlib and
torch are imported inside the commands, so ``fastdis --help`` stays fast. Progress and
messages go to stderr; failures exit non-zero with the library's message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer()
_err = Console(stderr=True)


def _fail(message: str, code: int = 1):
    _err.print(f"[red]{message}[/red]", highlight=False)
    raise typer.Exit(code=code)


@app.command()
def encode(
    checkpoints: Annotated[list[str], typer.Argument(
        help="Run directories, checkpoint files, folders searched for run directories, or "
             "globs (quote them to let fastdis expand thousands).")],
    dataset: Annotated[str, typer.Option(help="Data set name (see fastdis data list).")],
    store: Annotated[Path, typer.Option(help="Representation store (created if absent).")],
    data_dir: Annotated[Path | None, typer.Option(help="Data folder (default: $FASTDIS_DATA "
                                                       "or $DISENTANGLEMENT_LIB_DATA).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of a new store's evaluation plan.")] = 0,
    scale: Annotated[float, typer.Option(help="Scale a new plan's study sample sizes.")] = 1.0,
    metrics: Annotated[str, typer.Option(help="Metrics a new plan serves: 'all' or "
                                              "comma-separated names.")] = "all",
    replace: Annotated[bool, typer.Option(help="Re-encode checkpoints already stored.")] = False,
    device: Annotated[str, typer.Option(help="torch device of the encoder.")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Images per encoder pass.")] = 256,
):
    """Encode each CHECKPOINT once on the evaluation plan's points into the store.

    A new store gets a plan drawn from the data set with --seed, --scale and --metrics; an
    existing one keeps its plan (those options are then ignored) and only new checkpoints are
    encoded unless --replace is given.
    """
    from rich.progress import Progress

    from .._device import check_device
    from ..data import load_dataset
    from .encode import encode_checkpoints, expand_checkpoint_paths
    from .plan import make_plan
    from .store import open_store

    try:
        check_device(device)
        paths = expand_checkpoint_paths(checkpoints)
        data = load_dataset(dataset, data_dir=data_dir)
        plan = None
        if store.exists():
            stored = open_store(store).dataset
            if stored not in (None, dataset):
                _fail(f"{store} holds codes of the data set {stored!r}, not {dataset!r}.")
        else:
            chosen = None if metrics == "all" else [m.strip() for m in metrics.split(",")]
            plan = make_plan(data, chosen, seed=seed, scale=scale)
        with Progress(console=_err) as bar:
            task = bar.add_task("encoding", total=len(paths))

            def advance(path, status):
                if status.startswith("failed"):
                    _err.print(f"[yellow]{path}: {status}[/yellow]", highlight=False)
                bar.update(task, advance=1)

            summary = encode_checkpoints(
                store, paths, data, plan=plan, dataset=dataset, on_checkpoint=advance,
                encode_options={"device": device, "batch_size": batch_size})
    except (ValueError, OSError, RuntimeError) as exc:  # OSError: FileNotFoundError, ...
        _fail(str(exc))
    _err.print(f"{len(summary.written)} encoded, {len(summary.skipped)} already stored, "
               f"{len(summary.failed)} failed -> {store}")
    if summary.failed:
        raise typer.Exit(code=1)


@app.command()
def score(
    store: Annotated[Path, typer.Argument(help="Representation store (fastdis encode).")],
    out: Annotated[Path, typer.Option(help="Output Parquet dataset folder.")] = Path(
        "scores.parquet"),
    metrics: Annotated[str, typer.Option(
        help="'plan' (every metric the store's plan serves), 'all' (every registered "
             "metric), 'study' (the study's suite), or comma-separated names.")] = "plan",
    representations: Annotated[str | None, typer.Option(
        help="Comma-separated representations (default: all).")] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="Dask scheduler address (tcp://host:8786) of an existing cluster; default: "
             "local processes ('synchronous' runs in this process).")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Local worker processes (default: one per core).")] = None,
    retry_failed: Annotated[bool, typer.Option(help="Rerun evaluations that failed.")] = False,
):
    """Score every checkpoint, representation and metric of STORE into a Parquet table.

    Resumable: evaluations already in --out are skipped, so rerun the same command after a
    crash. Failed evaluations are recorded with their reason and the others go on; the exit
    status is then 1 (0: every evaluation in --out succeeded). UDR compares the checkpoints of
    each setting (the same config apart from the seed).
    """
    from .engine import score_store
    from .store import open_store

    try:
        _note_unverified(open_store(store))
        table = score_store(
            store, out, metrics=metrics,
            representations=None if representations is None else [
                r.strip() for r in representations.split(",")],
            scheduler=scheduler, workers=workers, retry_failed=retry_failed, progress=True)
    except (ValueError, FileNotFoundError, OSError, RuntimeError) as exc:
        _fail(str(exc))
    failed = table[table["error"].notna()]
    _err.print(f"{table['checkpoint'].nunique()} checkpoints, {len(table) - len(failed)} "
               f"scores, {len(failed)} failed evaluations -> {out}")
    for row in failed.drop_duplicates("error").head(5).itertuples():
        _err.print(f"[yellow]  {row.checkpoint} / {row.representation} / {row.metric}: "
                   f"{row.error}[/yellow]", highlight=False)
    if len(failed):
        raise typer.Exit(code=1)


def _note_unverified(store):
    unverified = store.unverified()
    if unverified:
        _err.print(f"[yellow]note: {', '.join(unverified[:3])}"
                   f"{f' and {len(unverified) - 3} more' if len(unverified) > 3 else ''} of "
                   f"{store.path} were written without checksums (an older fastdis): missing "
                   "chunk files are detected, damaged content is not. `fastdis encode "
                   "--replace` rewrites checkpoints with checksums.[/yellow]", highlight=False)


@app.command()
def report(
    scores: Annotated[Path, typer.Argument(
        help="Scores: a fastdis score --out folder or a Parquet file.")],
    out: Annotated[Path, typer.Option(help="Report folder (created; a previous report there "
                                           "is overwritten).")] = Path("report"),
    representation: Annotated[str | None, typer.Option(
        help="Representation of the per-setting plots (default: mean).")] = None,
):
    """Draw the study's figures of SCORES, each with its CSV, into index.md and index.html.

    Metrics' rank correlation, total correlation, scores against strength, violins per setting.

    Variance explained by setting and seed, downstream accuracy, model selection transfer.

    index.html embeds every figure. Bad arguments are refused before anything is written.
    """
    from .report import write_report

    try:
        page = write_report(scores, out, representation=representation)
    except (ValueError, OSError) as exc:  # OSError: a disk full or a folder gone mid-write
        _fail(str(exc))
    typer.echo(str(page))
    typer.echo(str(page.with_name("index.html")))
