"""Commands of this package, merged into the ``fastdis`` command line by fastdis/cli.py.

``fastdis train`` trains (or resumes) one model, or one setting over many seeds in packs;
``fastdis sweep`` lists or trains entries of ``unsupervised_study_v1`` by dlib's model_num, in
packs, here or on a Dask cluster. torch is imported inside the command bodies
only, so ``fastdis --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .config import DATA_SAMPLING, FACTOR_VAE_STEP_COUNTING, METHODS, TrainConfig

app = typer.Typer()
_err = Console(stderr=True)


class _WrappedHelp(typer.core.TyperCommand):
    """Help laid out by click: it rewraps paragraphs and option help to the terminal width.
    Rich's option table truncates long option names (--factor-vae-step-counting) at 80
    columns and keeps the docstring's line breaks."""

    def format_help(self, ctx, formatter):
        import click

        click.Command.format_help(self, ctx, formatter)


def _fail(message: str, code: int = 2):
    _err.print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    raise typer.Exit(code=code)


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            _fail(f"--threads must be a positive integer; got {threads}.")
        import torch

        torch.set_num_threads(threads)


def _usable_device(device: str) -> None:
    """Refuse a device this machine lacks before anything is created."""
    from .._device import check_device

    try:
        check_device(device)
    except ValueError as exc:
        _fail(str(exc))


def _guarded(work):
    """Run ``work()`` with the library's errors turned into messages and exit codes."""
    try:
        return work()
    except (ValueError, TypeError) as exc:  # bad config, data or checkpoint
        _fail(str(exc))
    except (OSError, RuntimeError, ImportError, MemoryError,  # missing data, --out a file, ...
            FloatingPointError) as exc:  # a diverged run (non-finite loss)
        _fail(str(exc), code=1)


def _run(config: TrainConfig, out: Path, progress: bool) -> None:
    """Train one model (a pack of one)."""
    from .training import train

    _guarded(lambda: train(config, out, progress=progress))


def _report_stopped(stopped: dict) -> None:
    """Name the models whose loss turned non-finite; exit 1 if there are any."""
    stopped = {name: record for name, record in stopped.items() if record is not None}
    for name, record in stopped.items():
        _err.print(f"[yellow]stopped:[/yellow] {name} at step {record['step']}: "
                   f"{', '.join(record['non_finite_terms'])} not finite", highlight=False)
    if stopped:
        raise typer.Exit(code=1)


#: The command's defaults are the config's (the study's), written once.
_DEFAULT = TrainConfig()

_METHOD_HELP = "One of " + ", ".join(METHODS) + " (dlib's model.name; beta_tcvae also works)."


@app.command(cls=_WrappedHelp)
def train(
    out: Annotated[Path, typer.Option("--out", help="Run directory (resumed if it holds a "
                                      "checkpoint).")],
    method: Annotated[str, typer.Option(help=_METHOD_HELP)] = _DEFAULT.method,
    beta: Annotated[float | None, typer.Option(help="beta_vae / beta_tc_vae strength.")] = None,
    gamma: Annotated[float | None, typer.Option(help="factor_vae / annealed_vae strength.")
                     ] = None,
    c_max: Annotated[float | None, typer.Option(help="annealed_vae capacity (nats).")] = None,
    iteration_threshold: Annotated[int | None, typer.Option(
        help="annealed_vae: steps until the capacity reaches c_max.")] = None,
    lambda_od: Annotated[float | None, typer.Option(help="dip_vae_* off-diagonal weight.")
                         ] = None,
    lambda_d_factor: Annotated[float | None, typer.Option(
        help="dip_vae_*: lambda_d = lambda_d_factor * lambda_od.")] = None,
    dataset: Annotated[str, typer.Option(help="dlib dataset name.")] = _DEFAULT.dataset,
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the dataset's files.")
                        ] = None,
    seed: Annotated[int, typer.Option(help="model.random_seed.")] = _DEFAULT.seed,
    seeds: Annotated[str | None, typer.Option(
        help="Train this setting for many seeds, e.g. '0-49', as packs; each seed goes to "
             "OUT/seed_<seed>/.")] = None,
    pack: Annotated[int | None, typer.Option(
        help="With --seeds: models per pack (default: all of them in one).")] = None,
    steps: Annotated[int, typer.Option(help="model.training_steps.")] = _DEFAULT.steps,
    batch_size: Annotated[int, typer.Option(help="Batch size (study: 64).")] = _DEFAULT.batch_size,
    num_latent: Annotated[int, typer.Option(help="Latent dimensions (study: 10).")] = (
        _DEFAULT.num_latent),
    compile: Annotated[bool, typer.Option(
        "--compile/--no-compile", help="torch.compile the forward and loss.")] = _DEFAULT.compile,
    compile_mode: Annotated[str | None, typer.Option(
        help="torch.compile mode, e.g. reduce-overhead (CUDA graphs) on GPUs.")] = None,
    device: Annotated[str, typer.Option(help="torch device, e.g. cpu or cuda.")] = _DEFAULT.device,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = (
        _DEFAULT.checkpoint_every),
    log_every: Annotated[int, typer.Option(help="Steps between log lines.")] = _DEFAULT.log_every,
    factor_vae_step_counting: Annotated[str, typer.Option(
        help=f"{' or '.join(FACTOR_VAE_STEP_COUNTING)}: 'dlib' makes --steps dlib's global "
             f"step, which FactorVAE advances by 2 per update.")
    ] = _DEFAULT.factor_vae_step_counting,
    data_sampling: Annotated[str, typer.Option(
        help=f"{' or '.join(DATA_SAMPLING)}: 'dlib' draws one observation per call, "
             f"the reference's stream; 'counter' draws on the device from (seed, step).")
    ] = _DEFAULT.data_sampling,
    progress: Annotated[bool, typer.Option("--progress/--no-progress",
                                           help="Show the progress bar.")] = True,
):
    """Train one model of METHOD into the run directory --out (resuming it if possible).

    Writes checkpoint.pt (weights, optimiser and RNG states), config.json and log.jsonl (one
    line per logging step). Defaults are those of disentanglement_lib's unsupervised study.
    """
    config = TrainConfig(
        method=method, beta=beta, gamma=gamma, c_max=c_max,
        iteration_threshold=iteration_threshold, lambda_od=lambda_od,
        lambda_d_factor=lambda_d_factor, dataset=dataset,
        data_dir=str(data_dir.resolve()) if data_dir is not None else None, seed=seed,
        steps=steps,
        batch_size=batch_size, num_latent=num_latent, compile=compile,
        compile_mode=compile_mode, device=device,
        checkpoint_every=checkpoint_every, log_every=log_every,
        factor_vae_step_counting=factor_vae_step_counting, data_sampling=data_sampling)
    try:
        config = config.resolved()
    except ValueError as exc:
        _fail(str(exc))
    _usable_device(device)
    _set_threads(threads)
    if seeds is None:
        if pack is not None:
            _fail("--pack groups the models of --seeds; give --seeds too (e.g. --seeds 0-7).")
        _run(config, out, progress)
        _err.print(f"trained {config.method} to step {config.num_iterations()} in {out}")
        return
    _train_seeds(config, seeds, pack, out, progress)


def _train_seeds(config: TrainConfig, seeds: str, pack: int | None, out: Path,
                 progress: bool) -> None:
    """``fastdis train --seeds``: one setting over many seeds, in packs."""
    import dataclasses

    from .sweep import parse_seeds
    from .training import train_pack

    try:
        chosen = parse_seeds(seeds)
        configs = [dataclasses.replace(config, seed=seed).resolved() for seed in chosen]
    except ValueError as exc:
        _fail(str(exc))
    size = len(chosen) if pack is None else pack
    if size < 1:
        _fail(f"--pack must be a positive integer; got {pack}.")
    stopped = {}
    for start in range(0, len(chosen), size):
        part, part_configs = chosen[start:start + size], configs[start:start + size]
        records = _guarded(lambda part=part, part_configs=part_configs: train_pack(
            part_configs, [out / f"seed_{seed}" for seed in part], progress=progress))
        stopped.update({f"seed {seed}": record
                        for seed, record in zip(part, records, strict=True)})
    _err.print(f"trained {config.method} for {len(chosen)} seed(s) into {out}")
    _report_stopped(stopped)


@app.command(cls=_WrappedHelp)
def sweep(
    study: Annotated[str, typer.Option(help="The study (dlib's name).")] =
        "unsupervised_study_v1",
    dataset: Annotated[str | None, typer.Option(help="Only this dataset's models.")] = None,
    only_print: Annotated[bool, typer.Option("--only-print", help="List the selected models "
                                             "(model_num and dlib's bindings); train none.")
                          ] = False,
    models: Annotated[str | None, typer.Option(help="model_nums to select, e.g. '0-5,17'.")
                      ] = None,
    out: Annotated[Path | None, typer.Option(help="Each model trains into OUT/<model_num>/.")
                   ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder with the datasets' files.")
                        ] = None,
    steps: Annotated[int | None, typer.Option(help="Override the study's 300,000 steps.")
                     ] = None,
    compile: Annotated[bool, typer.Option("--compile/--no-compile")] = _DEFAULT.compile,
    compile_mode: Annotated[str | None, typer.Option(help="torch.compile mode.")] = None,
    device: Annotated[str, typer.Option(help="torch device.")] = _DEFAULT.device,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = (
        _DEFAULT.checkpoint_every),
    pack: Annotated[int, typer.Option(
        help="Models per pack (models of one dataset and method train together).")] = 1,
    data_sampling: Annotated[str, typer.Option(
        help=f"{' or '.join(DATA_SAMPLING)}, as for `fastdis train`.")
    ] = _DEFAULT.data_sampling,
    scheduler: Annotated[str | None, typer.Option(
        help="Address of a Dask scheduler: run the packs on its workers, one pack per task "
             "(start workers with --nthreads 1).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
):
    """List or train the models of STUDY with disentanglement_lib's model_num numbering.

    model_num = 1800 * dataset + 50 * (6 * method + strength) + seed, with datasets
    dsprites_full, color_dsprites, noisy_dsprites, scream_dsprites, smallnorb, cars3d, shapes3d
    and methods beta_vae, factor_vae, dip_vae_i, dip_vae_ii, beta_tc_vae, annealed_vae.
    Models of one dataset and method train together in packs of --pack; each keeps its run
    directory OUT/<model_num>/. Training resumes models whose run directory already holds a
    checkpoint. A model whose loss turns non-finite stops (its directory's stopped.json says
    when) and the others train on; the command then exits with code 1.
    """
    from .sweep import parse_model_nums, study_models

    try:
        selected = study_models(study, dataset=dataset,
                                model_nums=parse_model_nums(models) if models else None)
    except ValueError as exc:
        _fail(str(exc))
    if only_print:
        for model in selected:
            typer.echo(f"{model.model_num}\t" + ", ".join(model.gin_bindings()))
        return
    if models is None:
        _fail("choose the models to train with --models (e.g. --models 0-5,17), or list "
              "them with --only-print.")
    if out is None:
        _fail("--out is required to train (each model goes to OUT/<model_num>/).")
    if scheduler is None:  # on a cluster, the workers' devices count (train_pack checks there)
        _usable_device(device)
    overrides = {"data_dir": str(data_dir) if data_dir is not None else None,
                 "compile": compile, "compile_mode": compile_mode, "device": device,
                 "checkpoint_every": checkpoint_every, "data_sampling": data_sampling}
    if steps is not None:
        overrides["steps"] = steps
    from .sweep import plan_packs, run_sweep

    try:
        for model in selected:
            model.train_config(**overrides)
        packs = plan_packs(selected, pack)
    except ValueError as exc:
        _fail(str(exc))
    _set_threads(threads)
    for models_of_pack in packs:
        _err.print(f"pack of {len(models_of_pack)}: "
                   + "; ".join(f"model {m.model_num}: {', '.join(m.gin_bindings())}"
                               for m in models_of_pack), highlight=False)
    stopped = _guarded(lambda: run_sweep(packs, out, overrides, scheduler=scheduler,
                                         progress=progress,
                                         report=lambda text: _err.print(text, highlight=False)))
    _err.print(f"trained {len(selected)} model(s) in {len(packs)} pack(s) into {out}")
    _report_stopped({f"model {num}": record for num, record in stopped.items()})
