"""The training loop: one readable step, checkpoints, resume, a JSONL log and a progress bar.

Randomness, all derived from ``config.seed`` (dlib's ``model.random_seed``):

- the data stream: ``RandomState(RandomState(seed).randint(2**32))``, as dlib's
  ``train.py`` seeds its input function, drawing one observation per call
  (``data_sampling="dlib"``) like its tf.data generator;
- the weights, then every step's reparameterisation noise (and FactorVAE's shuffle keys): one
  CPU ``torch.Generator(seed)``, so a seed means the same numbers on any device.

Both states go into every checkpoint, so a killed run resumes without losing or repeating a
step: N steps straight and N/2 + resume + N/2 end with identical weights.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from .._progress import stderr_progress
from ..data._files import same_data_folder
from .checkpoint import (
    CHECKPOINT_FILE,
    LOG_FILE,
    load_model_state,
    random_state_from_tensors,
    read_checkpoint,
    save_checkpoint,
)
from .config import TrainConfig
from .models import GaussianVAE
from .objectives import Objective, annealed_capacity

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


def data_random_state(seed: int) -> np.random.RandomState:
    """dlib's data stream: its train.py seeds the input function with the first draw of
    RandomState(random_seed)."""
    return np.random.RandomState(np.random.RandomState(seed).randint(2**32))


def sample_batch(dataset, batch_size: int, random_state: np.random.RandomState,
                 sampling: str = "dlib") -> np.ndarray:
    """A batch (B, 64, 64, C) float32 of i.i.d. observations, uniform over factor combinations.

    ``sampling="dlib"`` draws one observation per call (factors, then the observation, as
    ``GroundTruthData.sample``), the order in which dlib's generator consumes ``random_state``.
    """
    def draw(n):
        factors = dataset.sample_factors(n, random_state)
        return dataset.sample_observations_from_factors(factors, random_state)

    if sampling == "dlib":
        batch = np.stack([np.asarray(draw(1))[0] for _ in range(batch_size)])
    else:
        batch = np.asarray(draw(batch_size))
    return np.ascontiguousarray(batch, dtype=np.float32)


def make_optimizers(config: TrainConfig, model: GaussianVAE) -> list[torch.optim.Optimizer]:
    """dlib's Adam for encoder + decoder, and FactorVAE's own Adam for the discriminator."""
    optimizers = [torch.optim.Adam(model.vae_parameters(), lr=config.learning_rate,
                                   betas=config.adam_betas, eps=config.adam_epsilon)]
    if model.discriminator is not None:
        optimizers.append(torch.optim.Adam(
            model.discriminator.parameters(), lr=config.discriminator_learning_rate,
            betas=config.discriminator_adam_betas, eps=config.discriminator_adam_epsilon))
    return optimizers


def draw_step_noise(config: TrainConfig, generator: torch.Generator, device):
    """This step's reparameterisation noise (B, d) and, for FactorVAE, shuffle keys (B, d)."""
    shape = (config.batch_size, config.num_latent)
    noise = torch.randn(shape, generator=generator).to(device)
    shuffle_keys = None
    if config.method == "factor_vae":
        shuffle_keys = torch.rand(shape, generator=generator).to(device)
    return noise, shuffle_keys


def train_step(objective, optimizers, images, noise, shuffle_keys, capacity):
    """One update of every network; returns the loss terms (0-d tensors, not yet synced).

    ``objective`` may be the compiled module. For FactorVAE one backward of the sum gives each
    network only its own gradient (the objective routes them), and both Adams step on the same
    forward pass, as dlib's grouped ``train_op`` does.
    """
    terms = objective(images, noise, shuffle_keys, capacity)
    total = terms["loss"]
    if "discriminator_loss" in terms:
        total = total + terms["discriminator_loss"]
    total.backward()
    for optimizer in optimizers:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return terms


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


def train(config: TrainConfig, out_dir: str | os.PathLike, *, progress: bool = True,
          dataset=None) -> Path:
    """Train ``config`` into ``out_dir``; resume if ``out_dir`` holds a checkpoint.

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
    """
    config = config.resolved()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if dataset is None:
        dataset = load_named_dataset(config.dataset, config.data_dir)
    observation_shape = check_dataset(dataset)
    device = torch.device(config.device)

    # 1. Model, optimisers and random streams: fresh, or restored from the last checkpoint.
    generator = torch.Generator().manual_seed(config.seed)
    model = GaussianVAE(observation_shape, config.num_latent,
                        discriminator=config.method == "factor_vae")
    model.reset_parameters(generator)  # the weights first; the step noise continues the stream
    model.to(device)
    optimizers = make_optimizers(config, model)
    random_state = data_random_state(config.seed)
    step = 0
    if (out_dir / CHECKPOINT_FILE).exists():
        saved, state = read_checkpoint(out_dir)
        check_resumable(saved, config, out_dir / CHECKPOINT_FILE)
        if tuple(saved["observation_shape"]) != observation_shape:
            raise ValueError(f"the run in {out_dir} was trained on observations of shape "
                             f"{saved['observation_shape']}; this dataset's are "
                             f"{list(observation_shape)}.")
        load_model_state(model, state, out_dir / CHECKPOINT_FILE)
        for optimizer, optimizer_state in zip(optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(optimizer_state)
        generator.set_state(state["torch_generator"])
        random_state = random_state_from_tensors(state["data_random_state"])
        step = int(saved["step"])
    num_iterations = config.num_iterations()
    if step > num_iterations:  # else the loop would not run and return a longer run silently
        raise ValueError(
            f"the run in {out_dir} is already at update {step} (dlib global step "
            f"{config.global_step(step)}), past the {num_iterations} updates that steps="
            f"{config.steps} asks for; ask for at least steps={saved['steps']}, or choose "
            f"another output directory.")
    truncate_log(out_dir / LOG_FILE, step)

    objective = Objective(config, model)
    step_objective = objective
    if config.compile:
        step_objective = torch.compile(objective, mode=config.compile_mode)
    model.train()  # no dropout or batch norm; kept for form
    hp = config.hyperparameters()

    # 2. The loop.
    bar = _ProgressBar(num_iterations, step, config, enabled=progress)
    with bar, open(out_dir / LOG_FILE, "a") as log:
        interval_start, interval_steps = time.perf_counter(), 0
        while step < num_iterations:
            batch = sample_batch(dataset, config.batch_size, random_state, config.data_sampling)
            images = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).contiguous()  # NCHW
            noise, shuffle_keys = draw_step_noise(config, generator, device)
            capacity = None
            if config.method == "annealed_vae":
                capacity = torch.tensor(annealed_capacity(
                    hp["c_max"], hp["iteration_threshold"], config.global_step(step)),
                    device=device)
            terms = train_step(step_objective, optimizers, images, noise, shuffle_keys, capacity)
            step += 1
            interval_steps += 1

            if step % config.log_every == 0 or step == num_iterations:
                values = {name: value.item() for name, value in terms.items()}  # syncs device
                elapsed = time.perf_counter() - interval_start
                line = {"step": step, "global_step": config.global_step(step), **values,
                        "steps_per_second": interval_steps / elapsed, "time": time.time()}
                if not all(math.isfinite(v) for v in values.values()):
                    raise FloatingPointError(f"step {step}: a loss term is not finite {values}; "
                                             f"lower the learning rate or the regularisation.")
                log.write(json.dumps(line) + "\n")
                log.flush()
                bar.update(step, line)
                interval_start, interval_steps = time.perf_counter(), 0
            else:
                bar.update(step)
            if step % config.checkpoint_every == 0 or step == num_iterations:
                save_checkpoint(out_dir, config=config, step=step, model=model,
                                optimizers=optimizers, generator=generator,
                                data_random_state=random_state)
    return out_dir


class _ProgressBar:
    """Rich progress on stderr: steps, steps/s and the last logged loss terms."""

    SHOWN = ("loss", "reconstruction_loss", "kl_loss", "regularizer", "total_correlation",
             "dip_penalty", "tc_estimate", "discriminator_loss")

    def __init__(self, total: int, completed: int, config: TrainConfig, enabled: bool):
        self.enabled = enabled
        if not enabled:
            return
        self.progress = stderr_progress(description="[bold]{task.description}",
                                        rate_fields=("speed",), trailing_fields=("terms",))
        self.task = self.progress.add_task(
            f"{config.method} seed {config.seed}", total=total, completed=completed,
            speed="", terms="")

    def __enter__(self):
        if self.enabled:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.progress.__exit__(*exc)

    def update(self, step: int, line: dict | None = None):
        if not self.enabled:
            return
        fields = {}
        if line is not None:
            fields["speed"] = f"{line['steps_per_second']:.1f} steps/s"
            fields["terms"] = " ".join(f"{name.replace('_loss', '')}={line[name]:.4g}"
                                       for name in self.SHOWN if name in line)
        self.progress.update(self.task, completed=step, **fields)
