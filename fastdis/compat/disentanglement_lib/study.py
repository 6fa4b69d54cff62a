"""Run the reference's evaluation protocol for registered metrics, at the study's settings.

``evaluate_metric("dci", data, representation_function)`` does what disentanglement_lib's
``evaluate.evaluate`` does with ``config/unsupervised_study_v1/metric_configs/dci.gin``: a
``RandomState(random_seed)``, the study's sample sizes and gin bindings, the metric's compute
function. Sample sizes can be scaled down for quick looks.
"""

from __future__ import annotations

import importlib
import time

import numpy as np

from ...metrics import METRICS, get_metric
from . import utils

_PREDICTOR_FACTORIES = {
    "gradient_boosting": utils.gradient_boosting_classifier,
    "logistic_regression_cv": utils.logistic_regression_cv,
}


def _scaled_sizes(sizes, scale):
    def scale_one(value):
        return max(2, int(round(value * scale)))

    out = {}
    for key, value in sizes.items():
        if key == "batch_size" or key == "n_experiment":
            out[key] = value
        elif isinstance(value, tuple):
            out[key] = sorted({scale_one(v) for v in value})
        else:
            out[key] = scale_one(value)
    return out


#: Registered metrics this runner cannot drive: UDR scores several models at once, and the
#: reference's unified scores have no study configuration (``matrix_fns`` is gin.REQUIRED).
NOT_RUNNABLE = {
    "udr": "it compares several models (call udr.compute_udr_sklearn with their functions)",
    "unified_scores": "it has no study configuration (call compute_unified_scores with "
    "matrix_fns)",
}


def runnable_metrics():
    """Names of the registered metrics :func:`evaluate_metric` can run."""
    return [name for name in METRICS if name not in NOT_RUNNABLE]


def evaluate_metric(name, ground_truth_data, representation_function, *, random_seed=0,
                    scale=1.0):
    """Score one representation function with the registered metric ``name``.

    ``scale`` (> 0) multiplies the study's sample sizes (at least 2 points each). Returns the
    reference's result dict plus ``elapsed_time`` (seconds), as ``evaluate`` does.
    """
    spec = get_metric(name)
    if name in NOT_RUNNABLE:
        raise ValueError(f"evaluate_metric cannot run {name!r}: {NOT_RUNNABLE[name]}.")
    if not scale > 0:
        raise ValueError(f"scale must be a positive number; got {scale!r}.")
    module_name, function_name = spec.reference.split(".")
    module = importlib.import_module(f"{__package__}.{module_name}")
    kwargs = _scaled_sizes(spec.sizes, scale)
    settings = {}
    if "predictor" in spec.defaults:
        settings["predictor_fn"] = _PREDICTOR_FACTORIES[spec.defaults["predictor"]]
    if "prune_threshold" in spec.defaults:
        settings["prune_threshold"] = spec.defaults["prune_threshold"]
    for option in ("continuous_factors", "diff_quantile", "num_factors_to_remove"):
        if option in spec.defaults:
            kwargs[option] = spec.defaults[option]
    previous = utils.configure(**settings)
    try:
        start = time.perf_counter()
        result = getattr(module, function_name)(
            ground_truth_data, representation_function, np.random.RandomState(random_seed),
            None, **kwargs,
        )
    finally:
        utils.restore_configuration(previous)
    result = dict(result)
    result["elapsed_time"] = time.perf_counter() - start
    return result
