"""Pictures of factor traversals: one row per factor, the others held at one random point."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._validation import check_positive_int


def traversal_factors(data, columns: int, random_state) -> np.ndarray:
    """Factor rows (num_factors * columns, num_factors): row block j sweeps factor j evenly
    over its values (repeating when it has fewer than ``columns``), the rest at one draw."""
    columns = check_positive_int(columns, name="columns")
    base = data.sample_factors(1, random_state)[0]
    rows = np.repeat(base[None], data.num_factors * columns, axis=0)
    for j, size in enumerate(data.factors_num_values):
        sweep = np.rint(np.linspace(0, size - 1, columns)).astype(np.int64)
        rows[j * columns:(j + 1) * columns, j] = sweep
    return rows


def save_traversals(data, out, *, columns: int = 10, seed: int = 0) -> Path:
    """Write a PNG of factor traversals of ``data`` (one labelled row per factor) to ``out``."""
    from PIL import Image, ImageDraw

    random_state = np.random.RandomState(seed)
    factors = traversal_factors(data, columns, random_state)
    observations = data.sample_observations_from_factors(factors, random_state)
    tile, gap, label_width = observations.shape[1], 2, 110
    n_rows = data.num_factors
    canvas = Image.new("RGB", (label_width + columns * (tile + gap), n_rows * (tile + gap)),
                       "white")
    pixels = np.rint(np.clip(observations, 0, 1) * 255).astype(np.uint8)
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    draw = ImageDraw.Draw(canvas)
    names = getattr(data, "factor_names", [f"factor {j}" for j in range(n_rows)])
    for j in range(n_rows):
        top = j * (tile + gap)
        draw.text((4, top + tile // 2 - 6), f"{names[j]} ({data.factors_num_values[j]})",
                  fill="black")
        for c in range(columns):
            canvas.paste(Image.fromarray(pixels[j * columns + c]),
                         (label_width + c * (tile + gap), top))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out
