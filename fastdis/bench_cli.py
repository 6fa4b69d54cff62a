"""``fastdis bench``: the bench suite (``fastdis.bench``) as a command, and two runs compared.

Each subcommand runs one bench's ``main``; arguments it does not know itself go through to the
bench's own options (``fastdis bench metrics -m mig --scale 0.1``; ``fastdis bench metrics --
--help`` lists them). Tables go to stdout, progress to stderr.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Time fastdis against its references; --json saves a run, compare divides two runs. "
    "A bench's own options go through to it: `fastdis bench metrics -- --help` lists them.",
    no_args_is_help=True,
)

#: name -> (module in fastdis.bench, takes --device, one-line help)
BENCHES = {
    "metrics": ("bench_metrics", False,
                "Every study metric, fastdis against disentanglement_lib, reference protocol."),
    "arrays": ("bench_arrays", False,
               "The metric computation alone on identical arrays, against the reference."),
    "kernels": ("bench_kernels", True,
                "The training regularizers: Triton kernels, eager and compiled torch."),
    "training": ("bench_training", True,
                 "Training steps/s, eager against torch.compile, for the six methods."),
    "batch": ("bench_batch", False,
              "Batch scoring of a representation store (local processes, Dask, reference)."),
    "data": ("bench_data", False,
             "Data sampling, loading and rendering against disentanglement_lib's classes."),
}

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}

JsonOption = Annotated[
    Path | None, typer.Option("--json", help="Also write the setup and every table here.")
]
DeviceOption = Annotated[
    str | None, typer.Option("--device", help="cpu or cuda (kernels and training only).")
]


def bench_arguments(name, extra, json_path, device):
    """The bench's own argv: the pass-through arguments, then --device and --json."""
    if device is not None and not BENCHES[name][1]:
        with_device = [bench for bench, (_, takes, _) in BENCHES.items() if takes]
        raise typer.BadParameter(
            f"the {name} bench has no device choice; --device is for {' and '.join(with_device)}",
            param_hint="--device",
        )
    argv = [argument for argument in extra if argument != "--"]
    if device is not None:
        argv += ["--device", device]
    if json_path is not None:
        argv += ["--json", str(json_path)]
    return argv


def _register(name):
    module_name, _, help_text = BENCHES[name]

    def command(ctx: typer.Context, json_path: JsonOption = None, device: DeviceOption = None):
        argv = bench_arguments(name, ctx.args, json_path, device)
        module = importlib.import_module(f"fastdis.bench.{module_name}")
        module.main(argv)

    command.__doc__ = help_text
    app.command(name, context_settings=_PASS_THROUGH)(command)


for _name in BENCHES:
    _register(_name)


@app.command("compare")
def compare_runs(
    first: Annotated[Path, typer.Argument(help="A run saved with --json (the baseline, A).")],
    second: Annotated[Path, typer.Argument(help="Another run (B); ratios are B / A.")],
):
    """Print B / A for every numeric column of two saved runs, rows matched by their keys."""
    from fastdis.bench._table import compare

    try:
        compare(first, second)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        raise typer.Exit(2) from None
