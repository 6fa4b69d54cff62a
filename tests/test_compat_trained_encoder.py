"""The drop-in against disentanglement_lib with a trained fastdis encoder, as its users run it.

A small dSprites-format file (fastdis' look-alike renderer, CI-sized grid) is read by the
reference's own ``DSprites`` class; a fastdis model is trained on it for a few steps, three of
its ten latents are collapsed (mean weights zeroed, as a latent that fell to the prior), and
every compat metric runs on both sides with the checkpoint's ``mean`` and ``sampled``
representations (float32 codes), the same ``RandomState`` and the same gin bindings. Every
returned key must match (where the reference refuses the codes, the drop-in must refuse them
too), and both sides must leave both random states in the same place. Cases whose reference
fits scikit-learn predictors per factor are marked slow.
"""

import gin
import numpy as np
import pytest
import torch
from conftest import dlib_module
from test_data_interface import dlib_data  # noqa: F401 (a fixture)
from test_unified import ref  # noqa: F401 (a fixture)

from fastdis.data import make_dsprites
from fastdis.train import TrainConfig, load_checkpoint, train

COLLAPSED = (7, 8, 9)  # latents whose mean ignores the image

#: module, function, arguments after (data, representation, random_state, artifact_dir), and
#: the gin bindings beyond the discretizer's. Sizes are tiny: the conv encoder dominates.
CASES = {
    "beta_vae": ("beta_vae", "compute_beta_vae_sklearn", dict(batch_size=8, num_train=20,
                                                              num_eval=10), {}),
    "factor_vae": ("factor_vae", "compute_factor_vae",
                   dict(batch_size=8, num_train=20, num_eval=10, num_variance_estimate=100),
                   # the reference code's default threshold: an 8-step model's codes can
                   # vary less than the study's 0.05, which prunes them all (no groups drawn)
                   {"prune_dims.threshold": 0.0}),
    "mig": ("mig", "compute_mig", dict(num_train=200, batch_size=16), {}),
    "modularity_explicitness": ("modularity_explicitness", "compute_modularity_explicitness",
                                dict(num_train=200, num_test=100, batch_size=16), {}),
    "dci": ("dci", "compute_dci", dict(num_train=200, num_test=100, batch_size=16), {}),
    "sap_score": ("sap_score", "compute_sap",
                  dict(num_train=200, num_test=100, batch_size=16, continuous_factors=False), {}),
    "unsupervised": ("unsupervised_metrics", "unsupervised_metrics",
                     dict(num_train=200, batch_size=16), {}),
    "irs": ("irs", "compute_irs", dict(diff_quantile=0.99, num_train=200, batch_size=16), {}),
    "downstream_task": ("downstream_task", "compute_downstream_task",
                        dict(num_train=[20, 100], num_test=50, batch_size=16),
                        {"predictor.predictor_fn": "logistic_regression_cv"}),
    "fairness": ("fairness", "compute_fairness",
                 dict(num_train=100, num_test_points_per_class=3, batch_size=16),
                 {"predictor.predictor_fn": "gradient_boosting_classifier"}),
    "reduced_downstream_task": ("reduced_downstream_task", "compute_reduced_downstream_task",
                                dict(num_factors_to_remove=1, num_train=[60], num_test=40),
                                {"predictor.predictor_fn": "gradient_boosting_classifier",
                                 "reduced_representation.correlation_measure":
                                     "compute_factorwise_dci"}),
    "strong_downstream_task": ("strong_downstream_task", "compute_strong_downstream_task",
                               dict(num_train=[60], num_test=40, n_experiment=2),
                               {"predictor.predictor_fn": "gradient_boosting_classifier"}),
    "unified_scores": ("unified_scores", "compute_unified_scores",
                       dict(num_train=200, num_test=100, batch_size=16,
                            matrix_fns="mutual_information_matrix"), {}),
}

#: Tolerances: fastdis sums in other orders than numpy, so values agree to rounding.
ABSOLUTE, RELATIVE = 1e-12, 1e-9
#: IRS's num_active_dims sums the codes' maximal deviations (the reference's bug: it is meant
#: to count codes): a large float32-fed sum whose last bits depend on the summation order.
RELATIVE_KEYS = {"num_active_dims": 1e-6}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The CI-sized dSprites file, and a fastdis checkpoint trained on it for a few steps."""
    folder = tmp_path_factory.mktemp("dsprites")
    path = make_dsprites(folder, small=True)
    config = TrainConfig(method="beta_vae", batch_size=16, steps=8, log_every=8,
                         checkpoint_every=8, dataset="dsprites_full", data_dir=str(folder))
    checkpoint = load_checkpoint(train(config, folder / "run", progress=False))
    with torch.no_grad():
        encoder = checkpoint.model.encoder
        encoder.means.weight[list(COLLAPSED)] = 0.0
        encoder.means.bias[list(COLLAPSED)] = torch.tensor([0.0, 0.0, 0.37])
        encoder.log_var.weight[list(COLLAPSED)] = 0.0
        encoder.log_var.bias[list(COLLAPSED)] = 0.0  # the prior's unit variance
    return path, checkpoint


def _dlib_dsprites(load, monkeypatch, path):
    """disentanglement_lib's DSprites (shape, scale, orientation, x, y) reading ``path``."""
    module = load("dsprites")
    monkeypatch.setattr(module, "DSPRITES_PATH", str(path))
    data = module.DSprites([1, 2, 3, 4, 5])
    # dlib reads the grid from the file but reports the full file's value counts; fairness
    # and strong generalisation intervene on every counted value
    data.full_factor_sizes = [int(s) for s in data.factor_sizes]
    # the reference's unified scores read factor_names, which dlib's DSprites does not have
    data.factor_names = ["shape", "scale", "orientation", "position_x", "position_y"]
    return data


def _bind(bindings, reference):
    reference_utils = dlib_module("utils")
    gin.clear_config()
    gin.bind_parameter("discretizer.discretizer_fn", reference_utils._histogram_discretize)
    gin.bind_parameter("discretizer.num_bins", 20)
    for name, value in bindings.items():
        if isinstance(value, str):
            value = getattr(reference_utils, value, None) or getattr(reference, value)
        gin.bind_parameter(name, value)


def _run_both(case, data, make_representation, reference):
    """Both sides' results (an exception where one raised) and random states after."""
    module_name, function_name, kwargs, bindings = CASES[case]
    from importlib import import_module

    compat = import_module(f"fastdis.compat.disentanglement_lib.{module_name}")
    if "matrix_fns" in kwargs:
        kwargs = dict(kwargs, matrix_fns=[getattr(reference, kwargs["matrix_fns"])])
    _bind(bindings, reference)
    results, states = [], []
    try:
        for function in (getattr(reference, function_name), getattr(compat, function_name)):
            np.random.seed(3)  # the boosted trees and strong generalisation draw from it
            random_state = np.random.RandomState(0)
            try:
                results.append(function(data, make_representation(), random_state, None,
                                        **kwargs))
            except ValueError as error:  # the reference's own NaN error, say
                results.append(error)
            states.append((random_state.randint(1 << 30), np.random.randint(1 << 30)))
    finally:
        gin.clear_config()
    return results, states


def _assert_same(expected, got):
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(np.asarray(got[key], dtype=np.float64),
                                   np.asarray(value, dtype=np.float64),
                                   rtol=RELATIVE_KEYS.get(key, RELATIVE), atol=ABSOLUTE,
                                   err_msg=key)


#: Cases whose reference fits scikit-learn predictors (boosted trees, LogisticRegressionCV) for
#: every factor: tens of seconds each on two busy cores, so outside the default suite.
SLOW_CASES = ("dci", "downstream_task", "fairness", "reduced_downstream_task",
              "strong_downstream_task")

def _params():
    for case in sorted(CASES):
        for kind in ("mean", "sampled"):
            marks = [pytest.mark.slow] if case in SLOW_CASES else []
            yield pytest.param(case, kind, marks=marks, id=f"{case}-{kind}")


@pytest.mark.parametrize("case, kind", list(_params()))
def test_every_compat_metric_matches_the_reference_on_a_trained_checkpoint(
        case, kind, trained, dlib_data, monkeypatch, request):  # noqa: F811 (the fixture)
    path, checkpoint = trained
    data = _dlib_dsprites(dlib_data, monkeypatch, path)
    module_name = CASES[case][0]
    reference = (request.getfixturevalue("ref").unified if module_name == "unified_scores"
                 else dlib_module(module_name))  # it imports simplejson and seaborn
    (expected, got), (expected_state, got_state) = _run_both(
        case, data, lambda: checkpoint.representation_function(kind, seed=5), reference)
    if isinstance(expected, ValueError):
        # Explicitness z-scores the codes: a collapsed mean code (zero variance) makes NaNs that
        # the reference's LogisticRegression refuses; the drop-in refuses the codes too.
        assert isinstance(got, ValueError), got
    else:
        _assert_same(expected, got)
    assert got_state == expected_state
