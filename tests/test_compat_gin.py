"""The compat modules honour gin's bindings of the reference's configurables when called
directly, without patch(): what a program's gin config binds is what runs."""

import gin
import numpy as np
import pytest
from conftest import dlib_module

from fastdis.compat.disentanglement_lib import (
    downstream_task,
    factor_vae,
    mig,
    reduced_downstream_task,
    utils,
)
from fastdis.demo import SyntheticFactors

DATA = SyntheticFactors((3, 4, 5))
MIX = np.random.RandomState(1).normal(size=(3, 4))


def representation(x):
    return np.tanh(x @ MIX / 3)


@pytest.fixture(autouse=True)
def registered():
    """The reference's configurables registered, no bindings before or after a test."""
    for module in ("utils", "mig", "factor_vae", "downstream_task", "reduced_downstream_task"):
        dlib_module(module)
    gin.clear_config()
    yield
    gin.clear_config()


def configured(function, **settings):
    previous = utils.configure(**settings)
    try:
        return function()
    finally:
        utils.restore_configuration(previous)


def downstream():
    return downstream_task.compute_downstream_task(DATA, representation,
                                                   np.random.RandomState(0), None, [50], 30)


def test_a_bound_predictor_runs_instead_of_the_default_boosted_trees():
    trees = downstream()  # no binding: the study default
    gin.parse_config("predictor.predictor_fn = @logistic_regression_cv")
    bound = downstream()
    gin.clear_config()
    logistic = configured(downstream, predictor_fn=utils.logistic_regression_cv)
    assert bound == logistic
    assert bound != trees


def test_the_reference_function_bound_by_value_runs_fastdis_equivalent():
    reference_utils = dlib_module("utils")
    gin.bind_parameter("predictor.predictor_fn", reference_utils.logistic_regression_cv)
    assert utils.make_predictor_fn() is utils.logistic_regression_cv


def discretized():
    return utils.make_discretizer(np.random.RandomState(0).normal(size=(2, 200)))


def test_discretizer_bindings_reach_make_discretizer_and_the_metrics():
    default = discretized()
    gin.parse_config("discretizer.num_bins = 5\n"
                     "discretizer.discretizer_fn = @histogram_discretizer")
    bound = discretized()
    assert bound.max() == 5 and default.max() == 20
    np.testing.assert_array_equal(bound, configured(discretized, num_bins=5))
    got = mig.compute_mig(DATA, representation, np.random.RandomState(0), None, 300)
    expected = dlib_module("mig").compute_mig(DATA, representation, np.random.RandomState(0),
                                              None, 300)
    assert got["discrete_mig"] == pytest.approx(expected["discrete_mig"], abs=1e-12)


def test_a_bound_metric_size_fills_the_argument_the_caller_left_out():
    gin.parse_config("mig.num_train = 300")
    got = mig.compute_mig(DATA, representation, np.random.RandomState(0))
    gin.clear_config()
    assert got == mig.compute_mig(DATA, representation, np.random.RandomState(0), None, 300)


def test_prune_dims_threshold_binding():
    variances = np.array([0.0, 1e-4, 1.0])
    assert factor_vae._prune_dims(variances).tolist() == [True, True, True]  # 0.0
    gin.parse_config("prune_dims.threshold = 0.05")
    assert factor_vae._prune_dims(variances).tolist() == [False, False, True]
    reference = dlib_module("factor_vae")._prune_dims(variances)
    assert factor_vae._prune_dims(variances).tolist() == reference.tolist()


def test_reduced_representation_binding_of_the_references_factorwise_dci():
    gin.parse_config("reduced_representation.correlation_measure = @factorwise_dci")
    assert reduced_downstream_task._correlation_measure() is (
        reduced_downstream_task.compute_factorwise_dci)


def test_a_users_own_configurable_is_called_as_bound():
    calls = []

    @gin.configurable("my_discretizer_for_test")
    def my_discretizer(target, num_bins):
        calls.append(num_bins)
        return np.zeros_like(target, dtype=np.int64)

    gin.parse_config("discretizer.discretizer_fn = @my_discretizer_for_test\n"
                     "discretizer.num_bins = 7")
    discretized()
    assert calls == [7]


def test_a_binding_in_the_active_gin_scope_wins():
    gin.parse_config("discretizer.num_bins = 5\nnarrow/discretizer.num_bins = 3")
    assert discretized().max() == 5
    with gin.config_scope("narrow"):
        assert discretized().max() == 3
