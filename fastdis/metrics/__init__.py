"""Disentanglement metrics on arrays: ``metric(codes, factors, ...) -> dict``.

Every function takes codes ``(n_samples, n_codes)`` and integer factors
``(n_samples, n_factors)`` (train/test metrics also take a test pair), validates them first,
and returns a plain dict with disentanglement_lib's result keys. Defaults are the study
defaults of Locatello et al. (ICML 2019). :data:`METRICS` is the registry used by the CLI and
the batch engine.

Several submodules share their function's name (``fastdis.metrics.mig`` the module,
``fastdis.metrics.mig`` the function): the functions are imported here, after their modules, so
the package attribute is the function.
"""

from ._information import discrete_entropy, histogram_discretize, mutual_info_matrix
from ._registry import METRICS, MetricSpec, get_metric, study_metrics
from .beta_vae import beta_vae_score
from .factor_vae import factor_vae_score
from .irs import irs
from .mig import mig
from .unsupervised import unsupervised_metrics

__all__ = [
    "METRICS",
    "MetricSpec",
    "get_metric",
    "study_metrics",
    "beta_vae_score",
    "factor_vae_score",
    "mig",
    "irs",
    "unsupervised_metrics",
    "histogram_discretize",
    "mutual_info_matrix",
    "discrete_entropy",
]
