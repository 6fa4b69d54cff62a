"""Every array-level metric rejects bad input with a ValueError that names the problem."""

import numpy as np
import pytest
from conftest import make_codes, make_factors

from fastdis.metrics import METRICS, histogram_discretize, mutual_info_matrix
from fastdis.metrics._downstream import strong_downstream_task
from fastdis.metrics._factor_vae import majority_vote_accuracy, vote_table

# Small, fast settings; the study defaults are exercised elsewhere.
FAST_OPTIONS = {
    "dci": {},
    "downstream_task_boosted_trees": {},
    "unified_scores": {"matrix_fns": ("mutual_information_matrix",)},
}
TRAIN_TEST = [name for name, spec in METRICS.items() if spec.inputs in ("train_test", "downstream")]
CODES_FACTORS = [name for name, spec in METRICS.items() if spec.inputs == "codes_factors"]


def _data(n=120, sizes=(3, 4)):
    factors = make_factors(n, sizes=sizes)
    return make_codes(factors, "entangled", n_codes=4), factors


def _call(name, codes, factors, test_codes=None, test_factors=None):
    spec = METRICS[name]
    options = FAST_OPTIONS.get(name, {})
    if spec.inputs in ("train_test", "downstream"):
        return spec(codes, factors, test_codes, test_factors, **options)
    return spec(codes, factors, **options)


def _cases():
    codes, factors = _data()
    nan_codes = codes.copy()
    nan_codes[5, 1] = np.nan
    inf_codes = codes.copy()
    inf_codes[0, 0] = np.inf
    constant_factor = factors.copy()
    constant_factor[:, 1] = 2
    huge_labels = factors.astype(np.uint64)
    huge_labels[7, 0] = 2**63
    return [
        ("nan", nan_codes, factors, "non-finite value"),
        ("inf", inf_codes, factors, "non-finite value"),
        ("1-D codes", codes[:, 0], factors, "2-D array"),
        ("3-D codes", codes[:, :, None], factors, "2-D array"),
        ("mismatched N", codes[:-3], factors, "same number of samples"),
        ("non-integer factors", codes, factors + 0.25, "integer"),
        ("negative factors", codes, factors - 1, ">= 0"),
        ("string codes", codes.astype(str), factors, "real numbers"),
        ("empty", codes[:0], factors[:0], "0 sample"),
        ("no columns", codes[:, :0], factors, "0 columns"),
        ("constant factor", codes, constant_factor, r"takes a single value"),
        ("labels beyond int64", codes, huge_labels, "beyond int64"),
    ]


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("name", TRAIN_TEST + CODES_FACTORS)
def test_bad_input_raises_named_value_error(name, case):
    label, codes, factors, message = case
    good_codes, good_factors = _data()
    if label == "constant factor" and name == "irs":
        # IRS is defined for a constant factor (its groups are the whole data set).
        assert np.isfinite(_call(name, codes, factors)["IRS"])
        return
    with pytest.raises(ValueError, match=message):
        _call(name, codes, factors, good_codes, good_factors)


@pytest.mark.parametrize("name", TRAIN_TEST)
def test_bad_test_set_names_the_test_argument(name):
    codes, factors = _data()
    with pytest.raises(ValueError, match="test_codes"):
        _call(name, codes, factors, codes[:, :3], factors)
    with pytest.raises(ValueError, match="test_factors"):
        _call(name, codes, factors, codes, factors[:, :1])


def _split(n_codes=4, sizes=(3, 4)):
    factors = make_factors(600, sizes=sizes)
    codes = make_codes(factors, "entangled", n_codes=n_codes)
    return codes[:400], factors[:400], codes[400:], factors[400:]


@pytest.mark.parametrize("name", ["dci", "unified_scores", "modularity_explicitness"])
def test_a_single_factor_is_refused_instead_of_nan(name):
    codes, factors, test_codes, test_factors = _split()
    with pytest.raises(ValueError, match="factors has 1 column"):
        _call(name, codes, factors[:, :1], test_codes, test_factors[:, :1])


def test_dci_with_a_single_code_is_refused_instead_of_nan():
    codes, factors, test_codes, test_factors = _split()
    with pytest.raises(ValueError, match="codes has 1 column"):
        METRICS["dci"](codes[:, :1], factors, test_codes[:, :1], test_factors)


def test_explicitness_undefined_on_the_test_set_is_refused():
    codes, factors, test_codes, test_factors = _split()
    unseen = test_factors.copy()
    unseen[:, 1] += 7
    with pytest.raises(ValueError, match=r"test_factors\[:, 1\]: no training class"):
        METRICS["modularity_explicitness"](codes, factors, test_codes, unseen)


def test_factor_vae_checks_indices_and_accepts_integral_floats():
    rs = np.random.RandomState(0)
    groups = rs.normal(size=(10, 4, 3))
    fixed = np.array([0, 1] * 5)
    spec = METRICS["factor_vae_metric"]
    with pytest.raises(ValueError, match="num_factors=2 but the fixed-factor indices go up to 2"):
        spec(rs.normal(size=(100, 3)), groups, fixed, groups, fixed + 1, num_factors=2)
    variance_codes = rs.normal(size=(100, 3))
    as_float = spec(variance_codes, groups, fixed.astype(float), groups, fixed)
    assert as_float == spec(variance_codes, groups, fixed, groups, fixed)
    with pytest.raises(ValueError, match="train_factor must hold integer"):
        spec(variance_codes, groups, fixed + 0.5, groups, fixed)


def test_beta_vae_errors_name_the_real_arguments():
    groups = np.random.RandomState(0).normal(size=(6, 4, 3))
    labels = np.arange(6) % 3
    with pytest.raises(ValueError, match="eval_codes_b must have shape"):
        METRICS["beta_vae_sklearn"](groups, groups, labels, groups, groups[0], labels)


@pytest.mark.parametrize("name", ["dci", "downstream_task_boosted_trees"])
def test_boosted_tree_metrics_are_reproducible_by_default(name):
    """Array-level results do not depend on numpy's global random state (seeded ties)."""
    codes, factors, test_codes, test_factors = _split()
    codes = np.round(codes, 1)  # repeated values: exact ties for the trees to break
    np.random.seed(1)
    first = METRICS[name](codes, factors, test_codes, test_factors)
    np.random.seed(2)
    assert METRICS[name](codes, factors, test_codes, test_factors) == first


def test_building_blocks_validate_their_arrays():
    codes, factors = _data()
    nan_codes = codes.copy()
    nan_codes[3, 2] = np.nan
    with pytest.raises(ValueError, match="values contains 1 non-finite"):
        histogram_discretize(nan_codes)
    with pytest.raises(ValueError, match="values must hold real numbers; got dtype complex"):
        histogram_discretize(codes + 0j)
    # float16 is widened as the metrics widen it (numba has no float16 kernels)
    np.testing.assert_array_equal(
        histogram_discretize(codes.astype(np.float16)),
        histogram_discretize(codes.astype(np.float16).astype(np.float64)),
    )
    with pytest.raises(ValueError, match="left_labels must be a 2-D array"):
        mutual_info_matrix(factors[:, 0], factors)
    with pytest.raises(ValueError, match="same number of samples"):
        mutual_info_matrix(factors[:5], factors[:4])
    with pytest.raises(ValueError, match="right_labels must hold real numbers"):
        mutual_info_matrix(factors, factors.astype(str))
    # any finite label values are classes, as in scikit-learn's mutual_info_score
    np.testing.assert_allclose(
        mutual_info_matrix(factors > 0, factors * 10.5 - 3),
        mutual_info_matrix((factors > 0).astype(int), factors),
    )


@pytest.mark.parametrize("scale", [1e-300, 1e155])
def test_unsupervised_refuses_a_covariance_float64_cannot_hold(scale):
    codes, _ = _data()
    with pytest.raises(ValueError, match="covariance of codes over- or underflows"):
        METRICS["unsupervised"](codes * scale, None)


def test_unified_mutual_information_needs_more_samples_than_bins_as_mig():
    codes, factors = _data(n=12)
    for name in ("mig", "unified_scores"):
        with pytest.raises(ValueError, match="fewer than num_bins=20"):
            _call(name, codes, factors, codes, factors)


@pytest.mark.parametrize("name", ["dci", "downstream_task_boosted_trees"])
def test_boosted_trees_refuse_codes_beyond_float32(name):
    codes, factors, test_codes, test_factors = _split()
    with pytest.raises(ValueError, match="codes holds .* beyond float32's range"):
        METRICS[name](codes * 1e39, factors, test_codes, test_factors)
    with pytest.raises(ValueError, match="test_codes holds .* beyond float32's range"):
        METRICS[name](codes, factors, test_codes * 1e39, test_factors)


def test_factor_vae_sparse_indices_score_as_a_full_vote_table():
    """Vote-table rows only for the indices in use (and 0): the same accuracies as one row per
    index, including codes that never win (argmax gives them index 0) and an unused index 0."""
    rs = np.random.RandomState(4)
    variance_codes = rs.normal(size=(200, 5)) * [1, 1, 1, 1, 30]
    groups, eval_groups = rs.normal(size=(40, 6, 5)), rs.normal(size=(30, 6, 5))
    for indices in ([3, 7], [0, 4, 9]):
        fixed = rs.choice(indices, size=40)
        eval_fixed = rs.choice(indices, size=30)
        scores = METRICS["factor_vae_metric"](variance_codes, groups, fixed, eval_groups,
                                              eval_fixed)
        variances = np.var(variance_codes, axis=0, ddof=1)
        active = np.sqrt(variances) >= 0.05
        train_votes = vote_table(groups, fixed, variances, active, 10)
        eval_votes = vote_table(eval_groups, eval_fixed, variances, active, 10)
        classifier = np.argmax(train_votes, axis=0)
        assert (train_votes.sum(axis=0) == 0).any()  # a code that never wins
        assert scores["train_accuracy"] == majority_vote_accuracy(train_votes, classifier)
        assert scores["eval_accuracy"] == majority_vote_accuracy(eval_votes, classifier)
    huge = METRICS["factor_vae_metric"](variance_codes, groups, fixed * 10**8, eval_groups,
                                        eval_fixed * 10**8)
    assert huge == scores


def test_fairness_refuses_labels_that_would_need_huge_count_tables():
    codes, factors = _data()
    sparse = factors.copy()
    sparse[:, 1] *= 10**9
    intervention_codes = [np.zeros((4, 10, 4))] * 2
    with pytest.raises(ValueError, match=r"factors\[:, 1\] has labels up to 3000000000"):
        METRICS["fairness"](codes, sparse, intervention_codes)


def test_logistic_regression_cv_says_how_many_samples_its_folds_need():
    codes, factors, test_codes, test_factors = _split()
    with pytest.raises(ValueError, match="5-fold cross-validation needs at least 5 training"):
        METRICS["downstream_task_logistic_regression"](codes[:4], factors[:4], test_codes,
                                                       test_factors)


def test_strong_downstream_checks_each_intervention():
    codes, factors, test_codes, test_factors = _split()
    constant = factors.copy()
    constant[:, 1] = 0

    def run(target, train_factors):
        return strong_downstream_task(
            codes, factors, test_codes, test_factors,
            [(target, codes, train_factors, test_codes, test_factors[:, : train_factors.shape[1]])],
        )

    with pytest.raises(ValueError, match=r"interventions\[0\].factors has 1 column"):
        run(1, factors[:, :1])
    with pytest.raises(ValueError, match=r"interventions\[0\].factors\[:, 1\] takes a single"):
        run(1, constant)
    with pytest.raises(ValueError, match=r"interventions\[0\].target must be an integer"):
        run(1.5, factors)


def test_precomputed_inputs_are_checked():
    codes, factors, test_codes, test_factors = _split()
    with pytest.raises(ValueError, match=r"mutual_info must be a non-empty 2-D array \(n_codes"):
        METRICS["mig"](codes, factors, mutual_info=np.ones(12))
    with pytest.raises(ValueError, match="mutual_info must hold finite values >= 0"):
        METRICS["mig"](codes, factors, mutual_info=-np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"importance's result must be a non-empty 2-D array"):
        METRICS["reduced_downstream_task"](codes, factors, test_codes, test_factors,
                                           importance=lambda *arrays: np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"importance's result must be a 2-D array .* got tuple"):
        METRICS["reduced_downstream_task"](
            codes, factors, test_codes, test_factors,
            importance=lambda *arrays: (np.ones((4, 2)), 0.5, 0.5))
    with pytest.raises(ValueError, match=r"random_state must be in \[0, 2\*\*32\)"):
        METRICS["dci"](codes, factors, test_codes, test_factors, random_state=-1)


def test_one_random_state_rule_none_is_numpys_global_generator():
    from fastdis._validation import check_random_state

    assert check_random_state(None) is np.random.mtrand._rand
    rs = np.random.RandomState(3)
    assert check_random_state(rs) is rs
    assert check_random_state(7).randint(1000) == np.random.RandomState(7).randint(1000)
    for bad in (True, -1, 2**32, np.random.default_rng(0), "0"):
        with pytest.raises(ValueError, match="random_state"):
            check_random_state(bad)


def test_intervene_with_none_follows_numpys_global_seed():
    from fastdis.metrics._downstream import intervene

    factors = np.zeros((4, 3), dtype=np.int64)
    draws = []
    for _ in range(2):
        np.random.seed(11)
        draws.append(intervene(factors, factors, 0, (2, 5, 5), None)[2:])
    assert draws[0] == draws[1]
