"""The evaluation plan: one fixed set of dataset points that every checkpoint is encoded on.

disentanglement_lib draws fresh observations inside every metric call, so scoring 1,000 models
on 9 metrics encodes ~2 million observations per model. A batch evaluation instead encodes each
checkpoint **once** on a deterministic set of points and lets every metric read its inputs from
those codes by index:

* an **i.i.d. pool** of ``num_train + num_test`` points drawn with ``sample_factors``: metrics
  that train take the first ``n`` points of the training region ``[0, num_train)``, metrics
  that test take the first ``m`` points of the test region ``[num_train, num_train + num_test)``
  (downstream training sizes are nested prefixes of one training region);
* **fixed-factor groups** for BetaVAE and FactorVAE, as index arrays into the points. A
  FactorVAE group (factor ``k`` fixed to ``v``, both uniform as in the reference) is
  ``batch_size`` distinct points whose factor ``k`` equals ``v``; a BetaVAE pair of batches
  takes ``batch_size`` i.i.d. points and, for each, a different point sharing its factor ``k``.
  Conditional on the fixed value the other factors of such points are i.i.d. uniform, exactly
  as in the reference's freshly drawn groups; only points are shared between groups;
* **top-up points**: where the pool holds fewer points with ``factor k = v`` than a group
  needs, points with that value (other factors drawn i.i.d.) are appended after the pool, for
  use in groups fixing factor ``k`` only. At the study sizes this is rare (a factor with 183
  values, like Cars3D's object, can need a few);
* **intervention sets** of fairness and the strong downstream task, drawn once as the reference
  draws them per call. Fairness: for every (target ``i``, sensitive ``j != i``) pair,
  ``num_test_points_per_class`` factor vectors, each repeated with factor ``j`` set to every
  value ``c`` (``(C_j, n)`` indices per pair). Strong downstream: for every training size, target
  ``i`` and experiment, :func:`fastdis.metrics.intervene` on the plan's train and test rows (one
  other factor fixed to one value in training, moved to the other values in testing); rows the
  intervention leaves unchanged keep their pool index, the others are appended;
* a **factor grid** for the ``posterior_grid`` kind (Chen et al.'s MIG): every combination of
  the factor values when that is at most ``num_grid_points`` points (default
  :data:`DEFAULT_GRID_POINTS` times ``scale``), else a complete *sub-grid*: the factor with the
  most values loses one until the product fits (values evenly spaced over each factor's range,
  at least 2 per factor). Chen et al. estimate on the full grid (dSprites' 737,280 points); the
  sub-grid estimates the same entropies on a coarser uniform grid, so the normaliser
  ``log C_k`` counts the sub-grid's values;
* **UDR** compares models on the same points: the first ``num_data_points`` points of the
  training region (:meth:`EvaluationPlan.score_models`).

Sample sizes are the registry's study sizes times ``scale`` (sample counts only; batch sizes
and experiment counts stay), overridable per metric. Every random draw comes from
``RandomState`` streams derived from ``seed``: the pool from ``seed`` itself, each metric's
groups and sets from ``(seed, metric name)``, so adding a metric to a plan does not move the
others' groups. Appended points (top-up, intervention sets, grid) come after the pool, in that
order. The boosted trees of
DCI, unified scores and the boosted-tree downstream task are seeded per fit, from (seed,
training rows, factor, estimator) (:meth:`EvaluationPlan.fit_options`), so that the metrics
fitting the same classifiers fit them once inside :func:`fastdis.metrics.shared_fits`.

Scoring a metric from the plan is calling the registered array-level function on the gathered
codes (:meth:`EvaluationPlan.metric_arguments`), nothing more.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .._validation import check_codes, check_positive_int
from ..metrics import METRICS, fit_seeds, get_metric
from ..metrics._downstream import Intervention, intervene

__all__ = ["EvaluationPlan", "make_plan", "plannable_metrics", "factor_grid", "SUPPORTED_INPUTS"]

#: Input kinds of the registry (``MetricSpec.inputs``) that a plan can provide: all of them.
SUPPORTED_INPUTS = (
    "codes", "codes_factors", "train_test", "downstream", "beta_vae_pairs", "factor_vae_groups",
    "fairness", "strong_downstream", "udr", "posterior_grid",
)
#: Kinds scored from several checkpoints at once (:meth:`EvaluationPlan.score_models`).
MODEL_SET_INPUTS = ("udr",)
#: Result key of a model-set score: how many checkpoints were compared.
MODEL_SET_SIZE_KEY = "num_models"
#: Kinds that read the posterior log-variances beside the means.
POSTERIOR_INPUTS = ("posterior_grid",)

#: Grid points (times ``scale``) of the ``posterior_grid`` kind when its metric has no
#: ``num_grid_points`` size: the full grid of Cars3D (17,568 points) does not fit, a 10,000
#: point sub-grid keeps Chen et al.'s O(points^2) entropy estimate to seconds.
DEFAULT_GRID_POINTS = 10_000

#: Metrics whose boosted trees the plan seeds per fit (:meth:`EvaluationPlan.fit_options`),
#: and all metrics that share fits when scored together: from the registry's ``shares``.
SEEDED_BOOSTED_FITS = tuple(name for name, spec in METRICS.items() if "seeded_trees" in spec.shares)
FIT_SHARING_METRICS = tuple(name for name, spec in METRICS.items() if spec.shares)

#: Scaled sample counts never go below this: fewer points cannot hold every class of a factor,
#: and the classifiers of the downstream task would see a constant factor.
MIN_SCALED_COUNT = 10

#: Size keys that are not sample counts and so do not scale.
_UNSCALED_SIZES = ("batch_size", "n_experiment")
#: Sizes a plan adds per input kind where the registry gives none.
_KIND_SIZES = {"posterior_grid": {"num_grid_points": DEFAULT_GRID_POINTS}}

#: Size keys (per input kind) that count i.i.d. points of the training and test regions.
_TRAIN_REGION_KEYS = {"codes": ("num_train",), "codes_factors": ("num_train",),
                      "train_test": ("num_train",), "downstream": ("num_train",),
                      "factor_vae_groups": ("num_variance_estimate",),
                      "fairness": ("num_train",), "strong_downstream": ("num_train",),
                      "udr": ("num_data_points",)}
_TEST_REGION_KEYS = {"train_test": ("num_test",), "downstream": ("num_test",),
                     "strong_downstream": ("num_test",)}

#: Pool size (times ``scale``) when no chosen metric sizes the pool (only BetaVAE chosen).
_DEFAULT_POOL = 10_000

#: Input kinds served by groups of points sharing one fixed factor.
_GROUP_INPUTS = ("beta_vae_pairs", "factor_vae_groups")


def plannable_metrics() -> list[str]:
    """Registered metrics a plan can serve, in registry order."""
    return [name for name, spec in METRICS.items() if spec.inputs in SUPPORTED_INPUTS]


@dataclass(frozen=True, eq=False)
class EvaluationPlan:
    """Points, regions and groups shared by every checkpoint of a batch evaluation.

    Attributes
    ----------
    seed : int
        Seed of every draw of the plan.
    factor_sizes : tuple of int
        Number of values of each factor (the dataset's ``factors_num_values``).
    metrics : tuple of str
        Registered metrics the plan serves, in registry order.
    sizes : mapping
        ``{metric: {size key: value}}``, the study sizes after scaling and overrides.
    factors : int64 array of shape (n_points, n_factors)
        Factors of every point: the i.i.d. pool, then the top-up points.
    num_train, num_test : int
        Sizes of the training region ``[0, num_train)`` and the test region
        ``[num_train, num_train + num_test)`` of the pool.
    groups : mapping
        ``{metric: {name: int64 array}}`` of point indices and fixed-factor labels
        (BetaVAE: ``train_a``, ``train_b`` (n_pairs, batch_size), ``train_factor`` (n_pairs,)
        and the same for ``eval``; FactorVAE: ``train`` (n_groups, batch_size),
        ``train_factor``, ``eval``, ``eval_factor``; fairness: ``pair_{i}_{j}`` (C_j, n) per
        target i and sensitive j; strong downstream, per training size N: ``N_train``
        (n_sets, N), ``N_test`` (n_sets, num_test), ``N_target`` (n_sets,); posterior grid:
        ``grid`` (n_grid,)).
    indices : int64 array of shape (n_points,) or None
        Flat dataset indices of the points, where the dataset has ``factors_to_index``.
    """

    seed: int
    factor_sizes: tuple[int, ...]
    metrics: tuple[str, ...]
    sizes: Mapping[str, Mapping]
    factors: np.ndarray
    num_train: int
    num_test: int
    groups: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)
    indices: np.ndarray | None = None

    @property
    def n_points(self) -> int:
        """Rows of every checkpoint's code array."""
        return int(self.factors.shape[0])

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def train_rows(self, n: int) -> slice:
        return slice(0, n)

    def test_rows(self, n: int) -> slice:
        return slice(self.num_train, self.num_train + n)

    def check_metric(self, name: str):
        """The registry spec of ``name``; a ValueError when the plan was not built for it."""
        spec = get_metric(name)
        if name not in self.metrics:
            raise ValueError(
                f"the evaluation plan was built for {list(self.metrics)}, not {name!r}: make a "
                "new plan (and store) that includes it."
            )
        return spec

    def _check_codes(self, codes, name: str = "codes"):
        codes = check_codes(codes, name=name)
        if codes.shape[0] != self.n_points:
            raise ValueError(
                f"{name} have {codes.shape[0]} rows but the evaluation plan has {self.n_points} "
                "points: encode the checkpoint on this plan's points (fastdis encode, or "
                "write_codes with codes of plan.factors)."
            )
        return codes

    def metric_arguments(self, name: str, codes, logvars=None) -> list[tuple]:
        """Positional arguments of the registered function ``name``, gathered from ``codes``.

        ``codes`` are one checkpoint's codes on the plan's points, shape (n_points, n_codes);
        ``logvars`` the posterior log-variances of those codes, needed by the
        ``posterior_grid`` kind only. Returns a list with one argument tuple per call: one
        call, except for the ``downstream`` and ``strong_downstream`` kinds, called once per
        training size (the keys carry the size).

        Raises
        ------
        ValueError
            If codes are not a finite 2-D array with one row per plan point, if a
            ``posterior_grid`` metric gets no ``logvars``, or for a kind that compares several
            checkpoints (use :meth:`score_models`).
        """
        spec = self.check_metric(name)
        if spec.inputs in MODEL_SET_INPUTS:
            raise ValueError(f"{name} compares checkpoints: score it with score_models.")
        codes = self._check_codes(codes)
        sizes, factors = self.sizes[name], self.factors
        if spec.inputs in ("codes", "codes_factors"):
            rows = self.train_rows(sizes["num_train"])
            return [(codes[rows],) if spec.inputs == "codes" else (codes[rows], factors[rows])]
        if spec.inputs in ("train_test", "downstream", "strong_downstream"):
            train_sizes = sizes["num_train"]
            if spec.inputs == "train_test":
                train_sizes = (train_sizes,)
            test = self.test_rows(sizes["num_test"])
            calls = [(codes[self.train_rows(n)], factors[self.train_rows(n)], codes[test],
                      factors[test]) for n in train_sizes]
            if spec.inputs == "strong_downstream":
                calls = [(*call, self._interventions(name, codes, n))
                         for call, n in zip(calls, train_sizes, strict=True)]
            return calls
        groups = self.groups[name]
        if spec.inputs == "fairness":
            rows = self.train_rows(sizes["num_train"])
            sets = {(i, j): codes[groups[f"pair_{i}_{j}"]] for i, j in _ordered_pairs(
                self.num_factors)}
            return [(codes[rows], factors[rows], sets)]
        if spec.inputs == "posterior_grid":
            if logvars is None:
                raise ValueError(
                    f"{name} needs the posterior log-variances of the codes beside their means; "
                    "this checkpoint was stored without them (fastdis encode stores them; "
                    "write_codes(..., logvar=...) for codes from another framework)."
                )
            logvars = self._check_codes(logvars, name="logvars")
            grid = groups["grid"]
            return [(codes[grid], logvars[grid], factors[grid])]
        if spec.inputs == "beta_vae_pairs":
            return [(codes[groups["train_a"]], codes[groups["train_b"]], groups["train_factor"],
                     codes[groups["eval_a"]], codes[groups["eval_b"]], groups["eval_factor"])]
        # factor_vae_groups
        variance_rows = self.train_rows(sizes["num_variance_estimate"])
        return [(codes[variance_rows], codes[groups["train"]], groups["train_factor"],
                 codes[groups["eval"]], groups["eval_factor"])]

    def _interventions(self, name: str, codes, n_train: int) -> list[Intervention]:
        """The strong downstream task's intervened sets for training size ``n_train``."""
        groups = self.groups[name]
        train, test = groups[f"{n_train}_train"], groups[f"{n_train}_test"]
        return [Intervention(int(target), codes[train[e]], self.factors[train[e]],
                             codes[test[e]], self.factors[test[e]])
                for e, target in enumerate(groups[f"{n_train}_target"])]

    def metric_options(self, name: str) -> dict:
        """Keyword options the plan adds to the study defaults (FactorVAE's vote-table size)."""
        if get_metric(name).inputs == "factor_vae_groups":
            return {"num_factors": self.num_factors}
        return {}

    def fit_options(self, name: str, arguments: tuple) -> dict:
        """Per-fit seeds of the boosted trees that ``name`` fits on ``arguments``' rows.

        The metrics of :data:`SEEDED_BOOSTED_FITS` fit one boosted-tree classifier per factor
        on the first ``n`` training rows; factor k's is seeded from (plan seed, n, k,
        estimator) by :func:`fastdis.metrics.fit_seeds`, not from the metric, so DCI, the
        importance matrix of unified scores and the boosted-tree downstream task at DCI's
        training size fit the same classifiers, which :func:`fastdis.metrics.shared_fits` fits
        once. The seeds only break exact ties between splits.
        """
        if name not in SEEDED_BOOSTED_FITS:
            return {}
        n_rows = int(np.shape(arguments[0])[0])
        return {"random_state": fit_seeds(self.seed, n_rows, self.num_factors,
                                          "gradient_boosting")}

    def score(self, name: str, codes, logvars=None) -> dict:
        """Score one checkpoint's codes with the registered metric ``name`` (study defaults).

        Inside :func:`fastdis.metrics.shared_fits`, fits already made for another metric on
        the same codes are reused (same numbers, bit for bit).
        """
        spec, options = self.check_metric(name), self.metric_options(name)
        result = {}
        for arguments in self.metric_arguments(name, codes, logvars):
            result.update(spec(*arguments, **options, **self.fit_options(name, arguments)))
        return result

    def score_models(self, name: str, codes_per_model, kl_per_model) -> list[dict]:
        """Score checkpoints against each other (UDR): one result dict per checkpoint.

        ``codes_per_model`` are the checkpoints' codes on the plan's points (one array each,
        rows aligned), ``kl_per_model`` the per-code KL divergence of each checkpoint's
        posterior to the prior, shape (n_models, n_codes). Every model is scored on the same
        first ``num_data_points`` points of the training region. Each result holds
        ``model_score`` (the median of its pairwise scores, the reference's
        ``model_scores[i]``) and ``num_models`` (:data:`MODEL_SET_SIZE_KEY`).

        Raises
        ------
        ValueError
            For a metric of another kind, codes not one finite row per plan point, or what
            the metric refuses (fewer than 2 models, mismatched shapes, a bad KL array).
        """
        spec = self.check_metric(name)
        if spec.inputs not in MODEL_SET_INPUTS:
            raise ValueError(f"{name} scores one checkpoint at a time: use score.")
        rows = self.train_rows(self.sizes[name]["num_data_points"])
        codes = [self._check_codes(c, name=f"codes_per_model[{m}]")[rows]
                 for m, c in enumerate(codes_per_model)]
        result = spec(codes, kl_per_model, include_raw_correlations=False)
        return [{"model_score": float(score), MODEL_SET_SIZE_KEY: float(len(codes))}
                for score in result["model_scores"]]

    # -- serialisation: JSON-able metadata plus named arrays (the store writes both) ----------

    def to_metadata(self) -> tuple[dict, dict[str, np.ndarray]]:
        """``(metadata, arrays)``: plain JSON values, and arrays keyed by slash paths."""
        metadata = {
            "format": 1, "seed": self.seed, "factor_sizes": list(self.factor_sizes),
            "metrics": list(self.metrics), "num_train": self.num_train,
            "num_test": self.num_test,
            "sizes": {m: {k: list(v) if isinstance(v, tuple) else v for k, v in s.items()}
                      for m, s in self.sizes.items()},
        }
        arrays = {"factors": self.factors}
        if self.indices is not None:
            arrays["indices"] = self.indices
        for metric, named in self.groups.items():
            for key, array in named.items():
                arrays[f"groups/{metric}/{key}"] = array
        return metadata, arrays

    @classmethod
    def from_metadata(cls, metadata: Mapping, arrays: Mapping[str, np.ndarray]):
        """Rebuild a plan from :meth:`to_metadata`'s output; ValueError names what is missing."""
        missing = [k for k in ("seed", "factor_sizes", "metrics", "sizes", "num_train",
                               "num_test") if k not in metadata]
        if missing or "factors" not in arrays:
            raise ValueError(f"incomplete evaluation plan: missing {missing or ['factors']}.")
        groups: dict[str, dict[str, np.ndarray]] = {}
        for path, array in arrays.items():
            if path.startswith("groups/"):
                _, metric, key = path.split("/")
                groups.setdefault(metric, {})[key] = np.asarray(array, dtype=np.int64)
        sizes = {m: {k: tuple(v) if isinstance(v, list) else v for k, v in s.items()}
                 for m, s in metadata["sizes"].items()}
        indices = arrays.get("indices")
        return cls(int(metadata["seed"]), tuple(metadata["factor_sizes"]),
                   tuple(metadata["metrics"]), sizes, np.asarray(arrays["factors"], np.int64),
                   int(metadata["num_train"]), int(metadata["num_test"]), groups,
                   None if indices is None else np.asarray(indices, np.int64))

    def same_as(self, other: EvaluationPlan) -> bool:
        """True when both plans have the same points, sizes and groups."""
        a_meta, a_arrays = self.to_metadata()
        b_meta, b_arrays = other.to_metadata()
        return a_meta == b_meta and a_arrays.keys() == b_arrays.keys() and all(
            np.array_equal(a_arrays[k], b_arrays[k]) for k in a_arrays)


def scaled_sizes(name: str, scale: float) -> dict:
    """The registry's study sizes of ``name`` (and the plan's sizes of its input kind, where
    the registry gives none) with every sample count times ``scale``."""
    def scale_one(value):
        return max(MIN_SCALED_COUNT, int(round(value * scale)))

    spec = get_metric(name)
    sizes = {}
    for key, value in {**_KIND_SIZES.get(spec.inputs, {}), **spec.sizes}.items():
        if key in _UNSCALED_SIZES:
            sizes[key] = value
        elif isinstance(value, tuple):
            sizes[key] = tuple(sorted({scale_one(v) for v in value}))
        else:
            sizes[key] = scale_one(value)
    return sizes


def make_plan(
    data,
    metrics: Sequence[str] | None = None,
    *,
    seed: int = 0,
    scale: float = 1.0,
    sizes: Mapping[str, Mapping] | None = None,
) -> EvaluationPlan:
    """Draw the evaluation plan of ``metrics`` on the ground-truth data set ``data``.

    Parameters
    ----------
    data : ground-truth data set
        disentanglement_lib's protocol: ``num_factors``, ``factors_num_values`` and
        ``sample_factors(n, random_state)``; ``factors_to_index(factors)`` (or fastdis.data's
        ``flat_index``) gives ``plan.indices`` when present.
    metrics : str or sequence of str, default=None
        Registered metric names (or one name); ``None`` means every registered metric
        (:func:`plannable_metrics`).
    seed : int, default=0
    scale : float, default=1.0
        Multiplies the study's sample counts (at least :data:`MIN_SCALED_COUNT` each).
    sizes : mapping, default=None
        Per-metric overrides, e.g. ``{"factor_vae_metric": {"batch_size": 16}}``: positive
        integers; downstream's ``num_train`` takes one size or a sequence of them; a
        ``posterior_grid`` metric's ``num_grid_points`` bounds its factor grid.

    Returns
    -------
    EvaluationPlan

    Raises
    ------
    ValueError
        On an unknown or unsupported metric, a non-positive scale, an unknown size key or a
        size that is not a positive integer, a data set with fewer than 2 factors, or (strong
        downstream) a factor with a single value to intervene on.
    """
    seed = check_positive_int(seed, name="seed", minimum=0)
    if not (isinstance(scale, (int, float)) and scale > 0):
        raise ValueError(f"scale must be a positive number; got {scale!r}.")
    if isinstance(metrics, str):  # one name, not its letters
        metrics = [metrics]
    names = plannable_metrics() if metrics is None else list(dict.fromkeys(metrics))
    for name in names:
        spec = get_metric(name)
        if spec.inputs not in SUPPORTED_INPUTS:
            raise ValueError(
                f"metric {name!r} needs {spec.inputs!r} inputs, which a batch evaluation plan "
                f"does not provide; choose from {plannable_metrics()}."
            )
    names = [name for name in METRICS if name in names]  # registry order, deterministic
    if not names:
        raise ValueError("metrics is empty: name at least one metric.")
    factor_sizes = tuple(int(c) for c in data.factors_num_values)
    if len(factor_sizes) < 2 or min(factor_sizes) < 1:
        raise ValueError(f"the data set needs >= 2 factors with >= 1 value; got {factor_sizes}.")

    plan_sizes = {}
    for name in names:
        plan_sizes[name] = scaled_sizes(name, scale)
        for key, value in dict((sizes or {}).get(name, {})).items():
            if key not in plan_sizes[name]:
                raise ValueError(f"sizes[{name!r}] has unknown key {key!r}; "
                                 f"{name} has {sorted(plan_sizes[name])}.")
            label = f"sizes[{name!r}][{key!r}]"
            if isinstance(plan_sizes[name][key], tuple):  # downstream's training sizes
                values = value if isinstance(value, (list, tuple)) else (value,)
                plan_sizes[name][key] = tuple(sorted({check_positive_int(v, name=label)
                                                      for v in values}))
            else:
                plan_sizes[name][key] = check_positive_int(value, name=label)
    unknown = set(sizes or {}) - set(names)
    if unknown:
        raise ValueError(f"sizes names metrics not in the plan: {sorted(unknown)}.")

    def region(keys_by_kind):
        counts = [max(np.atleast_1d(plan_sizes[n][key])) for n in names
                  for key in keys_by_kind.get(get_metric(n).inputs, ())]
        return int(max(counts, default=0))

    num_train = region(_TRAIN_REGION_KEYS) or max(MIN_SCALED_COUNT, round(_DEFAULT_POOL * scale))
    num_test = region(_TEST_REGION_KEYS)
    pool_rs = np.random.RandomState(seed)
    pool = np.asarray(data.sample_factors(num_train + num_test, pool_rs), dtype=np.int64)

    group_metrics = [n for n in names if get_metric(n).inputs in _GROUP_INPUTS]
    # Each group metric needs this many points with factor k = v for every (k, v).
    needed = max([2] + [plan_sizes[n]["batch_size"] for n in group_metrics
                        if get_metric(n).inputs == "factor_vae_groups"])
    top_up = (_top_up(data, pool, factor_sizes, needed, _stream(seed, "top-up"))
              if group_metrics else [])
    points = _Points(np.concatenate([pool] + [points for _, points in top_up]))
    candidates = _Candidates(points.factors, len(pool), factor_sizes, top_up)

    groups = _metric_groups(data, plan_sizes, num_train, points, candidates, seed)
    factors = points.factors

    # dlib's StateSpaceAtomIndex calls it factors_to_index, fastdis.data flat_index.
    to_index = getattr(data, "factors_to_index", None) or getattr(data, "flat_index", None)
    indices = None if to_index is None else np.asarray(to_index(factors), np.int64).reshape(-1)
    return EvaluationPlan(seed, factor_sizes, tuple(names), plan_sizes, factors, num_train,
                          num_test, groups, indices)


def _metric_groups(data, plan_sizes, num_train, points, candidates, seed) -> dict:
    """``{metric: {name: indices}}`` of every metric that reads more than the pool's regions,
    in registry order; intervention sets and grids are appended to ``points``."""
    factor_sizes = tuple(int(c) for c in data.factors_num_values)
    groups, grids = {}, {}
    for name, sizes in plan_sizes.items():
        inputs, rs = get_metric(name).inputs, _stream(seed, name)
        if inputs in _GROUP_INPUTS:
            groups[name] = _fixed_factor_groups(inputs, sizes, candidates, rs)
        elif inputs == "fairness":
            groups[name] = _fairness_sets(data, sizes["num_test_points_per_class"], points, rs)
        elif inputs == "strong_downstream":
            groups[name] = _strong_downstream_sets(name, sizes, factor_sizes, num_train, points,
                                                   rs)
        elif inputs == "posterior_grid":
            budget = sizes["num_grid_points"]
            if budget not in grids:  # metrics with the same grid share its points
                grids[budget] = points.append(factor_grid(factor_sizes, budget))
            groups[name] = {"grid": grids[budget]}
    return groups


def _stream(seed: int, purpose: str) -> np.random.RandomState:
    """A RandomState of its own for ``purpose``, derived from the plan seed."""
    entropy = np.random.SeedSequence([seed, zlib.crc32(purpose.encode())])
    return np.random.RandomState(entropy.generate_state(1)[0])


def _ordered_pairs(n_factors: int) -> list[tuple[int, int]]:
    """(target, sensitive) pairs of fairness, in the reference's loop order."""
    return [(i, j) for i in range(n_factors) for j in range(n_factors) if i != j]


class _Points:
    """The plan's factors as blocks of points are appended, each block addressed by index."""

    def __init__(self, pool):
        self.blocks = [np.asarray(pool, dtype=np.int64)]
        self.size = len(pool)

    @property
    def factors(self) -> np.ndarray:
        return np.concatenate(self.blocks) if len(self.blocks) > 1 else self.blocks[0]

    def append(self, points) -> np.ndarray:
        """Append ``points`` (..., n_factors); their indices, shaped like ``points[..., 0]``."""
        points = np.asarray(points, dtype=np.int64)
        flat = points.reshape(-1, points.shape[-1])
        indices = np.arange(self.size, self.size + len(flat), dtype=np.int64)
        self.blocks.append(flat)
        self.size += len(flat)
        return indices.reshape(points.shape[:-1])

    def edited(self, rows, new_factors) -> np.ndarray:
        """Indices of ``new_factors``, an edit of the pool's ``rows``: a row left unchanged
        keeps its index, a changed one is appended."""
        indices = np.array(rows, dtype=np.int64)
        changed = (np.asarray(new_factors) != self.blocks[0][indices]).any(axis=1)
        indices[changed] = self.append(np.asarray(new_factors)[changed])
        return indices


def _fixed_factor_groups(inputs, sizes, candidates, rs) -> dict:
    """BetaVAE's pairs of batches or FactorVAE's groups, train then eval."""
    groups = {}
    for part in ("train", "eval"):
        count = sizes[f"num_{part}"]
        if inputs == "beta_vae_pairs":
            a, b, fixed = candidates.pairs(count, sizes["batch_size"], rs)
            groups.update({f"{part}_a": a, f"{part}_b": b, f"{part}_factor": fixed})
        else:
            members, fixed = candidates.groups(count, sizes["batch_size"], rs)
            groups.update({part: members, f"{part}_factor": fixed})
    return groups


def _fairness_sets(data, n_points, points, rs) -> dict:
    """Per (target i, sensitive j) pair, as the reference draws them: ``n_points`` factor
    vectors sampled once, then repeated with factor j set to each of its values c."""
    sizes = [int(c) for c in data.factors_num_values]
    sets = {}
    for i, j in _ordered_pairs(len(sizes)):
        original = np.asarray(data.sample_factors(n_points, rs), dtype=np.int64)
        intervened = np.repeat(original[np.newaxis], sizes[j], axis=0)  # (C_j, n, K)
        intervened[:, :, j] = np.arange(sizes[j])[:, np.newaxis]
        sets[f"pair_{i}_{j}"] = points.append(intervened)
    return sets


def _strong_downstream_sets(name, sizes, factor_sizes, num_train, points, rs) -> dict:
    """Per training size N, target and experiment (the reference's loop order), the train
    rows ``[0, N)`` and test rows of the plan after :func:`intervene`."""
    test_rows = np.arange(num_train, num_train + sizes["num_test"])
    sets = {}
    for n_train in sizes["num_train"]:
        train_rows = np.arange(n_train)
        train, test, targets = [], [], []
        for target in range(len(factor_sizes)):
            for _ in range(sizes["n_experiment"]):
                try:
                    new_train, new_test, _, _ = intervene(
                        points.blocks[0][train_rows], points.blocks[0][test_rows], target,
                        factor_sizes, rs)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc} Leave {name} out of the plan's metrics "
                                     "for this data set.") from None
                train.append(points.edited(train_rows, new_train))
                test.append(points.edited(test_rows, new_test))
                targets.append(target)
        sets.update({f"{n_train}_train": np.stack(train), f"{n_train}_test": np.stack(test),
                     f"{n_train}_target": np.asarray(targets, dtype=np.int64)})
    return sets


def factor_grid(factor_sizes, max_points: int) -> np.ndarray:
    """Every combination of the factor values, or a complete sub-grid of at most
    ``max_points`` points: the factor with the most values kept loses one (values stay evenly
    spaced over its range) until the grid fits, down to 2 values per factor (a grid of 2 values
    per factor is returned even when it is larger). Rows in C order, last factor fastest."""
    kept = [int(c) for c in factor_sizes]
    while math.prod(kept) > max_points and max(kept) > 2:
        kept[int(np.argmax(kept))] -= 1
    values = [np.unique(np.round(np.linspace(0, size - 1, count)).astype(np.int64))
              for size, count in zip(factor_sizes, kept, strict=True)]
    mesh = np.meshgrid(*values, indexing="ij")
    return np.stack([axis.reshape(-1) for axis in mesh], axis=1)


def _top_up(data, pool, factor_sizes, needed, rs):
    """``[(k, points)]``: points with factor k = v for every value v the pool has < needed of."""
    out = []
    for k, size in enumerate(factor_sizes):
        counts = np.bincount(pool[:, k], minlength=size)
        values = np.repeat(np.arange(size), np.maximum(needed - counts, 0))
        if values.size:
            points = np.asarray(data.sample_factors(values.size, rs), dtype=np.int64)
            points[:, k] = values
            out.append((k, points))
    return out


class _Candidates:
    """For each factor k, the points usable in groups fixing k, sorted by their value of k."""

    def __init__(self, factors, n_pool, factor_sizes, top_up):
        self.n_pool = n_pool
        self.factors = factors
        self.order, self.start, self.count, self.rank = [], [], [], []
        offsets, offset = {}, n_pool
        for k, points in top_up:
            offsets[k] = np.arange(offset, offset + len(points))
            offset += len(points)
        for k, size in enumerate(factor_sizes):
            usable = np.concatenate([np.arange(n_pool), offsets.get(k, np.empty(0, np.int64))])
            order = usable[np.argsort(factors[usable, k], kind="stable")]
            count = np.bincount(factors[order, k], minlength=size)
            rank = np.full(len(factors), -1, dtype=np.int64)
            rank[order] = np.arange(len(order))
            self.order.append(order)
            self.count.append(count)
            self.start.append(np.concatenate([[0], np.cumsum(count)[:-1]]))
            self.rank.append(rank)

    def groups(self, n_groups, batch_size, rs):
        """FactorVAE: k and v uniform, then batch_size distinct points with factor k = v."""
        fixed = np.empty(n_groups, dtype=np.int64)
        members = np.empty((n_groups, batch_size), dtype=np.int64)
        for g in range(n_groups):
            k = rs.randint(len(self.order))
            v = rs.randint(len(self.count[k]))
            chosen = rs.choice(self.count[k][v], batch_size, replace=False)
            members[g] = self.order[k][self.start[k][v] + chosen]
            fixed[g] = k
        return members, fixed

    def pairs(self, n_pairs, batch_size, rs):
        """BetaVAE: k uniform; batch a i.i.d. from the pool; b[i] another point, same k value."""
        fixed = rs.randint(len(self.order), size=n_pairs).astype(np.int64)
        a = rs.randint(self.n_pool, size=(n_pairs, batch_size)).astype(np.int64)
        uniform = rs.random_sample((n_pairs, batch_size))
        b = np.empty_like(a)
        for k in range(len(self.order)):
            rows = fixed == k
            a_k = a[rows]
            values = self.factors[a_k, k]
            count, start = self.count[k][values], self.start[k][values]
            # A uniform position among the count - 1 other points: skip a's own position.
            offset = np.minimum((uniform[rows] * (count - 1)).astype(np.int64), count - 2)
            own = self.rank[k][a_k] - start
            offset += offset >= own
            b[rows] = self.order[k][start + offset]
        return a, b, fixed
