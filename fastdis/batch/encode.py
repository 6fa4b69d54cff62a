"""Encode training checkpoints once on a store's plan (``fastdis encode``).

Each checkpoint is loaded with :func:`fastdis.train.load_checkpoint`, its encoder runs once on
the observations of the plan's points, and :func:`fastdis.batch.write_codes` stores

* ``mean``: the encoder mean (the reference's ``mean_representation``);
* ``sampled``: ``mean + exp(logvar / 2) * eps`` with ``eps`` drawn once per checkpoint from
  ``numpy.random.default_rng(plan.seed)`` (what ``Checkpoint.representation_function(
  "sampled", seed=plan.seed)`` returns when called once on all points), so sampled codes are
  reproducible, unlike the reference's unseeded graph;
* ``kl``: the mean KL divergence of each code's posterior to the prior over the plan's
  points, which UDR needs (its inactive codes);
* ``logvar``: the encoder's posterior log-variances, which Chen et al.'s MIG needs.

The observations are rendered once (``sample_observations_from_factors`` with
``RandomState(plan.seed)``, in chunks) and shared by every checkpoint when they fit in
:data:`OBSERVATION_CACHE_BYTES`; otherwise they are re-rendered per checkpoint, identically.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._parallel import exclusive
from .plan import EvaluationPlan
from .store import WRITE_LOCK, open_or_create_store, write_codes

__all__ = ["encode_checkpoints", "expand_checkpoint_paths", "EncodeSummary", "codes_from_encoder"]

#: Observations rendered once and kept for all checkpoints up to this size.
OBSERVATION_CACHE_BYTES = 2 << 30
#: Points rendered and encoded per step.
CHUNK_POINTS = 2048
#: The file a training run directory holds (fastdis.train.checkpoint.CHECKPOINT_FILE; repeated
#: here so that listing checkpoints does not import torch).
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class EncodeSummary:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def expand_checkpoint_paths(arguments: Iterable[str]) -> list[Path]:
    """Checkpoint paths from command-line arguments: run directories, files, globs, or folders
    searched recursively for run directories (``*/checkpoint.pt``). Sorted, without repeats.

    Raises
    ------
    FileNotFoundError
        If an argument matches nothing.
    """
    found = []
    for argument in arguments:
        argument = str(argument)
        matches = sorted(glob.glob(argument, recursive=True)) if glob.has_magic(argument) else (
            [argument] if os.path.exists(argument) else [])
        before = len(found)
        if not matches:
            raise FileNotFoundError(f"no checkpoint matches {argument!r}.")
        for match in map(Path, matches):
            if match.is_file() or (match / CHECKPOINT_FILE).is_file():
                found.append(match)
            elif match.is_dir():
                runs = sorted(p.parent for p in match.rglob(CHECKPOINT_FILE))
                if not runs and not glob.has_magic(argument):
                    raise FileNotFoundError(f"{match}: no {CHECKPOINT_FILE} in this folder or "
                                            "below.")
                found.extend(runs)
        if before == len(found):  # a glob that matched only folders without checkpoints
            raise FileNotFoundError(f"no checkpoint matches {argument!r} (it matches "
                                    f"{len(matches)} path(s), none with a {CHECKPOINT_FILE}).")
    return list(dict.fromkeys(p.resolve() for p in found))


def _run_directory(path: Path) -> Path:
    """The run directory of a checkpoint given as its directory or its file."""
    return path.parent if path.name == CHECKPOINT_FILE else path


def _checkpoint_name(path: Path) -> str:
    """The run directory's absolute path: stable across calls from any working directory."""
    return str(_run_directory(path))


def _trained_further(path: Path, stored_config: dict) -> bool:
    """Whether the run at ``path`` has moved past the step its stored codes were encoded at.

    A fastdis run directory keeps its config, with the checkpoint's step, in config.json
    (cheap to read, unlike the weights); codes of a run that trained on since are stale.
    Checkpoints of other layouts are never re-encoded implicitly (``replace=True`` does).
    """
    run_config = _run_directory(path) / "config.json"
    if not run_config.is_file() or "step" not in stored_config:
        return False
    try:
        return json.loads(run_config.read_text()).get("step") != stored_config["step"]
    except (OSError, ValueError):
        return False  # unreadable: loading the checkpoint would fail too; keep what is stored


class _Observations:
    """The plan's observations, rendered once if they fit in memory."""

    def __init__(self, data, plan: EvaluationPlan, cache_bytes=OBSERVATION_CACHE_BYTES):
        self.data, self.plan = data, plan
        shape = tuple(getattr(data, "observation_shape", ()) or ())
        size = plan.n_points * int(np.prod(shape or (1,))) * 4
        self.cached = list(self._render()) if shape and size <= cache_bytes else None

    def _render(self):
        rs = np.random.RandomState(self.plan.seed)
        for start in range(0, self.plan.n_points, CHUNK_POINTS):
            factors = self.plan.factors[start:start + CHUNK_POINTS]
            yield np.asarray(self.data.sample_observations_from_factors(factors, rs),
                             dtype=np.float32)

    def __iter__(self):
        return iter(self.cached) if self.cached is not None else self._render()


def codes_from_encoder(encode: Callable, observations: Iterable[np.ndarray], seed: int):
    """``({"mean", "sampled"}, kl, logvar)`` from ``encode(obs) -> (mean, logvar)`` over
    chunks (float32 codes and log-variances, float64 KL per code)."""
    means, logvars = [], []
    for chunk in observations:
        mean, logvar = encode(chunk)
        means.append(np.asarray(mean, dtype=np.float32))
        logvars.append(np.asarray(logvar, dtype=np.float32))
    mean, logvar = np.concatenate(means), np.concatenate(logvars)
    if mean.shape != logvar.shape or mean.ndim != 2:
        raise ValueError(f"encode returned mean {mean.shape} and logvar {logvar.shape}; "
                         "expected two arrays of shape (n_points, num_latent).")
    noise = np.random.default_rng(seed).standard_normal(mean.shape, dtype=np.float32)
    sampled = mean + np.exp(logvar / 2) * noise
    with np.errstate(over="ignore", invalid="ignore"):
        kl = np.mean(0.5 * (np.square(mean, dtype=np.float64) + np.exp(logvar.astype(np.float64))
                            - logvar - 1.0), axis=0)
    return {"mean": mean, "sampled": sampled}, kl, logvar


def encode_checkpoints(
    store,
    checkpoints: Iterable,
    data,
    *,
    plan: EvaluationPlan | None = None,
    dataset: str | None = None,
    replace: bool = False,
    load: Callable | None = None,
    encode_options: dict | None = None,
    on_checkpoint: Callable | None = None,
) -> EncodeSummary:
    """Encode each checkpoint once on the store's plan and write its codes.

    Parameters
    ----------
    store : str, PathLike or RepresentationStore
        Created with ``plan`` when it does not exist.
    checkpoints : iterable of paths
        Run directories or checkpoint files (see :func:`expand_checkpoint_paths`).
    data : ground-truth data set
        The data set the plan was drawn from (observations are rendered from it).
    plan : EvaluationPlan, default=None
        Needed to create the store; checked against an existing store's plan.
    replace : bool, default=False
        Re-encode checkpoints already in the store (otherwise they are skipped unloaded).
    load : callable, default=None
        ``load(path) -> checkpoint`` with ``.config`` and ``.encode(obs) -> (mean, logvar)``;
        ``None`` means :func:`fastdis.train.load_checkpoint`.
    encode_options : dict, default=None
        Keyword arguments of ``checkpoint.encode`` (``batch_size``, ``device``).
    on_checkpoint : callable, default=None
        Called as ``on_checkpoint(path, status)`` after each checkpoint ("written",
        "skipped" or "failed: reason"); the CLI's progress bar.

    Returns
    -------
    EncodeSummary
        Names written and skipped, and (path, reason) of checkpoints that failed to load or
        encode; the others are written regardless.

    Raises
    ------
    RuntimeError
        If another ``encode_checkpoints`` is writing to the store (POSIX systems).
    """
    if load is None:
        from ..train import load_checkpoint as load
    store = open_or_create_store(store, plan, dataset=dataset)
    if tuple(int(c) for c in data.factors_num_values) != store.plan.factor_sizes:
        raise ValueError(f"the data set's factor sizes {list(data.factors_num_values)} differ from"
                         f" the store's plan ({list(store.plan.factor_sizes)}): another data set?")
    with exclusive(store.path / WRITE_LOCK, f"another fastdis encode is writing to "
                   f"{store.path}; wait for it to finish, then rerun."):
        return _encode_each(store, checkpoints, data, replace, load, encode_options,
                            on_checkpoint)


def _encode_each(store, checkpoints, data, replace, load, encode_options, on_checkpoint):
    existing = set(store.names())
    summary = EncodeSummary()
    observations = None
    for path in checkpoints:
        path = Path(path)
        name = _checkpoint_name(path)
        if name in existing and not replace and not _trained_further(path, store.config(name)):
            summary.skipped.append(name)
            status = "skipped"
        else:
            if observations is None:  # rendered lazily: nothing to render if all are skipped
                observations = _Observations(data, store.plan)
            try:
                checkpoint = load(path)
                codes, kl, logvar = codes_from_encoder(
                    lambda obs, c=checkpoint: c.encode(obs, **(encode_options or {})),
                    observations, store.plan.seed)
                config = {**dict(checkpoint.config), "path": str(path)}
                write_codes(store, name, codes, config, kl=kl, logvar=logvar, replace=True)
                summary.written.append(name)
                status = "written"
            except (OSError, ValueError, RuntimeError) as exc:
                summary.failed.append((str(path), f"{type(exc).__name__}: {exc}"))
                status = f"failed: {exc}"
        if on_checkpoint is not None:
            on_checkpoint(path, status)
    return summary

