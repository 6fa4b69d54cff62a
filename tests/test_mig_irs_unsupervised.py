"""MIG, IRS and the unsupervised scores: array-level API and compat layer against the reference."""

import gin
import numpy as np
import pytest
from conftest import dlib_module, make_codes, make_factors

from fastdis import metrics
from fastdis.compat.disentanglement_lib import irs as compat_irs
from fastdis.compat.disentanglement_lib import mig as compat_mig
from fastdis.compat.disentanglement_lib import unsupervised_metrics as compat_unsupervised
from fastdis.demo import SyntheticFactors


@pytest.fixture
def histogram_bindings():
    utils = dlib_module("utils")
    gin.clear_config()
    gin.bind_parameter("discretizer.discretizer_fn", utils._histogram_discretize)
    gin.bind_parameter("discretizer.num_bins", 20)
    yield utils
    gin.clear_config()


SIZES = [100, 3000, 100_000]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_mig_matches_reference(kind, dtype, n, histogram_bindings):
    factors = make_factors(n)
    codes = make_codes(factors, kind, dtype=dtype)
    expected = dlib_module("mig")._compute_mig(codes.T, factors.T)
    got = metrics.mig(codes, factors)
    assert got.keys() == expected.keys()
    assert got["discrete_mig"] == pytest.approx(expected["discrete_mig"], abs=1e-12)
    assert compat_mig._compute_mig(codes.T, factors.T)["discrete_mig"] == pytest.approx(
        expected["discrete_mig"], abs=1e-12
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [100, 3000])
def test_irs_matches_reference(kind, dtype, n, histogram_bindings):
    factors = make_factors(n)
    codes = make_codes(factors, kind, dtype=dtype)
    reference = dlib_module("irs")
    ys = histogram_bindings._histogram_discretize(factors.T, 20)
    active = reference._drop_constant_dims(codes.T)
    expected = reference.scalable_disentanglement_score(ys.T, active.T, 0.99)
    got = compat_irs.scalable_disentanglement_score(ys.T, active.T, 0.99)
    # float64 codes: identical arithmetic; float32: the reference works in float32, fastdis
    # accumulates in float64, so agreement is to float32 precision.
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got["IRS_matrix"], expected["IRS_matrix"], atol=tolerance)
    assert got["avg_score"] == pytest.approx(expected["avg_score"], abs=tolerance, nan_ok=True)
    if kind != "collapsed":  # the reference keeps near-constant 0.37 codes; fastdis drops them
        assert metrics.irs(codes, factors)["IRS"] == pytest.approx(
            expected["avg_score"], abs=tolerance
        )


def test_irs_fixes_reference_bugs():
    factors = make_factors(500)
    codes = make_codes(factors, "collapsed")
    result = metrics.irs(codes, factors)
    assert result["num_active_dims"] == 5  # a count, not the sum of code values
    assert np.isfinite(result["IRS"])
    assert metrics.irs(np.zeros((50, 3)), factors[:50]) == {"IRS": 0.0, "num_active_dims": 0}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_unsupervised_matches_reference(kind, dtype, n, histogram_bindings):
    factors = make_factors(n)
    codes = make_codes(factors, kind, dtype=dtype)
    reference = dlib_module("unsupervised_metrics")
    cov = np.cov(codes.T)
    got = metrics.unsupervised_metrics(codes)
    binned = histogram_bindings._histogram_discretize(codes.T, 20)
    mi = dlib_module("utils").discrete_mutual_info(binned, binned)
    np.fill_diagonal(mi, 0)
    assert got["mutual_info_score"] == pytest.approx(mi.sum() / 90, abs=1e-13)
    if kind == "collapsed":  # reference: nan / complex; fastdis leaves constant codes out
        active = np.ptp(codes, axis=0) > 0
        cov = np.cov(codes[:, active].T)
    expected_tc = reference.gaussian_total_correlation(cov)
    expected_w = np.real(reference.gaussian_wasserstein_correlation(cov))
    assert got["gaussian_total_correlation"] == pytest.approx(expected_tc, rel=1e-9, abs=1e-10)
    assert got["gaussian_wasserstein_correlation"] == pytest.approx(expected_w, rel=1e-7,
                                                                    abs=1e-9)
    assert got["gaussian_wasserstein_correlation_norm"] == pytest.approx(
        expected_w / np.trace(cov), rel=1e-7, abs=1e-9
    )


@pytest.mark.parametrize(
    "module, function, args",
    [
        ("mig", "compute_mig", (None, 1000)),
        ("irs", "compute_irs", (None, 0.99, 1000, 16)),
        ("unsupervised_metrics", "unsupervised_metrics", (None, 1000)),
    ],
)
def test_compat_end_to_end_matches_reference(module, function, args, histogram_bindings):

    mix = np.random.RandomState(3).normal(size=(4, 6))

    def representation(x):
        return np.tanh(x @ mix / 5)

    # The gin bindings of the fixture reach the compat module directly (not patched).
    compat_module = {"mig": compat_mig, "irs": compat_irs,
                     "unsupervised_metrics": compat_unsupervised}[module]
    got = getattr(compat_module, function)(SyntheticFactors((3, 5, 7, 11)), representation,
                                           np.random.RandomState(0), *args)
    reference = getattr(dlib_module(module), function)
    expected = reference(SyntheticFactors((3, 5, 7, 11)), representation,
                         np.random.RandomState(0), *args)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key


def test_compat_keeps_reference_quirks(histogram_bindings):
    factors = make_factors(300)
    codes = make_codes(factors, "noise")
    constant_factor = factors.copy()
    constant_factor[:, 0] = 2
    with np.errstate(all="ignore"):
        expected = dlib_module("mig")._compute_mig(codes.T, constant_factor.T)["discrete_mig"]
    assert np.isnan(expected)
    assert np.isnan(compat_mig._compute_mig(codes.T, constant_factor.T)["discrete_mig"])
    with pytest.raises(ValueError, match=r"factors\[:, 0\] takes a single value"):
        metrics.mig(codes, constant_factor)


@pytest.mark.parametrize("metric", [metrics.mig, metrics.irs, metrics.unsupervised_metrics])
def test_bad_input_names_the_problem(metric):
    factors = make_factors(200)
    codes = make_codes(factors, "noise")
    nan_codes = codes.copy()
    nan_codes[3, 2] = np.nan
    with pytest.raises(ValueError, match="codes contains 1 non-finite value"):
        metric(nan_codes, factors)
    with pytest.raises(ValueError, match="2-D"):
        metric(codes[:, 0], factors)
    with pytest.raises(ValueError, match="0 sample"):
        metric(codes[:0], factors[:0])
    with pytest.raises(ValueError, match="fewer than num_bins=20"):
        metric(codes[:12], factors[:12])
    if metric is not metrics.unsupervised_metrics:
        with pytest.raises(ValueError, match="same number of samples"):
            metric(codes[:-1], factors)
        with pytest.raises(ValueError, match="integer"):
            metric(codes, factors + 0.5)
        with pytest.raises(ValueError, match=">= 0"):
            metric(codes, factors - 1)
