"""An offline dSprites look-alike, written in the real file's format.

:func:`make_dsprites` rasterises white squares, ellipses and hearts on black over dSprites' grid
(colour 1 x shape 3 x scale 6 x orientation 40 x posX 32 x posY 32 = 737,280 images of 64x64)
and writes ``dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` with the keys of
DeepMind's file: ``imgs`` (uint8 {0, 1}), ``latents_values``, ``latents_classes`` and a pickled
``metadata`` dict (``latents_sizes``, ``latents_names``, ``latents_possible_values``, ...).
Factor values follow the real file (scale 0.5..1, orientation linspace(0, 2 pi, 40) with both
ends, positions linspace(0, 1, 32)); the pixels are NOT copies of the LÖVE renders, so scores
are only comparable to dlib's on the real file.

How: each (shape, scale, orientation) sprite is rasterised once as a 31x31 template by 4x4
supersampling (coverage >= 1/2 is white), then pasted at the 32x32 integer positions (the
positions are 39/31 pixels apart, so rounding keeps them distinct). The archive is written
uncompressed and streamed block by block, so it memory-maps and never sits in RAM whole.

``small=True`` renders a CI-sized grid (shape 3, scale 3, orientation 8, posX 12, posY 12:
10,368 images) with the same file name, so ``load_dataset("dsprites_full", data_dir=out_dir)``
finds it and reads its sizes from the metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._base import FactorGrid
from ._files import write_npz_stored
from .dsprites import DSPRITES_FILE

#: The factor names in DeepMind's file's metadata (fastdis calls the last two position_x, _y).
FILE_FACTOR_NAMES = ("color", "shape", "scale", "orientation", "posX", "posY")
FULL_SIZES = (1, 3, 6, 40, 32, 32)
SMALL_SIZES = (1, 3, 3, 8, 12, 12)
_HALF = 15  # template half-width: a rotated square at scale 1 reaches 9 * sqrt(2) < 13 px
_SPRITE_RADIUS = 9.0  # half-extent in pixels at scale 1
_CENTRE_RANGE = (12.0, 51.0)  # pixel centres of position 0 and 1
_SUPERSAMPLE = 4


def factor_values(sizes) -> list[np.ndarray]:
    """The value of each class of each of the 6 factors, as in the real file."""
    _, shapes, scales, orientations, xs, ys = sizes
    return [
        np.ones(1),
        np.arange(1, shapes + 1, dtype=np.float64),
        np.linspace(0.5, 1.0, scales),
        np.linspace(0.0, 2 * np.pi, orientations),
        np.linspace(0.0, 1.0, xs),
        np.linspace(0.0, 1.0, ys),
    ]


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Is unit-scale point (u, v) (v up) inside shape 0 square, 1 ellipse, 2 heart?"""
    if shape == 0:
        return np.maximum(np.abs(u), np.abs(v)) <= 1.0
    if shape == 1:
        return u**2 + (v / 0.5) ** 2 <= 1.0
    x, y = 1.15 * u, 1.15 * v + 0.15  # the classic heart curve, centred and fitted to +-1
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


def sprite_templates(shape: int, scales: np.ndarray, orientations: np.ndarray) -> np.ndarray:
    """Binary templates (n_scales, n_orientations, 31, 31) of one shape."""
    side = 2 * _HALF + 1
    offsets = (np.arange(side * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE - side / 2
    dx = offsets[None, :]  # columns, right
    dy = -offsets[:, None]  # rows run down; v points up
    cos, sin = np.cos(orientations)[:, None, None], np.sin(orientations)[:, None, None]
    templates = np.empty((scales.size, orientations.size, side, side), dtype=np.uint8)
    for k, scale in enumerate(scales):
        radius = _SPRITE_RADIUS * scale
        u = (cos * dx + sin * dy) / radius
        v = (-sin * dx + cos * dy) / radius
        coverage = _inside(shape, u, v).reshape(
            orientations.size, side, _SUPERSAMPLE, side, _SUPERSAMPLE).mean(axis=(2, 4))
        templates[k] = coverage >= 0.5
    return templates


def _image_blocks(sizes):
    """Yield the images in storage order (orientation, posX, posY fastest last), one
    (orientation, posX, posY, 64, 64) block per (shape, scale)."""
    _, n_shapes, _, n_orient, n_x, n_y = sizes
    values = factor_values(sizes)
    lo, hi = _CENTRE_RANGE
    columns = np.rint(lo + values[4] * (hi - lo)).astype(int)
    rows = np.rint(lo + values[5] * (hi - lo)).astype(int)
    side = 2 * _HALF + 1
    # One canvas per (shape, scale), every orientation pasted at once: 40 x 32 x 32 padded
    # images, about 360 MB for the full grid.
    canvas = np.zeros((n_orient, n_x, n_y, 64 + 2 * _HALF, 64 + 2 * _HALF), dtype=np.uint8)
    for shape in range(n_shapes):
        templates = sprite_templates(shape, values[2], values[3])
        for scale_templates in templates:
            canvas[:] = 0
            for ix, column in enumerate(columns):
                for iy, row in enumerate(rows):
                    # canvas pixel (r + _HALF) is image pixel r; the template's centre lands
                    # on (row, column)
                    canvas[:, ix, iy, row:row + side, column:column + side] = scale_templates
            yield canvas[..., _HALF:_HALF + 64, _HALF:_HALF + 64]


def make_dsprites(out_dir, small: bool = False) -> Path:
    """Render the dSprites look-alike into ``out_dir/dsprites/`` and return the file's path."""
    sizes = SMALL_SIZES if small else FULL_SIZES
    path = Path(out_dir) / DSPRITES_FILE
    values = factor_values(sizes)
    classes = FactorGrid(sizes).factors_at(np.arange(int(np.prod(sizes))))
    latents_values = np.column_stack([values[j][classes[:, j]] for j in range(6)])
    metadata = {
        "title": "dSprites look-alike rendered by fastdis (not the original LÖVE renders)",
        "description": "fastdis.data.make_dsprites: square, ellipse, heart; see its docstring.",
        "version": 1,
        "latents_names": FILE_FACTOR_NAMES,
        "latents_sizes": np.array(sizes, dtype=np.int64),
        "latents_possible_values": dict(zip(FILE_FACTOR_NAMES, values, strict=True)),
    }
    write_npz_stored(
        path,
        {"latents_values": latents_values, "latents_classes": classes,
         "metadata": np.array(metadata, dtype=object)},
        chunks={"imgs": ((classes.shape[0], 64, 64), np.uint8, _image_blocks(sizes))},
    )
    return path
