"""The training loop: packs of models, checkpoints, resume, JSONL logs and a progress bar.

One loop trains every model: :func:`train` is a pack of one through :func:`train_pack`. Each
model of a pack keeps its own run directory, seed and strengths; the pack's step is
:class:`fastdis.train.pack.Pack` and its random numbers come from
:mod:`fastdis.train.sampling`:

- ``data_sampling="dlib"`` (the default) or ``"batched"``: dlib's data stream
  ``RandomState(RandomState(seed).randint(2**32))`` per model, one observation per call for
  "dlib" like its tf.data generator, and one CPU ``torch.Generator(seed)`` per model that draws
  the weights, then every step's noise (and FactorVAE's shuffle keys);
- ``data_sampling="counter"``: images, noise and shuffle keys are a function of (seed, step)
  only, drawn on the pack's device; the generator draws the weights only.

Every checkpoint holds the weights, the Adam states and both streams, so a killed run resumes
without losing or repeating a step: N steps straight and N/2 + resume + N/2 end with identical
weights. A model whose loss terms turn non-finite stops (its run directory keeps the last finite
checkpoint and a ``stopped.json``) while the rest of its pack trains on.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch

from .._device import check_device
from .._progress import stderr_progress
from ..data._files import same_data_folder
from .checkpoint import (
    CHECKPOINT_FILE,
    LOG_FILE,
    read_checkpoint,
    read_stop_record,
    save_checkpoint,
    write_stop_record,
)
from .config import TrainConfig
from .pack import Pack, check_pack
from .sampling import (  # noqa: F401 - data_random_state and sample_batch are this module's API
    CounterSampler,
    HostSampler,
    data_random_state,
    device_image_table,
    sample_batch,
)

#: Methods of dlib's protocol a dataset must have (``GroundTruthData``).
DATASET_PROTOCOL = ("sample_factors", "sample_observations_from_factors", "observation_shape")


def load_named_dataset(name: str, data_dir: str | None):
    """``fastdis.data.load_dataset(name, data_dir)`` with a clear error if it is unavailable."""
    try:
        from fastdis.data import load_dataset
    except ImportError as exc:
        raise RuntimeError(
            f"cannot load dataset {name!r}: fastdis.data.load_dataset is not available "
            f"({exc}). Pass a dataset object to train(..., dataset=...).") from exc
    return load_dataset(name, data_dir=data_dir)


def check_dataset(dataset) -> tuple[int, int, int]:
    """The dataset's observation shape, after checking it follows dlib's protocol."""
    missing = [name for name in DATASET_PROTOCOL if not hasattr(dataset, name)]
    if missing:
        raise TypeError(f"the dataset must implement dlib's GroundTruthData protocol; "
                        f"{type(dataset).__name__} lacks {', '.join(missing)}.")
    shape = tuple(int(s) for s in dataset.observation_shape)
    if len(shape) != 3 or shape[:2] != (64, 64):
        raise ValueError(f"the study's networks need observations of shape (64, 64, C); the "
                         f"dataset's observation_shape is {shape}.")
    return shape


def check_resumable(saved: dict, config: TrainConfig, file: Path) -> None:
    """Refuse to resume a run whose saved config computes something else than ``config``."""
    saved_config = TrainConfig.from_dict(saved).resolved()
    differing = [name for name, value in config.to_dict().items()
                 if name not in TrainConfig.SYSTEM_FIELDS
                 and value != saved_config.to_dict()[name]
                 # the data folder counts by what it holds, not by how it is spelled
                 and not (name == "data_dir" and same_data_folder(
                     value, saved_config.data_dir, config.dataset))]
    if differing:
        details = ", ".join(f"{name}: saved {saved_config.to_dict()[name]!r}, "
                            f"asked {config.to_dict()[name]!r}" for name in differing)
        raise ValueError(f"the run in {file.parent} was trained with another config ({details}); "
                         f"choose another output directory or the same settings.")


def truncate_log(log_path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a run resumes from (they will be redone),
    and a last line cut short by a kill."""
    if not log_path.exists():
        return
    kept = []
    for line in log_path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    log_path.write_text("".join(line + "\n" for line in kept))


def read_run(config: TrainConfig, out_dir: Path, observation_shape) -> tuple[int, dict | None]:
    """The step and checkpoint state a run directory resumes from: (0, None) when it has none.

    Raises
    ------
    ValueError
        The checkpoint was trained with another config, on other observations, or is already
        past the updates ``config`` asks for.
    """
    if not (out_dir / CHECKPOINT_FILE).exists():
        return 0, None
    saved, state = read_checkpoint(out_dir)
    check_resumable(saved, config, out_dir / CHECKPOINT_FILE)
    if tuple(saved["observation_shape"]) != observation_shape:
        raise ValueError(f"the run in {out_dir} was trained on observations of shape "
                         f"{saved['observation_shape']}; this dataset's are "
                         f"{list(observation_shape)}.")
    step, num_iterations = int(saved["step"]), config.num_iterations()
    if step > num_iterations:  # else the loop would not run and return a longer run silently
        raise ValueError(
            f"the run in {out_dir} is already at update {step} (dlib global step "
            f"{config.global_step(step)}), past the {num_iterations} updates that steps="
            f"{config.steps} asks for; ask for at least steps={saved['steps']}, or choose "
            f"another output directory.")
    return step, state


def make_sampler(dataset, configs, generators, device):
    """The pack's sampler for its ``data_sampling`` (shared by all its models)."""
    if configs[0].data_sampling == "counter":
        return CounterSampler(dataset, configs, generators, device)
    return HostSampler(dataset, configs, generators, device)


def train(config: TrainConfig, out_dir: str | os.PathLike, *, progress: bool = True,
          dataset=None) -> Path:
    """Train ``config`` into ``out_dir``; resume if ``out_dir`` holds a checkpoint.

    The model trains as a pack of one (:func:`train_pack`).

    Parameters
    ----------
    config : TrainConfig
    out_dir : path
        The run directory: ``checkpoint.pt``, ``config.json`` and ``log.jsonl`` go there.
    progress : bool, default=True
        Show a Rich progress bar (steps/s, loss terms) on stderr.
    dataset : object, optional
        Any object with dlib's ground-truth protocol (``sample_factors``,
        ``sample_observations_from_factors``, ``observation_shape``); by default
        ``fastdis.data.load_dataset(config.dataset, data_dir=config.data_dir)``.

    Returns
    -------
    Path
        ``out_dir``, ready for :func:`load_checkpoint`.

    Raises
    ------
    FloatingPointError
        A loss term became non-finite; ``out_dir`` keeps the last finite checkpoint and its
        ``stopped.json`` says at which update and which terms.
    """
    stopped = train_pack([config], [out_dir], progress=progress, dataset=dataset)[0]
    if stopped is not None:
        raise FloatingPointError(
            f"step {stopped['step']}: a loss term is not finite {stopped['values']}; lower the "
            f"learning rate or the regularisation.")
    return Path(out_dir)


def train_pack(configs: list[TrainConfig], out_dirs, *, progress: bool = True, dataset=None,
               strategy: str | None = None) -> list[dict | None]:
    """Train models of one method as one pack, each into its own run directory.

    Each run directory is that of :func:`train` (``checkpoint.pt``, ``config.json``,
    ``log.jsonl``) and is resumed if it holds a checkpoint. A kill can leave the models at two
    checkpoint steps (it cut the pack's checkpoint writes short); the models behind then train
    alone, as a smaller pack, up to the others, which the pack's independence makes exact.

    Parameters
    ----------
    configs : list of TrainConfig
        One per model; they may differ in ``seed`` and the method's strengths only.
    out_dirs : list of paths
        One run directory per model.
    progress, dataset
        As in :func:`train` (one progress bar, in model-steps/s).
    strategy : {"loop", "vmap"}, optional
        How the pack is computed (:mod:`fastdis.train.pack`); by default "loop" on the CPU and
        "vmap" elsewhere.

    Returns
    -------
    list
        Per model: None if it trained to the end, else its stop record (``stopped.json``: the
        update at which a loss term became non-finite, the terms and their values). A stopped
        model keeps its last finite checkpoint; the others train on.
    """
    configs = [config.resolved() for config in configs]
    check_pack(configs)
    out_dirs = [Path(out_dir) for out_dir in out_dirs]
    if len(out_dirs) != len(configs):
        raise ValueError(f"{len(configs)} configs but {len(out_dirs)} output directories.")
    first = configs[0]
    check_device(first.device, name="device")  # before anything is created
    for out_dir in out_dirs:
        out_dir.mkdir(parents=True, exist_ok=True)
    if dataset is None:
        dataset = load_named_dataset(first.dataset, first.data_dir)
    observation_shape = check_dataset(dataset)
    if first.data_sampling == "counter":
        device_image_table(dataset)  # refuse an unsuitable data set before any work
    num_iterations = first.num_iterations()
    bar = _ProgressBar(num_iterations, 0, first, len(configs), enabled=progress)
    largest = len(configs)
    with bar:
        while True:
            try:
                return _train_levels(configs, out_dirs, dataset, observation_shape, bar,
                                     strategy, largest)
            except torch.cuda.OutOfMemoryError:
                if largest == 1:
                    raise MemoryError(
                        f"one {first.method} model at batch size {first.batch_size} does not "
                        f"fit in the memory of {first.device}; lower the batch size or use "
                        f"another device.") from None
            # Outside the except block: its traceback no longer holds the failed pack's
            # tensors, so their blocks can go back before a smaller pack starts.
            torch.cuda.empty_cache()
            largest //= 2  # the runs resume where they stand: nothing is lost
            _warn(f"a pack of {2 * largest} {first.method} models does not fit in the "
                  f"memory of {first.device}; training packs of at most {largest}.")


def _train_levels(configs, out_dirs, dataset, observation_shape, bar, strategy,
                  largest: int) -> list[dict | None]:
    """Bring every live model from where its run directory stands to the last update, in
    packs of at most ``largest``: first the models behind, up to the step of the others."""
    steps = [read_run(config, out_dir, observation_shape)[0]
             for config, out_dir in zip(configs, out_dirs, strict=True)]
    stopped = [read_stop_record(out_dir, config)
               for config, out_dir in zip(configs, out_dirs, strict=True)]
    num_iterations = configs[0].num_iterations()
    levels = sorted({step for step, record in zip(steps, stopped, strict=True) if record is None}
                    | {num_iterations})
    for level in levels[1:]:
        behind = [i for i, record in enumerate(stopped) if record is None and steps[i] < level]
        for start in range(0, len(behind), largest):
            members = behind[start:start + largest]
            records = _train_segment([configs[i] for i in members],
                                     [out_dirs[i] for i in members], dataset,
                                     observation_shape, level, bar, strategy)
            for i, record in zip(members, records, strict=True):
                stopped[i], steps[i] = record, level
    return stopped


def _warn(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr)


def _train_segment(configs, out_dirs, dataset, observation_shape, until: int, bar,
                   strategy) -> list[dict | None]:
    """Train a pack whose run directories stand at one step up to update ``until``."""
    first = configs[0]
    device = torch.device(first.device)
    pack = Pack(configs, observation_shape, device, strategy)
    sampler = make_sampler(dataset, configs, pack.generators, device)
    runs = [read_run(config, out_dir, observation_shape)
            for config, out_dir in zip(configs, out_dirs, strict=True)]
    step = runs[0][0]
    if any(state is not None for _, state in runs):
        try:
            pack.load_models([state for _, state in runs])
        except (KeyError, RuntimeError) as exc:
            raise ValueError(f"a checkpoint in {', '.join(map(str, out_dirs))} does not fit the "
                             f"model its config describes ({exc}).") from exc
        for index, (_, state) in enumerate(runs):
            sampler.load_state(index, state)
    for out_dir in out_dirs:
        truncate_log(out_dir / LOG_FILE, step)
    watch = _FiniteWatch(len(pack), device)
    records = [None] * len(pack)
    logs = [open(out_dir / LOG_FILE, "a") for out_dir in out_dirs]
    try:
        interval_start, interval_steps = time.perf_counter(), 0
        while step < until:
            images, noise, shuffle_keys = sampler.draw(step)
            terms = pack.step(images, noise, shuffle_keys,
                              pack.capacity(first.global_step(step)))
            step += 1
            interval_steps += 1
            watch.observe(step, terms)
            log_now = step % first.log_every == 0 or step == until
            save_now = step % first.checkpoint_every == 0 or step == until
            if not (log_now or save_now):
                bar.update(step)
                continue
            for index, record in watch.newly_stopped(terms).items():
                records[index] = write_stop_record(out_dirs[index], configs[index], record)
            alive = [index for index, record in enumerate(records) if record is None]
            if log_now:
                rate = interval_steps / (time.perf_counter() - interval_start)
                line = _log_lines(terms, alive, logs, step, first, rate)
                bar.update(step, line, len(alive))
                interval_start, interval_steps = time.perf_counter(), 0
            if save_now:
                for index in alive:
                    model_state = pack.model_state(index)
                    if not all(bool(value.isfinite().all()) for value in model_state.values()):
                        # finite terms, but the update overflowed: keep the last checkpoint
                        watch.reported.add(index)
                        records[index] = write_stop_record(
                            out_dirs[index], configs[index],
                            {"step": step, "non_finite_terms": ["weights"], "values": {}})
                        continue
                    save_checkpoint(out_dirs[index], config=configs[index], step=step,
                                    observation_shape=observation_shape, model_state=model_state,
                                    optimizer_states=pack.optimizer_states(index),
                                    streams=sampler.state(index))
    finally:
        for log in logs:
            log.close()
    return records


def _log_lines(terms, alive, logs, step, config, rate) -> dict | None:
    """Append each live model's line to its log; returns the first one (for the bar)."""
    values = {name: value.tolist() for name, value in terms.items()}  # one sync for the pack
    first_line = None
    now = time.time()
    for index in alive:
        line = {"step": step, "global_step": config.global_step(step),
                **{name: column[index] for name, column in values.items()},
                "steps_per_second": rate, "time": now}
        logs[index].write(json.dumps(line) + "\n")
        logs[index].flush()
        first_line = first_line or line
    return first_line


class _FiniteWatch:
    """Tracks, on the device, the first update at which each model's loss terms stop being
    finite, so the host looks only at log and checkpoint steps (one sync there)."""

    def __init__(self, size: int, device):
        self.first_bad_step = torch.full((size,), -1, dtype=torch.int64, device=device)
        self.bad_terms = None
        self.bad_values = None
        self.reported = set()

    def observe(self, step: int, terms: dict) -> None:
        values = torch.stack(list(terms.values()), dim=1)  # (P, terms)
        finite = values.isfinite()
        newly = (self.first_bad_step < 0) & ~finite.all(dim=1)
        if self.bad_terms is None:
            self.bad_terms, self.bad_values = ~finite, values.clone()
        self.bad_terms = torch.where(newly[:, None], ~finite, self.bad_terms)
        self.bad_values = torch.where(newly[:, None], values, self.bad_values)
        self.first_bad_step = torch.where(newly, step, self.first_bad_step)

    def newly_stopped(self, terms: dict) -> dict[int, dict]:
        names = list(terms)
        steps = self.first_bad_step.tolist()
        bad_terms, bad_values = self.bad_terms.tolist(), self.bad_values.tolist()
        records = {}
        for index, step in enumerate(steps):
            if step < 0 or index in self.reported:
                continue
            self.reported.add(index)
            records[index] = {
                "step": step,
                "non_finite_terms": [n for n, bad in zip(names, bad_terms[index], strict=True)
                                     if bad],
                # strict JSON has no NaN or Infinity: those values are written as text
                "values": {name: value if math.isfinite(value) else str(value)
                           for name, value in zip(names, bad_values[index], strict=True)}}
        return records


class _ProgressBar:
    """Rich progress on stderr: pack steps, model-steps/s and the first live model's terms."""

    SHOWN = ("loss", "reconstruction_loss", "kl_loss", "regularizer", "total_correlation",
             "dip_penalty", "tc_estimate", "discriminator_loss")

    def __init__(self, total: int, completed: int, config: TrainConfig, size: int,
                 enabled: bool):
        self.enabled = enabled
        if not enabled:
            return
        self.progress = stderr_progress(description="[bold]{task.description}",
                                        rate_fields=("speed",), trailing_fields=("terms",))
        models = f"seed {config.seed}" if size == 1 else f"x{size} models"
        self.task = self.progress.add_task(f"{config.method} {models}", total=total,
                                           completed=completed, speed="", terms="")

    def __enter__(self):
        if self.enabled:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.progress.__exit__(*exc)

    def update(self, step: int, line: dict | None = None, models: int = 1):
        if not self.enabled:
            return
        fields = {}
        if line is not None:
            fields["speed"] = f"{line['steps_per_second'] * models:.1f} model-steps/s"
            fields["terms"] = " ".join(f"{name.replace('_loss', '')}={line[name]:.4g}"
                                       for name in self.SHOWN if name in line)
        self.progress.update(self.task, completed=step, **fields)
