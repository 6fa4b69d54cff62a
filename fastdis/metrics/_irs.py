"""Interventional Robustness Score (IRS).

Suter, Miladinović, Schölkopf & Bauer, "Robustly Disentangled Causal Mechanisms: Validating Deep
Representations for Interventional Robustness", ICML 2019; as in disentanglement_lib
(``evaluation/metrics/irs.py``, ``scalable_disentanglement_score``).
"""

from __future__ import annotations

import numba
import numpy as np

from .._validation import check_codes_factors, check_fraction, check_num_bins
from ._information import histogram_discretize


@numba.njit(cache=True)
def _linear_percentile(values, quantile):
    """np.percentile(values, 100 * quantile) (method="linear"); reorders ``values`` in place.

    Selection instead of a full sort: only the two order statistics around the virtual index
    are needed. The interpolation follows numpy's ``_lerp`` rounding rules.
    """
    n = values.shape[0]
    virtual = quantile * (n - 1)
    below = min(max(int(np.floor(virtual)), 0), n - 1)
    above = min(below + 1, n - 1)
    partitioned = np.partition(values, below)
    a = partitioned[below]
    b = a
    if above > below:
        b = partitioned[above]
        for i in range(above + 1, n):
            if partitioned[i] < b:
                b = partitioned[i]
    gamma = virtual - below
    diff = b - a
    if gamma >= 0.5:
        return b - diff * (1.0 - gamma)
    return a + diff * gamma


@numba.njit(parallel=True, cache=True)
def _grouped_deviation_quantiles(grouped_latents, group_starts, n_groups, quantile, out):
    """Mean over the groups of each factor of the quantile of |z - E[z | group]|.

    grouped_latents: (F, L, N), for factor f the latents with samples ordered so that each
    value of f forms a contiguous group; group_starts: (F, G_max + 1) offsets of those groups;
    n_groups: (F,); out: (L, F), written in place.
    """
    n_factors, n_latents, n_samples = grouped_latents.shape
    for pair in numba.prange(n_latents * n_factors):
        l = pair // n_factors
        f = pair % n_factors
        buffer = np.empty(n_samples, dtype=np.float64)
        total = 0.0
        for g in range(n_groups[f]):
            start = group_starts[f, g]
            size = group_starts[f, g + 1] - start
            mean = 0.0
            for r in range(size):
                mean += grouped_latents[f, l, start + r]
            mean /= size
            for r in range(size):
                buffer[r] = abs(grouped_latents[f, l, start + r] - mean)
            total += _linear_percentile(buffer[:size], quantile)
        out[l, f] = total / n_groups[f]


def irs_matrix(codes, factors, *, diff_quantile: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """IRS matrix (n_codes, n_factors) and the max deviation of each code (no validation).

    ``IRS[l, f] = 1 - mean_v quantile(|z_l - E[z_l | f = v]|) / max |z_l - E[z_l]|``.
    """
    latents = np.asarray(codes, dtype=np.float64)
    n_samples, n_factors = factors.shape
    grouped = np.empty((n_factors, latents.shape[1], n_samples), dtype=np.float64)
    boundaries = []
    for f in range(n_factors):
        column = factors[:, f]
        if 0 <= column.min() and column.max() < 2**15:  # numpy radix-sorts 16-bit keys: O(N)
            column = column.astype(np.int16)
        order = np.argsort(column, kind="stable")  # groups of equal value, contiguous
        grouped[f] = latents[order].T
        inner = np.flatnonzero(np.diff(factors[order, f])) + 1
        boundaries.append(np.concatenate([[0], inner, [n_samples]]))
    n_groups = np.array([b.size - 1 for b in boundaries], dtype=np.int64)
    group_starts = np.zeros((n_factors, n_groups.max() + 1), dtype=np.int64)
    for f, bounds in enumerate(boundaries):
        group_starts[f, : bounds.size] = bounds
    # np.percentile(q=100 * p) divides by 100 again: reproduce that rounding.
    quantile = float(np.true_divide(np.asanyarray(diff_quantile * 100), 100))
    deviations = np.empty((latents.shape[1], n_factors), dtype=np.float64)
    _grouped_deviation_quantiles(grouped, group_starts, n_groups, quantile, deviations)
    max_deviations = np.max(np.abs(latents - latents.mean(axis=0)), axis=0)
    return 1.0 - deviations / max_deviations[:, np.newaxis], max_deviations


def irs_from_matrix(matrix: np.ndarray, max_deviations: np.ndarray) -> float:
    """Average over codes of max_f IRS[l, f], weighted by each code's max deviation."""
    per_code = matrix.max(axis=1)
    if np.sum(max_deviations) > 0.0:
        return float(np.average(per_code, weights=max_deviations))
    return float(np.mean(per_code))


def irs(codes, factors, *, diff_quantile: float = 0.99, num_bins: int = 20) -> dict:
    """Interventional Robustness Score of a representation.

    Factors are first discretized into ``num_bins`` histogram bins (as the reference config
    does: factors with more than ``num_bins`` values are merged into bins). For every code
    :math:`z_l` and factor :math:`f`, the IRS matrix entry is

    .. math::

        R_{lf} = 1 - \\frac{\\mathrm{mean}_v\\, Q_q\\big(|z_l - E[z_l \\mid f = v]|
                 \\;\\big|\\; f = v\\big)}{\\max |z_l - E[z_l]|}

    with :math:`Q_q` the ``diff_quantile`` quantile; the score is the average over codes of
    :math:`\\max_f R_{lf}`, weighted by each code's maximal deviation.

    Constant codes are dropped first. Unlike the reference, "constant" means exactly constant
    (all values equal), not "variance > 0": a constant such as 0.37 has a variance of ~1e-27 from
    rounding, which the reference keeps and which can turn its score into nan.

    Parameters
    ----------
    codes : array of shape (n_samples, n_codes)
    factors : int array of shape (n_samples, n_factors)
    diff_quantile : float, default=0.99
        Quantile of the deviations (the paper uses 1.0; the reference's default is 0.99).
    num_bins : int, default=20
        Histogram bins for the factors.

    Returns
    -------
    dict
        ``{"IRS": float in [0, 1], "num_active_dims": int}``. ``num_active_dims`` is the number
        of non-constant codes (the reference returns the *sum of their values* instead, a bug
        kept only in :mod:`fastdis.compat.disentanglement_lib.irs`). If every code is constant
        the score is 0.
    """
    codes, factors = check_codes_factors(codes, factors)
    diff_quantile = check_fraction(diff_quantile, name="diff_quantile")
    num_bins = check_num_bins(num_bins, codes.shape[0], name="factors")
    active = np.ptp(codes, axis=0) > 0
    if not active.any():
        return {"IRS": 0.0, "num_active_dims": 0}
    binned = histogram_discretize(factors, num_bins)
    matrix, max_deviations = irs_matrix(codes[:, active], binned, diff_quantile=diff_quantile)
    return {"IRS": irs_from_matrix(matrix, max_deviations), "num_active_dims": int(active.sum())}
