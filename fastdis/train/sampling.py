"""Where a training step's random numbers and images come from, for a pack of models.

Two samplers give a step's inputs for every model of a pack, stacked on a leading pack axis:
images (P, B, C, 64, 64) float32, reparameterisation noise (P, B, d) and, for FactorVAE,
permute-dims keys (P, B, d).

- :class:`HostSampler` (``data_sampling`` "dlib" or "batched"): the reference's order, on the
  CPU. Each model keeps dlib's data stream ``RandomState(RandomState(seed).randint(2**32))``
  (one observation per call for "dlib", as dlib's tf.data generator) and a CPU
  ``torch.Generator(seed)`` that first draws the weights, then every step's noise.
- :class:`CounterSampler` (``data_sampling="counter"``): every number is a pure function of
  (seed, step, stream, position), computed by :func:`philox4x32` in integer torch ops on the
  pack's device. The data set's uint8 images sit on that device; a step gathers its rows and
  converts them. Nothing is drawn per model on the host, and a model sees the same numbers
  whichever pack it trains in.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: Philox4x32's multipliers and Weyl key increments (Salmon et al., SC 2011, "Random123").
PHILOX_MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
PHILOX_KEY_STEPS = (0x9E3779B9, 0xBB67AE85)
PHILOX_ROUNDS = 10
_LOW32 = 0xFFFFFFFF
_LOW16 = 0xFFFF

#: The counter sampler's streams: the key's second word, so the three never share numbers.
STREAM_IMAGES, STREAM_NOISE, STREAM_SHUFFLE = 0, 1, 2


def philox4x32_reference(counter, key) -> tuple[int, int, int, int]:
    """Philox4x32-10 of one 4-word ``counter`` under a 2-word ``key``, in plain Python ints:
    the twin that :func:`philox4x32` is tested against."""
    c0, c1, c2, c3 = (int(c) & _LOW32 for c in counter)
    k0, k1 = (int(k) & _LOW32 for k in key)
    m0, m1 = PHILOX_MULTIPLIERS
    for round_index in range(PHILOX_ROUNDS):
        if round_index:
            k0, k1 = (k0 + PHILOX_KEY_STEPS[0]) & _LOW32, (k1 + PHILOX_KEY_STEPS[1]) & _LOW32
        product0, product1 = m0 * c0, m1 * c2
        c0, c1, c2, c3 = ((product1 >> 32) ^ c1 ^ k0, product1 & _LOW32,
                          (product0 >> 32) ^ c3 ^ k1, product0 & _LOW32)
    return c0, c1, c2, c3


def _mulhilo32(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32-bit words of the constant ``a`` times the 32-bit words ``b`` (int64).

    Works in 16-bit limbs so no product leaves int64's exact range, on every device.
    """
    a_low, a_high = a & _LOW16, a >> 16
    b_low, b_high = b & _LOW16, b >> 16
    low_low, low_high = a_low * b_low, a_low * b_high
    high_low, high_high = a_high * b_low, a_high * b_high
    middle = (low_low >> 16) + (low_high & _LOW16) + (high_low & _LOW16)
    low = ((middle & _LOW16) << 16) | (low_low & _LOW16)
    high = high_high + (low_high >> 16) + (high_low >> 16) + (middle >> 16)
    return high, low


def philox4x32(counters: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Philox4x32-10 in int64 torch ops: the same words on CPU and CUDA.

    Parameters
    ----------
    counters : int64 Tensor of shape (..., 4), words in [0, 2**32)
    keys : int64 Tensor of shape (..., 2), broadcastable against ``counters[..., :2]``

    Returns
    -------
    int64 Tensor of shape (..., 4): four random 32-bit words per counter.
    """
    c0, c1, c2, c3 = counters.unbind(-1)
    k0, k1 = keys.unbind(-1)
    m0, m1 = PHILOX_MULTIPLIERS
    for round_index in range(PHILOX_ROUNDS):
        if round_index:
            k0, k1 = (k0 + PHILOX_KEY_STEPS[0]) & _LOW32, (k1 + PHILOX_KEY_STEPS[1]) & _LOW32
        high0, low0 = _mulhilo32(m0, c0)
        high1, low1 = _mulhilo32(m1, c2)
        c0, c1, c2, c3 = high1 ^ c1 ^ k0, low1, high0 ^ c3 ^ k1, low0
    return torch.stack(torch.broadcast_tensors(c0, c1, c2, c3), dim=-1)


def random_words(seeds: torch.Tensor, step: int, stream: int, count: int) -> torch.Tensor:
    """``count`` 32-bit words (as int64) per model: (P, count) for ``seeds`` (P,) int64.

    Word ``n`` of model ``p`` is word ``n % 4`` of Philox4x32-10 with key (seed_p, stream) and
    counter (n // 4, step, 0, 0): a function of (seed, step, stream, n) only.
    """
    blocks = math.ceil(count / 4)
    counters = torch.zeros(blocks, 4, dtype=torch.int64, device=seeds.device)
    counters[:, 0] = torch.arange(blocks, device=seeds.device)
    counters[:, 1] = step
    keys = torch.stack([seeds, torch.full_like(seeds, stream)], dim=-1)  # (P, 2)
    words = philox4x32(counters.unsqueeze(0), keys.unsqueeze(1))  # (P, blocks, 4)
    return words.flatten(1)[:, :count]


def open_unit_interval(words: torch.Tensor) -> torch.Tensor:
    """float64 uniforms in (0, 1) from 32-bit words: (word + 1/2) / 2**32, exact."""
    return (words.double() + 0.5) * 2.0**-32


def standard_normals(words: torch.Tensor) -> torch.Tensor:
    """float32 standard normals from pairs of words (..., 2n) -> (..., n): Box-Muller's cosine
    branch in float64, so CPU and CUDA agree up to the rare last-bit rounding of log/cos."""
    u1, u2 = open_unit_interval(words).unflatten(-1, (-1, 2)).unbind(-1)
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)).float()


def device_image_table(dataset) -> tuple[np.ndarray, bool]:
    """The data set's stored uint8 images (N, H, W, C) and whether they are binary {0, 1}.

    The counter sampler draws uniformly over these rows, i.e. over the full factor grid
    (latent and nuisance factors), which is the distribution of dlib's ``sample`` when an
    observation is a fixed image per grid point.

    Raises
    ------
    ValueError
        The data set is not a :class:`fastdis.data.GridDataset` whose observations are its
        stored images (colour, noise or scream variants draw per observation).
    """
    from fastdis.data._base import GridDataset

    name = getattr(dataset, "name", type(dataset).__name__)
    if not isinstance(dataset, GridDataset) or type(dataset)._transform is not \
            GridDataset._transform:
        raise ValueError(
            f"data_sampling='counter' gathers stored images on the device, so it needs a "
            f"fastdis grid data set whose observations are its stored uint8 images; {name} "
            f"draws part of each observation at random. Use data_sampling='dlib' for it.")
    images = np.asarray(dataset.images)
    return images.reshape(len(images), *dataset._base_observation_shape()), dataset._binary


class ModelStreams:
    """Each model's reference streams (its torch generator and data RandomState), which every
    checkpoint stores whatever the sampler: a run directory keeps one format."""

    def __init__(self, configs, generators):
        self.configs = configs
        self.generators = generators  # each has drawn its model's weights already
        self.random_states = [data_random_state(config.seed) for config in configs]

    def state(self, index: int) -> dict:
        from .checkpoint import random_state_to_tensors

        return {"torch_generator": self.generators[index].get_state(),
                "data_random_state": random_state_to_tensors(self.random_states[index])}

    def load_state(self, index: int, state: dict) -> None:
        from .checkpoint import random_state_from_tensors

        self.generators[index].set_state(state["torch_generator"])
        self.random_states[index] = random_state_from_tensors(state["data_random_state"])


class CounterSampler(ModelStreams):
    """Counter-based inputs of a pack: images gathered on the device, noise, shuffle keys.

    The reference streams stay as initialised (they are saved, never drawn from)."""

    def __init__(self, dataset, configs, generators, device):
        super().__init__(configs, generators)
        images, binary = device_image_table(dataset)
        if not images.flags.writeable:  # a memory map: read it into memory once
            images = np.array(images)
        self.images = torch.from_numpy(images).to(device)  # (N, H, W, C) uint8
        self.scale = None if binary else torch.tensor(255.0, device=device)
        self.seeds = torch.tensor([config.seed for config in configs], dtype=torch.int64,
                                  device=device)
        first = configs[0]
        self.batch_size, self.num_latent = first.batch_size, first.num_latent
        self.factor_vae = first.method == "factor_vae"

    def draw(self, step: int):
        """Inputs of update ``step`` (0-based) for every model of the pack."""
        batch, latent = self.batch_size, self.num_latent
        words = random_words(self.seeds, step, STREAM_IMAGES, batch)  # (P, B)
        rows = (words * len(self.images)) >> 32  # uniform rows; N < 2**31 keeps it exact
        pixels = self.images[rows].float()  # (P, B, H, W, C)
        if self.scale is not None:
            pixels = pixels / self.scale
        images = pixels.permute(0, 1, 4, 2, 3).contiguous()  # (P, B, C, H, W)
        noise = standard_normals(random_words(self.seeds, step, STREAM_NOISE,
                                              2 * batch * latent))
        noise = noise.view(-1, batch, latent)
        shuffle_keys = None
        if self.factor_vae:  # unique int64 keys: the word, ties broken by the row
            words = random_words(self.seeds, step, STREAM_SHUFFLE, batch * latent)
            row = torch.arange(batch, device=words.device).repeat_interleave(latent)
            shuffle_keys = ((words << 16) | row).view(-1, batch, latent)
        return images, noise, shuffle_keys


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


class HostSampler(ModelStreams):
    """The reference's streams, one per model, drawn on the CPU and moved to the device."""

    def __init__(self, dataset, configs, generators, device):
        super().__init__(configs, generators)
        self.dataset, self.device = dataset, device

    def draw(self, step: int):
        images, noises, keys = [], [], []
        for config, generator, random_state in zip(self.configs, self.generators,
                                                   self.random_states, strict=True):
            images.append(torch.from_numpy(sample_batch(
                self.dataset, config.batch_size, random_state, config.data_sampling)))
            shape = (config.batch_size, config.num_latent)
            noises.append(torch.randn(shape, generator=generator))
            if config.method == "factor_vae":
                keys.append(torch.rand(shape, generator=generator))
        images = torch.stack(images).to(self.device).permute(0, 1, 4, 2, 3).contiguous()
        keys = torch.stack(keys).to(self.device) if keys else None
        return images, torch.stack(noises).to(self.device), keys
