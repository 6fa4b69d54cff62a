"""MIG as the beta-TCVAE paper defines it: entropies of the encoder's Gaussian posteriors.

Chen, Li, Grosse & Duvenaud, "Isolating Sources of Disentanglement in Variational Autoencoders",
NeurIPS 2018, Section 5 and the authors' ``disentanglement_metrics.py`` (rtqichen/beta-tcvae).
disentanglement_lib's ``mig`` (:func:`fastdis.metrics.mig`) instead bins the posterior *means*
into histograms; this estimator uses the whole posterior and the whole factor grid.

Over the :math:`N` points :math:`x_n` of a complete factor grid (one point for every combination
of factor values), the aggregate posterior of code :math:`j` is the mixture
:math:`q(z_j) = \\frac{1}{N} \\sum_n \\mathcal{N}(z_j; \\mu_{nj}, \\sigma^2_{nj})`, and its entropy
is estimated by sampling one :math:`z_{nj} \\sim q(z_j \\mid x_n)` per point and averaging over
:math:`S` of them (all of them when there are at most ``num_samples``, else a random subset):

.. math::

    \\hat H(z_j) = \\log N - \\frac{1}{S} \\sum_{s} \\log \\sum_{n=1}^{N}
        \\mathcal{N}(z_{sj}; \\mu_{nj}, \\sigma^2_{nj}).

The conditional entropy given factor :math:`v_k` averages the same estimate over the sub-grids
:math:`v_k = v` (same samples, the mixture restricted to the sub-grid), uniformly over the
:math:`C_k` values, and with the factor entropy :math:`H(v_k) = \\log C_k` of a uniform grid

.. math::

    I_{jk} = \\max\\left(\\hat H(z_j) - \\hat H(z_j \\mid v_k), 0\\right), \\qquad
    \\mathrm{MIG} = \\frac{1}{K} \\sum_k \\frac{I_{(1),k} - I_{(2),k}}{\\log C_k}

with :math:`I_{(1),k} \\ge I_{(2),k}` the two largest informations about factor :math:`k`.

The :math:`S \\times N` matrix of densities is never formed: each sample streams over the
mixture's components with a running (max, scaled sum) log-sum-exp, exact however far the sample
lies from every component, so memory stays :math:`O(S \\cdot D)` at any grid size (the
authors' GPU code evaluates it in blocks of 10 samples). The cost is
:math:`O(S \\cdot N \\cdot D)` for the marginals plus :math:`O(S \\cdot N \\cdot D)` per factor
for the conditionals. Differences from the authors' code: float64 throughout (theirs is
float32), every factor passed is scored (their dSprites version does not score the shape
factor), and the draws come from ``random_state``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .._validation import (
    check_codes,
    check_factors,
    check_informative_factors,
    check_min_columns,
    check_positive_int,
    check_random_state,
    check_same_rows,
)
from ._mig import mig_from_mutual_info

__all__ = ["chen_mig", "check_factor_grid", "mixture_entropies"]

_LOG_2PI = math.log(2.0 * math.pi)
#: exp(-logvar) and exp(logvar / 2) stay finite in float64 within this bound
_MAX_ABS_LOGVAR = 700.0


@numba.njit(cache=True)
def _running_log_sum_exp(z, means, inverse_variances, log_normalisers):
    """log sum_n N(z; means[n], 1 / inverse_variances[n]) with a running (max, scaled sum):
    exact however far ``z`` lies from every component (1-D arrays of the components)."""
    largest = -np.inf
    scaled_sum = 0.0
    for n in range(means.shape[0]):
        diff = z - means[n]
        log_density = log_normalisers[n] - 0.5 * diff * diff * inverse_variances[n]
        if log_density == -np.inf:  # an underflowed component adds nothing (and -inf - -inf
            continue                # would be NaN below)
        if log_density > largest:
            scaled_sum = scaled_sum * math.exp(largest - log_density) + 1.0
            largest = log_density
        else:
            scaled_sum += math.exp(log_density - largest)
    return largest + math.log(scaled_sum)


@numba.njit(parallel=True, cache=True)
def _mixture_log_densities(samples, means, inverse_variances, log_normalisers, out):
    """out[s, d] = log sum_n N(samples[s, d]; means[d, n], 1 / inverse_variances[d, n]).

    samples: (S, D); means, inverse_variances, log_normalisers (-0.5 log(2 pi var)): (D, M),
    one contiguous row of components per code; out: (S, D) float64, written in place. Parallel
    over samples, each sum in component order, so the result does not depend on the thread
    count.
    """
    for s in numba.prange(samples.shape[0]):
        for d in range(samples.shape[1]):
            out[s, d] = _running_log_sum_exp(samples[s, d], means[d], inverse_variances[d],
                                             log_normalisers[d])


def mixture_entropies(samples, means, logvars) -> np.ndarray:
    """Entropy estimate (nats) of each code's Gaussian mixture, shape (n_codes,).

    ``-mean_s log((1/M) sum_n N(samples[s, d]; means[n, d], exp(logvars[n, d])))`` with
    samples (S, D) and M = ``means.shape[0]`` equally weighted components.
    """
    logvars = np.asarray(logvars, dtype=np.float64).T
    out = np.empty(samples.shape, dtype=np.float64)
    _mixture_log_densities(np.ascontiguousarray(samples, dtype=np.float64),
                           np.ascontiguousarray(np.asarray(means, dtype=np.float64).T),
                           np.ascontiguousarray(np.exp(-logvars)),
                           np.ascontiguousarray(-0.5 * (_LOG_2PI + logvars)), out)
    return math.log(means.shape[0]) - out.mean(axis=0)


def check_factor_grid(factors, *, name: str = "factors") -> tuple[np.ndarray, np.ndarray]:
    """Check that the rows of ``factors`` are a complete grid: each combination of the values
    present (per factor) exactly once. Returns (labels 0..C_k-1 (N, K), sizes C_k (K,)).

    Raises
    ------
    ValueError
        When factors are not valid factors (see :func:`check_factors`), or combinations are
        missing or repeated, naming how many.
    """
    factors = check_factors(factors, name=name)
    # each factor's values present, relabelled 0..C_k-1 (a sub-grid may skip values)
    columns = [np.unique(column, return_inverse=True) for column in factors.T]
    labels = np.stack([inverse.ravel() for _, inverse in columns], axis=1)
    sizes = np.array([values.size for values, _ in columns])
    combinations = math.prod(int(size) for size in sizes)
    distinct = np.unique(labels, axis=0).shape[0]
    if distinct != labels.shape[0] or distinct != combinations:
        raise ValueError(
            f"{name} must form a complete factor grid (every combination of the factor values "
            f"present, once each): its {labels.shape[0]} rows hold {list(map(int, sizes))} "
            f"values per factor, i.e. {combinations} combinations, with "
            f"{combinations - distinct} missing and {labels.shape[0] - distinct} repeated. "
            "Encode the whole data set, or a complete sub-grid of it."
        )
    return labels, sizes


def _check_posteriors(means, logvars, factors):
    means = check_codes(means, name="means")
    logvars = check_codes(logvars, name="logvars")
    if logvars.shape != means.shape:
        raise ValueError(f"logvars must have the shape of means {means.shape}; got "
                         f"{logvars.shape}.")
    if np.abs(logvars).max() > _MAX_ABS_LOGVAR:
        raise ValueError(
            f"logvars holds {np.abs(logvars).max():.4g} in magnitude; beyond "
            f"{_MAX_ABS_LOGVAR} a variance or its inverse overflows float64. Are these "
            "log-variances (not variances or log-standard-deviations of a diverged encoder)?"
        )
    factors = check_factors(factors)
    check_same_rows(means, factors, "means", "factors")
    check_min_columns(means, 2, name="means", why="MIG is the gap between the two most "
                      "informative codes")
    check_informative_factors(factors)
    return means.astype(np.float64), logvars.astype(np.float64), factors


def chen_mig(means, logvars, factors, *, num_samples: int = 10_000, random_state=0) -> dict:
    """Mutual Information Gap estimated from Gaussian posteriors over a complete factor grid.

    See the module docstring for the estimator.

    Parameters
    ----------
    means : array of shape (n_points, n_codes)
        Posterior means :math:`\\mu_{nj}` of every point of the grid.
    logvars : array of shape (n_points, n_codes)
        Posterior log-variances :math:`\\log \\sigma^2_{nj}` of the same points.
    factors : int array of shape (n_points, n_factors)
        The points' factors: a complete grid (every combination of the values present once, in
        any row order), each factor taking at least two values.
    num_samples : int, default=10_000
        At most this many samples per entropy estimate (the authors' 10,000).
    random_state : None, int or RandomState, default=0
        Draws the posterior samples, then the sample subsets (marginal first, then per factor
        and value in order).

    Returns
    -------
    dict
        ``{"chen_mig": float}`` in [0, 1] (higher is better).

    Raises
    ------
    ValueError
        Bad shapes or values, fewer than two codes, a factor with a single value, or rows that
        do not form a complete grid.
    """
    means, logvars, factors = _check_posteriors(means, logvars, factors)
    num_samples = check_positive_int(num_samples, name="num_samples")
    labels, sizes = check_factor_grid(factors)
    rs = check_random_state(random_state)
    samples = means + np.exp(0.5 * logvars) * rs.standard_normal(means.shape)

    def entropies(rows):
        chosen = rows[rs.permutation(rows.size)[:num_samples]]
        return mixture_entropies(samples[chosen], means[rows], logvars[rows])

    marginal = entropies(np.arange(means.shape[0]))
    conditional = np.array([
        np.mean([entropies(np.flatnonzero(labels[:, k] == v)) for v in range(sizes[k])], axis=0)
        for k in range(labels.shape[1])
    ])
    information = np.clip(marginal[np.newaxis, :] - conditional, 0.0, None)  # (K, D)
    # H(v_k) = log |v_k|: every factor value is equally frequent on a complete grid.
    return {"chen_mig": mig_from_mutual_info(information.T, np.log(sizes))}
