"""Training the study's six VAE methods in PyTorch.

- :class:`TrainConfig`: one dataclass of plain values with dlib's study defaults.
- :func:`train`: train (or resume) a run into a directory.
- :func:`train_pack`: train (or resume) many models of one method as one pack, each into its
  own run directory (``train`` is a pack of one).
- :func:`load_checkpoint`: a trained model back, with ``encode`` and
  ``representation_function("mean" | "sampled")`` for scoring.
- :data:`METHODS`: the six methods and their hyperparameters.

Importing this package does not import torch (the command line stays fast); ``train``,
``load_checkpoint`` and ``Checkpoint`` load it on first use.
"""

from .config import METHODS, TrainConfig, canonical_method

__all__ = ["METHODS", "Checkpoint", "TrainConfig", "canonical_method", "load_checkpoint",
           "train", "train_pack"]

_LAZY = {"train": "training", "train_pack": "training", "load_checkpoint": "checkpoint",
         "Checkpoint": "checkpoint"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
