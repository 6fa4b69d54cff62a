"""Checkpoints: weights + JSON config + everything a resumed run needs, written atomically.

A run directory holds

- ``checkpoint.pt``: one ``torch.save`` dict of plain tensors and numbers (loaded with
  ``weights_only=True``, so a checkpoint cannot run code): the JSON config, the model and
  optimiser states, the torch generator of the noise and the numpy RandomState of the data;
- ``config.json``: the same JSON config, for people and tools that do not load torch;
- ``log.jsonl``: one line per logging step (written by the training loop);
- ``stopped.json``, only if the model's loss turned non-finite: at which update, which terms.

:func:`load_checkpoint` gives a :class:`Checkpoint`, whose ``encode`` and
``representation_function`` are what scoring needs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._validation import check_positive_int
from .config import TrainConfig
from .models import GaussianVAE

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
#: Written when a model's loss turns non-finite: the update, the terms and their values.
STOP_FILE = "stopped.json"
#: Bumped when the layout of checkpoint.pt changes; older files are refused with a message.
FORMAT = "fastdis.train.checkpoint"
FORMAT_VERSION = 1


def fastdis_version() -> str:
    from fastdis import __version__

    return __version__


def checkpoint_file(path: str | os.PathLike) -> Path:
    """``path`` itself if it is a file, else the checkpoint inside the run directory ``path``."""
    path = Path(path)
    return path / CHECKPOINT_FILE if path.is_dir() else path


def atomic_write(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``:
    a kill at any moment leaves either the old file or the new one, never half of one (and a
    temporary file, which the next write removes)."""
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files of :func:`atomic_write` for ``path`` whose writer is dead
    (killed mid-write); one of a live process is its write in progress and stays."""
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[1]
        if pid.isdigit() and not _process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process writes one file at a time: a leftover of a dead writer
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def random_state_to_tensors(random_state: np.random.RandomState) -> dict:
    """The MT19937 state of a numpy RandomState as tensors and numbers (weights_only-safe)."""
    name, keys, position, has_gauss, cached_gaussian = random_state.get_state(legacy=True)
    assert name == "MT19937"  # the only bit generator RandomState(seed) makes
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)}


def random_state_from_tensors(state: dict) -> np.random.RandomState:
    random_state = np.random.RandomState()
    random_state.set_state(("MT19937", state["keys"].numpy().astype(np.uint32),
                            state["position"], state["has_gauss"], state["cached_gaussian"]))
    return random_state


def run_config(config: TrainConfig, step: int, observation_shape) -> dict:
    """The JSON config of a checkpoint: the TrainConfig's fields plus where the run stands."""
    return {**config.to_dict(), "step": step, "global_step": config.global_step(step),
            "observation_shape": [int(s) for s in observation_shape],
            "fastdis_version": fastdis_version()}


def save_checkpoint(out_dir: Path, *, config: TrainConfig, step: int, observation_shape,
                    model_state: dict, optimizer_states: list, streams: dict) -> Path:
    """Write ``checkpoint.pt`` and ``config.json`` of one model, each atomically.

    ``model_state`` is the model's ``state_dict`` (CPU tensors), ``optimizer_states`` its Adams'
    state dicts and ``streams`` its ``torch_generator`` and ``data_random_state`` (tensors).
    """
    json_config = run_config(config, step, observation_shape)
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config_json": json.dumps(json_config),
        "model": model_state,
        "optimizers": optimizer_states,
        **streams,
    }
    path = out_dir / CHECKPOINT_FILE
    atomic_write(path, lambda file: torch.save(state, file))
    atomic_write(out_dir / CONFIG_FILE,
                 lambda file: file.write(json.dumps(json_config, indent=1).encode()))
    return path


def write_stop_record(out_dir: Path, config: TrainConfig, record: dict) -> dict:
    """Record that the model of ``out_dir`` stopped and return the record written: ``record``
    has the update (``step``), the non-finite terms and the values of every term then; the
    global step and the reason are added. Its checkpoint stays the last finite one."""
    record = {**record, "global_step": config.global_step(record["step"]),
              "reason": "a loss term is not finite", "config": _computing_fields(config)}
    atomic_write(out_dir / STOP_FILE, lambda file: file.write(json.dumps(record).encode()))
    return record


def _computing_fields(config: TrainConfig) -> dict:
    """The config's fields that decide what a step computes, as JSON gives them back."""
    ignored = (*config.SYSTEM_FIELDS, "data_dir")  # the folder may be spelled otherwise
    fields = {k: v for k, v in config.to_dict().items() if k not in ignored}
    return json.loads(json.dumps(fields))


def read_stop_record(out_dir: Path, config: TrainConfig) -> dict | None:
    """The stop record of a run directory, or None if its model has not stopped.

    A record written for another configuration (rerun with, say, a lower strength after the
    divergence) no longer applies: it is removed and the run trains under the new one.
    """
    path = Path(out_dir) / STOP_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record.get("config", _computing_fields(config)) != _computing_fields(config):
        path.unlink(missing_ok=True)
        return None
    return record


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(json_config, state)`` of a checkpoint file or run directory.

    Raises
    ------
    FileNotFoundError
        No checkpoint there.
    ValueError
        The file is corrupt, is not a fastdis training checkpoint, or has another format version.
    """
    file = checkpoint_file(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"no fastdis checkpoint at {file}; pass a run directory written by `fastdis train` "
            f"(it holds {CHECKPOINT_FILE}) or the checkpoint file itself.")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise ValueError(f"checkpoint {file} is corrupt or not a fastdis checkpoint "
                         f"({type(exc).__name__}: {_load_failure(exc)}). Delete it to start "
                         f"the run afresh, or restore it from a copy.") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{file} is not a fastdis training checkpoint (no {FORMAT!r} marker).")
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {file} has format version {state.get('format_version')!r}; this fastdis "
            f"({fastdis_version()}) reads version {FORMAT_VERSION}. Use the fastdis that wrote it.")
    try:
        json_config = json.loads(state["config_json"])
        TrainConfig.from_dict(json_config).resolved()
        missing = [key for key in ("step", "observation_shape") if key not in json_config]
        if missing:  # written by train(); without them the model cannot be rebuilt
            raise ValueError(f"it lacks {', '.join(missing)}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint {file} holds an unusable config: {exc}") from exc
    return json_config, state


def _load_failure(exc: Exception) -> str:
    """What torch.load found wrong, without its advice to load with ``weights_only=False``:
    that would let the file run code, and a fastdis checkpoint never needs it."""
    paragraphs = [paragraph.strip() for paragraph in str(exc).split("\n\n")]
    kept = [paragraph for paragraph in paragraphs if paragraph
            and "weights_only" not in paragraph and "torch.load" not in paragraph]
    return " ".join(kept) or "unreadable"


def build_model(json_config: dict) -> GaussianVAE:
    return GaussianVAE(json_config["observation_shape"], json_config["num_latent"],
                       discriminator=json_config["method"] == "factor_vae")


def load_model_state(model: GaussianVAE, state: dict, file) -> None:
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise ValueError(f"checkpoint {file}: the weights do not fit the model its config "
                         f"describes ({exc}).") from exc


@dataclass
class Checkpoint:
    """A trained model read back from disk, on the CPU, in eval mode.

    ``config`` is the checkpoint's JSON config (a plain dict: the :class:`TrainConfig` fields
    plus ``step``, ``global_step``, ``observation_shape`` and ``fastdis_version``).
    """

    path: Path
    config: dict
    model: GaussianVAE

    @property
    def step(self) -> int:
        return int(self.config["step"])

    def encode(self, observations: np.ndarray, *, batch_size: int = 256,
               device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
        """Encoder mean and log-variance of ``observations``.

        Parameters
        ----------
        observations : ndarray of shape (n_samples, 64, 64, C)
            Images in [0, 1], NHWC as dlib's datasets return them; cast to float32.
            Integer arrays with values above 1 (0..255 pixels) are refused.
        batch_size : int, default=256
            Images per forward pass (memory only; results do not depend on it beyond float32
            rounding of the convolution algorithms).
        device : str, default="cpu"

        Returns
        -------
        mean, logvar : ndarray of shape (n_samples, num_latent), float32
        """
        observations = np.asarray(observations)
        expected = tuple(self.config["observation_shape"])
        if observations.ndim != 4 or observations.shape[1:] != expected:
            wanted = ", ".join(map(str, expected))
            raise ValueError(f"observations must have shape (n_samples, {wanted}) (NHWC, as the "
                             f"model was trained); got {observations.shape}.")
        if not np.issubdtype(observations.dtype, np.number):
            raise ValueError(f"observations must be numeric; got dtype {observations.dtype}.")
        if (np.issubdtype(observations.dtype, np.integer) and observations.size
                and observations.max() > 1):
            # e.g. a dataset's stored uint8 images: 0..255 would encode to garbage silently
            raise ValueError(f"observations must be in [0, 1]; got {observations.dtype} values "
                             f"up to {observations.max()}. Divide 0..255 pixels by 255.")
        batch_size = check_positive_int(batch_size, name="batch_size")
        model = self.model.to(device)
        means, logvars = [], []
        with torch.no_grad():
            for start in range(0, len(observations), batch_size):
                chunk = np.ascontiguousarray(observations[start:start + batch_size],
                                             dtype=np.float32)
                images = torch.from_numpy(chunk).to(device).permute(0, 3, 1, 2)  # (b, C, 64, 64)
                mean, logvar = model.encoder(images)
                means.append(mean.cpu().numpy())
                logvars.append(logvar.cpu().numpy())
        if not means:
            empty = np.zeros((0, self.model.num_latent), np.float32)
            return empty, empty.copy()
        return np.concatenate(means), np.concatenate(logvars)

    def representation_function(self, kind: str = "mean", seed: int = 0, *,
                                batch_size: int = 256, device: str = "cpu"):
        """A numpy -> numpy function (n, 64, 64, C) -> (n, num_latent), like dlib's exports.

        ``kind="mean"`` is the encoder mean (deterministic). ``kind="sampled"`` is
        mean + exp(logvar / 2) * eps: every call draws fresh eps, as dlib's exported graph does,
        but from ``numpy.random.default_rng(seed)``, so a function made with the same seed gives
        the same sequence of outputs (dlib's is unseeded).
        """
        if kind == "mean":
            def mean_representation(observations):
                return self.encode(observations, batch_size=batch_size, device=device)[0]
            return mean_representation
        if kind == "sampled":
            rng = np.random.default_rng(seed)

            def sampled_representation(observations):
                mean, logvar = self.encode(observations, batch_size=batch_size, device=device)
                noise = rng.standard_normal(mean.shape, dtype=np.float32)
                return mean + np.exp(logvar / 2) * noise
            return sampled_representation
        raise ValueError(f"kind must be 'mean' or 'sampled'; got {kind!r}.")


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """The trained model of a run directory (or of its ``checkpoint.pt``), on the CPU.

    Raises
    ------
    FileNotFoundError
        No checkpoint at ``path``.
    ValueError
        Corrupt, foreign or incompatible checkpoint (the message says which).
    """
    file = checkpoint_file(path)
    json_config, state = read_checkpoint(file)
    model = build_model(json_config)
    load_model_state(model, state, file)
    return Checkpoint(path=file, config=json_config, model=model.eval())
