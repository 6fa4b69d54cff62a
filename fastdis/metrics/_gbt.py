"""Gradient-boosted trees, compiled: scikit-learn's ``GradientBoostingClassifier()`` re-implemented.

disentanglement_lib's DCI importance matrix, its boosted-tree downstream task and its fairness
score all fit ``sklearn.ensemble.GradientBoostingClassifier()`` with every default (100 stages,
learning rate 0.1, depth-3 regression trees on the negative gradient of the log-loss, prior
initialisation, one tree per class and stage for more than two classes). scikit-learn re-sorts
every feature at every node of every tree; at the study sizes that is about 6 minutes of CPU per
representation for DCI alone.

This module fits the same model and reproduces scikit-learn 1.9.1 step by step:

* **Data**: codes are cast to float32 (as ``check_array(dtype=np.float32)``); the classes are the
  sorted unique labels.
* **Init**: class priors, clipped to ``[eps, 1 - eps]``, through the logit (two classes) or the
  symmetric multinomial logit ``log(p / gmean(p))`` link.
* **Stage**: negative gradient ``y - p`` of the half binomial / half multinomial loss with
  scikit-learn's exact formulas; one regression tree per class on it (squared error,
  best split, ``max_depth``, ``min_samples_leaf=1``); each leaf then gets the Newton step

  .. math::

      v_\\ell = \\frac{K-1}{K}\\,
               \\frac{\\operatorname{mean}_{i\\in\\ell}(y_i - p_i)}
                    {\\operatorname{mean}_{i\\in\\ell} p_i (1 - p_i)}

  (the factor is 1 for two classes; numpy's pairwise summation over the leaf's samples in
  index order is emulated, and a denominator below 1e-150 gives 0), and the raw predictions move
  by ``learning_rate * v``.
* **Split search**: the best split maximises the proxy
  :math:`S_L^2/n_L + S_R^2/n_R` of the gradient sums. Each feature is sorted **once per fit**
  (the codes never change between stages), and every node keeps its samples as contiguous,
  already-sorted segments, so a node costs one linear scan per feature instead of a sort.
  Candidate thresholds are midpoints ``x[p-1]/2 + x[p]/2`` of consecutive values that differ by
  more than scikit-learn's float32 ``FEATURE_THRESHOLD`` (1e-7); a node whose values span no
  more than that is constant for that feature. Running sums are updated with scikit-learn's
  forward/backward rule and the node's total is summed in the order scikit-learn's in-place
  partition leaves the samples in, so split scores agree to the last bit.
* **Ties**: scikit-learn visits the features of a node in a random order and keeps the first
  best (strict ``>``), so among exactly tied features the winner is random. Its per-tree seed is
  ``random_state.randint(0, 2**31 - 1)`` and the visiting order comes from a xorshift
  Fisher-Yates draw that also tracks constant features. Both are reproduced here, so with the same
  ``random_state`` (``None`` = numpy's global RNG, which dlib uses) exact ties are broken as
  scikit-learn breaks them and the global RNG is left in the same state. Within one feature the
  first best position (lowest threshold) wins, as in scikit-learn.
* **Equal values**: scikit-learn sorts a node's samples by every feature it draws, each sort
  (a 3-way introsort, not stable) starting from the order the previous one left, and sums the
  gradients in that order. With equal values on samples of different gradients, that order
  moves the last bits of the sums, and at small nodes, where several features often make the
  same partition, the last bit picks the split. Float32 codes tie often (a few equal pairs per
  code at 10,000 points, every sample on a collapsed latent). Samples with the same codes and
  label ("twins") get the same gradient at every stage, so their order never matters; for each
  feature with equal values on other samples, every node replays scikit-learn's introsort from
  the order the previous sort left, within the segments that hold such ties
  (:func:`_replay_tied_sorts`), and scans and partitions in that order. Trees, importances and
  predictions are then scikit-learn's bit for bit on any codes.
* **Importances**: per tree the impurity decrease ``n_t i_t - n_L i_L - n_R i_R`` of each split,
  summed per feature in node order and divided by the number of samples; averaged over the trees
  that have more than a root; normalised to sum 1 (all zero if no tree split).

The trees of one stage are independent (they all fit the gradient of the previous stage), and so
are separate models (DCI fits one per factor); :func:`fit_gbt` boosts several models at once and
runs all trees of a stage in parallel. Their roots all hold every sample in presorted order, so
the root scans of a model's K trees run together, one pass per feature (vectorised over the
trees, one gathered gradient row serving all K) before the trees are grown.

How the compiled code is laid out: the rules of the candidate scan of a sorted feature are
inlined helpers (:func:`_distinct`, :func:`_reverse_reset`, :func:`_approx_score` and the tie
rule :func:`_candidate`), shared by the one-feature, two-feature and root scans. A tree is grown
by :func:`_build_tree` from small steps, each sklearn's counterpart: :func:`_draw_features`,
:func:`_scan_visited` / :func:`_first_best` (the split), :func:`_partition`,
:func:`_children_impurities` and :func:`_carry_segments_down`. The arrays they share travel as
named tuples: the presorted codes (:data:`_Presorted`), the per-thread scratch
(:data:`_Scratch`), the fitted trees (:data:`_Trees`) and the stage's root splits
(:data:`_RootSplits`).

Backends of :class:`GradientBoostingClassifier`: ``"numba"`` (this engine, the default: it
matches scikit-learn to rounding), ``"lightgbm"`` (LightGBM set up as close to scikit-learn as it
allows; it bins features and scores splits by gradient/hessian, so it only approximates), and
``"sklearn"`` (scikit-learn itself, the exact oracle).

Reference: J. H. Friedman, "Greedy function approximation: a gradient boosting machine",
Annals of Statistics 29(5), 2001.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

import numba
import numpy as np

from .._validation import PER_MODEL_SEEDS, check_random_state
from ._libm_exp import exp_into, reproduces_libm
from ._shared import memoized

__all__ = [
    "GradientBoostingClassifier",
    "gbt_importance_matrix",
    "GBTModels",
    "fit_gbt",
    "BACKENDS",
]

BACKENDS = ("numba", "lightgbm", "sklearn")

_FEATURE_THRESHOLD = np.float32(1e-7)  # sklearn tree/_partitioner.pxd (a float32 constant)
_EPSILON = float(np.finfo(np.float64).eps)  # sklearn tree/_tree.pyx (leaf and split tests)
_RAND_R_MAX = 2147483647  # sklearn tree/_utils.pxd
_TREE_LEAF = -1
#: Fits with fewer (sample x code x tree) cells per stage run on one thread by default. Each
#: stage passes three parallel regions, and numba's OpenMP threads spin at their barriers: while
#: another process keeps a core busy, a region can wait out the scheduler's time slice. On the
#: 2-core VM (10 random codes, 5 factors of 3-10 values: 35 trees per stage) two threads were
#: 1.3-1.8x faster than one for 100-3,000 points when the VM was quiet, and 1.3-1.9x slower
#: beside one busy process (up to 30x beside several); from ~10,000 points two threads are
#: never slower. 100,000 cells is 300 points of that fit.
PARALLEL_MIN_CELLS = 100_000
_TREE_UNDEFINED = -2

# The arrays the compiled steps share travel as named tuples (numba passes them as one
# argument and reads the fields without copying).
_Presorted = namedtuple("_Presorted", ["codes_t", "src_idx", "src_val", "inverse", "tied",
                                       "twin"])
_Presorted.__doc__ = """The training codes, sorted once per fit.

codes_t (D, N) float32: the codes by feature; src_idx (D, N) int32: the sample ids sorted by
each feature (stable); src_val (D, N) float32: the matching sorted values; inverse (N + 1,)
float64: ``inverse[n] = 1 / n``; twin (M, N) int64: the samples' twin ids for model m and tied
(M, D) uint8 whether feature d has equal values on samples of different ids
(:func:`_tied_features`).
"""
_Scratch = namedtuple("_Scratch", [
    "work_idx", "work_val", "order", "sorted_ids", "sorted_val", "runs", "flag", "leaf_of",
    "features", "constant_features", "target", "bucket_a", "bucket_b", "counts", "cand_pos",
    "cand_sum",
])
_Scratch.__doc__ = """Per-thread work space of the tree fits; row ``worker`` of every array
(leading axis W, ``numba.get_thread_id()``) belongs to one thread.

work_idx (W, L, D, N) int32, work_val (W, L, D, N) float32: the sorted segments of the nodes of
depth 1..L (L = max(max_depth - 1, 1)); order (W, N) int32: sklearn's ``samples`` array;
sorted_ids (W, N) int32: a node's samples as sklearn's sort by a tied feature leaves them, and
sorted_val (W, N) float32 that sort's scratch; runs (W, 2, N) int64: the first and last + 1
positions of its tie runs; flag (W, N) uint8; leaf_of (W, N) int64: the leaf of every sample;
features, constant_features (W, D) int64: sklearn's feature draw state; target, bucket_a, bucket_b
(W, N) float64 and counts (W, M + 1) int64: the Newton step's; cand_pos (W, 2, N) int64,
cand_sum (W, 2, N) float64: the candidates of two feature scans.
"""
_Trees = namedtuple("_Trees", [
    "feature", "threshold", "left", "right", "value", "impurity", "n_node", "node_count",
])
_Trees.__doc__ = """Fitted trees, row j (leading job axis) for job j, M nodes each.

feature, left, right (J, M) int64; threshold, value, impurity, n_node (J, M) float64;
node_count (J,) int64. A stage's trees are the rows of :func:`_stage_trees`.
"""
_RootSplits = namedtuple("_RootSplits", ["proxy", "pos", "threshold"])
_RootSplits.__doc__ = """The root's best split of every feature for every tree of a stage:
(C, D) arrays (float64, int64, float64), row = the tree's raw column."""
_FeatureScans = namedtuple("_FeatureScans", ["sorted_by", "visit", "scanned", "proxy", "pos",
                                             "threshold"])
_FeatureScans.__doc__ = """One node's features: sorted_by (D,) int64, every feature sklearn sorts
the node's samples by, in drawing order (the constants it finds included); visit (D,) int64, the
non-constant ones among them; scanned (D,) uint8, whether the best split of each is known yet;
and that split: proxy, pos, threshold (D,)."""
_NodeStack = namedtuple("_NodeStack", [
    "start", "end", "depth", "parent", "is_left", "impurity", "n_constants",
])
_NodeStack.__doc__ = """sklearn's stack of nodes to build, one array (capacity,) per field."""
_Jobs = namedtuple("_Jobs", ["model", "col", "klass"])
_Jobs.__doc__ = """The trees of a stage (J,) int64: job j fits raw column col[j] of model
model[j] (class klass[j])."""


# ---------------------------------------------------------------------------------------------
# Small kernels
# ---------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _rand_int(low, high, state):
    """sklearn's ``rand_int``: ``low + our_rand_r(state) % (high - low)`` (xorshift32).

    state: int64 array of shape (1,) holding the uint32 state, updated in place.
    """
    s = state[0]
    if s == 0:
        s = 1  # DEFAULT_SEED
    s ^= (s << 13) & 0xFFFFFFFF
    s ^= s >> 17
    s ^= (s << 5) & 0xFFFFFFFF
    state[0] = s
    return low + (s % 2147483648) % (high - low)


@numba.njit(cache=True)
def _pairwise_sum(values, lo, n):
    """numpy's pairwise sum of ``values[lo:lo + n]`` (``np.add.reduce`` on a contiguous array)."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += values[i]
        return res
    if n <= 128:
        r0 = values[lo]
        r1 = values[lo + 1]
        r2 = values[lo + 2]
        r3 = values[lo + 3]
        r4 = values[lo + 4]
        r5 = values[lo + 5]
        r6 = values[lo + 6]
        r7 = values[lo + 7]
        stop = n - n % 8
        for i in range(8, stop, 8):
            j = lo + i
            r0 += values[j]
            r1 += values[j + 1]
            r2 += values[j + 2]
            r3 += values[j + 3]
            r4 += values[j + 4]
            r5 += values[j + 5]
            r6 += values[j + 6]
            r7 += values[j + 7]
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        for i in range(lo + stop, lo + n):
            res += values[i]
        return res
    half = n // 2
    half -= half % 8
    return _pairwise_sum(values, lo, half) + _pairwise_sum(values, lo + half, n - half)


@numba.njit(cache=True)
def _resolve_candidates(values, start, end, sum_total, weight_total, inverse, cand_pos, cand_sum,
                        n_cand, top):
    """Exact scores of the near-best candidates of one feature scan; the first best wins.

    cand_pos[:n_cand], cand_sum[:n_cand]: positions (increasing) and left sums of the candidates
    whose approximate score came within 1e-12 of the running maximum when they were visited; all
    within 1e-12 of the final maximum ``top`` are among them. Returns (proxy, pos, threshold).
    """
    best_proxy = -np.inf
    best_pos = end
    best_threshold = 0.0
    if top == -np.inf:
        return best_proxy, best_pos, best_threshold
    cut = top - abs(top) * 1e-12
    for c in range(n_cand):
        p = cand_pos[c]
        sum_left = cand_sum[c]
        sum_right = sum_total - sum_left
        approx = sum_left * sum_left * inverse[p - start] + sum_right * sum_right * inverse[end - p]
        if approx >= cut:
            weight_left = float(p - start)
            weight_right = weight_total - weight_left
            proxy = sum_left * sum_left / weight_left + sum_right * sum_right / weight_right
            if proxy > best_proxy:
                best_proxy = proxy
                best_pos = p
                best_threshold = values[p - 1] / 2.0 + values[p] / 2.0
    return best_proxy, best_pos, best_threshold




# ---------------------------------------------------------------------------------------------
# sklearn's sort of a node's samples by one feature, for features with ties
# ---------------------------------------------------------------------------------------------


@numba.njit(inline="always")
def _swap(values, ids, i, j):
    values[i], values[j] = values[j], values[i]
    ids[i], ids[j] = ids[j], ids[i]


@numba.njit(inline="always")
def _median_of_three(a, b, c):
    """sklearn's pivot of a 3-way introsort segment: the median of its first, middle and last
    values (Bentley and McIlroy's comparisons, so equal values pick the same one)."""
    if a < b:
        if b < c:
            return b
        return c if a < c else a
    if b < c:
        return a if a < c else c
    return b


@numba.njit(cache=True)
def _insertion_sort(values, ids, lo, n):
    """Insertion sort of ``values[lo:lo + n]`` (with ``ids``), moving a value left past larger
    ones only: equal values keep their order."""
    for i in range(lo + 1, lo + n):
        value = values[i]
        sample = ids[i]
        j = i
        while j > lo and values[j - 1] > value:
            values[j] = values[j - 1]
            ids[j] = ids[j - 1]
            j -= 1
        values[j] = value
        ids[j] = sample


@numba.njit(cache=True)
def _sift_down(values, ids, lo, root, end):
    """Move the heap's root ``root`` down until ``values[lo:lo + end]`` is a max-heap again."""
    while True:
        child = 2 * root + 1
        largest = root
        if child < end and values[lo + largest] < values[lo + child]:
            largest = child
        if child + 1 < end and values[lo + largest] < values[lo + child + 1]:
            largest = child + 1
        if largest == root:
            return
        _swap(values, ids, lo + root, lo + largest)
        root = largest


@numba.njit(cache=True)
def _heapsort(values, ids, lo, n):
    """Heapsort of ``values[lo:lo + n]``: introsort's fallback once it recursed too deep."""
    start = (n - 2) // 2
    while True:
        _sift_down(values, ids, lo, start, n)
        if start == 0:
            break
        start -= 1
    for end in range(n - 1, 0, -1):
        _swap(values, ids, lo, lo + end)
        _sift_down(values, ids, lo, 0, end)


@numba.njit(inline="always")
def _holds_a_run(seg, size, run_lo, run_hi, n_runs):
    """Whether positions [seg, seg + size) overlap one of the runs [run_lo[r], run_hi[r])
    (increasing, disjoint)."""
    low = 0
    high = n_runs
    while low < high:  # the first run ending after seg
        mid = (low + high) // 2
        if run_hi[mid] <= seg:
            low = mid + 1
        else:
            high = mid
    return low < n_runs and run_lo[low] < seg + size


@numba.njit(cache=True)
def _introsort(values, ids, lo, n, run_lo, run_hi, n_runs):
    """scikit-learn's ``simultaneous_sort(..., use_three_way_partition=True)`` of
    ``values[lo:lo + n]`` (float32) carrying ``ids`` (the sort its tree splitter applies to a
    node's samples for every feature it visits), carried out where it orders equal values.

    Segments longer than 15 are split around the median of three values into ``< pivot``,
    ``== pivot`` and ``> pivot`` by one pass that swaps smaller values forward and larger ones to
    the back; after ``2 * floor(log2(n))`` levels a segment is heapsorted; short segments are
    insertion-sorted. The values end as any sort leaves them; the order of *equal* values is this
    algorithm's, and it fixes the order in which sklearn sums tied samples.

    Equal values never leave a segment together with others of a different split, and a segment
    always holds the sorted positions of its values. So only the segments overlapping one of the
    runs [run_lo[r], run_hi[r]) (sorted positions, increasing) are sorted further; the others
    are left as they are (their sorted order has no ties). Runs covering every position sort the
    whole range. Segments are disjoint, so they wait on a stack instead of recursing.
    """
    if n < 2:
        return
    stack_lo = np.empty(64, dtype=np.int64)
    stack_n = np.empty(64, dtype=np.int64)
    stack_depth = np.empty(64, dtype=np.int64)
    stack_lo[0], stack_n[0], stack_depth[0] = lo, n, 2 * int(np.log2(n))
    top = 1
    while top > 0:
        top -= 1
        seg, size, depth = stack_lo[top], stack_n[top], stack_depth[top]
        while size > 15 and _holds_a_run(seg, size, run_lo, run_hi, n_runs):
            if depth <= 0:
                _heapsort(values, ids, seg, size)
                size = 0
                break
            depth -= 1
            pivot = _median_of_three(values[seg], values[seg + size // 2], values[seg + size - 1])
            i = 0
            less = 0
            greater = size
            while i < greater:
                if values[seg + i] < pivot:
                    _swap(values, ids, seg + i, seg + less)
                    i += 1
                    less += 1
                elif values[seg + i] > pivot:
                    greater -= 1
                    _swap(values, ids, seg + i, seg + greater)
                else:
                    i += 1
            stack_lo[top], stack_n[top], stack_depth[top] = seg, less, depth
            top += 1
            seg += greater
            size -= greater
        if size <= 15 and _holds_a_run(seg, size, run_lo, run_hi, n_runs):
            _insertion_sort(values, ids, seg, size)


# ---------------------------------------------------------------------------------------------
# The candidate scan: one rule, inlined into every scan
# ---------------------------------------------------------------------------------------------


# The helpers take and return scalars only (the arrays stay in the callers' loops): numba would
# otherwise count references to every array passed, on every position of the scan.


@numba.njit(inline="always")
def _distinct(low, high):
    """Whether sorted float32 values ``low <= high`` are distinct for a split: sklearn's
    ``high > low + FEATURE_THRESHOLD``, in float32."""
    return high > low + _FEATURE_THRESHOLD


@numba.njit(inline="always")
def _reverse_reset(p, pos, end):
    """sklearn's ``MSE.update`` rule: the left sum at split position ``p`` (the last one was
    ``pos``) is the total minus the tail [p, end) when the tail is shorter than the step."""
    return (p - pos) > (end - p)


@numba.njit(cache=True)
def _tail_sum(sum_total, gradient, samples, p, end):
    """sklearn's ``reverse_reset``: ``sum_total`` minus the gradients of samples[p:end], from the
    last one down."""
    sum_left = sum_total
    for r in range(end - 1, p - 1, -1):
        sum_left -= gradient[samples[r]]
    return sum_left


@numba.njit(inline="always")
def _approx_score(sum_left, sum_total, inv_left, inv_right):
    """``S_L^2 / n_L + S_R^2 / n_R`` with multiplications by the reciprocal counts (a few ulp
    off the exact proxy: division is slow; :func:`_resolve_candidates` rescores)."""
    sum_right = sum_total - sum_left
    return sum_left * sum_left * inv_left + sum_right * sum_right * inv_right


@numba.njit(inline="always")
def _candidate(approx, top, cut):
    """The tie rule of a scan: a split position whose approximate score ``approx`` is within
    1e-12 of the running maximum ``top`` (``cut`` is that bound) is a candidate, so every
    position the exact rescoring could pick is kept (the first best wins there).

    Returns (is_candidate, top, cut), the running maximum and bound updated.
    """
    if approx >= cut:  # rare: near the running maximum
        if approx > top:
            top = approx
            cut = approx - approx * 1e-12
        return True, top, cut
    return False, top, cut


@numba.njit(cache=True)
def _scan_feature(values, samples, gradient, start, end, sum_total, inverse, cand_pos, cand_sum):
    """Forward scan of one sorted feature: approximate scores, candidates and their maximum.

    values[p], samples[p] for p in [start, end): the node's feature values (float32, ascending)
    and sample ids; gradient: (n_samples,) regression target; inverse[n] = 1 / n. Running sums
    follow sklearn's ``MSE.update`` (:func:`_reverse_reset`); every split position is scored by
    :func:`_approx_score` and the :func:`_candidate` s go to ``cand_pos`` / ``cand_sum``.
    Returns (n_cand, top).
    """
    sum_left = 0.0
    pos = start
    top = -np.inf
    cut = -np.inf
    n_cand = 0
    for q_int in range(start, end - 1):
        q = np.uintp(q_int)  # unsigned indices: no negative-index wrap-around in the hot loop
        sum_left += gradient[np.uintp(samples[q])]
        p = q_int + 1
        if not _distinct(values[q], values[q + np.uintp(1)]):
            continue
        if _reverse_reset(p, pos, end):
            sum_left = _tail_sum(sum_total, gradient, samples, p, end)
        pos = p
        keep, top, cut = _candidate(
            _approx_score(sum_left, sum_total, inverse[np.uintp(p - start)],
                          inverse[np.uintp(end - p)]),
            top, cut,
        )
        if keep:
            cand_pos[n_cand] = p
            cand_sum[n_cand] = sum_left
            n_cand += 1
    return n_cand, top


@numba.njit(cache=True)
def _scan_two_features(values_a, samples_a, values_b, samples_b, gradient, start, end, sum_total,
                       inverse, cand_pos_a, cand_sum_a, cand_pos_b, cand_sum_b):
    """:func:`_scan_feature` on two features in one loop (two independent add chains).

    Returns (n_cand_a, top_a, n_cand_b, top_b).
    """
    sum_a = 0.0
    sum_b = 0.0
    pos_a = start
    pos_b = start
    top_a = -np.inf
    top_b = -np.inf
    cut_a = -np.inf
    cut_b = -np.inf
    n_a = 0
    n_b = 0
    for q_int in range(start, end - 1):
        q = np.uintp(q_int)  # unsigned indices: no negative-index wrap-around in the hot loop
        sum_a += gradient[np.uintp(samples_a[q])]
        sum_b += gradient[np.uintp(samples_b[q])]
        p = q_int + 1
        pu = q + np.uintp(1)
        inv_l = inverse[np.uintp(p - start)]
        inv_r = inverse[np.uintp(end - p)]
        if _distinct(values_a[q], values_a[pu]):
            if _reverse_reset(p, pos_a, end):
                sum_a = _tail_sum(sum_total, gradient, samples_a, p, end)
            pos_a = p
            keep, top_a, cut_a = _candidate(
                _approx_score(sum_a, sum_total, inv_l, inv_r), top_a, cut_a
            )
            if keep:
                cand_pos_a[n_a] = p
                cand_sum_a[n_a] = sum_a
                n_a += 1
        if _distinct(values_b[q], values_b[pu]):
            if _reverse_reset(p, pos_b, end):
                sum_b = _tail_sum(sum_total, gradient, samples_b, p, end)
            pos_b = p
            keep, top_b, cut_b = _candidate(
                _approx_score(sum_b, sum_total, inv_l, inv_r), top_b, cut_b
            )
            if keep:
                cand_pos_b[n_b] = p
                cand_sum_b[n_b] = sum_b
                n_b += 1
    return n_a, top_a, n_b, top_b


@numba.njit(cache=True)
def _best_split_of_feature(
    values, samples, gradient, start, end, sum_total, weight_total, inverse, sum_buf, cand_buf
):
    """Best split of one feature on a node whose samples are sorted by that feature.

    values[p], samples[p] for p in [start, end): the node's feature values (float32, ascending)
    and sample ids; gradient: (n_samples,) regression target. Candidate positions, running sums
    and the proxy ``S_L^2 / n_L + S_R^2 / n_R`` follow sklearn's ``node_split_best`` and
    ``MSE.update`` / ``proxy_impurity_improvement`` exactly; the first best position wins.
    sum_buf (float64) and cand_buf (int64), of length >= end - start, are scratch.

    Returns (proxy, pos, threshold); pos == end (and proxy -inf) when no split exists.
    """
    n_cand, top = _scan_feature(
        values, samples, gradient, start, end, sum_total, inverse, cand_buf, sum_buf
    )
    return _resolve_candidates(
        values, start, end, sum_total, weight_total, inverse, cand_buf, sum_buf, n_cand, top
    )


@numba.njit(cache=True)
def _root_scan(values, samples, grad_t, c0, sum_total, inverse, sums, approx, top, cut, n_cand,
               cand_pos, cand_sum):
    """:func:`_scan_feature` at the root, for the K trees of a stage at once.

    values, samples: one presorted feature (N,); grad_t: (N, C) negative gradients by sample,
    the K trees' columns c0 + k contiguous; sum_total (K,): each tree's root total. Which
    positions split and when the running sum resets depend on the values only, so the trees
    share the control flow; the running sums and the scores are inner loops over k (vectorised;
    one gathered gradient row serves all K trees), and the rare positions near a running maximum
    go through :func:`_candidate` tree by tree. Outputs per tree k: n_cand[k], top[k] and
    cand_pos[k], cand_sum[k] as :func:`_scan_feature` returns them (a superset: candidates score
    >= 0, so the cut starts there). sums, approx, cut (K,) are scratch.
    """
    n = values.shape[0]
    n_k = sums.shape[0]
    sums[:] = 0.0
    top[:] = -np.inf
    cut[:] = 0.0
    n_cand[:] = 0
    pos = 0
    for q in range(n - 1):
        row = grad_t[np.uintp(samples[q]), c0 : c0 + n_k]
        for k in range(n_k):
            sums[k] += row[k]
        p = q + 1
        if not _distinct(values[q], values[p]):
            continue
        if _reverse_reset(p, pos, n):
            for k in range(n_k):
                sums[k] = _tail_sum(sum_total[k], grad_t[:, c0 + k], samples, p, n)
        pos = p
        inv_l = inverse[p]
        inv_r = inverse[n - p]
        hits = 0
        for k in range(n_k):
            approx[k] = _approx_score(sums[k], sum_total[k], inv_l, inv_r)
            hits += approx[k] >= cut[k]
        if hits == 0:  # the common case: no tree is near its running maximum here
            continue
        for k in range(n_k):
            keep, top[k], cut[k] = _candidate(approx[k], top[k], cut[k])
            if keep:
                cand_pos[k, n_cand[k]] = p
                cand_sum[k, n_cand[k]] = sums[k]
                n_cand[k] += 1


@numba.njit(cache=True)
def _root_splits_of_feature(data, grad_t, totals, m, c0, n_k, f, cand_pos, cand_sum, roots):
    """The root's best split of feature f for the K = n_k trees of model m (raw columns
    c0 .. c0 + n_k - 1, root totals in ``totals``) into ``roots``; cand_pos, cand_sum (max K, N)
    scratch. A feature tied for the model is skipped: every tree scans it on its own sample
    order (:func:`_replay_tied_sorts`)."""
    if data.tied[m, f]:
        return
    n_samples = data.src_idx.shape[1]
    sum_total = totals[c0 : c0 + n_k].copy()
    top = np.empty(n_k)
    n_cand = np.empty(n_k, dtype=np.int64)
    _root_scan(
        data.src_val[f], data.src_idx[f], grad_t, c0, sum_total, data.inverse, np.empty(n_k),
        np.empty(n_k), top, np.empty(n_k), n_cand, cand_pos, cand_sum,
    )
    for k in range(n_k):
        roots.proxy[c0 + k, f], roots.pos[c0 + k, f], roots.threshold[c0 + k, f] = (
            _resolve_candidates(
                data.src_val[f], 0, n_samples, sum_total[k], float(n_samples), data.inverse,
                cand_pos[k], cand_sum[k], n_cand[k], top[k],
            )
        )


@numba.njit(parallel=True, cache=True)
def _root_splits(data, grad_t, first_col, n_cols, cand_pos, cand_sum, roots):
    """Best root split of every feature for every tree of a stage (all models at once).

    The root holds all samples in presorted order in every tree, so the K trees of a model
    scan a feature together (:func:`_root_scan`); the (model, feature) tasks run in parallel.
    data: the :data:`_Presorted` codes; cand_pos (int64), cand_sum (float64): (W, max K, N)
    per-thread scratch. Output ``roots`` (:data:`_RootSplits`, arrays (C, D), row = the tree's
    raw column): (proxy, pos, threshold) as :func:`_best_split_of_feature` returns them.
    """
    n_features, n_samples = data.src_idx.shape
    n_models = first_col.shape[0]
    totals = np.zeros(grad_t.shape[1])
    for i in range(n_samples):  # each tree's root total, summed in sample order as init() does
        for c in range(grad_t.shape[1]):
            totals[c] += grad_t[i, c]
    for task in numba.prange(n_models * n_features):
        worker = numba.get_thread_id()
        m = task // n_features
        # one call: stores made in a prange body into a tuple's arrays are lost (see _fit_stage)
        _root_splits_of_feature(data, grad_t, totals, m, first_col[m], n_cols[m],
                                task % n_features, cand_pos[worker], cand_sum[worker], roots)


# ---------------------------------------------------------------------------------------------
# One regression tree (sklearn's DepthFirstTreeBuilder + BestSplitter on presorted segments),
# in steps: draw the features, find the split, partition, the children's impurities, carry the
# sorted segments down
# ---------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _segment_lists(data, scratch, worker, depth):
    """Sorted sample lists of the nodes at ``depth``: the presorted data at the root, else a
    per-worker buffer level."""
    if depth == 0:
        return data.src_idx, data.src_val
    return scratch.work_idx[worker, depth - 1], scratch.work_val[worker, depth - 1]


@numba.njit(cache=True)
def _node_totals(gradient, order, start, end):
    """sklearn's ``criterion.init``: the sum and sum of squares of the node's targets, in the
    order sklearn's ``samples`` array holds them."""
    sum_total = 0.0
    sq_sum_total = 0.0
    for q in range(start, end):
        y = gradient[np.uintp(order[q])]
        sum_total += y
        sq_sum_total += y * y
    return sum_total, sq_sum_total


@numba.njit(cache=True)
def _draw_features(seg_val, start, end, features, constant_features, n_known_constants, rng,
                   scans):
    """sklearn's feature draw of ``node_split_best``: the Fisher-Yates visiting order.

    features: sklearn's ``features`` array (permuted in place), its first ``n_known_constants``
    the constants inherited from the parent; a drawn feature whose values span no more than
    FEATURE_THRESHOLD on the node is a new constant. Every drawn feature that is not a known
    constant goes to ``scans.sorted_by`` and, if it is not constant on the node, to
    ``scans.visit``, in drawing order; ``constant_features`` is updated for the children and
    ``features`` restored as sklearn leaves it. Returns (n_visit, n_total_constants, n_sorted).
    """
    n_features = features.shape[0]
    n_total_constants = n_known_constants
    n_sorted = 0
    f_i = n_features
    n_visited = 0
    n_found_constants = 0
    n_drawn_constants = 0
    n_visit = 0
    while f_i > n_total_constants and (
        n_visited < n_features or n_visited <= n_found_constants + n_drawn_constants
    ):
        n_visited += 1
        f_j = _rand_int(n_drawn_constants, f_i - n_found_constants, rng)
        if f_j < n_known_constants:
            tmp = features[n_drawn_constants]
            features[n_drawn_constants] = features[f_j]
            features[f_j] = tmp
            n_drawn_constants += 1
            continue
        f_j += n_found_constants
        feature = features[f_j]
        scans.sorted_by[n_sorted] = feature
        n_sorted += 1
        if not _distinct(seg_val[feature, start], seg_val[feature, end - 1]):
            features[f_j] = features[n_total_constants]
            features[n_total_constants] = feature
            n_found_constants += 1
            n_total_constants += 1
            continue
        f_i -= 1
        features[f_j] = features[f_i]
        features[f_i] = feature
        scans.visit[n_visit] = feature
        scans.scanned[n_visit] = 0
        n_visit += 1
    for f in range(n_known_constants):
        features[f] = constant_features[f]
    for f in range(n_known_constants, n_total_constants):
        constant_features[f] = features[f]
    return n_visit, n_total_constants, n_sorted


@numba.njit(cache=True)
def _tie_runs(seg_val, seg_idx, twin, start, end, run_lo, run_hi):
    """The runs [run_lo[r], run_hi[r]) of equal values in a node's sorted segment of one feature
    that hold samples of different ``twin`` ids (the order sklearn's sort gives them matters);
    returns their number."""
    n_runs = 0
    first = start
    for q in range(start + 1, end + 1):
        if q < end and seg_val[q] == seg_val[first]:
            continue
        if q - first > 1:
            twin_id = twin[seg_idx[first]]
            for r in range(first + 1, q):
                if twin[seg_idx[r]] != twin_id:
                    run_lo[n_runs] = first
                    run_hi[n_runs] = q
                    n_runs += 1
                    break
        first = q
    return n_runs


@numba.njit(cache=True)
def _sort_as_sklearn(codes, seg_idx, previous, start, end, n_runs, runs, sorted_ids, sorted_val):
    """The node's samples as sklearn's sort by this feature leaves them, into ``sorted_ids``
    [start, end): sklearn's introsort of the ``previous`` order within the tie ``runs``
    (:func:`_tie_runs`), the feature's sorted segment elsewhere. ``previous`` may be
    ``sorted_ids`` itself; ``sorted_val`` is the sort's scratch (the sorted values are
    ``seg_val``'s)."""
    for q in range(start, end):
        sorted_ids[q] = previous[q]
        sorted_val[q] = codes[sorted_ids[q]]
    run_lo, run_hi = runs
    _introsort(sorted_val, sorted_ids, start, end - start, run_lo, run_hi, n_runs)
    gap = start
    for r in range(n_runs + 1):
        gap_end = run_lo[r] if r < n_runs else end
        for q in range(gap, gap_end):
            sorted_ids[q] = seg_idx[q]
        if r < n_runs:
            gap = run_hi[r]


@numba.njit(cache=True)
def _replay_tied_sorts(data, model, seg_idx, seg_val, order, start, end, scans, n_sorted,
                       n_visit, gradient, sum_total, sorted_ids, sorted_val, runs, cand_pos,
                       cand_sum):
    """sklearn's sample order through a node's sorts, where ties make it matter.

    sklearn sorts the node's ``samples`` in place by every feature in ``scans.sorted_by``, each
    sort starting from the order the previous one left (the first from ``order``, the node's
    entry order). Sorted by a feature without ties among the node's samples (up to twins), the
    samples have one order: the feature's segment. With ties the order depends on the previous
    one; it is replayed into ``sorted_ids`` [start, end) and, if the feature is visited, its
    split scanned on that order into ``scans`` (and marked scanned). Returns the feature whose
    segment holds the order the node is partitioned from, or -1 for ``sorted_ids``.
    """
    source = -2  # the entry order
    v = 0
    weight_node = float(end - start)
    twin = data.twin[model]
    for s in range(n_sorted):
        feature = scans.sorted_by[s]
        if seg_val[feature, start] == seg_val[feature, end - 1]:
            continue  # one value: the 3-way partition swaps nothing, the order stays
        visited = v < n_visit and scans.visit[v] == feature
        n_runs = 0
        if data.tied[model, feature]:
            n_runs = _tie_runs(seg_val[feature], seg_idx[feature], twin, start, end, runs[0],
                               runs[1])
        if n_runs > 0:
            if source == -2:
                previous = order
            elif source >= 0:
                previous = seg_idx[source]
            else:  # its own order: sorted_ids is read before each write
                previous = sorted_ids
            _sort_as_sklearn(data.codes_t[feature], seg_idx[feature], previous, start, end,
                             n_runs, runs, sorted_ids, sorted_val)
            source = -1
            if visited:
                scans.proxy[v], scans.pos[v], scans.threshold[v] = _best_split_of_feature(
                    seg_val[feature], sorted_ids, gradient, start, end, sum_total, weight_node,
                    data.inverse, cand_sum, cand_pos,
                )
                scans.scanned[v] = 1
        else:
            source = feature
        if visited:
            v += 1
    return source


@numba.njit(cache=True)
def _scan_visited(seg_idx, seg_val, gradient, start, end, sum_total, inverse, cand_pos, cand_sum,
                  scans, n_visit):
    """Best split of each visited feature not scanned yet into ``scans``, two features per loop.

    The scans do not touch the RNG, so their order is free; :func:`_first_best` applies
    sklearn's visiting order.
    """
    weight_node = float(end - start)
    visit = scans.visit
    todo = np.empty(n_visit, dtype=np.int64)
    n_todo = 0
    for v in range(n_visit):
        if not scans.scanned[v]:
            todo[n_todo] = v
            n_todo += 1
    for t in range(0, n_todo - 1, 2):
        v = todo[t]
        w = todo[t + 1]
        fa = visit[v]
        fb = visit[w]
        n_a, top_a, n_b, top_b = _scan_two_features(
            seg_val[fa], seg_idx[fa], seg_val[fb], seg_idx[fb], gradient, start, end,
            sum_total, inverse, cand_pos[0], cand_sum[0], cand_pos[1], cand_sum[1],
        )
        scans.proxy[v], scans.pos[v], scans.threshold[v] = _resolve_candidates(
            seg_val[fa], start, end, sum_total, weight_node, inverse, cand_pos[0], cand_sum[0],
            n_a, top_a,
        )
        scans.proxy[w], scans.pos[w], scans.threshold[w] = _resolve_candidates(
            seg_val[fb], start, end, sum_total, weight_node, inverse, cand_pos[1], cand_sum[1],
            n_b, top_b,
        )
    if n_todo % 2 == 1:
        v = todo[n_todo - 1]
        fa = visit[v]
        scans.proxy[v], scans.pos[v], scans.threshold[v] = _best_split_of_feature(
            seg_val[fa], seg_idx[fa], gradient, start, end, sum_total, weight_node, inverse,
            cand_sum[0], cand_pos[0],
        )


@numba.njit(cache=True)
def _gather_root_splits(roots, col, scans, n_visit):
    """The root's splits of the visited features not scanned yet, scanned for the whole stage by
    :func:`_root_splits` (row ``col`` of ``roots``)."""
    for v in range(n_visit):
        if scans.scanned[v]:
            continue
        feature = scans.visit[v]
        scans.proxy[v] = roots.proxy[col, feature]
        scans.pos[v] = roots.pos[col, feature]
        scans.threshold[v] = roots.threshold[col, feature]


@numba.njit(cache=True)
def _first_best(scans, n_visit, end):
    """sklearn's choice among the visited features: the first best in visiting order (strict
    ``>``). Returns (feature, pos, threshold); pos == end when no feature splits."""
    best_proxy = -np.inf
    best_feature = -1
    best_pos = end
    best_threshold = 0.0
    for v in range(n_visit):
        if scans.proxy[v] > best_proxy:
            best_proxy = scans.proxy[v]
            best_feature = scans.visit[v]
            best_pos = scans.pos[v]
            best_threshold = scans.threshold[v]
    return best_feature, best_pos, best_threshold


@numba.njit(cache=True)
def _partition(order, sorted_ids, column, start, end, threshold):
    """sklearn's ``partition_samples_final``: ``order[start:end]``, left sorted by the last
    feature sklearn sorted (``sorted_ids``), swapped in place around ``threshold``."""
    for q in range(start, end):
        order[q] = sorted_ids[q]
    lo = start
    hi = end
    while lo < hi:
        if column[np.uintp(order[lo])] <= threshold:
            lo += 1
        else:
            hi -= 1
            tmp = order[lo]
            order[lo] = order[hi]
            order[hi] = tmp


@numba.njit(cache=True)
def _children_impurities(gradient, order, start, split, end, sum_total, sq_sum_total):
    """sklearn's ``criterion.reset(); update(split); children_impurity()`` on the partitioned
    ``order``. Returns (impurity_left, impurity_right, weight_left, weight_right)."""
    weight_node = float(end - start)
    if (split - start) <= (end - split):
        sum_left = 0.0
        weight_left = 0.0
        for q in range(start, split):
            sum_left += gradient[np.uintp(order[q])]
            weight_left += 1.0
    else:
        sum_left = sum_total
        weight_left = weight_node
        for q in range(end - 1, split - 1, -1):
            sum_left -= gradient[np.uintp(order[q])]
            weight_left -= 1.0
    weight_right = weight_node - weight_left
    sum_right = sum_total - sum_left
    sq_sum_left = 0.0
    for q in range(start, split):
        y = gradient[np.uintp(order[q])]
        sq_sum_left += y * y
    sq_sum_right = sq_sum_total - sq_sum_left
    mean_left = sum_left / weight_left
    mean_right = sum_right / weight_right
    impurity_left = sq_sum_left / weight_left - mean_left * mean_left
    impurity_right = sq_sum_right / weight_right - mean_right * mean_right
    return impurity_left, impurity_right, weight_left, weight_right


@numba.njit(cache=True)
def _carry_segments_down(seg_idx, seg_val, child_idx, child_val, order, flag, start, split, end,
                         constant_features, n_constants):
    """The children's sorted segments: every non-constant feature's [start, end) segment
    stably partitioned into [start, split) (the samples of ``order[start:split]``) and
    [split, end); flag (N,) uint8 is scratch."""
    for q in range(start, split):
        flag[np.uintp(order[q])] = 1
    for q in range(split, end):
        flag[np.uintp(order[q])] = 0
    for f in range(seg_idx.shape[0]):
        in_constants = False
        for c in range(n_constants):
            if constant_features[c] == f:
                in_constants = True
                break
        if in_constants:
            continue
        parent_idx = seg_idx[f]
        parent_val = seg_val[f]
        out_left = np.uintp(start)
        out_right = np.uintp(split)
        out_idx = child_idx[f]
        out_val = child_val[f]
        for q in range(start, end):  # branch-free stable partition (unsigned indices)
            s = parent_idx[np.uintp(q)]
            go_left = np.uintp(flag[np.uintp(s)])
            dest = out_right + go_left * (out_left - out_right)
            out_idx[dest] = s
            out_val[dest] = parent_val[np.uintp(q)]
            out_left += go_left
            out_right += np.uintp(1) - go_left


@numba.njit(cache=True)
def _new_stack(max_depth):
    """sklearn's node stack (depth first, left child on top), room for a depth-limited tree."""
    cap = 2 * max_depth + 4
    return _NodeStack(
        np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.int64),
        np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.int64),
        np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.float64),
        np.empty(cap, dtype=np.int64),
    )


@numba.njit(cache=True)
def _push(stack, top, start, end, depth, parent, is_left, impurity, n_constants):
    """Push a node onto ``stack`` at height ``top``; returns the new height."""
    stack.start[top] = start
    stack.end[top] = end
    stack.depth[top] = depth
    stack.parent[top] = parent
    stack.is_left[top] = is_left
    stack.impurity[top] = impurity
    stack.n_constants[top] = n_constants
    return top + 1


@numba.njit(cache=True)
def _record_node(trees, j, node_id, parent, is_left, impurity, weight, feature, threshold):
    """Write node ``node_id`` of tree ``j`` (a leaf when ``feature`` is ``_TREE_UNDEFINED``)
    and link it to its parent."""
    if parent >= 0:
        if is_left:
            trees.left[j, parent] = node_id
        else:
            trees.right[j, parent] = node_id
    trees.left[j, node_id] = _TREE_LEAF
    trees.right[j, node_id] = _TREE_LEAF
    trees.impurity[j, node_id] = impurity
    trees.n_node[j, node_id] = weight
    trees.feature[j, node_id] = feature
    trees.threshold[j, node_id] = threshold


@numba.njit(cache=True)
def _build_tree(data, model, scratch, worker, gradient, roots, col, seed, max_depth, trees, j):
    """Fit one depth-limited squared-error regression tree into row ``j`` of ``trees``.

    data: the :data:`_Presorted` codes, ``model`` the label column this tree fits; scratch:
    the :data:`_Scratch` buffers, row ``worker`` used; gradient: (N,) float64 regression target;
    roots: the stage's root splits, row ``col`` this tree's; seed: sklearn's per-tree seed of its
    feature draws. Nodes are numbered in
    sklearn's order (depth-first, left child first); the leaf of every sample goes to
    ``scratch.leaf_of[worker]``. Returns the node count.
    """
    n_features, n_samples = data.src_idx.shape
    rng = np.empty(1, dtype=np.int64)
    rng[0] = seed
    features = scratch.features[worker]
    constant_features = scratch.constant_features[worker]
    order = scratch.order[worker]  # sklearn's ``samples`` array
    leaf_of = scratch.leaf_of[worker]
    for f in range(n_features):
        features[f] = f
    for i in range(n_samples):
        order[i] = i
    scans = _FeatureScans(
        np.empty(n_features, dtype=np.int64), np.empty(n_features, dtype=np.int64),
        np.empty(n_features, dtype=np.uint8), np.empty(n_features, dtype=np.float64),
        np.empty(n_features, dtype=np.int64), np.empty(n_features, dtype=np.float64),
    )
    weight_samples = float(n_samples)
    stack = _new_stack(max_depth)
    top = _push(stack, 0, 0, n_samples, 0, -1, 0, np.inf, 0)
    node_count = 0
    while top > 0:
        top -= 1
        start = stack.start[top]
        end = stack.end[top]
        depth = stack.depth[top]
        impurity = stack.impurity[top]
        n_constants = stack.n_constants[top]
        weight_node = float(end - start)
        sum_total, sq_sum_total = _node_totals(gradient, order, start, end)
        if node_count == 0:
            mean = sum_total / weight_node
            impurity = sq_sum_total / weight_node - mean * mean
        is_leaf = depth >= max_depth or end - start < 2 or impurity <= _EPSILON
        best_feature = -1
        split = end
        threshold = 0.0
        impurity_left = 0.0
        impurity_right = 0.0
        if not is_leaf:
            seg_idx, seg_val = _segment_lists(data, scratch, worker, depth)
            n_visit, n_constants, n_sorted = _draw_features(
                seg_val, start, end, features, constant_features, n_constants, rng, scans
            )
            sorted_ids = scratch.sorted_ids[worker]
            source = _replay_tied_sorts(
                data, model, seg_idx, seg_val, order, start, end, scans, n_sorted, n_visit,
                gradient, sum_total, sorted_ids, scratch.sorted_val[worker],
                scratch.runs[worker], scratch.cand_pos[worker, 0], scratch.cand_sum[worker, 0],
            )
            if depth == 0:
                _gather_root_splits(roots, col, scans, n_visit)
            else:
                _scan_visited(
                    seg_idx, seg_val, gradient, start, end, sum_total, data.inverse,
                    scratch.cand_pos[worker], scratch.cand_sum[worker], scans, n_visit,
                )
            best_feature, split, threshold = _first_best(scans, n_visit, end)
            is_leaf = split >= end
            if not is_leaf:
                _partition(order, sorted_ids if source < 0 else seg_idx[source],
                           data.codes_t[best_feature], start, end, threshold)
                impurity_left, impurity_right, weight_left, weight_right = _children_impurities(
                    gradient, order, start, split, end, sum_total, sq_sum_total
                )
                improvement = (weight_node / weight_samples) * (
                    impurity
                    - (weight_right / weight_node * impurity_right)
                    - (weight_left / weight_node * impurity_left)
                )
                is_leaf = improvement + _EPSILON < 0.0

        node_id = node_count
        node_count += 1
        if is_leaf:
            _record_node(trees, j, node_id, stack.parent[top], stack.is_left[top], impurity,
                         weight_node, _TREE_UNDEFINED, float(_TREE_UNDEFINED))
            for q in range(start, end):
                leaf_of[np.uintp(order[q])] = node_id
            continue
        _record_node(trees, j, node_id, stack.parent[top], stack.is_left[top], impurity,
                     weight_node, best_feature, threshold)
        if depth + 1 < max_depth:  # children will be split: carry the sorted segments down
            _carry_segments_down(
                seg_idx, seg_val, scratch.work_idx[worker, depth], scratch.work_val[worker, depth],
                order, scratch.flag[worker], start, split, end, constant_features, n_constants,
            )
        top = _push(stack, top, split, end, depth + 1, node_id, 0, impurity_right, n_constants)
        top = _push(stack, top, start, split, depth + 1, node_id, 1, impurity_left, n_constants)
    return node_count


@numba.njit(cache=True)
def _tree_importances(feature, left, right, impurity, n_node, node_count, out):
    """sklearn's ``Tree.compute_feature_importances(normalize=False)`` into ``out`` (D,)."""
    out[:] = 0.0
    for node in range(node_count):
        lc = left[node]
        if lc != _TREE_LEAF:
            rc = right[node]
            out[feature[node]] += (
                n_node[node] * impurity[node]
                - n_node[lc] * impurity[lc]
                - n_node[rc] * impurity[rc]
            )
    for f in range(out.shape[0]):
        out[f] /= n_node[0]


@numba.njit(cache=True)
def _newton_leaf_values(
    gradient, target, leaf_of, node_count, left, n_classes, bucket_a, bucket_b, counts, value_out
):
    """Leaf values by one Newton step (sklearn's ``_update_terminal_regions`` for log-loss).

    The leaf's samples are visited in increasing index order and summed pairwise, as numpy does.
    """
    n_samples = gradient.shape[0]
    offsets = np.zeros(node_count + 1, dtype=np.int64)
    for i in range(n_samples):
        offsets[leaf_of[i] + 1] += 1
    for node in range(node_count):
        offsets[node + 1] += offsets[node]
        counts[node] = offsets[node]
    for i in range(n_samples):
        slot = counts[leaf_of[i]]
        counts[leaf_of[i]] = slot + 1
        neg_g = gradient[i]
        prob = target[i] - neg_g
        bucket_a[slot] = neg_g
        bucket_b[slot] = prob * (1.0 - prob)
    factor = (n_classes - 1) / n_classes
    for node in range(node_count):
        if left[node] != _TREE_LEAF:
            continue
        lo = offsets[node]
        n = offsets[node + 1] - lo
        if n == 0:
            value_out[node] = 0.0
            continue
        numerator = _pairwise_sum(bucket_a, lo, n) / n
        if n_classes > 2:
            numerator *= factor
        denominator = _pairwise_sum(bucket_b, lo, n) / n
        if abs(denominator) < 1e-150:
            value_out[node] = 0.0
        else:
            value_out[node] = numerator / denominator


_GRADIENT_CHUNK = 256  # samples per parallel task of _negative_gradient


@numba.njit(parallel=True, cache=True)
def _negative_gradient(labels, raw, first_col, n_cols, out, out_t, libm_equal):
    """out = -gradient of the log-loss (sklearn's Cython formulas), for all models at once.

    labels: (M, N) float64 encoded classes of each model; raw: (C, N) raw predictions whose
    rows [first_col[m], first_col[m] + n_cols[m]) belong to model m (one row if binary);
    out: (C, N), written in place; out_t (N, C): its transpose (for :func:`_root_splits`).
    ``libm_equal``: :func:`._libm_exp.reproduces_libm`. Multiclass models work class by class
    on chunks of samples, so the softmax' ``exp`` runs vectorised over samples; per sample the
    order of operations is sklearn's.
    """
    n_samples = raw.shape[1]
    n_models = labels.shape[0]
    n_chunks = (n_samples + _GRADIENT_CHUNK - 1) // _GRADIENT_CHUNK
    for chunk in numba.prange(n_chunks):
        lo = chunk * _GRADIENT_CHUNK
        hi = min(lo + _GRADIENT_CHUNK, n_samples)
        size = hi - lo
        top = np.empty(size)
        total = np.empty(size)
        shifted = np.empty(size)
        for m in range(n_models):
            c0 = first_col[m]
            k_cols = n_cols[m]
            if k_cols == 1:  # HalfBinomialLoss
                for i in range(lo, hi):
                    y = labels[m, i]
                    r = raw[c0, i]
                    if r > -37.0:
                        e = np.exp(-r)
                        grad = ((1.0 - y) - y * e) / (1.0 + e)
                    else:
                        grad = np.exp(r) - y
                    out[c0, i] = -grad
                    out_t[i, c0] = -grad
                continue
            # HalfMultinomialLoss: p = softmax(raw), gradient p - onehot(y)
            for j in range(size):
                top[j] = raw[c0, lo + j]
            for k in range(1, k_cols):
                for j in range(size):
                    value = raw[c0 + k, lo + j]
                    top[j] = value if top[j] < value else top[j]
            total[:] = 0.0
            for k in range(k_cols):
                for j in range(size):
                    shifted[j] = raw[c0 + k, lo + j] - top[j]
                exp_into(shifted, out[c0 + k, lo:hi], libm_equal)
                for j in range(size):
                    total[j] += out[c0 + k, lo + j]
            for k in range(k_cols):
                for j in range(size):
                    p = out[c0 + k, lo + j] / total[j]
                    gradient = -(p - (1.0 if labels[m, lo + j] == k else 0.0))
                    out[c0 + k, lo + j] = gradient
                    out_t[lo + j, c0 + k] = gradient


@numba.njit(cache=True)
def _class_target(labels, n_classes, klass, out):
    """The 0/1 target of one tree's class (the label itself for two classes) into ``out``."""
    if n_classes == 2:
        out[:] = labels
    else:
        for i in range(labels.shape[0]):
            out[i] = 1.0 if labels[i] == klass else 0.0
    return out


@numba.njit(cache=True)
def _add_leaf_values(raw_col, learning_rate, value, leaf_of):
    """raw_col[i] += learning_rate * value of sample i's leaf."""
    for i in range(raw_col.shape[0]):
        raw_col[i] += learning_rate * value[np.uintp(leaf_of[i])]


@numba.njit(cache=True)
def _fit_job(data, scratch, worker, trees, roots, jobs, j, seed, labels, n_classes, raw,
             neg_gradient, learning_rate, max_depth):
    """Job j of a stage: fit its tree into row j of ``trees``, give the leaves their Newton
    values and move the model's raw predictions (row ``jobs.col[j]`` of ``raw``)."""
    m = jobs.model[j]
    col = jobs.col[j]
    gradient = neg_gradient[col]
    count = _build_tree(data, m, scratch, worker, gradient, roots, col, seed,
                        max_depth, trees, j)
    trees.node_count[j] = count
    target = _class_target(labels[m], n_classes[m], jobs.klass[j], scratch.target[worker])
    _newton_leaf_values(
        gradient, target, scratch.leaf_of[worker], count, trees.left[j], n_classes[m],
        scratch.bucket_a[worker], scratch.bucket_b[worker], scratch.counts[worker],
        trees.value[j],
    )
    _add_leaf_values(raw[col], learning_rate, trees.value[j], scratch.leaf_of[worker])


@numba.njit(parallel=True, cache=True)
def _fit_stage(data, scratch, trees, roots, jobs, seeds, labels, n_classes, raw, neg_gradient,
               learning_rate, max_depth):
    """Fit the trees of one boosting stage (all models, all classes) and update ``raw``.

    raw, neg_gradient: (C, N); roots: the stage's :data:`_RootSplits`; labels (M, N), n_classes
    (M,): the encoded classes of each model; seeds (J,): each job's tree seed. The jobs
    (:data:`_Jobs`, :func:`_fit_job`) are independent and run in one parallel loop (the driver
    sets a chunk size of 1, so a thread that finishes early takes the next job); job j's tree
    goes to row j of ``trees``.
    """
    for j in numba.prange(jobs.model.shape[0]):
        # one call: numba 0.68's parfor lowering drops stores made in the loop body itself into
        # the arrays of a tuple argument; stores inside a called function are kept
        _fit_job(data, scratch, numba.get_thread_id(), trees, roots, jobs, j, seeds[j], labels,
                 n_classes, raw, neg_gradient, learning_rate, max_depth)


@numba.njit(parallel=True, cache=True)
def _predict_raw(codes, feature, threshold, left, right, value, tree_col, learning_rate, raw):
    """raw[i, tree_col[t]] += learning_rate * leaf value of tree t, trees in fit order.

    codes: (N, D) float32; tree arrays (T, M); raw (N, C) updated in place.
    """
    n_samples = codes.shape[0]
    n_trees = feature.shape[0]
    for i in numba.prange(n_samples):
        for t in range(n_trees):
            node = 0
            while left[t, node] != _TREE_LEAF:
                if codes[i, feature[t, node]] <= threshold[t, node]:
                    node = left[t, node]
                else:
                    node = right[t, node]
            raw[i, tree_col[t]] += learning_rate * value[t, node]


# ---------------------------------------------------------------------------------------------
# Drivers
# ---------------------------------------------------------------------------------------------


def _float32_codes(codes, name: str = "codes") -> np.ndarray:
    """``codes`` as C-contiguous float32, the precision scikit-learn's trees compare in.

    Finite values beyond float32's range would become infinite; scikit-learn refuses them, and
    so does this (in the numba and LightGBM backends alike).
    """
    with np.errstate(over="ignore"):
        x32 = np.ascontiguousarray(codes, dtype=np.float32)
    if not np.isfinite(x32).all():
        raise ValueError(
            f"{name} holds NaN, infinity or values beyond float32's range (|x| > 3.4e38); the "
            "boosted trees compare codes in float32, as scikit-learn's do. Rescale the codes."
        )
    return x32


def _init_raw(counts: np.ndarray) -> np.ndarray:
    """Raw prediction of the prior (sklearn: DummyClassifier(prior) through the loss link)."""
    from scipy.special import logit
    from scipy.stats import gmean

    prior = counts / counts.sum()
    eps = np.finfo(np.float64).eps
    if prior.size == 2:
        p1 = np.clip(prior[1:], eps, 1 - eps, dtype=np.float64)
        return logit(p1)
    p = np.clip(prior[None, :], eps, 1 - eps, dtype=np.float64)
    return np.log(p / gmean(p, axis=1)[:, None])[0]


@dataclass
class GBTModels:
    """Several boosted-tree classifiers fitted on the same codes (one per label column).

    Tree t (fit order: model, then stage, then class) lives in row t of the node arrays and adds
    to column ``tree_col[t]`` of the raw predictions.
    """

    classes: list  # per model, the sorted class labels
    first_col: np.ndarray  # (M,) first raw column of each model
    n_cols: np.ndarray  # (M,) raw columns of each model (1 if binary)
    init_raw: np.ndarray  # (C,) raw prediction of the prior
    feature: np.ndarray  # (T, nodes) int64
    threshold: np.ndarray  # (T, nodes) float64
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray  # (T, nodes) float64 (leaves: Newton step; inner nodes: mean)
    node_count: np.ndarray  # (T,)
    tree_importances: np.ndarray  # (T, D) unnormalised impurity decrease of each tree
    tree_model: np.ndarray  # (T,)
    tree_col: np.ndarray  # (T,)
    learning_rate: float
    train_raw: np.ndarray  # (N_train, C) raw predictions on the training codes

    def feature_importances(self, model: int) -> np.ndarray:
        """sklearn's ``feature_importances_`` of one model."""
        keep = (self.tree_model == model) & (self.node_count > 1)
        if not keep.any():
            return np.zeros(self.tree_importances.shape[1], dtype=np.float64)
        avg = np.mean(self.tree_importances[keep], axis=0, dtype=np.float64)
        return avg / np.sum(avg)

    def decision_raw(self, codes, name: str = "codes") -> np.ndarray:
        codes = _float32_codes(codes, name)
        raw = np.tile(self.init_raw, (codes.shape[0], 1))
        _predict_raw(
            codes, self.feature, self.threshold, self.left, self.right, self.value,
            self.tree_col, self.learning_rate, raw,
        )
        return raw

    def predict_from_raw(self, raw: np.ndarray, model: int) -> np.ndarray:
        block = raw[:, self.first_col[model] : self.first_col[model] + self.n_cols[model]]
        if block.shape[1] == 1:
            encoded = (block[:, 0] >= 0).astype(np.int64)
        else:
            encoded = np.argmax(block, axis=1)
        return self.classes[model][encoded]

    def proba_from_raw(self, raw: np.ndarray, model: int) -> np.ndarray:
        from scipy.special import expit, softmax

        block = raw[:, self.first_col[model] : self.first_col[model] + self.n_cols[model]]
        if block.shape[1] == 1:
            p1 = expit(block[:, 0])
            return np.stack([1 - p1, p1], axis=1)
        return softmax(block, axis=1)


@memoized(ignore=("n_threads",))  # shared within fastdis.metrics.shared_fits()
def fit_gbt(
    codes,
    labels,
    *,
    n_estimators: int = 100,
    learning_rate: float = 0.1,
    max_depth: int = 3,
    random_state=None,
    n_threads: int | None = None,
) -> GBTModels:
    """Fit one boosted-tree classifier per column of ``labels`` on the same ``codes``.

    Equivalent to ``[GradientBoostingClassifier(n_estimators, learning_rate, max_depth,
    random_state=rs).fit(codes, labels[:, m]) for m in ...]`` run one after another with one
    shared RandomState ``rs``: the per-tree seeds are drawn from ``random_state`` in that order
    (model by model, stage by stage, class by class), so the RNG ends in the same state.

    Parameters
    ----------
    codes : array of shape (n_samples, n_features), real.
    labels : array of shape (n_samples, n_models), integer class labels (any values; each
        column needs at least two classes).
    n_estimators, learning_rate, max_depth : boosting stages, shrinkage, tree depth.
    random_state : None, int, RandomState, or a list of those (one per model), default=None
        None means numpy's global RNG, as scikit-learn's default. Only breaks exact ties. A
        list gives model m the RNG ``random_state[m]`` would give a separate estimator (so
        ``[0, 0]`` is two estimators seeded with 0 each, not one shared RandomState(0)).
    n_threads : int, optional
        Worker threads (default: numba's thread count, or one for a fit smaller than
        :data:`PARALLEL_MIN_CELLS`).

    Returns
    -------
    GBTModels
    """
    codes = np.asarray(codes)
    labels = np.asarray(labels)
    if labels.ndim == 1:
        labels = labels[:, None]
    n_samples, n_features = codes.shape
    n_models = labels.shape[1]
    if n_estimators < 1 or max_depth < 1 or not learning_rate > 0:
        raise ValueError(
            "n_estimators and max_depth must be >= 1 and learning_rate > 0; got "
            f"{n_estimators}, {max_depth}, {learning_rate}."
        )
    if isinstance(random_state, PER_MODEL_SEEDS):
        if len(random_state) != n_models:
            raise ValueError(
                f"random_state must be one RNG or a list of one per model ({n_models}); got "
                f"{len(random_state)}."
            )
        model_rngs = [check_random_state(r) for r in random_state]
    else:
        model_rngs = [check_random_state(random_state)] * n_models

    x32 = _float32_codes(codes)
    classes, encoded, n_classes, n_cols, init_raw = _encode_labels(labels)
    data = _presort(x32, encoded)
    first_col = np.concatenate([[0], np.cumsum(n_cols)[:-1]]).astype(np.int64)
    jobs = _Jobs(
        model=np.repeat(np.arange(n_models), n_cols).astype(np.int64),
        col=np.arange(int(n_cols.sum()), dtype=np.int64),
        klass=np.concatenate([np.arange(k) for k in n_cols]).astype(np.int64),
    )
    seeds = _tree_seeds(model_rngs, n_estimators, n_cols)[jobs.model, :, jobs.klass]  # (J, S)
    n_jobs = jobs.model.size
    if n_threads is None:
        small = n_samples * n_features * n_jobs < PARALLEL_MIN_CELLS
        n_threads = 1 if small else numba.get_num_threads()
    n_workers = max(1, min(int(n_threads), n_jobs, numba.config.NUMBA_NUM_THREADS))
    trees = _new_trees((n_estimators, n_jobs), 2 ** (max_depth + 1) - 1)
    raw = np.ascontiguousarray(np.tile(init_raw[:, None], (1, n_samples)))  # (C, N)
    _boost(data, _new_scratch(n_workers, n_features, n_samples, max_depth), trees, jobs, seeds,
           encoded, n_classes, first_col, n_cols, raw, float(learning_rate), int(max_depth))
    return _collect_models(trees, jobs, n_features, classes, first_col, n_cols, init_raw,
                           float(learning_rate), raw)


def _presort(x32: np.ndarray, encoded: np.ndarray):
    """The float32 codes (N, D) as :data:`_Presorted` for the models of ``encoded`` (M, N):
    every feature sorted once per fit."""
    codes_t = np.ascontiguousarray(x32.T)
    src_idx = np.argsort(codes_t, axis=1, kind="stable").astype(np.int32)
    src_val = np.ascontiguousarray(np.take_along_axis(codes_t, src_idx, axis=1))
    with np.errstate(divide="ignore"):
        inverse = 1.0 / np.arange(x32.shape[0] + 1, dtype=np.float64)
    tied, twin = _tied_features(x32, src_idx, src_val, encoded)
    return _Presorted(codes_t, src_idx, src_val, inverse, tied, twin)


def _tied_features(x32: np.ndarray, src_idx: np.ndarray, src_val: np.ndarray,
                   encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tied, twin): tied (M, D) uint8 is 1 where feature d holds equal values on two samples
    that are not twins for model m; twin (M, N) int64 numbers the samples' twin classes.

    Twins are samples with the same codes (bit for bit) and the same label: every stage gives
    them the same gradient, so the order sklearn's sort leaves them in changes no sum. Equal
    values on other samples are ordered by sklearn's introsort, and the running sums, node totals
    and partitions depend on that order in their last bits; the trees replay that sort
    (:func:`_replay_tied_sorts`) for the features flagged here, in every node.
    """
    _, row = np.unique(np.ascontiguousarray(x32).view(np.dtype((np.void, x32.dtype.itemsize
                                                                 * x32.shape[1]))),
                       return_inverse=True)
    row = row.reshape(-1).astype(np.int64)
    n_samples = x32.shape[0]
    positions = np.broadcast_to(np.arange(n_samples), src_val.shape)
    run_start = np.ones(src_val.shape, dtype=bool)
    run_start[:, 1:] = src_val[:, 1:] != src_val[:, :-1]
    first_of_run = np.maximum.accumulate(np.where(run_start, positions, 0), axis=1)
    tied = np.empty((encoded.shape[0], x32.shape[1]), dtype=np.uint8)
    twin = row * (int(encoded.max()) + 1) + encoded.astype(np.int64)  # (M, N)
    for m in range(encoded.shape[0]):
        by_feature = twin[m][src_idx]
        tied[m] = (by_feature != np.take_along_axis(by_feature, first_of_run, axis=1)).any(axis=1)
    return tied, twin


def _encode_labels(labels: np.ndarray):
    """Per model (label column): sorted classes, labels encoded as class indices (M, N) float64,
    class counts (M,), raw columns (M,: 1 if binary) and the prior's raw prediction (C,)."""
    n_samples, n_models = labels.shape
    classes = []
    encoded = np.empty((n_models, n_samples), dtype=np.float64)
    n_classes = np.empty(n_models, dtype=np.int64)
    n_cols = np.empty(n_models, dtype=np.int64)
    init_parts = []
    for m in range(n_models):
        uniques, inverse = np.unique(labels[:, m], return_inverse=True)
        if uniques.size < 2:
            raise ValueError(
                f"labels[:, {m}] has a single class ({uniques[0]!r}); a classifier needs at "
                "least 2 classes."
            )
        classes.append(uniques)
        encoded[m] = inverse.reshape(-1)
        n_classes[m] = uniques.size
        n_cols[m] = 1 if uniques.size == 2 else uniques.size
        init_parts.append(_init_raw(np.bincount(inverse.reshape(-1)).astype(np.float64)))
    return classes, encoded, n_classes, n_cols, np.concatenate(init_parts)


def _tree_seeds(model_rngs, n_estimators: int, n_cols: np.ndarray) -> np.ndarray:
    """One seed per tree, drawn in sklearn's order (model, stage, class): (M, S, max K)."""
    seeds = np.empty((len(model_rngs), n_estimators, int(n_cols.max())), dtype=np.int64)
    for m, rng in enumerate(model_rngs):
        seeds[m, :, : n_cols[m]] = rng.randint(0, _RAND_R_MAX, size=(n_estimators, n_cols[m]))
    return seeds


def _new_scratch(n_workers: int, n_features: int, n_samples: int, max_depth: int):
    """:data:`_Scratch` for ``n_workers`` threads."""
    levels = max(max_depth - 1, 1)
    n_nodes = 2 ** (max_depth + 1) - 1
    rows = (n_workers, n_samples)
    return _Scratch(
        work_idx=np.empty((n_workers, levels, n_features, n_samples), dtype=np.int32),
        work_val=np.empty((n_workers, levels, n_features, n_samples), dtype=np.float32),
        order=np.empty(rows, dtype=np.int32),
        sorted_ids=np.empty(rows, dtype=np.int32),
        sorted_val=np.empty(rows, dtype=np.float32),
        runs=np.empty((n_workers, 2, n_samples), dtype=np.int64),
        flag=np.empty(rows, dtype=np.uint8),
        leaf_of=np.empty(rows, dtype=np.int64),
        features=np.empty((n_workers, n_features), dtype=np.int64),
        constant_features=np.empty((n_workers, n_features), dtype=np.int64),
        target=np.empty(rows, dtype=np.float64),
        bucket_a=np.empty(rows, dtype=np.float64),
        bucket_b=np.empty(rows, dtype=np.float64),
        counts=np.empty((n_workers, n_nodes + 1), dtype=np.int64),
        cand_pos=np.empty((n_workers, 2, n_samples), dtype=np.int64),
        cand_sum=np.empty((n_workers, 2, n_samples), dtype=np.float64),
    )


def _new_trees(shape: tuple, n_nodes: int):
    """:data:`_Trees` for ``shape`` trees (stage, job) of ``n_nodes`` nodes, all leaves."""
    nodes = shape + (n_nodes,)
    return _Trees(
        feature=np.full(nodes, _TREE_UNDEFINED, dtype=np.int64),
        threshold=np.full(nodes, float(_TREE_UNDEFINED), dtype=np.float64),
        left=np.full(nodes, _TREE_LEAF, dtype=np.int64),
        right=np.full(nodes, _TREE_LEAF, dtype=np.int64),
        value=np.zeros(nodes, dtype=np.float64),
        impurity=np.zeros(nodes, dtype=np.float64),
        n_node=np.zeros(nodes, dtype=np.float64),
        node_count=np.zeros(shape, dtype=np.int64),
    )


def _boost(data, scratch, trees, jobs, seeds, encoded, n_classes, first_col, n_cols, raw,
           learning_rate: float, max_depth: int) -> None:
    """The boosting stages: gradient, root scans, then the trees, stage after stage.

    trees: :data:`_Trees` with a leading stage axis; seeds (J, S); raw (C, N) updated in place.
    """
    n_samples = raw.shape[1]
    n_workers = scratch.order.shape[0]
    max_k = int(n_cols.max())
    neg_gradient = np.empty_like(raw)
    grad_t = np.empty((n_samples, raw.shape[0]), dtype=np.float64)
    root_shape = (raw.shape[0], data.src_idx.shape[0])
    roots = _RootSplits(np.empty(root_shape), np.empty(root_shape, dtype=np.int64),
                        np.empty(root_shape))
    root_cand_pos = np.empty((n_workers, max_k, n_samples), dtype=np.int64)
    root_cand_sum = np.empty((n_workers, max_k, n_samples), dtype=np.float64)
    libm_equal = reproduces_libm()
    previous_threads = numba.get_num_threads()
    numba.set_num_threads(n_workers)
    try:
        with numba.parallel_chunksize(1):  # dynamic: a busy core does not stall the stage
            for stage in range(seeds.shape[1]):
                _negative_gradient(
                    encoded, raw, first_col, n_cols, neg_gradient, grad_t, libm_equal
                )
                _root_splits(data, grad_t, first_col, n_cols, root_cand_pos, root_cand_sum,
                             roots)
                _fit_stage(
                    data, scratch, _Trees(*(a[stage] for a in trees)), roots, jobs,
                    np.ascontiguousarray(seeds[:, stage]), encoded, n_classes, raw,
                    neg_gradient, learning_rate, max_depth,
                )
    finally:
        numba.set_num_threads(previous_threads)


def _collect_models(trees, jobs, n_features, classes, first_col, n_cols, init_raw,
                    learning_rate, raw) -> GBTModels:
    """The fitted trees (stage, job) as :class:`GBTModels`, with their importances, in
    sklearn's order: model, then stage, then class."""
    n_estimators, n_jobs = trees.node_count.shape
    importances = np.zeros((n_estimators, n_jobs, n_features), dtype=np.float64)
    for stage in range(n_estimators):
        for j in range(n_jobs):
            _tree_importances(
                trees.feature[stage, j], trees.left[stage, j], trees.right[stage, j],
                trees.impurity[stage, j], trees.n_node[stage, j], trees.node_count[stage, j],
                importances[stage, j],
            )
    perm = np.concatenate(
        [
            (np.arange(n_estimators)[:, None] * n_jobs + jobs.col[jobs.model == m][None, :]).ravel()
            for m in range(len(classes))
        ]
    )

    def flat(a):
        return np.ascontiguousarray(a.reshape((n_estimators * n_jobs,) + a.shape[2:])[perm])

    return GBTModels(
        classes=classes,
        first_col=first_col,
        n_cols=n_cols,
        init_raw=init_raw,
        feature=flat(trees.feature),
        threshold=flat(trees.threshold),
        left=flat(trees.left),
        right=flat(trees.right),
        value=flat(trees.value),
        node_count=flat(trees.node_count),
        tree_importances=flat(importances),
        tree_model=flat(np.broadcast_to(jobs.model, (n_estimators, n_jobs))),
        tree_col=flat(np.broadcast_to(jobs.col, (n_estimators, n_jobs))),
        learning_rate=learning_rate,
        train_raw=np.ascontiguousarray(raw.T),
    )


# ---------------------------------------------------------------------------------------------
# Estimator (sklearn-like)
# ---------------------------------------------------------------------------------------------


def _lightgbm_params(n_classes: int, n_estimators: int, learning_rate: float, max_depth: int):
    """LightGBM configured as close to sklearn's GradientBoostingClassifier as it allows."""
    params = {
        "objective": "binary" if n_classes == 2 else "multiclass",
        "num_iterations": n_estimators,
        "learning_rate": learning_rate,
        "max_depth": max_depth,
        "num_leaves": 2**max_depth,
        "min_data_in_leaf": 1,
        # 0 would be scikit-learn's (no such limit), but LightGBM then fails its own check
        # "best_split_info.left_count > 0" on saturated leaves (LightGBM issues #3679,
        # #4739; e.g. the 6-valued factor of disentangled codes). The floor only forbids
        # leaves whose samples are all predicted with near certainty (hessian sum < 1e-12).
        "min_sum_hessian_in_leaf": 1e-12,
        "min_data_in_bin": 1,
        "max_bin": 1023,
        "lambda_l1": 0.0,
        "lambda_l2": 0.0,
        "min_gain_to_split": 0.0,
        "boost_from_average": True,
        "bagging_fraction": 1.0,
        "feature_fraction": 1.0,
        "num_threads": 1,
        "deterministic": True,
        "force_row_wise": True,
        "seed": 0,
        "verbosity": -1,
    }
    if n_classes > 2:
        params["num_class"] = n_classes
    return params


def _check_fit_input(X, y) -> np.ndarray:
    """``X`` as an array after the estimator's checks: 2-D, finite, as many rows as ``y``."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] != np.shape(y)[0]:
        raise ValueError(
            f"X must be 2-D with as many rows as y; got X {X.shape} and y {np.shape(y)}."
        )
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinity.")
    return X


class GradientBoostingClassifier:
    """scikit-learn's ``GradientBoostingClassifier`` (log-loss, squared-error trees), fast.

    Parameters
    ----------
    backend : {"numba", "lightgbm", "sklearn"}, default="numba"
        ``"numba"``: this module's engine, which reproduces scikit-learn 1.9.1 bit for bit
        (trees, importances, predictions). ``"lightgbm"``: LightGBM with
        depth-``max_depth`` trees, no regularisation and gain importances; it bins features and
        scores splits with gradients *and* hessians, so trees, accuracies and importances only
        approximate scikit-learn's. ``"sklearn"``: scikit-learn itself (the exact oracle).
    n_estimators : int, default=100
    learning_rate : float, default=0.1
    max_depth : int, default=3
    random_state : None, int or RandomState, default=None
        As scikit-learn's: None uses numpy's global RNG. Only breaks exact ties between features.

    Attributes
    ----------
    classes_ : ndarray, the sorted class labels.
    n_classes_ : int
    feature_importances_ : ndarray of shape (n_features,), sums to 1 (or all zero).
    """

    def __init__(
        self,
        backend: str = "numba",
        n_estimators: int = 100,
        learning_rate: float = 0.1,
        max_depth: int = 3,
        random_state=None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}.")
        self.backend = backend
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.random_state = random_state

    def fit(self, X, y):
        y = np.asarray(y).reshape(-1)
        X = _check_fit_input(X, y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        self.n_classes_ = self.classes_.size
        if self.n_classes_ < 2:
            raise ValueError(
                f"y has a single class ({self.classes_[0]!r}); a classifier needs at least 2."
            )
        self.n_features_in_ = X.shape[1]
        if self.backend == "numba":
            self._models = fit_gbt(
                X, y, n_estimators=self.n_estimators, learning_rate=self.learning_rate,
                max_depth=self.max_depth, random_state=self.random_state,
            )
            self.feature_importances_ = self._models.feature_importances(0)
        elif self.backend == "sklearn":
            from sklearn.ensemble import GradientBoostingClassifier as _Sklearn

            self._model = _Sklearn(
                n_estimators=self.n_estimators, learning_rate=self.learning_rate,
                max_depth=self.max_depth, random_state=self.random_state,
            ).fit(X, y)
            self.feature_importances_ = self._model.feature_importances_
        else:
            import lightgbm

            params = _lightgbm_params(
                self.n_classes_, self.n_estimators, self.learning_rate, self.max_depth
            )
            data = lightgbm.Dataset(
                _float32_codes(X, name="X"), label=encoded, params={"verbosity": -1}
            )
            self._booster = lightgbm.train(params, data)
            gain = self._booster.feature_importance(importance_type="gain").astype(np.float64)
            total = gain.sum()
            self.feature_importances_ = gain / total if total > 0 else np.zeros_like(gain)
        return self

    def decision_function(self, X):
        X = np.asarray(X)
        if self.backend == "numba":
            raw = self._models.decision_raw(X)
            return raw[:, 0] if raw.shape[1] == 1 else raw
        if self.backend == "sklearn":
            return self._model.decision_function(X)
        return self._booster.predict(_float32_codes(X, name="X"), raw_score=True)

    def predict_proba(self, X):
        if self.backend == "sklearn":
            return self._model.predict_proba(X)
        if self.backend == "lightgbm":
            p = self._booster.predict(_float32_codes(X, name="X"))
            return np.stack([1 - p, p], axis=1) if p.ndim == 1 else p
        return self._models.proba_from_raw(self._models.decision_raw(np.asarray(X)), 0)

    def predict(self, X):
        if self.backend == "numba":
            return self._models.predict_from_raw(self._models.decision_raw(np.asarray(X)), 0)
        if self.backend == "sklearn":
            return self._model.predict(X)
        raw = self.decision_function(X)
        encoded = (raw >= 0).astype(np.int64) if raw.ndim == 1 else np.argmax(raw, axis=1)
        return self.classes_[encoded]

    def score(self, X, y):
        """Mean accuracy of ``predict(X)`` against ``y``."""
        return float(np.mean(self.predict(X) == np.asarray(y).reshape(-1)))


def model_accuracies(models, labels, test_codes, test_labels) -> tuple[list, list]:
    """(train, test) accuracy of each model of ``fit_gbt(codes, labels)``, as float lists.

    The training predictions reuse the raw scores boosting ended with (``models.train_raw``).
    """
    test_raw = models.decision_raw(test_codes, "test_codes")
    train, test = [], []
    for m in range(labels.shape[1]):
        train.append(float(np.mean(models.predict_from_raw(models.train_raw, m) == labels[:, m])))
        test.append(float(np.mean(models.predict_from_raw(test_raw, m) == test_labels[:, m])))
    return train, test


def boosted_together(estimators, codes, labels, test_codes, test_labels):
    """Fit ``estimators[m]`` to ``labels[:, m]`` in one boosting run; (train, test) accuracies.

    For unfitted numba-backend :class:`GradientBoostingClassifier` s with the same settings
    (what a predictor factory returns factor after factor), :func:`fit_gbt` boosts all of them at
    once, every tree of a stage in parallel: the same trees and the same RNG draws as fitting
    them one after another, with the cores busy on the wide stages of the small models too.
    Returns None (nothing fitted) for any other estimators.
    """
    first = estimators[0] if estimators else None
    settings = [(type(e), getattr(e, "backend", None), getattr(e, "n_estimators", None),
                 getattr(e, "learning_rate", None), getattr(e, "max_depth", None))
                for e in estimators]
    if (first is None or settings[0][:2] != (GradientBoostingClassifier, "numba")
            or len(set(settings)) != 1):
        return None
    codes = _check_fit_input(codes, labels)
    models = fit_gbt(codes, labels, n_estimators=first.n_estimators,
                     learning_rate=first.learning_rate, max_depth=first.max_depth,
                     random_state=[e.random_state for e in estimators])
    return model_accuracies(models, labels, test_codes, test_labels)


def gbt_importance_matrix(
    codes, factors, test_codes, test_factors, *, backend: str = "numba", random_state=None
):
    """Boosted-tree importance of every code for every factor, and mean accuracies.

    disentanglement_lib's ``compute_importance_gbt`` on arrays: for each factor k a
    ``GradientBoostingClassifier()`` (100 stages, depth 3, learning rate 0.1) predicts factor k
    from all codes; ``importance[:, k] = |feature_importances_|`` and the accuracies of its
    predictions on the training and test codes are averaged over factors.

    Parameters
    ----------
    codes : array of shape (n_samples, n_codes)
    factors : integer array of shape (n_samples, n_factors); each factor needs >= 2 values.
    test_codes : array of shape (n_test, n_codes)
    test_factors : integer array of shape (n_test, n_factors)
    backend : {"numba", "lightgbm", "sklearn"}, default="numba"
        See :class:`GradientBoostingClassifier`. The numba backend fits all factors at once.
    random_state : None, int or RandomState, default=None
        Tie-breaking RNG (None: numpy's global RNG, as dlib). Seeds are drawn factor by factor.

    Returns
    -------
    importance : float64 array of shape (n_codes, n_factors); each column sums to 1 or is 0.
    train_accuracy : float, mean over factors.
    test_accuracy : float, mean over factors.

    Raises
    ------
    ValueError
        On invalid input or a factor with a single value in the training set.
    """
    from .._validation import check_informative_factors, check_train_test

    codes, factors, test_codes, test_factors = check_train_test(
        codes, factors, test_codes, test_factors
    )
    check_informative_factors(factors)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}.")
    n_codes = codes.shape[1]
    n_factors = factors.shape[1]
    importance = np.zeros((n_codes, n_factors), dtype=np.float64)
    train_acc = []
    test_acc = []
    if backend == "numba":
        models = fit_gbt(codes, factors, random_state=random_state)
        for k in range(n_factors):
            importance[:, k] = np.abs(models.feature_importances(k))
        train_acc, test_acc = model_accuracies(models, factors, test_codes, test_factors)
    else:
        rs = check_random_state(random_state)  # one RNG shared by the fits, as dlib's loop
        for k in range(n_factors):
            model = GradientBoostingClassifier(backend=backend, random_state=rs)
            model.fit(codes, factors[:, k])
            importance[:, k] = np.abs(model.feature_importances_)
            train_acc.append(np.mean(model.predict(codes) == factors[:, k]))
            test_acc.append(np.mean(model.predict(test_codes) == test_factors[:, k]))
    return importance, float(np.mean(train_acc)), float(np.mean(test_acc))
