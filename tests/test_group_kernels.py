"""Grouped kernels (IRS quantiles, FactorVAE variances) against plain-numpy twins."""

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastdis.metrics._factor_vae import _lowest_relative_variance
from fastdis.metrics._irs import irs_matrix


def irs_matrix_twin(latents, factors, quantile):
    """Plain numpy, group by group (the reference's loop)."""
    max_deviations = np.max(np.abs(latents - latents.mean(axis=0)), axis=0)
    deviations = np.zeros((latents.shape[1], factors.shape[1]))
    for f in range(factors.shape[1]):
        values = np.unique(factors[:, f])
        for value in values:
            group = latents[factors[:, f] == value]
            spread = np.abs(group - group.mean(axis=0))
            deviations[:, f] += np.percentile(spread, quantile * 100, axis=0)
        deviations[:, f] /= values.size
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - deviations / max_deviations[:, None], max_deviations


@settings(max_examples=50, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 40),
    n_latents=st.integers(1, 4),
    n_factors=st.integers(1, 3),
    quantile=st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0]),
)
def test_irs_matrix_matches_twin(data, n, n_latents, n_factors, quantile):
    latents = data.draw(hnp.arrays(np.float64, (n, n_latents),
                                   elements=st.floats(-100, 100, allow_nan=False)))
    factors = data.draw(hnp.arrays(np.int64, (n, n_factors), elements=st.integers(0, 4)))
    # Callers drop constant codes first (their IRS is 0/0); the kernel sums sequentially, numpy
    # pairwise, so only there can the two disagree (a 1e-16 deviation over 0).
    assume(np.ptp(latents, axis=0).min() > 1e-6)
    expected, expected_max = irs_matrix_twin(latents, factors, quantile)
    with np.errstate(divide="ignore", invalid="ignore"):
        got, got_max = irs_matrix(latents, factors, diff_quantile=quantile)
    np.testing.assert_allclose(got_max, expected_max, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def lowest_relative_variance_twin(groups, global_variances, active):
    ratios = np.var(groups, axis=1, ddof=1)[:, active] / global_variances[active]
    return np.flatnonzero(active)[np.argmin(ratios, axis=1)]


@settings(max_examples=50, deadline=None)
@given(data=st.data(), n_groups=st.integers(1, 20), batch=st.integers(2, 9),
       n_codes=st.integers(1, 6))
def test_lowest_relative_variance_matches_twin(data, n_groups, batch, n_codes):
    groups = data.draw(hnp.arrays(np.float64, (n_groups, batch, n_codes),
                                  elements=st.floats(-10, 10, allow_nan=False)))
    global_variances = data.draw(hnp.arrays(np.float64, (n_codes,),
                                            elements=st.floats(0.1, 10)))
    active = data.draw(hnp.arrays(np.bool_, (n_codes,)))
    if not active.any():
        active[0] = True
    out = np.empty(n_groups, dtype=np.int64)
    _lowest_relative_variance(groups, global_variances, active, out)
    expected = lowest_relative_variance_twin(groups, global_variances, active)
    ratios = np.var(groups, axis=1, ddof=1) / global_variances
    # Equal up to exact ties within rounding: the chosen ratio must be the minimum.
    chosen = ratios[np.arange(n_groups), out]
    best = ratios[np.arange(n_groups), expected]
    np.testing.assert_allclose(chosen, best, rtol=1e-12, atol=1e-15)
    assert active[out].all()
