"""Encode many checkpoints in one pass over the plan's observations (``fastdis encode --pack``).

One encoder forward is ~11.5 MFLOP per image: a batch of one checkpoint leaves a GPU mostly
idle, and encoding checkpoints one by one moves the same observations again for each. A *pack*
stacks the encoder weights of up to ``P`` checkpoints (``torch.func.stack_module_state``) and
runs ``vmap(functional_call)`` over the stack with the images shared (``in_dims=(0, 0, None)``).
PyTorch's batching rule turns the first convolution into one convolution with ``P x 32`` output
channels and the later ones into grouped convolutions, and the dense layers into batched matrix
products, so each chunk of images is read and converted once for the whole pack.

Mean codes equal the single-checkpoint encoder's to float32 rounding, not bit for bit: grouped
convolutions and batched matrix products with biases accumulate in another order than plain ones
(measured on CPU: a few units in the last place; the first convolution alone is bit-identical).
The tests assert ``|packed - single| <= 1e-6 + 1e-5 |single|``. A checkpoint's packed codes do
not depend on which checkpoints share its pack (bit for bit on a CPU, measured and tested), so
an encode resumed after a kill, in other packs, writes the same codes.
Sampled codes are drawn from each checkpoint's own mean and log-variance exactly as a single
checkpoint's are (:func:`fastdis.batch.encode.codes_from_moments`).

Memory: a chunk of ``batch_size`` images becomes ``P x batch_size`` feature maps; the images per
pass shrink so that the pack's activations stay under :data:`ACTIVATION_BYTES` (1 GiB; 8 GiB on
a GPU).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

__all__ = ["PackedEncoder", "encode_pack", "default_pack", "ACTIVATION_BYTES",
           "GPU_ACTIVATION_BYTES"]

#: Bytes of encoder activations one pass may hold for the whole pack, on a CPU.
ACTIVATION_BYTES = 1 << 30
#: The same on a GPU: larger passes keep it busy, and the grouped convolutions' reshuffled
#: inputs roughly double the estimate below, well inside any current GPU's memory.
GPU_ACTIVATION_BYTES = 8 << 30
#: float32 activations of one 64x64 image through ``conv_encoder`` (32x32x32 + 32x16x16 +
#: 64x8x8 + 64x4x4 feature maps and the 256-wide dense layer), per model.
ACTIVATION_BYTES_PER_IMAGE = 4 * (32 * 32 * 32 + 32 * 16 * 16 + 64 * 8 * 8 + 64 * 4 * 4 + 256)


def default_pack(device: str) -> int:
    """Checkpoints per pack: 64 on a GPU, 32 on a CPU (bench/bench_encode.py on 2 cores: packs
    of 8 and 32 encode 1.6x and 1.8x the checkpoints/s of one at a time)."""
    return 64 if str(device).startswith("cuda") else 32


class PackedEncoder:
    """The ``conv_encoder`` of several checkpoints of one architecture, as one function.

    Parameters
    ----------
    encoders : sequence of torch.nn.Module
        Encoders of identical structure (same observation shape and ``num_latent``).
    device : str, default="cpu"
    """

    def __init__(self, encoders, device: str = "cpu"):
        import torch
        from torch.func import functional_call, stack_module_state

        encoders = list(encoders)
        if not encoders:
            raise ValueError("a pack needs at least one encoder.")
        self.device = torch.device(device)
        params, buffers = stack_module_state(encoders)
        self.params = {k: v.detach().to(self.device) for k, v in params.items()}
        self.buffers = {k: v.detach().to(self.device) for k, v in buffers.items()}
        self.size = len(encoders)
        base = encoders[0]

        def forward_one(params, buffers, images):
            return functional_call(base, (params, buffers), (images,))

        self._forward = torch.vmap(forward_one, in_dims=(0, 0, None))

    def images_per_pass(self, batch_size: int) -> int:
        """Images per forward so that the pack's activations fit in :data:`ACTIVATION_BYTES`
        (:data:`GPU_ACTIVATION_BYTES` on a GPU)."""
        budget = GPU_ACTIVATION_BYTES if self.device.type == "cuda" else ACTIVATION_BYTES
        fits = budget // (self.size * ACTIVATION_BYTES_PER_IMAGE)
        return max(1, min(batch_size, fits))

    def __call__(self, observations: np.ndarray, batch_size: int = 256):
        """``(mean, logvar)``, each of shape (P, n_samples, num_latent), float32, of NHWC images
        in [0, 1]."""
        import torch

        step = self.images_per_pass(batch_size)
        means, logvars = [], []
        with torch.no_grad():
            for start in range(0, len(observations), step):
                chunk = np.ascontiguousarray(observations[start:start + step], dtype=np.float32)
                images = torch.from_numpy(chunk).to(self.device).permute(0, 3, 1, 2)
                mean, logvar = self._forward(self.params, self.buffers, images)
                means.append(mean.cpu().numpy())
                logvars.append(logvar.cpu().numpy())
        return np.concatenate(means, axis=1), np.concatenate(logvars, axis=1)


def _architecture(checkpoint) -> tuple:
    return (tuple(checkpoint.config["observation_shape"]), int(checkpoint.config["num_latent"]))


def _torch_encoder(path: Path, checkpoint):
    encoder = getattr(getattr(checkpoint, "model", None), "encoder", None)
    if encoder is None:
        raise ValueError(f"{path}: the loaded checkpoint has no torch model.encoder to pack; "
                         "encode it with pack=1.")
    return encoder


def _check_observations(checkpoint, chunk: np.ndarray) -> None:
    """The single-checkpoint encoder's checks of shape and range (Checkpoint.encode) on a chunk,
    run on an empty slice of it so that they cost nothing per image."""
    checkpoint.encode(chunk[:0])


def encode_pack(
    paths: Iterable[Path],
    load: Callable,
    observations: Iterable[np.ndarray],
    *,
    device: str = "cpu",
    batch_size: int = 256,
) -> Iterator[tuple[Path, object, tuple | Exception]]:
    """Encode the checkpoints at ``paths`` together over ``observations`` (chunks).

    Checkpoints are loaded with ``load``; those of one architecture share a pack (a pack of
    mixed ``num_latent`` is split, one pass over the observations per architecture).

    Yields
    ------
    (path, checkpoint, (mean, logvar)) per encoded checkpoint, each of shape
    (n_points, num_latent); (path, None, exception) per checkpoint that failed to load or
    encode. A failure of the pack's forward fails every checkpoint of that architecture.
    """
    by_architecture: dict[tuple, list] = {}
    for path in paths:
        try:
            checkpoint = load(path)
            by_architecture.setdefault(_architecture(checkpoint), []).append((path, checkpoint))
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            yield path, None, exc
    for members in by_architecture.values():
        try:
            encoder = PackedEncoder([_torch_encoder(p, c) for p, c in members], device=device)
            means, logvars = [], []
            for chunk in observations:
                _check_observations(members[0][1], chunk)
                mean, logvar = encoder(chunk, batch_size=batch_size)
                means.append(mean)
                logvars.append(logvar)
            mean, logvar = np.concatenate(means, axis=1), np.concatenate(logvars, axis=1)
        except (ValueError, RuntimeError) as exc:
            for path, _ in members:
                yield path, None, exc
            continue
        for k, (path, checkpoint) in enumerate(members):
            yield path, checkpoint, (mean[k], logvar[k])
