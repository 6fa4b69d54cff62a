"""Disentanglement metrics on arrays: ``metric(codes, factors, ...) -> dict``.

Every function takes codes ``(n_samples, n_codes)`` and integer factors
``(n_samples, n_factors)`` (train/test metrics also take a test pair; :func:`chen_mig` takes
posterior means and log-variances over a complete factor grid), validates them first,
and returns a plain dict with disentanglement_lib's result keys. Defaults are the study
defaults of Locatello et al. (ICML 2019). :data:`METRICS` is the registry (name -> function,
study defaults, required data) used by the CLI and the batch engine.

Implementation modules are private (``_mig``, ``_dci``, ...): import from here.
"""

from ._beta_vae import beta_vae_score
from ._chen_mig import check_factor_grid, chen_mig
from ._dci import completeness, dci, disentanglement, gbt_importance_matrix
from ._downstream import downstream_task, intervene, reduced_downstream_task, strong_downstream_task
from ._factor_vae import factor_vae_score
from ._fairness import fairness, inter_group_fairness
from ._infomec import infom_infoc, infomec
from ._information import discrete_entropy, histogram_discretize, mutual_info_matrix
from ._irs import irs
from ._mi_gaps import dcimig, jemmig, mig_sup
from ._mig import mig
from ._modularity_explicitness import modularity, modularity_explicitness
from ._registry import METRICS, MetricSpec, get_metric, study_metrics
from ._sap import sap_score, sap_score_matrix
from ._shared import fit_seeds, shared_fits
from ._udr import udr
from ._unified import pr_curves_values, unified_scores
from ._unsupervised import unsupervised_metrics

__all__ = [
    # registry
    "METRICS",
    "MetricSpec",
    "get_metric",
    "study_metrics",
    # metrics
    "beta_vae_score",
    "factor_vae_score",
    "mig",
    "modularity_explicitness",
    "dci",
    "sap_score",
    "irs",
    "unsupervised_metrics",
    "downstream_task",
    "reduced_downstream_task",
    "strong_downstream_task",
    "fairness",
    "unified_scores",
    "udr",
    # beyond the reference
    "mig_sup",
    "jemmig",
    "dcimig",
    "infomec",
    "chen_mig",
    # building blocks (shared intermediates)
    "histogram_discretize",
    "mutual_info_matrix",
    "discrete_entropy",
    "gbt_importance_matrix",
    "disentanglement",
    "completeness",
    "modularity",
    "sap_score_matrix",
    "inter_group_fairness",
    "intervene",
    "pr_curves_values",
    "infom_infoc",
    "check_factor_grid",
    # fit once what several metrics fit
    "shared_fits",
    "fit_seeds",
]
