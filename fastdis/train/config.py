"""The training configuration: one dataclass of plain values, saved with every checkpoint.

Defaults are those of disentanglement_lib's ``unsupervised_study_v1`` (``shared.gin``): Adam
1e-4 (0.9, 0.999, 1e-8), batch 64, 10 latents, 300,000 steps, conv encoder / deconv decoder,
Bernoulli loss. A method's regularisation strengths default to the first value of the study's
sweep (the strength of model_num 0, 300, 600, ... on dSprites). This module imports no torch, so
the command line can build and validate a config before paying for the import.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

#: Where a name is not dlib's ``model.name``, it says so; see :func:`canonical_method`.
#: Each entry: the method's hyperparameters with the defaults fastdis uses, and a description.
METHODS: dict[str, dict] = {
    "beta_vae": {
        "hyperparameters": {"beta": 1.0},
        "description": "R + beta * KL (Higgins et al., 2017)",
    },
    "factor_vae": {
        "hyperparameters": {"gamma": 10.0},
        "description": "R + KL + gamma * TC from a density-ratio discriminator (Kim & Mnih, 2018)",
    },
    "dip_vae_i": {
        "hyperparameters": {"lambda_od": 1.0, "lambda_d_factor": 10.0},
        "description": "R + KL + DIP penalty on Cov(mu) (Kumar et al., 2018)",
    },
    "dip_vae_ii": {
        "hyperparameters": {"lambda_od": 1.0, "lambda_d_factor": 1.0},
        "description": "R + KL + DIP penalty on Cov(mu) + E[diag sigma^2] (Kumar et al., 2018)",
    },
    "beta_tc_vae": {
        "hyperparameters": {"beta": 1.0},
        "description": "R + KL + (beta - 1) * TC, minibatch-weighted estimate (Chen et al., 2018)",
    },
    "annealed_vae": {
        "hyperparameters": {"gamma": 1000.0, "c_max": 5.0, "iteration_threshold": 100_000},
        "description": "R + gamma * |KL - min(c_max, c_max * step / threshold)| (Burgess et al.)",
    },
}

#: Every hyperparameter any method takes; a config field each.
HYPERPARAMETERS = ("beta", "gamma", "c_max", "iteration_threshold", "lambda_od",
                   "lambda_d_factor")

#: How FactorVAE counts ``steps``. dlib passes the global step to both Adam ``minimize`` calls,
#: so one iteration advances it by 2 and ``training_steps=300000`` stops after 150,000 updates
#: (its ``train.py`` hands ``tf.train.get_global_step()`` to both). "dlib" reproduces that;
#: "updates" makes ``steps`` the number of updates, as for the other five methods.
FACTOR_VAE_STEP_COUNTING = ("dlib", "updates")

#: How a batch is drawn from the ground-truth data. "dlib" draws one observation per call with
#: the data RandomState, exactly like dlib's tf.data generator, so the stream of images is the
#: reference's; "batched" draws the whole batch in one call (faster, a different stream);
#: "counter" draws images, noise and shuffle keys on the device as a function of (seed, step)
#: only (Philox4x32-10), so a model's numbers do not depend on the pack it trains in.
DATA_SAMPLING = ("dlib", "batched", "counter")

#: torch.compile's modes (None: its default).
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _normalised(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def canonical_method(name: str) -> str:
    """dlib's ``model.name`` for ``name``; spelling variants such as ``beta_tcvae`` are accepted.

    Raises
    ------
    ValueError
        If ``name`` is not one of the six methods (the message lists them).
    """
    by_key = {_normalised(method): method for method in METHODS}
    method = by_key.get(_normalised(str(name)))
    if method is None:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}.")
    return method


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved (as JSON) in every checkpoint.

    A hyperparameter left ``None`` takes the method's default (:data:`METHODS`); one the method
    does not use must stay ``None``. :meth:`resolved` fills and checks them.
    """

    # -- model (dlib: model.name and the method's gin bindings) --
    method: str = "beta_vae"
    beta: float | None = None  # beta_vae: weight of KL; beta_tc_vae: weight of TC is beta - 1
    gamma: float | None = None  # factor_vae: weight of the TC estimate; annealed_vae: of |KL - C|
    c_max: float | None = None  # annealed_vae: final capacity C, in nats
    iteration_threshold: int | None = None  # annealed_vae: steps until C reaches c_max
    lambda_od: float | None = None  # dip_vae_*: weight of the squared off-diagonal covariance
    lambda_d_factor: float | None = None  # dip_vae_*: lambda_d = lambda_d_factor * lambda_od
    num_latent: int = 10  # encoder.num_latent
    # -- data --
    dataset: str = "dsprites_full"  # a dlib dataset name, read by fastdis.data.load_dataset
    data_dir: str | None = None  # where the dataset's files are; None: the loader's default
    data_sampling: str = "dlib"  # see DATA_SAMPLING
    # -- optimisation (shared.gin) --
    seed: int = 0  # model.random_seed: weights, noise and the data stream all derive from it
    steps: int = 300_000  # model.training_steps
    batch_size: int = 64
    learning_rate: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_epsilon: float = 1e-8  # PyTorch adds it to sqrt(v_hat), TF to sqrt(v): same for t >> 1
    discriminator_learning_rate: float = 1e-4  # factor_vae only
    discriminator_adam_betas: tuple[float, float] = (0.5, 0.9)
    discriminator_adam_epsilon: float = 1e-8
    factor_vae_step_counting: str = "dlib"  # see FACTOR_VAE_STEP_COUNTING
    # -- system (not part of what a run computes; may change when resuming) --
    compile: bool = False  # torch.compile the forward + loss (cold compile ~30 s on CPU)
    # torch.compile mode; None is torch's default. "reduce-overhead" (CUDA graphs) pays off on
    # GPUs, where one model's step is launch-bound (bench/RESULTS.md).
    compile_mode: str | None = None
    device: str = "cpu"
    log_every: int = 100  # steps between JSONL log lines (each costs a device sync)
    checkpoint_every: int = 10_000  # steps between checkpoints (the last step always saves)

    #: Fields a resumed run may change: they do not alter the numbers a step computes.
    #: ``steps`` may grow too (training continues); see ``training.check_resumable``.
    SYSTEM_FIELDS = ("compile", "compile_mode", "device", "log_every", "checkpoint_every",
                     "steps")

    def hyperparameters(self) -> dict:
        """The method's hyperparameters, with defaults filled in."""
        method = canonical_method(self.method)
        defaults = METHODS[method]["hyperparameters"]
        return {name: (getattr(self, name) if getattr(self, name) is not None else default)
                for name, default in defaults.items()}

    def resolved(self) -> TrainConfig:
        """A validated copy with the canonical method name and its hyperparameters filled in.

        Raises
        ------
        ValueError
            Unknown method, a hyperparameter the method does not take, or a value out of range;
            the message names the field and what was expected.
        """
        method = canonical_method(self.method)
        takes = METHODS[method]["hyperparameters"]
        for name in HYPERPARAMETERS:
            if getattr(self, name) is not None and name not in takes:
                raise ValueError(
                    f"{name} is not a hyperparameter of {method}; it takes "
                    f"{', '.join(takes) or 'none'}.")
        config = dataclasses.replace(self, method=method, **self.hyperparameters())
        config.adam_betas = tuple(float(b) for b in config.adam_betas)
        config.discriminator_adam_betas = tuple(float(b)
                                                for b in config.discriminator_adam_betas)
        _check_config(config)
        return config

    def to_dict(self) -> dict:
        """Plain JSON-able values (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The config saved by :meth:`to_dict`; keys that are not fields are ignored.

        Checkpoints store run state (step, version) beside the fields, so extra keys are normal.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kept = {k: (tuple(v) if isinstance(v, list) else v)
                for k, v in values.items() if k in names}
        return cls(**kept)

    def num_iterations(self) -> int:
        """Parameter updates the run makes: ``steps``, or half of it for FactorVAE under dlib's
        step counting (each iteration advances dlib's global step by 2; rounded up, as the
        Estimator stops at the first global step >= ``steps``)."""
        if self.method == "factor_vae" and self.factor_vae_step_counting == "dlib":
            return (self.steps + 1) // 2
        return self.steps

    def global_step(self, iteration: int) -> int:
        """dlib's global step after ``iteration`` updates."""
        if self.method == "factor_vae" and self.factor_vae_step_counting == "dlib":
            return 2 * iteration
        return iteration


def _check_config(config: TrainConfig) -> None:
    def positive(name, integer=False):
        value = getattr(config, name)
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or not (
                math.isfinite(value) and value > 0):
            expected = "a positive integer" if integer else "a positive finite number"
            raise ValueError(f"{name} must be {expected}; got {value!r}.")

    for name in ("num_latent", "steps", "batch_size", "log_every", "checkpoint_every"):
        positive(name, integer=True)
    for name in ("learning_rate", "adam_epsilon", "discriminator_learning_rate",
                 "discriminator_adam_epsilon"):
        positive(name)
    for name in ("adam_betas", "discriminator_adam_betas"):
        betas = getattr(config, name)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"{name} must be two numbers in [0, 1); got {betas!r}.")
    for name, value in config.hyperparameters().items():
        if name == "iteration_threshold":
            positive(name, integer=True)
        elif (isinstance(value, bool) or not isinstance(value, (int, float))
              or not math.isfinite(value) or value < 0):
            raise ValueError(f"{name} must be a finite non-negative number; got {value!r}.")
    if config.method == "factor_vae" and config.batch_size < 2:
        raise ValueError("factor_vae needs batch_size >= 2 to permute latents across the batch.")
    if config.factor_vae_step_counting not in FACTOR_VAE_STEP_COUNTING:
        raise ValueError(f"factor_vae_step_counting must be one of {FACTOR_VAE_STEP_COUNTING}; "
                         f"got {config.factor_vae_step_counting!r}.")
    if config.data_sampling not in DATA_SAMPLING:
        raise ValueError(f"data_sampling must be one of {DATA_SAMPLING}; "
                         f"got {config.data_sampling!r}.")
    if config.compile_mode not in COMPILE_MODES:
        raise ValueError(f"compile_mode must be one of {COMPILE_MODES}; "
                         f"got {config.compile_mode!r}.")
    if not isinstance(config.seed, int) or not 0 <= config.seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32); got {config.seed!r}.")
    if not isinstance(config.dataset, str) or not config.dataset:
        raise ValueError(f"dataset must be a dataset name; got {config.dataset!r}.")

