"""Drawing with matplotlib's object API: a :class:`~matplotlib.figure.Figure` on its own Agg
canvas per picture, so the report sets no global backend and leaves pyplot's state alone
(a notebook or a GUI program that calls it keeps its backend and figures)."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Points are spread this far around their x position so that equal scores stay visible.
_JITTER = 0.08


def new_figure(width: float, height: float):
    """A figure of ``width`` x ``height`` inches on an Agg canvas."""
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def png(figure, *, dpi: int = 100, tight: bool = True) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return buffer.getvalue()


def stacked_axes(width: float, heights):
    """A figure of panels stacked vertically, the i-th ``heights[i]`` inches tall."""
    figure = new_figure(width, sum(heights) + 0.5)
    axes = figure.subplots(len(heights), 1, squeeze=False,
                           gridspec_kw={"height_ratios": heights})[:, 0]
    return figure, axes


def heatmap(axis, matrix, *, vmin: float, vmax: float, cmap: str, annotate: bool = False,
            fmt: str = "{:.2f}", fontsize: float = 7.0):
    """Draw the DataFrame ``matrix`` as a labelled heatmap (NaN cells blank); the image."""
    values = matrix.to_numpy(dtype=np.float64)
    image = axis.imshow(np.ma.masked_invalid(values), vmin=vmin, vmax=vmax, cmap=cmap,
                        aspect="auto")
    axis.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns], rotation=90,
                    fontsize=fontsize)
    axis.set_yticks(range(matrix.shape[0]), [str(i) for i in matrix.index], fontsize=fontsize)
    if annotate:
        middle, half = (vmax + vmin) / 2, (vmax - vmin) / 2
        for (row, column), value in np.ndenumerate(values):
            if np.isfinite(value):  # white on the dark ends of a diverging map
                axis.text(column, row, fmt.format(value), ha="center", va="center",
                          fontsize=fontsize,
                          color="w" if abs(value - middle) > 0.6 * half else "k")
    return image


def seeds_as_points(axis, positions, values, rng) -> None:
    """Scatter ``values`` at ``positions`` with a little horizontal jitter."""
    positions = np.asarray(positions, dtype=np.float64)
    axis.scatter(positions + rng.uniform(-_JITTER, _JITTER, len(positions)), values, s=10,
                 color="k", alpha=0.8)


def strength_grid(frame, rows, *, title: str):
    """Panels of score against strength: one row per ``rows`` label, one column per method.

    ``frame`` has columns ``row``, ``method``, ``strength``, ``strength_rank`` and ``value``;
    each model is a point at its strength (in strength order), and a line joins the medians
    over seeds. A row shares its y axis, so methods compare at a glance.
    """
    methods = sorted(frame["method"].unique())
    figure = new_figure(2.4 * len(methods) + 1.2, 2.3 * len(rows) + 0.6)
    axes = figure.subplots(len(rows), len(methods), squeeze=False, sharey="row")
    rng = np.random.default_rng(0)
    for r, row in enumerate(rows):
        axes[r, 0].set_ylabel(row, fontsize=8)
        for c, method in enumerate(methods):
            if r == 0:
                axes[r, c].set_title(method, fontsize=9)
            _strength_panel(axes[r, c], frame[(frame["row"] == row)
                                              & (frame["method"] == method)], rng)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def _strength_panel(axis, part, rng) -> None:
    """One method's scores against its strengths: models as points, medians joined."""
    if part.empty:
        axis.text(0.5, 0.5, "no scores", ha="center", va="center", transform=axis.transAxes,
                  fontsize=8, color="0.5")
        axis.set_xticks([])
        return
    labels = part.drop_duplicates("strength_rank").sort_values("strength_rank")
    position = {rank: i for i, rank in enumerate(labels["strength_rank"])}
    x = part["strength_rank"].map(position).to_numpy()
    seeds_as_points(axis, x, part["value"].to_numpy(), rng)
    medians = part.groupby(x)["value"].median()
    axis.plot(medians.index, medians.to_numpy(), color="tab:blue", linewidth=1)
    axis.set_xlim(-0.5, len(labels) - 0.5)  # one strength stays centred, not jitter-wide
    axis.set_xticks(range(len(labels)), [s or "-" for s in labels["strength"]], rotation=45,
                    ha="right", fontsize=7)
    axis.tick_params(axis="y", labelsize=7)
