"""dSprites and its Color / Noisy / Scream variants (dlib's ``dsprites.py`` semantics).

The file is DeepMind's ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``: ``imgs`` (N, 64, 64)
uint8 in {0, 1}, ``latents_values``, ``latents_classes`` and a pickled ``metadata`` dict whose
``latents_sizes`` ([1, 3, 6, 40, 32, 32] for colour, shape, scale, orientation, posX, posY) fix the
grid, posY fastest. As in dlib, the sizes are read from the metadata, so a smaller grid rendered
by :func:`fastdis.data.make_dsprites` loads the same way; colour (one value) is the nuisance.

The variants transform the binary sprite per observation, after the nuisance draw, with the
reference's draws in its order: Color multiplies by one colour U(0.5, 1)^3; Noisy takes
min(sprite + U(0, 1)^(64x64x3), 1); Scream takes a random 64x64 crop of the painting (row offset,
column offset, then a colour U(0, 1)^3, per observation), averages it with the colour and inverts
it under the sprite.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._base import GridDataset
from ._files import bad_file, find_data_file, load_npz_member, load_npz_object

DSPRITES_FILE = Path("dsprites") / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
SCREAM_FILE = Path("scream") / "scream.jpg"
#: Names of the six stored factors; dlib's dsprites_full exposes the last five.
DSPRITES_ALL_FACTORS = ("color", "shape", "scale", "orientation", "position_x", "position_y")
DSPRITES_FIX = (
    "Download it from https://github.com/deepmind/dsprites-dataset, or render the look-alike "
    "with `fastdis data make dsprites --out DIR`."
)


def _load_dsprites_file(data_dir) -> tuple[np.ndarray, list[int], Path]:
    path = find_data_file(data_dir, DSPRITES_FILE, "dsprites", DSPRITES_FIX)
    metadata = load_npz_object(path, "metadata")
    try:
        sizes = [int(s) for s in metadata["latents_sizes"]]
    except (KeyError, IndexError, TypeError, ValueError):  # IndexError: a plain array
        raise bad_file(path, "metadata['latents_sizes'] with 6 integers",
                       repr(metadata)[:200]) from None
    if len(sizes) != len(DSPRITES_ALL_FACTORS) or min(sizes) < 1:
        raise bad_file(path, "metadata['latents_sizes'] with 6 positive sizes", str(sizes))
    images = load_npz_member(path, "imgs")
    expected = (int(np.prod(sizes)), 64, 64)
    if images.shape != expected or images.dtype != np.uint8:
        raise bad_file(path, f"imgs of shape {expected} uint8 (latents_sizes {sizes})",
                       f"shape {images.shape} {images.dtype}")
    return images, sizes, path


class DSprites(GridDataset):
    """dSprites: 64x64x1 binary sprites; factors shape, scale, orientation, position x, y."""

    plain_randint_sampling = True  # colour, the nuisance, has one value
    channels = 1

    def __init__(self, data_dir=None, latent_factor_indices=(1, 2, 3, 4, 5), name="dsprites_full",
                 *, in_memory: bool = False):
        images, sizes, path = _load_dsprites_file(data_dir)
        super().__init__(
            name,
            images,
            sizes,
            latent_factor_indices,
            [DSPRITES_ALL_FACTORS[i] for i in latent_factor_indices],
            [64, 64, self.channels],
            binary=True,
            source=str(path),
            in_memory=in_memory,
        )


class ColorDSprites(DSprites):
    """dSprites in a random colour U(0.5, 1)^3 per observation (not a factor) on black."""

    plain_randint_sampling = False  # observations draw a colour
    channels = 3

    def __init__(self, data_dir=None, latent_factor_indices=(1, 2, 3, 4, 5), *,
                 in_memory: bool = False):
        super().__init__(data_dir, latent_factor_indices, name="color_dsprites",
                         in_memory=in_memory)

    def _transform(self, observations, random_state):
        colour = random_state.uniform(0.5, 1, [observations.shape[0], 1, 1, 3])
        # The sprite is {0, 1}, so float32 products equal dlib's float64 ones cast to float32.
        return observations * colour.astype(np.float32)


class NoisyDSprites(DSprites):
    """White dSprites on uniform per-pixel, per-channel noise."""

    plain_randint_sampling = False  # observations draw noise
    channels = 3

    def __init__(self, data_dir=None, latent_factor_indices=(1, 2, 3, 4, 5), *,
                 in_memory: bool = False):
        super().__init__(data_dir, latent_factor_indices, name="noisy_dsprites",
                         in_memory=in_memory)

    def _transform(self, observations, random_state):
        noise = random_state.uniform(0, 1, [observations.shape[0], 64, 64, 3]).astype(np.float32)
        return np.minimum(observations + noise, np.float32(1))


class ScreamDSprites(DSprites):
    """dSprites inverted over a random, tinted 64x64 crop of Munch's *The Scream*.

    Needs ``scream/scream.jpg`` in the data folder (dlib's download script fetches Wikimedia's
    ``The_Scream.jpg``). It is shrunk to fit in 350x274 as in dlib (``thumbnail``, today's
    Pillow default resampling) and scaled to [0, 1].
    """

    plain_randint_sampling = False  # observations draw a crop and a tint
    channels = 3

    def __init__(self, data_dir=None, latent_factor_indices=(1, 2, 3, 4, 5), *,
                 in_memory: bool = False):
        super().__init__(data_dir, latent_factor_indices, name="scream_dsprites",
                         in_memory=in_memory)
        self.scream = load_scream(data_dir)

    def _transform(self, observations, random_state):
        sprite = observations == 1  # (n, 64, 64, 1)
        out = np.empty((observations.shape[0], 64, 64, 3), dtype=np.float32)
        # The reference draws row, column and tint per observation, interleaved, so the loop
        # stays; each step works on one 64x64x3 crop, which stays in cache (measured faster
        # than batching the blend over 6 MB float64 temporaries).
        for i in range(out.shape[0]):
            row = random_state.randint(0, self.scream.shape[0] - 64)
            column = random_state.randint(0, self.scream.shape[1] - 64)
            background = self.scream[row:row + 64, column:column + 64] + random_state.uniform(
                0, 1, size=3)
            background *= 0.5  # exact, like the reference's / 2.
            np.subtract(1, background, out=background, where=sprite[i])
            out[i] = background
        return out


def load_scream(data_dir=None) -> np.ndarray:
    """The Scream painting as float64 (H, W, 3) in [0, 1], fitted within 350x274 like dlib."""
    from PIL import Image, UnidentifiedImageError

    path = find_data_file(
        data_dir, SCREAM_FILE, "scream_dsprites",
        "Scream-dSprites needs the painting: save https://upload.wikimedia.org/wikipedia/commons/"
        "f/f4/The_Scream.jpg there (dlib's download script fetches the same file).",
    )
    try:
        with Image.open(path) as image:
            picture = image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise bad_file(path, "a JPEG image of The Scream", f"an unreadable image ({exc})") from None
    picture.thumbnail((350, 274))  # dlib passes (350, 274, 3); Pillow >= 10 rejects the 3rd entry
    scream = np.asarray(picture) / 255.0
    if scream.shape[0] <= 64 or scream.shape[1] <= 64:
        raise bad_file(path, "an image larger than 64x64 after fitting within 350x274",
                       f"{scream.shape[1]}x{scream.shape[0]}")
    return scream
