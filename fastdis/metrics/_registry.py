"""The one list of metrics: name -> array-level function, study defaults, and the data it needs.

The API (:func:`fastdis.metrics.get_metric`), the CLI and the batch engine all read this table;
no other module lists metrics. Names are the evaluation names of disentanglement_lib's study
configs (``config/unsupervised_study_v1/metric_configs/<name>.gin``) where one exists, so result
tables line up with the reference's ``evaluation_results.*`` namespaces.

``reference`` names the disentanglement_lib function a metric reproduces (``module.function`` of
``fastdis.compat.disentanglement_lib``). It is empty for the metrics beyond the reference, which
later papers proposed and disentanglement_lib lacks (MIG-sup, JEMMIG, DCIMIG, InfoMEC and Chen et
al.'s posterior MIG); they take the study's defaults where one applies (20-bin histograms as the
study's MIG, its sample sizes) and are never part of the study suite.

The DCI framework's explicitness and size (Eastwood et al., "DCI-ES", ICLR 2023) are not
registered: they are not determined by the representation and factors alone. Explicitness is one
minus the normalised area under a loss-capacity curve (the lowest test loss of a probe reached
up to each capacity along a capacity axis), and the paper leaves the probe family (MLPs, random
Fourier features and random forests in its experiments), the capacity grid and its scale, the
probes' training, the baseline loss and the lowest attainable loss to the experimenter; the
authors' code (andreinicolicioiu/DCI-ES, ``metrics/explitcitness.py``) stretches every curve to
the largest capacity among *all the curves compared*, measures the area above each curve's own
minimum and normalises by the baseline loss times the capacity range, so one representation's
score moves when another is added to the comparison. A fixed choice of probes and capacities
would be a new metric, not theirs. Size ("the representation's size relative to the ground
truth" in the paper's abstract) has no implementation in the authors' code, and its formula
could not be pinned down from the material at hand, so it is not guessed at either.

``inputs`` says which evaluation data a metric consumes (sampling is a separate step):

==================  =============================================================================
inputs              arguments of the array-level function
==================  =============================================================================
codes               ``(codes, factors=None)``; i.i.d. points, factors unused
codes_factors       ``(codes, factors)``; i.i.d. points
train_test          ``(codes, factors, test_codes, test_factors)``; two i.i.d. sets
downstream          ``train_test`` once per training size in ``sizes["num_train"]``
beta_vae_pairs      pairs of batches sharing one factor (see :func:`beta_vae_score`)
factor_vae_groups   i.i.d. points + groups sharing one factor (see :func:`factor_vae_score`)
fairness            i.i.d. train set + intervention sets (see :mod:`fastdis.metrics._fairness`)
strong_downstream   train/test sets + intervened sets (see :mod:`fastdis.metrics._downstream`)
udr                 codes and KL of several models on the same points (see :mod:`.udr`)
posterior_grid      ``(means, logvars, factors)``: posterior means and log-variances of points
                    forming a complete factor grid (every combination of the factor values
                    present, once each: the whole data set or a complete sub-grid)
==================  =============================================================================
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class MetricSpec:
    """One metric: what to call, with which study defaults, on which data."""

    name: str
    target: str  # "module:function" of the array-level function, imported on first use
    inputs: str
    reference: str  # the disentanglement_lib function it reproduces; "" beyond the reference
    defaults: Mapping = field(default_factory=dict)  # keyword options at the study defaults
    sizes: Mapping = field(default_factory=dict)  # sample sizes at the study defaults
    study: bool = False  # part of unsupervised_study_v1's metric suite
    description: str = ""
    #: The scores the study reports for this metric (its figures and rank correlations), by
    #: result key. A key written "*:name" stands for the per-training-size keys "N:name" and
    #: means the largest N present (see :meth:`headline_keys`).
    headline: tuple = ()
    #: Fits gradient-boosted trees (by far the costliest metrics at study sizes), so a batch can
    #: leave them out or give them their own budget.
    boosted_trees: bool = False
    #: Intermediates the metric computes that others compute identically on the same codes,
    #: so a batch scores them together under :func:`fastdis.metrics.shared_fits`:
    #: ``"histograms"`` (the 20-bin discretisation of the training codes and its MI with the
    #: factors) and ``"seeded_trees"`` (one boosted-tree classifier per factor on the first n
    #: training rows, seeded per fit by the plan, not by the metric).
    shares: tuple = ()

    @property
    def function(self):
        module, name = self.target.split(":")
        return getattr(importlib.import_module(f"fastdis.metrics.{module}"), name)

    def __call__(self, *args, **options):
        """Call the metric with the study defaults, overridden by ``options``."""
        return self.function(*args, **{**self.defaults, **options})

    def headline_keys(self, keys) -> list[str]:
        """The headline result keys among ``keys`` (a result's keys), in ``headline`` order.

        ``"*:name"`` picks ``"N:name"`` with the largest training size N in ``keys``: the
        downstream tasks name their keys after the sizes actually used, which a scaled
        evaluation changes.
        """
        keys = list(keys)
        chosen = []
        for wanted in self.headline:
            if wanted.startswith("*:"):
                suffix = wanted[1:]
                sized = [k for k in keys if k.endswith(suffix) and k[:-len(suffix)].isdigit()]
                if sized:
                    chosen.append(max(sized, key=lambda k: int(k[:-len(suffix)])))
            elif wanted in keys:
                chosen.append(wanted)
        return chosen


def _spec(name, target, inputs, reference, *, defaults=None, sizes=None, study=False,
          description="", headline=(), boosted_trees=False, shares=()):
    return MetricSpec(name, target, inputs, reference, MappingProxyType(dict(defaults or {})),
                      MappingProxyType(dict(sizes or {})), study, description, tuple(headline),
                      boosted_trees, tuple(shares))


_SPECS = [
    _spec("beta_vae_sklearn", "_beta_vae:beta_vae_score", "beta_vae_pairs",
          "beta_vae.compute_beta_vae_sklearn",
          sizes={"batch_size": 64, "num_train": 10_000, "num_eval": 5_000}, study=True,
          description="BetaVAE score (Higgins et al. 2017): linear probe of the fixed factor",
          headline=("eval_accuracy",)),
    _spec("factor_vae_metric", "_factor_vae:factor_vae_score", "factor_vae_groups",
          "factor_vae.compute_factor_vae", defaults={"prune_threshold": 0.05},
          sizes={"batch_size": 64, "num_train": 10_000, "num_eval": 5_000,
                 "num_variance_estimate": 10_000}, study=True,
          description="FactorVAE score (Kim & Mnih 2018): majority vote of the lowest variance",
          headline=("eval_accuracy",)),
    _spec("mig", "_mig:mig", "codes_factors", "mig.compute_mig", defaults={"num_bins": 20},
          sizes={"num_train": 10_000}, study=True,
          description="Mutual Information Gap (Chen et al. 2018), 20-bin histograms",
          headline=("discrete_mig",),
          shares=("histograms",)),
    _spec("modularity_explicitness", "_modularity_explicitness:modularity_explicitness",
          "train_test", "modularity_explicitness.compute_modularity_explicitness",
          defaults={"num_bins": 20}, sizes={"num_train": 10_000, "num_test": 5_000}, study=True,
          description="Modularity and explicitness (Ridgeway & Mozer 2018)",
          headline=("modularity_score", "explicitness_score_test"),
          shares=("histograms",)),
    _spec("dci", "_dci:dci", "train_test", "dci.compute_dci", defaults={"backend": "numba"},
          sizes={"num_train": 10_000, "num_test": 5_000}, study=True,
          description="DCI disentanglement/completeness/informativeness (Eastwood & Williams "
                      "2018), boosted trees",
          headline=("disentanglement", "completeness", "informativeness_test"),
          boosted_trees=True,
          shares=("seeded_trees",)),
    _spec("sap_score", "_sap:sap_score", "train_test", "sap_score.compute_sap",
          defaults={"continuous_factors": False}, sizes={"num_train": 10_000, "num_test": 5_000},
          study=True, description="SAP score (Kumar et al. 2018)",
          headline=("SAP_score",)),
    _spec("unsupervised", "_unsupervised:unsupervised_metrics", "codes",
          "unsupervised_metrics.unsupervised_metrics", defaults={"num_bins": 20},
          sizes={"num_train": 10_000}, study=True,
          description="Gaussian total correlation, Wasserstein dependency, mean pairwise MI",
          headline=("gaussian_total_correlation", "gaussian_wasserstein_correlation_norm",
                    "mutual_info_score"),
          shares=("histograms",)),
    _spec("downstream_task_logistic_regression", "_downstream:downstream_task", "downstream",
          "downstream_task.compute_downstream_task",
          defaults={"predictor": "logistic_regression_cv"},
          sizes={"num_train": (10, 100, 1_000, 10_000), "num_test": 5_000}, study=True,
          description="Downstream accuracy of LogisticRegressionCV per factor",
          headline=("*:mean_test_accuracy",)),
    _spec("downstream_task_boosted_trees", "_downstream:downstream_task", "downstream",
          "downstream_task.compute_downstream_task", defaults={"predictor": "gradient_boosting"},
          sizes={"num_train": (10, 100, 1_000, 10_000), "num_test": 5_000}, study=True,
          description="Downstream accuracy of gradient-boosted trees per factor",
          headline=("*:mean_test_accuracy",),
          boosted_trees=True,
          shares=("seeded_trees",)),
    _spec("irs", "_irs:irs", "codes_factors", "irs.compute_irs",
          defaults={"diff_quantile": 0.99, "num_bins": 20},
          sizes={"num_train": 10_000, "batch_size": 16},
          description="Interventional Robustness Score (Suter et al. 2019)",
          headline=("IRS",)),
    _spec("fairness", "_fairness:fairness", "fairness", "fairness.compute_fairness",
          defaults={"predictor": "gradient_boosting"},
          sizes={"num_train": 10_000, "num_test_points_per_class": 100},
          description="Fairness of downstream predictions (Locatello et al. 2019b)",
          boosted_trees=True),
    _spec("reduced_downstream_task", "_downstream:reduced_downstream_task", "downstream",
          "reduced_downstream_task.compute_reduced_downstream_task",
          defaults={"predictor": "gradient_boosting", "num_factors_to_remove": 1},
          sizes={"num_train": (100,), "num_test": 100},
          description="Downstream accuracy after removing the codes most important for a "
                      "factor",
          boosted_trees=True),
    _spec("strong_downstream_task", "_downstream:strong_downstream_task", "strong_downstream",
          "strong_downstream_task.compute_strong_downstream_task",
          defaults={"predictor": "gradient_boosting"},
          sizes={"num_train": (1_000,), "num_test": 1_000, "n_experiment": 2},
          description="Out-of-distribution downstream generalisation under interventions",
          boosted_trees=True),
    _spec("unified_scores", "_unified:unified_scores", "train_test",
          "unified_scores.compute_unified_scores",
          sizes={"num_train": 10_000, "num_test": 5_000},
          description="Every aggregation on every score matrix (importance, MI, SVM accuracy)",
          boosted_trees=True,
          shares=("seeded_trees", "histograms")),
    _spec("udr", "_udr:udr", "udr", "udr.compute_udr_sklearn",
          defaults={"correlation_matrix": "lasso", "filter_low_kl": True,
                    "include_raw_correlations": True, "kl_filter_threshold": 0.01},
          sizes={"batch_size": 10, "num_data_points": 1_000},
          description="Unsupervised Disentanglement Ranking (Duan et al. 2020)"),
    # Beyond the reference: later papers' metrics, with the study's discretisation and sizes.
    _spec("mig_sup", "_mi_gaps:mig_sup", "codes_factors", "",
          defaults={"num_bins": 20, "active_variance": 0.01}, sizes={"num_train": 10_000},
          description="MIG-sup (Li et al. 2020): per active code, gap between its top two "
                      "factors, 20-bin histograms",
          headline=("mig_sup",),
          shares=("histograms",)),
    _spec("jemmig", "_mi_gaps:jemmig", "codes_factors", "", defaults={"num_bins": 20},
          sizes={"num_train": 10_000},
          description="JEMMIG (Do & Tran 2020): joint entropy minus MI gap, 20-bin histograms",
          headline=("jemmig_score",),
          shares=("histograms",)),
    _spec("dcimig", "_mi_gaps:dcimig", "codes_factors", "", defaults={"num_bins": 20},
          sizes={"num_train": 10_000},
          description="DCIMIG (Sepliarskaia et al. 2019): best exclusive gap per factor, 20-bin "
                      "histograms",
          headline=("dcimig",),
          shares=("histograms",)),
    _spec("infomec", "_infomec:infomec", "train_test", "",
          defaults={"num_bins": 20, "active_range_fraction": 0.05},
          sizes={"num_train": 10_000, "num_test": 5_000},
          description="InfoM, InfoC (20-bin histograms) and InfoE (linear probe) of Hsu et al. "
                      "2023",
          headline=("infom", "infoc", "infoe_train"),
          shares=("histograms",)),
    _spec("chen_mig", "_chen_mig:chen_mig", "posterior_grid", "",
          defaults={"num_samples": 10_000, "random_state": 0},
          description="MIG of Chen et al. 2018 from Gaussian posteriors over the factor grid",
          headline=("chen_mig",)),
]

METRICS: Mapping[str, MetricSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})


def get_metric(name: str) -> MetricSpec:
    """The registered metric ``name``; the error lists the valid names."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; choose from {sorted(METRICS)}.") from None


def study_metrics() -> list[MetricSpec]:
    """The metric suite of unsupervised_study_v1, in registry order."""
    return [spec for spec in METRICS.values() if spec.study]
