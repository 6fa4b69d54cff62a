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
  values, like Cars3D's object, can need a few).

Sample sizes are the registry's study sizes times ``scale`` (sample counts only; batch sizes
stay), overridable per metric. Every random draw comes from ``RandomState`` streams derived
from ``seed``: the pool from ``seed`` itself, each metric's groups from ``(seed, metric name)``,
so adding a metric to a plan does not move the others' groups. The boosted trees of DCI,
unified scores and the boosted-tree downstream task are seeded per fit, from (seed, training
rows, factor, estimator) (:meth:`EvaluationPlan.fit_options`), so that the metrics fitting the
same classifiers fit them once inside :func:`fastdis.metrics.shared_fits`.

Scoring a metric from the plan is calling the registered array-level function on the gathered
codes (:meth:`EvaluationPlan.metric_arguments`), nothing more.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .._validation import check_codes, check_positive_int
from ..metrics import METRICS, fit_seeds, get_metric

__all__ = ["EvaluationPlan", "make_plan", "plannable_metrics", "SUPPORTED_INPUTS"]

#: Input kinds of the registry (``MetricSpec.inputs``) that a plan can provide. Fairness and
#: strong downstream need per-model intervention sets, UDR compares several models at once.
SUPPORTED_INPUTS = (
    "codes", "codes_factors", "train_test", "downstream", "beta_vae_pairs", "factor_vae_groups",
)

#: Metrics whose boosted trees the plan seeds per fit (:meth:`EvaluationPlan.fit_options`).
SEEDED_BOOSTED_FITS = ("dci", "downstream_task_boosted_trees", "unified_scores")

#: Metrics that discretise the same training codes into the study's 20-bin histograms (and
#: take their MI with the same factors).
HISTOGRAM_METRICS = ("mig", "modularity_explicitness", "unified_scores", "unsupervised", "irs",
                     "mig_sup", "jemmig", "dcimig", "infomec")

#: Metrics that share fits (:func:`fastdis.metrics.shared_fits`) when scored together on one
#: checkpoint's representation.
FIT_SHARING_METRICS = tuple(dict.fromkeys(SEEDED_BOOSTED_FITS + HISTOGRAM_METRICS))

#: Scaled sample counts never go below this: fewer points cannot hold every class of a factor,
#: and the classifiers of the downstream task would see a constant factor.
MIN_SCALED_COUNT = 10

#: Size keys that are not sample counts and so do not scale.
_UNSCALED_SIZES = ("batch_size", "n_experiment")

#: Size keys (per input kind) that count i.i.d. points of the training and test regions.
_TRAIN_REGION_KEYS = {"codes": ("num_train",), "codes_factors": ("num_train",),
                      "train_test": ("num_train",), "downstream": ("num_train",),
                      "factor_vae_groups": ("num_variance_estimate",)}
_TEST_REGION_KEYS = {"train_test": ("num_test",), "downstream": ("num_test",)}

#: Pool size (times ``scale``) when no chosen metric sizes the pool (only BetaVAE chosen).
_DEFAULT_POOL = 10_000


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
        ``train_factor``, ``eval``, ``eval_factor``).
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

    def metric_arguments(self, name: str, codes) -> list[tuple]:
        """Positional arguments of the registered function ``name``, gathered from ``codes``.

        ``codes`` are one checkpoint's codes on the plan's points, shape (n_points, n_codes).
        Returns a list with one argument tuple per call: one call, except for the
        ``downstream`` kind, called once per training size (the keys carry the size).

        Raises
        ------
        ValueError
            If codes are not a finite 2-D array with one row per plan point.
        """
        spec = self.check_metric(name)
        codes = check_codes(codes)
        if codes.shape[0] != self.n_points:
            raise ValueError(
                f"codes have {codes.shape[0]} rows but the evaluation plan has {self.n_points} "
                "points: encode the checkpoint on this plan's points (fastdis encode, or "
                "write_codes with codes of plan.factors)."
            )
        sizes, factors = self.sizes[name], self.factors
        if spec.inputs in ("codes", "codes_factors"):
            rows = self.train_rows(sizes["num_train"])
            return [(codes[rows],) if spec.inputs == "codes" else (codes[rows], factors[rows])]
        if spec.inputs in ("train_test", "downstream"):
            train_sizes = sizes["num_train"]
            if spec.inputs == "train_test":
                train_sizes = (train_sizes,)
            test = self.test_rows(sizes["num_test"])
            return [(codes[self.train_rows(n)], factors[self.train_rows(n)], codes[test],
                     factors[test]) for n in train_sizes]
        groups = self.groups[name]
        if spec.inputs == "beta_vae_pairs":
            return [(codes[groups["train_a"]], codes[groups["train_b"]], groups["train_factor"],
                     codes[groups["eval_a"]], codes[groups["eval_b"]], groups["eval_factor"])]
        # factor_vae_groups
        variance_rows = self.train_rows(sizes["num_variance_estimate"])
        return [(codes[variance_rows], codes[groups["train"]], groups["train_factor"],
                 codes[groups["eval"]], groups["eval_factor"])]

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
        once. (Before, DCI drew every factor's seeds from one ``RandomState(0)`` and the
        downstream task seeded each factor with 0; the seeds only break exact ties between
        splits, so only scores of codes with tied splits move.)
        """
        if name not in SEEDED_BOOSTED_FITS:
            return {}
        n_rows = int(np.shape(arguments[0])[0])
        return {"random_state": fit_seeds(self.seed, n_rows, self.num_factors,
                                          "gradient_boosting")}

    def score(self, name: str, codes) -> dict:
        """Score one checkpoint's codes with the registered metric ``name`` (study defaults).

        Inside :func:`fastdis.metrics.shared_fits`, fits already made for another metric on
        the same codes are reused (same numbers, bit for bit).
        """
        spec, options = self.check_metric(name), self.metric_options(name)
        result = {}
        for arguments in self.metric_arguments(name, codes):
            result.update(spec(*arguments, **options, **self.fit_options(name, arguments)))
        return result

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
    """The registry's study sizes of ``name`` with every sample count times ``scale``."""
    def scale_one(value):
        return max(MIN_SCALED_COUNT, int(round(value * scale)))

    sizes = {}
    for key, value in get_metric(name).sizes.items():
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
        Registered metric names (or one name); ``None`` means every metric a plan can serve
        (:func:`plannable_metrics`).
    seed : int, default=0
    scale : float, default=1.0
        Multiplies the study's sample counts (at least :data:`MIN_SCALED_COUNT` each).
    sizes : mapping, default=None
        Per-metric overrides, e.g. ``{"factor_vae_metric": {"batch_size": 16}}``: positive
        integers; downstream's ``num_train`` takes one size or a sequence of them.

    Returns
    -------
    EvaluationPlan

    Raises
    ------
    ValueError
        On an unknown or unsupported metric, a non-positive scale, an unknown size key or a
        size that is not a positive integer, or a data set with fewer than 2 factors.
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

    group_metrics = [n for n in names if get_metric(n).inputs in ("beta_vae_pairs",
                                                                    "factor_vae_groups")]
    # Each group metric needs this many points with factor k = v for every (k, v).
    needed = max([2] + [plan_sizes[n]["batch_size"] for n in group_metrics
                        if get_metric(n).inputs == "factor_vae_groups"])
    top_up = (_top_up(data, pool, factor_sizes, needed, _stream(seed, "top-up"))
              if group_metrics else [])
    factors = np.concatenate([pool] + [points for _, points in top_up]) if top_up else pool
    candidates = _Candidates(factors, len(pool), factor_sizes, top_up)

    groups = {}
    for name in group_metrics:
        rs = _stream(seed, name)
        spec_sizes = plan_sizes[name]
        if get_metric(name).inputs == "beta_vae_pairs":
            groups[name] = {}
            for part, count in (("train", spec_sizes["num_train"]),
                                ("eval", spec_sizes["num_eval"])):
                a, b, fixed = candidates.pairs(count, spec_sizes["batch_size"], rs)
                groups[name].update({f"{part}_a": a, f"{part}_b": b, f"{part}_factor": fixed})
        else:
            groups[name] = {}
            for part, count in (("train", spec_sizes["num_train"]),
                                ("eval", spec_sizes["num_eval"])):
                members, fixed = candidates.groups(count, spec_sizes["batch_size"], rs)
                groups[name].update({part: members, f"{part}_factor": fixed})

    # dlib's StateSpaceAtomIndex calls it factors_to_index, fastdis.data flat_index.
    to_index = getattr(data, "factors_to_index", None) or getattr(data, "flat_index", None)
    indices = None if to_index is None else np.asarray(to_index(factors), np.int64).reshape(-1)
    return EvaluationPlan(seed, factor_sizes, tuple(names), plan_sizes, factors, num_train,
                          num_test, groups, indices)


def _stream(seed: int, purpose: str) -> np.random.RandomState:
    """A RandomState of its own for ``purpose``, derived from the plan seed."""
    entropy = np.random.SeedSequence([seed, zlib.crc32(purpose.encode())])
    return np.random.RandomState(entropy.generate_state(1)[0])


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
