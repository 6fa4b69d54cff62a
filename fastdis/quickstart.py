"""The whole pipeline on built-in data: make data, train, encode once, score many, report.

:func:`run_quickstart` is what ``fastdis quickstart`` runs, step by step with the public API of
each package, so it doubles as the worked example of that API:

1. :func:`fastdis.data.make_dsprites` renders the small dSprites look-alike (every factor of the
   real grid, fewer values) and :func:`fastdis.data.load_dataset` reads it like the real file;
2. :func:`fastdis.train.train` trains each of the study's six methods briefly on the CPU;
3. :func:`fastdis.batch.make_plan` draws one evaluation plan, and
   :func:`fastdis.batch.encode_checkpoints` encodes every checkpoint on it into a Zarr store;
4. :func:`fastdis.batch.score_store` scores every checkpoint x representation x registered
   metric into a Parquet table (resumable); UDR compares the seeds of each method;
5. :func:`fastdis.batch.write_report` draws the paper's plots.

Every step skips what an earlier, interrupted run already finished, so running it again
resumes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ._validation import check_positive_int

#: The data set the quickstart trains on: its loader reads the look-alike like the real file.
QUICKSTART_DATASET = "dsprites_full"
#: Which of the study's six regularisation strengths each method trains with.
QUICKSTART_STRENGTH = 2


@dataclass(frozen=True)
class QuickstartResult:
    """Where each product of the run lies."""

    data_dir: Path
    runs: tuple[Path, ...]
    store: Path
    scores: Path
    report: Path


def run_quickstart(
    out_dir,
    *,
    steps: int = 150,
    seeds: int = 2,
    scale: float = 0.1,
    workers: int | None = None,
    log=print,
) -> QuickstartResult:
    """Run the pipeline into ``out_dir`` (created if needed) and return where things are.

    Parameters
    ----------
    out_dir : path
        Gets ``data/``, ``runs/<method>-seed<k>/``, ``reps.zarr``, ``scores.parquet`` and
        ``report/``.
    steps : int, default=150
        Training steps per model: enough for the losses to fall and the scores to differ, far
        from the study's 300,000.
    seeds : int, default=2
        Models per method (seeds 0, 1, ...), so the report can show the spread over seeds and
        UDR can compare them (with 1 seed UDR is left out).
    scale : float, default=0.1
        Multiplies the study's evaluation sample sizes.
    workers : int, default=None
        Scoring processes; ``None``: one per core.
    log : callable, default=print
        Receives one line per step.
    """
    from .batch import encode_checkpoints, make_plan, score_store, write_report
    from .batch.plan import MODEL_SET_INPUTS
    from .data import load_dataset, make_dsprites
    from .metrics import METRICS
    from .train import METHODS, TrainConfig, train
    from .train.sweep import regularization_strengths

    steps = check_positive_int(steps, name="steps")
    seeds = check_positive_int(seeds, name="seeds")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def step(message):
        log(f"[{time.perf_counter() - started:6.1f} s] {message}")

    data_dir = out_dir / "data"
    try:
        data = load_dataset(QUICKSTART_DATASET, data_dir=data_dir)
        step(f"1/5 data: found the dSprites look-alike in {data_dir}")
    except FileNotFoundError:
        step(f"1/5 data: rendering the small dSprites look-alike into {data_dir}")
        make_dsprites(data_dir, small=True)
        data = load_dataset(QUICKSTART_DATASET, data_dir=data_dir)
    step(f"    factors {list(data.factors_num_values)}, {data.num_points:,} images")

    runs = []
    for method in METHODS:
        # The third of the study's six strengths: a real regularizer for every method (the
        # first, e.g. beta = 1, makes beta_tc_vae identical to beta_vae).
        field, values = regularization_strengths(method)
        strength = {field: values[QUICKSTART_STRENGTH]}
        for seed in range(seeds):
            run_dir = out_dir / "runs" / f"{method}-seed{seed}"
            step(f"2/5 train: {method} ({field}={values[QUICKSTART_STRENGTH]:g}), seed {seed}, "
                 f"{steps} steps -> {run_dir}")
            config = TrainConfig(method=method, dataset=QUICKSTART_DATASET,
                                 data_dir=str(data_dir), seed=seed, steps=steps,
                                 log_every=max(1, steps // 4), checkpoint_every=steps,
                                 **strength)
            runs.append(train(config, run_dir, progress=False, dataset=data))

    store = out_dir / "reps.zarr"
    step(f"3/5 encode: {len(runs)} checkpoints, mean and sampled codes -> {store}")
    plan = make_plan(data, seed=0, scale=scale)
    summary = encode_checkpoints(store, runs, data, plan=plan, dataset=QUICKSTART_DATASET)
    for path, reason in summary.failed:
        step(f"    {path}: not encoded ({reason})")

    scores_path = out_dir / "scores.parquet"
    metrics = "all"
    if seeds > 1:
        step(f"4/5 score: every registered metric (UDR across the {seeds} seeds of each "
             f"method), mean and sampled codes -> {scores_path}")
    else:  # nothing for UDR to compare: a row per checkpoint saying so would be all it gives
        metrics = [name for name, spec in METRICS.items() if spec.inputs not in MODEL_SET_INPUTS]
        step(f"4/5 score: every registered metric but UDR (it compares seeds: --seeds 2 or "
             f"more), mean and sampled codes -> {scores_path}")
    scores = score_store(store, scores_path, metrics=metrics, workers=workers, progress=True)

    report_dir = out_dir / "report"
    step(f"5/5 report -> {report_dir}")
    report_page = write_report(scores, report_dir)
    step(f"done: open {report_page}")
    return QuickstartResult(data_dir, tuple(runs), store, scores_path, report_dir)
