"""Drop-in for ``disentanglement_lib.evaluation.metrics.unified_scores``.

Same names, positional signatures, keys and ``random_state`` draws (train set, then test set).
Importing it needs neither TensorFlow nor the plotting stack: the reference imports its
visualisation modules at the top; here they are imported only when ``artifact_dir`` is given
(plots and dendrogram merge points need them; without them a warning is issued and only the
scores are returned). Layouts are the reference's: ``mus`` (n_codes, n_points), ``ys``
(n_factors, n_points).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from ...metrics import _unified
from . import utils

#: Functions patch() routes from the reference module to this one.
DLIB_NAMES = (
    "compute_unified_scores",
    "compute_unified_score_on_fixed_data",
    "unified_scores",
    "importance_gbt_matrix",
    "mutual_information_matrix",
    "accuracy_svm_matrix",
    "aggregation_dci",
    "aggregation_mig",
    "aggregation_sap",
    "sap_compute_diff_top_two",
    "aggregation_modularity",
    "compute_modularity_per_code",
)


@utils.gin_configurable("unified_scores")
def compute_unified_scores(
    ground_truth_data,
    representation_function,
    random_state,
    artifact_dir=None,
    num_train=None,
    num_test=None,
    matrix_fns=None,
    batch_size=16,
):
    """Unified scores of the matrices ``matrix_fns`` on a sampled train and test set."""
    num_train = utils.require(num_train, "num_train", function="compute_unified_scores")
    num_test = utils.require(num_test, "num_test", function="compute_unified_scores")
    matrix_fns = utils.require(matrix_fns, "matrix_fns", function="compute_unified_scores")
    mus_train, ys_train, mus_test, ys_test = utils.generate_train_test(
        ground_truth_data, representation_function, num_train, num_test, random_state,
        batch_size,
    )
    return unified_scores(
        mus_train,
        ys_train,
        mus_test,
        ys_test,
        matrix_fns,
        artifact_dir,
        getattr(ground_truth_data, "factor_names", None),
    )


@utils.gin_configurable("unified_score_validation")
def compute_unified_score_on_fixed_data(
    observations,
    labels,
    representation_function,
    train_percentage=None,
    matrix_fns=None,
    batch_size=100,
):
    """Unified scores on fixed observations (n, ...) and labels (n_factors, n)."""
    train_percentage = utils.require(
        train_percentage, "train_percentage", function="compute_unified_score_on_fixed_data"
    )
    matrix_fns = utils.require(
        matrix_fns, "matrix_fns", function="compute_unified_score_on_fixed_data"
    )
    mus = utils.obtain_representation(observations, representation_function, batch_size)
    if labels.shape[1] != observations.shape[0]:
        raise ValueError("Wrong labels shape.")
    mus_train, mus_test = utils.split_train_test(mus, train_percentage)
    ys_train, ys_test = utils.split_train_test(labels, train_percentage)
    return unified_scores(mus_train, ys_train, mus_test, ys_test, matrix_fns)


def _fast_matrix_fn(matrix_fn):
    """Swap the reference's own matrix functions for this module's (same name, same layout)."""
    name = getattr(matrix_fn, "__name__", None)
    module = getattr(matrix_fn, "__module__", "") or ""
    if module.startswith("disentanglement_lib.") and name in _unified.MATRIX_FNS:
        return globals()[name]
    return matrix_fn


def _visualize(matrix, artifact_dir, matrix_name, factor_names):
    try:
        from disentanglement_lib.visualize import dendrogram, visualize_scores
    except Exception as exc:  # TensorFlow / matplotlib / seaborn missing
        warnings.warn(
            f"unified_scores: artifact_dir was given but the reference's plotting modules cannot "
            f"be imported ({exc}); no plots or dendrogram merge points are written.",
            stacklevel=3,
        )
        return {}
    visualize_scores.heat_square(
        matrix.copy(),
        artifact_dir,
        matrix_name,
        "Latent codes",
        "Factors of Variation",
        factor_names=factor_names,
    )
    visualize_scores.plot_recovery_vs_independent(
        matrix.copy().T, artifact_dir, matrix_name + "_pr"
    )
    return dendrogram.dendrogram_plot(
        matrix.copy().T, os.path.join(artifact_dir, matrix_name + "_dendrogram"), factor_names
    )


def unified_scores(
    mus_train, ys_train, mus_test, ys_test, matrix_fns, artifact_dir=None, factor_names=None
):
    """Precision curve and the four aggregations of every matrix, keys ``"{matrix}.{key}"``."""
    kws = {}
    for matrix_fn in matrix_fns:
        matrix_fn = _fast_matrix_fn(matrix_fn)
        matrix = np.asarray(matrix_fn(mus_train, ys_train, mus_test, ys_test))
        matrix_name = matrix_fn.__name__
        if artifact_dir is not None:
            kws[matrix_name] = dict(_visualize(matrix, artifact_dir, matrix_name, factor_names))
        kws.setdefault(matrix_name, {}).update(
            _unified.aggregate_matrix(matrix, np.asarray(ys_train).T)
        )
    return {f"{name}.{key}": value for name, inner in kws.items() for key, value in inner.items()}


def pr_curves_values(matrix):
    """Area under the precision curve and maximum precision of an (n_codes, n_factors) matrix."""
    return _unified.pr_curves_values(matrix)


@utils.gin_configurable("importance_gbt_matrix")
def importance_gbt_matrix(mus_train, ys_train, mus_test, ys_test):
    """DCI gradient-boosting importance matrix (n_codes, n_factors)."""
    return _unified.importance_gbt_matrix(
        np.asarray(mus_train).T,
        np.asarray(ys_train).T,
        np.asarray(mus_test).T,
        np.asarray(ys_test).T,
    )


@utils.gin_configurable("mutual_information_matrix")
def mutual_information_matrix(mus_train, ys_train, mus_test, ys_test):
    """MI matrix of the configured discretizer's codes and the factors; test set unused."""
    del mus_test, ys_test
    discretized_mus = utils.make_discretizer(mus_train)
    return utils.discrete_mutual_info(discretized_mus, ys_train)


@utils.gin_configurable("accuracy_svm_matrix")
def accuracy_svm_matrix(mus_train, ys_train, mus_test, ys_test):
    """SAP's single-code linear-SVM test accuracy matrix (n_codes, n_factors)."""
    return _unified.accuracy_svm_matrix(
        np.asarray(mus_train).T,
        np.asarray(ys_train).T,
        np.asarray(mus_test).T,
        np.asarray(ys_test).T,
    )


def aggregation_dci(matrix, ys):
    return _unified.aggregation_dci(matrix)


def aggregation_mig(m, ys_train):
    return _unified.aggregation_mig(m, np.asarray(ys_train).T)


def aggregation_sap(matrix, ys):
    return _unified.aggregation_sap(matrix)


def sap_compute_diff_top_two(matrix):
    sorted_matrix = np.sort(matrix, axis=0)
    return sorted_matrix[-1, :] - sorted_matrix[-2, :]


def aggregation_modularity(matrix, ys):
    return _unified.aggregation_modularity(matrix)


def compute_modularity_per_code(mutual_information):
    return _unified.compute_modularity_per_code(mutual_information)


AGGREGATION_FN = [aggregation_dci, aggregation_mig, aggregation_sap, aggregation_modularity]
