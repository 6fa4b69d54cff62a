"""Every array-level metric rejects bad input with a ValueError that names the problem."""

import numpy as np
import pytest
from conftest import make_codes, make_factors

from fastdis.metrics import METRICS

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
