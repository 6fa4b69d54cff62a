"""Downstream, reduced and strong downstream tasks vs disentanglement_lib, and the predictors."""

import warnings

import gin
import numpy as np
import pytest
from conftest import dlib_module, make_codes, make_factors
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import KFold

from fastdis._parallel import single_threaded_blas
from fastdis.compat.disentanglement_lib import downstream_task as compat_downstream
from fastdis.compat.disentanglement_lib import reduced_downstream_task as compat_reduced
from fastdis.compat.disentanglement_lib import strong_downstream_task as compat_strong
from fastdis.compat.disentanglement_lib import utils as compat_utils
from fastdis.metrics import _downstream as downstream
from fastdis.metrics import _predictors

SIZES = (3, 6, 4)


class ToyData:
    """A tiny ground-truth dataset: observations are noisy factors (noise drawn from the RNG)."""

    def __init__(self, sizes=SIZES, dim=6):
        self.factors_num_values = list(sizes)
        self.num_factors = len(sizes)
        self.factor_names = [f"f{k}" for k in range(len(sizes))]
        self._mix = np.random.RandomState(123).normal(size=(len(sizes), dim))

    def sample_factors(self, num, random_state):
        return np.stack([random_state.randint(c, size=num) for c in self.factors_num_values], 1)

    def sample_observations_from_factors(self, factors, random_state):
        scaled = factors / np.maximum(np.array(self.factors_num_values) - 1, 1)
        noise = random_state.normal(size=(len(factors), self._mix.shape[1]))
        return scaled @ self._mix + 0.05 * noise

    def sample(self, num, random_state):
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)

    def sample_observations(self, num, random_state):
        return self.sample(num, random_state)[1]


def identity(x):
    return np.asarray(x, dtype=np.float64)


def deterministic_predictor():
    """A foreign factory (used as is by both sides): results must agree exactly."""
    return LogisticRegression(max_iter=200)


@pytest.fixture
def configured(request):
    """Bind the predictor for dlib (gin) and for the compat layer; undo afterwards."""
    factory = getattr(request, "param", deterministic_predictor)
    dlib_module("utils")  # registers the gin configurables
    gin.clear_config()
    gin.bind_parameter("predictor.predictor_fn", factory)
    compat_utils.configure(predictor_fn=factory)
    yield factory
    gin.clear_config()
    compat_utils._config["predictor_fn"] = None


def _sklearn_lr_cv():
    return LogisticRegressionCV(Cs=10, cv=KFold(n_splits=5))


# ---------------------------------------------------------------------------------------------
# predictors
# ---------------------------------------------------------------------------------------------


def test_predictor_name_recognises_reference_factories():
    utils = dlib_module("utils")
    assert _predictors.predictor_name(utils.gradient_boosting_classifier) == "gradient_boosting"
    assert _predictors.predictor_name(utils.logistic_regression_cv) == "logistic_regression_cv"
    assert _predictors.predictor_name(utils.logistic_regression_cv.__wrapped__) == (
        "logistic_regression_cv"
    )
    assert _predictors.predictor_name(compat_utils.gradient_boosting_classifier) == (
        "gradient_boosting"
    )
    gin.clear_config()
    try:
        gin.parse_config("predictor.predictor_fn = @logistic_regression_cv")
        resolved = utils.make_predictor_fn()
        assert _predictors.predictor_name(resolved) == "logistic_regression_cv"
    finally:
        gin.clear_config()
    assert _predictors.predictor_name(deterministic_predictor) is None
    assert _predictors.resolve_predictor(deterministic_predictor) is deterministic_predictor


def test_make_predictor_builds_fresh_estimators():
    a = _predictors.make_predictor("logistic_regression_cv")
    b = _predictors.resolve_predictor("logistic_regression_cv")()
    assert a is not b and hasattr(a, "fit") and hasattr(b, "predict")
    with pytest.raises(ValueError, match="predictor must be one of"):
        _predictors.make_predictor("random_forest")
    with pytest.raises(ValueError, match="predictor must be one of"):
        _predictors.resolve_predictor(3)
    with pytest.raises(ValueError, match="only apply to the named predictors"):
        _predictors.resolve_predictor(deterministic_predictor, backend="numba")


# ---------------------------------------------------------------------------------------------
# downstream_task
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_downstream_lr_cv_matches_dlib(kind, dtype):
    ref_module = dlib_module("downstream_task")
    factors = make_factors(300, sizes=SIZES)
    test_factors = make_factors(200, sizes=SIZES, seed=5)
    codes = make_codes(factors, kind, n_codes=6, dtype=dtype)
    test_codes = make_codes(test_factors, kind, n_codes=6, dtype=dtype, seed=7)
    # One BLAS thread for the reference: a threaded GEMM may round differently, which moves
    # lbfgs fits that max_iter=100 stops early. With it, the paths are scikit-learn's exactly.
    with warnings.catch_warnings(), single_threaded_blas():
        warnings.simplefilter("ignore")
        ref_train, ref_test = ref_module._compute_loss(
            codes, factors.T, test_codes, test_factors.T, _sklearn_lr_cv
        )
    out = downstream.downstream_task(codes, factors, test_codes, test_factors)
    train = [out[f"300:train_accuracy_factor_{k}"] for k in range(3)]
    test = [out[f"300:test_accuracy_factor_{k}"] for k in range(3)]
    np.testing.assert_array_equal(train, ref_train)
    np.testing.assert_array_equal(test, ref_test)
    assert out["300:mean_test_accuracy"] == pytest.approx(np.mean(test))
    assert out["300:min_train_accuracy"] == min(train)
    assert all(type(v) is float for v in out.values())


def test_downstream_compat_keys_and_draws_match_dlib(configured):
    ref_module = dlib_module("downstream_task")
    data = ToyData()
    ref = ref_module.compute_downstream_task(
        data, identity, np.random.RandomState(0), None, [20, 50], 60, 16
    )
    out = compat_downstream.compute_downstream_task(
        data, identity, np.random.RandomState(0), None, [20, 50], 60, 16
    )
    assert list(out) == list(ref)
    for key in ref:
        assert out[key] == pytest.approx(ref[key], abs=1e-12), key


def test_downstream_bad_inputs():
    factors = make_factors(50, sizes=SIZES)
    codes = make_codes(factors, "noise", n_codes=4)
    with pytest.raises(ValueError, match="test_codes must have as many columns as codes"):
        downstream.downstream_task(codes, factors, codes[:, :3], factors)
    with pytest.raises(ValueError, match="single value"):
        downstream.downstream_task(codes, np.zeros_like(factors), codes, factors)
    with pytest.raises(ValueError, match="same number of samples"):
        downstream.downstream_task(codes[:10], factors, codes, factors)
    with pytest.raises(ValueError, match="n_jobs"):
        downstream.downstream_task(codes, factors, codes, factors, n_jobs=0)


def test_downstream_threads_give_same_result():
    factors = make_factors(120, sizes=SIZES)
    codes = make_codes(factors, "entangled", n_codes=5)
    one = downstream.downstream_task(codes, factors, codes, factors,
                                     predictor=deterministic_predictor)
    two = downstream.downstream_task(codes, factors, codes, factors,
                                     predictor=deterministic_predictor, n_jobs=2)
    assert one == two


# ---------------------------------------------------------------------------------------------
# reduced_downstream_task
# ---------------------------------------------------------------------------------------------


def correlation_importance(mus_train, ys_train, mus_test, ys_test):
    """Deterministic stand-in for factorwise DCI, reference layout (n_dims, n_points)."""
    del mus_test, ys_test
    d = mus_train.shape[0]
    return np.abs(np.corrcoef(mus_train, ys_train)[:d, d:])


def test_reduced_compat_matches_dlib_and_caches_importance(configured):
    ref_module = dlib_module("reduced_downstream_task")
    data = ToyData()
    gin.bind_parameter("reduced_representation.correlation_measure", correlation_importance)
    ref = ref_module.compute_reduced_downstream_task(
        data, identity, np.random.RandomState(0), None, 2, [60], 50, 16
    )
    out = compat_reduced.compute_reduced_downstream_task(
        data, identity, np.random.RandomState(0), None, 2, [60], 50, 16
    )
    assert list(out) == list(ref)
    for key in ref:
        assert out[key] == pytest.approx(ref[key], abs=1e-12), key


def test_reduced_first_step_importance_computed_once():
    factors = make_factors(100, sizes=SIZES)
    codes = make_codes(factors, "disentangled", n_codes=5)
    calls = []

    def importance(c, f, tc, tf):
        calls.append(c.shape[1])
        return correlation_importance(c.T, f.T, tc.T, tf.T)

    out = downstream.reduced_downstream_task(
        codes, factors, codes, factors, num_factors_to_remove=1,
        predictor=deterministic_predictor, importance=importance,
    )
    assert calls == [5]  # one matrix shared by the 3 factors of interest
    assert len(out) == 3 * (2 + 2 * 3 + 2) + 4
    with pytest.raises(ValueError, match="num_factors_to_remove must be smaller"):
        downstream.reduced_downstream_task(codes, factors, codes, factors,
                                           num_factors_to_remove=5, importance=importance)


# ---------------------------------------------------------------------------------------------
# strong_downstream_task
# ---------------------------------------------------------------------------------------------


def test_intervene_properties_and_reference_draws():
    ref_module = dlib_module("strong_downstream_task")
    data = ToyData()
    rs = np.random.RandomState(0)
    ys_train = data.sample_factors(300, rs)
    ys_test = data.sample_factors(300, rs)
    for i in range(data.num_factors):
        np.random.seed(i)  # noqa: NPY002 (dlib draws from the global state)
        ref = ref_module.intervene(ys_train.copy(), ys_test.copy(), i, 3, data)
        np.random.seed(i)  # noqa: NPY002 (dlib draws from the global state)
        out = compat_strong.intervene(ys_train.copy(), ys_test.copy(), i, 3, data)
        y_train_int, y_test_int, factor, value = out
        assert factor != i
        assert (y_train_int[:, factor] == value).all()
        assert (y_test_int[:, factor] != value).all()
        assert (factor, value) == ref[2:]
        np.testing.assert_array_equal(y_train_int, ref[0])
        np.testing.assert_array_equal(y_test_int, ref[1])
        # the array-level version with a seedable RandomState and no mutation
        before = ys_train.copy()
        a = downstream.intervene(ys_train, ys_test, i, SIZES, np.random.RandomState(4))
        b = downstream.intervene(ys_train, ys_test, i, SIZES, np.random.RandomState(4))
        np.testing.assert_array_equal(ys_train, before)
        np.testing.assert_array_equal(a[1], b[1])
        assert a[2:] == b[2:]
    with pytest.raises(ValueError, match="at least 2"):
        downstream.intervene(ys_train, ys_test, 0, (3, 1, 1), np.random.RandomState(0))


def test_strong_compat_matches_dlib(configured):
    ref_module = dlib_module("strong_downstream_task")
    data = ToyData()
    np.random.seed(11)  # noqa: NPY002 (dlib draws from the global state)
    ref = ref_module.compute_strong_downstream_task(
        data, identity, np.random.RandomState(0), None, [80], 60, 2
    )
    np.random.seed(11)  # noqa: NPY002 (dlib draws from the global state)
    out = compat_strong.compute_strong_downstream_task(
        data, identity, np.random.RandomState(0), None, [80], 60, 2
    )
    assert list(out) == list(ref)
    for key in ref:
        assert out[key] == pytest.approx(ref[key], abs=1e-12), key


def test_strong_array_level_bad_inputs():
    factors = make_factors(60, sizes=SIZES)
    codes = make_codes(factors, "noise", n_codes=4)
    with pytest.raises(ValueError, match="at least one"):
        downstream.strong_downstream_task(codes, factors, codes, factors, [])
    with pytest.raises(ValueError, match=r"interventions\[0\].target"):
        downstream.strong_downstream_task(
            codes, factors, codes, factors, [(7, codes, factors, codes, factors)]
        )


def test_reduced_default_gbt_importance_removes_the_factor_code():
    factors = make_factors(400, sizes=SIZES)
    test_factors = make_factors(200, sizes=SIZES, seed=9)
    codes = make_codes(factors, "disentangled", n_codes=4)
    test_codes = make_codes(test_factors, "disentangled", n_codes=4, seed=8)
    out = downstream.reduced_downstream_task(codes, factors, test_codes, test_factors,
                                             predictor="gradient_boosting")
    # each factor lives in one code: removing it drops that factor to near chance
    assert out["400:mean_test_accuracy_reduced_factor"] < 0.6
    assert out["400:mean_test_accuracy_other_factors"] > 0.9


def test_strong_compat_matches_dlib_with_gradient_boosting():
    """Interventions and the boosted trees draw from numpy's global random state in turn."""
    import gin

    from fastdis.compat.disentanglement_lib import strong_downstream_task as compat_strong
    from fastdis.demo import SyntheticFactors

    class NoisyFactors(SyntheticFactors):
        def sample_observations_from_factors(self, factors, random_state):
            return factors + 0.3 * random_state.normal(size=factors.shape)

    reference_utils = dlib_module("utils")
    reference = dlib_module("strong_downstream_task")
    data, mix = NoisyFactors((3, 4, 5)), np.random.RandomState(1).normal(size=(3, 4))

    def representation(x):
        return x @ mix

    gin.clear_config()
    gin.bind_parameter("predictor.predictor_fn", reference_utils.gradient_boosting_classifier)
    try:
        results, states = [], []
        for function in (reference.compute_strong_downstream_task,
                         compat_strong.compute_strong_downstream_task):
            np.random.seed(3)
            results.append(function(data, representation, np.random.RandomState(0), None,
                                    [60], 40, 2))
            states.append(np.random.randint(1 << 30))
    finally:
        gin.clear_config()
    assert results[1] == pytest.approx(results[0], abs=1e-12)
    assert states[0] == states[1]  # the global random state is left where the reference leaves it


def test_reduced_compat_leaves_the_global_random_state_as_the_reference():
    """Refitting per factor (as the reference) keeps numpy's global draws in step."""
    import gin

    from fastdis.compat.disentanglement_lib import reduced_downstream_task as compat_reduced
    from fastdis.demo import SyntheticFactors

    class RoundedFactors(SyntheticFactors):  # repeated values: ties the trees break at random
        def sample_observations_from_factors(self, factors, random_state):
            return np.round(factors + 0.3 * random_state.normal(size=factors.shape), 1)

    reference_utils = dlib_module("utils")
    reference = dlib_module("reduced_downstream_task")
    data, mix = RoundedFactors((3, 4, 5)), np.random.RandomState(1).normal(size=(3, 4))

    def representation(x):
        return x @ mix

    gin.clear_config()
    gin.bind_parameter("predictor.predictor_fn", reference_utils.gradient_boosting_classifier)
    gin.bind_parameter("reduced_representation.correlation_measure",
                       reference.compute_factorwise_dci)
    try:
        results, states = [], []
        for function in (reference.compute_reduced_downstream_task,
                         compat_reduced.compute_reduced_downstream_task):
            np.random.seed(3)
            results.append(function(data, representation, np.random.RandomState(0), None, 1,
                                    [60], 40))
            states.append(np.random.randint(1 << 30))
    finally:
        gin.clear_config()
    assert results[1] == pytest.approx(results[0], abs=1e-12)
    assert states[0] == states[1]


@pytest.mark.parametrize("predictor", ["named", "global_rng"])
def test_boosted_trees_fitted_together_equal_one_by_one(predictor, monkeypatch):
    """All factors in one boosting run: same accuracies and global RNG state as factor by factor."""
    from fastdis.metrics import _downstream, _gbt

    factors = make_factors(400, sizes=SIZES)
    test_factors = make_factors(200, sizes=SIZES, seed=5)
    codes = make_codes(factors, "entangled", n_codes=6)
    test_codes = make_codes(test_factors, "entangled", n_codes=6, seed=7)
    if predictor == "named":
        factory = _predictors.resolve_predictor("gradient_boosting")  # random_state=0 each
    else:
        def factory():
            return _gbt.GradientBoostingClassifier(n_estimators=20)

    def run():
        np.random.seed(11)
        out = _downstream.predictive_accuracies(codes, factors, test_codes, test_factors,
                                                factory, factor_indices=[2, 0])
        return out, np.random.get_state()[1].copy()

    together, state_together = run()
    monkeypatch.setattr(_gbt, "boosted_together", lambda *args, **kwargs: None)
    one_by_one, state_one_by_one = run()
    assert together == one_by_one
    np.testing.assert_array_equal(state_together, state_one_by_one)
