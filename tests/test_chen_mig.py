"""Chen et al.'s MIG from Gaussian posteriors over a factor grid: twin and known answers."""

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

from fastdis.metrics import METRICS, check_factor_grid, chen_mig
from fastdis.metrics._chen_mig import mixture_entropies


def grid(sizes):
    return np.indices(sizes).reshape(len(sizes), -1).T


def twin_chen_mig(means, logvars, factors, num_samples, seed):
    """The estimator written out with the full (samples x points) density matrix, drawing in
    the documented order: posterior noise, the marginal subset, then per factor and value."""
    rs = np.random.RandomState(seed)
    samples = means + np.exp(0.5 * logvars) * rs.standard_normal(means.shape)

    def entropies(rows):
        chosen = rows[rs.permutation(rows.size)[:num_samples]]
        # (chosen, rows, codes) log-densities, then log-sum-exp over the mixture's components
        log_density = norm.logpdf(samples[chosen][:, None, :], means[rows][None],
                                  np.exp(0.5 * logvars[rows])[None])
        return np.log(rows.size) - logsumexp(log_density, axis=1).mean(axis=0)

    marginal = entropies(np.arange(len(means)))
    gaps = []
    for k in range(factors.shape[1]):
        values = np.unique(factors[:, k])
        conditional = np.mean([entropies(np.flatnonzero(factors[:, k] == v)) for v in values],
                              axis=0)
        information = np.sort(np.maximum(marginal - conditional, 0))[::-1]
        gaps.append((information[0] - information[1]) / np.log(values.size))
    return np.mean(gaps)


def _posteriors(factors, n_codes=4, seed=0):
    rs = np.random.RandomState(seed)
    mix = rs.normal(size=(factors.shape[1], n_codes))
    means = factors @ mix * 0.5 + rs.normal(scale=0.3, size=(len(factors), n_codes))
    logvars = rs.uniform(-3.0, 0.5, size=means.shape)
    return means, logvars


@pytest.mark.parametrize("num_samples", [10_000, 7])
def test_chen_mig_matches_the_dense_twin(num_samples):
    # 7 samples: every entropy uses a random subset (the sub-grids hold 12 to 20 points)
    factors = grid((3, 4, 5))
    means, logvars = _posteriors(factors)
    got = chen_mig(means, logvars, factors, num_samples=num_samples, random_state=3)
    assert got["chen_mig"] == pytest.approx(
        twin_chen_mig(means, logvars, factors, num_samples, 3), abs=1e-12)


def test_mixture_entropy_of_one_wide_gaussian_is_its_entropy():
    # one component: the estimate is -mean log N(z; 0, s^2) over its samples
    rs = np.random.RandomState(0)
    samples = rs.normal(scale=2.0, size=(4000, 1))
    expected = -norm.logpdf(samples, 0.0, 2.0).mean()
    got = mixture_entropies(samples, np.zeros((1, 1)), np.full((1, 1), np.log(4.0)))
    assert got[0] == pytest.approx(expected, abs=1e-12)
    assert got[0] == pytest.approx(0.5 * np.log(2 * np.pi * np.e * 4.0), abs=0.05)


def test_a_sample_far_from_every_component_keeps_its_digits():
    # every density underflows to 0 in float64: the log-sum-exp must be taken around its max
    rs = np.random.RandomState(2)
    means, logvars = rs.normal(size=(300, 2)), rs.uniform(-2.0, 0.0, size=(300, 2))
    samples = np.array([[1e4, 0.3], [-50.0, 2.0]])
    expected = np.log(300) - logsumexp(
        norm.logpdf(samples[:, None, :], means[None], np.exp(0.5 * logvars)[None]),
        axis=1).mean(axis=0)
    got = mixture_entropies(samples, means, logvars)
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    assert got[0] > 1e7


def _sharp(means):
    return np.full(means.shape, -16.0)  # posteriors far narrower than the spacing of the values


def test_perfectly_disentangled_posteriors_score_one_in_any_order():
    factors = grid((3, 4, 5))
    means = factors.astype(np.float64)
    assert chen_mig(means, _sharp(means), factors)["chen_mig"] == pytest.approx(1.0, abs=1e-9)
    rs = np.random.RandomState(0)
    codes, rows = rs.permutation(3), rs.permutation(len(factors))
    permuted = means[rows][:, codes]
    assert chen_mig(permuted, _sharp(permuted), factors[rows])["chen_mig"] == pytest.approx(
        1.0, abs=1e-9)


def test_uninformative_posteriors_score_zero():
    factors = grid((3, 4, 5))
    prior = np.zeros((len(factors), 4))  # every posterior is the prior N(0, 1)
    assert chen_mig(prior, prior, factors)["chen_mig"] == pytest.approx(0.0, abs=1e-12)


def test_a_duplicated_code_closes_its_factors_gap():
    factors = grid((3, 4, 5))
    means = factors[:, [0, 0, 1, 2]].astype(np.float64)
    assert chen_mig(means, _sharp(means), factors)["chen_mig"] == pytest.approx(2 / 3, abs=1e-9)


def test_a_complete_sub_grid_in_any_row_order_is_accepted():
    full = grid((4, 3, 2))
    sub = full[np.isin(full[:, 0], [0, 2, 3]) & (full[:, 2] == 1)]  # a factor held constant
    sub = sub[:, :2][np.random.RandomState(1).permutation(len(sub))]
    labels, sizes = check_factor_grid(sub)
    assert sizes.tolist() == [3, 3] and labels.max(axis=0).tolist() == [2, 2]
    means = sub.astype(np.float64)
    assert chen_mig(means, _sharp(means), sub)["chen_mig"] == pytest.approx(1.0, abs=1e-9)


def test_rows_that_are_not_a_complete_grid_are_refused():
    factors = grid((3, 4))
    means = np.random.RandomState(0).normal(size=(12, 2))
    with pytest.raises(ValueError, match="complete factor grid.*1 missing and 0 repeated"):
        chen_mig(means[1:], means[1:], factors[1:])
    doubled = np.vstack([factors, factors[:1]])
    with pytest.raises(ValueError, match="0 missing and 1 repeated"):
        chen_mig(np.vstack([means, means[:1]]), np.vstack([means, means[:1]]), doubled)


def test_bad_posteriors_are_refused_by_name():
    factors = grid((3, 4))
    means = np.random.RandomState(0).normal(size=(12, 2))
    with pytest.raises(ValueError, match=r"logvars must have the shape of means \(12, 2\)"):
        chen_mig(means, means[:, :1], factors)
    bad = means.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="logvars contains 1 non-finite"):
        chen_mig(means, bad, factors)
    with pytest.raises(ValueError, match="logvars holds 800 in magnitude"):
        chen_mig(means, np.full_like(means, -800.0), factors)
    with pytest.raises(ValueError, match="means has 1 column"):
        chen_mig(means[:, :1], means[:, :1], factors)
    with pytest.raises(ValueError, match="same number of samples"):
        chen_mig(means, means, factors[:6])
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        chen_mig(means, means, factors, num_samples=0)
    with pytest.raises(ValueError, match="random_state must be"):
        chen_mig(means, means, factors, random_state="x")


def test_registry_entry_and_seeded_draws():
    spec = METRICS["chen_mig"]
    assert spec.inputs == "posterior_grid" and not spec.study and spec.reference == ""
    factors = grid((3, 4, 5))
    means, logvars = _posteriors(factors)
    result = spec(means, logvars, factors)
    assert spec.headline_keys(result) == ["chen_mig"]
    assert spec(means, logvars, factors) == result  # seeded by default
    assert chen_mig(means, logvars, factors, random_state=np.random.RandomState(0)) == result
    assert chen_mig(means, logvars, factors, random_state=1) != result
