"""The reference's per-batch factor draws, replayed in bulk with the same numbers and final state.

Motivation
----------
BetaVAE and FactorVAE draw their points group by group (study: 15,000 groups of 64), and
``generate_batch_factor_code`` batch by batch (16 points): every group costs a few Python-level
``random_state.randint(size, size=num)`` calls, one per factor, plus a call to the data set. With
a cheap representation function those calls *are* the metric: both the reference and a
faithful port spend their time in them.

Legacy ``RandomState.randint(c, size=n)`` (int64 output, ``1 <= c <= 2**32``) draws each value by
masked rejection on 32-bit Mersenne-Twister words::

    mask = 2**bit_length(c - 1) - 1
    repeat: v = next_uint32() & mask   until v <= c - 1      (c == 1 draws no word)

So a whole *program* of calls ``[randint(c_j, size=n_j) for j]`` is reproduced exactly by one
compiled kernel (:func:`_masked_rejection`) that runs MT19937 itself, from the state
``random_state.get_state()`` returns (624 words and a position), and sets the state it ends
in back with ``set_state``, the cached Gaussian unchanged: ``random_state`` ends exactly where
the calls would have left it. (Pulling raw words with ``randint(0, 2**32, dtype=np.uint32)``
and replaying the rejection on them is equivalent, and is the tests' plain-numpy twin; the kernel
makes its own words, so no second pass over them and no guess of how many the rejections take.)
The tests check the values and the final state against real ``RandomState`` calls.

Which data sets qualify (:func:`plain_factor_sizes`): those whose ``sample_factors`` is exactly
one ``randint(size, size=num)`` per factor, left to right, and whose
``sample_observations_from_factors`` draws *nothing*, so that all factor draws of a metric can
happen first and the observations afterwards. This is an explicit allowlist of exact types:
fastdis' data classes that declare ``plain_randint_sampling = True`` in their own class body,
and disentanglement_lib's own DSprites, Shapes3D, MPI3D and Cars3D; for both, every non-latent
(nuisance) factor must have one value (``randint(1, ...)`` draws no word). Anything else keeps
the per-call path.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numba
import numpy as np

#: Set to False to force the per-call path everywhere (tests compare both paths).
_ENABLED = True

#: Most factor values drawn per chunk of groups (bounds the factor arrays held at a time).
_VALUES_PER_CHUNK = 1 << 18

_LARGEST_BOUND = 1 << 32  # above it, numpy draws 64-bit values

# MT19937, as numpy's legacy RandomState runs it (numpy/random/src/mt19937/mt19937.c).
_N, _M = 624, 397
_MATRIX_A, _UPPER_MASK, _LOWER_MASK = 0x9908B0DF, 0x80000000, 0x7FFFFFFF


# ---------------------------------------------------------------------------------------------
# Replaying a randint program
# ---------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _twist(key):
    """MT19937's state transition (``mt19937_gen``): regenerate the 624 words of ``key``.

    key: (624,) uint32, in place.
    """
    for i in range(_N - _M):
        y = (key[i] & _UPPER_MASK) | (key[i + 1] & _LOWER_MASK)
        key[i] = key[i + _M] ^ (y >> 1) ^ ((y & 1) * _MATRIX_A)
    for i in range(_N - _M, _N - 1):
        y = (key[i] & _UPPER_MASK) | (key[i + 1] & _LOWER_MASK)
        key[i] = key[i + _M - _N] ^ (y >> 1) ^ ((y & 1) * _MATRIX_A)
    y = (key[_N - 1] & _UPPER_MASK) | (key[0] & _LOWER_MASK)
    key[_N - 1] = key[_M - 1] ^ (y >> 1) ^ ((y & 1) * _MATRIX_A)


@numba.njit(cache=True, inline="always")
def _temper(key, words):
    """The 624 output words of a state (``mt19937_next32``'s tempering): words[i] of key[i].

    key, words: (624,) uint32; words is written. Inlined: a call that ``words`` escapes into
    makes LLVM reload it after every store in the caller's loop (measured 2x slower).
    """
    for i in range(_N):
        y = np.int64(key[i])
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        words[i] = y


@numba.njit(cache=True)
def _masked_rejection(key, position, bounds, counts, starts, steps, out):
    """Run the program ``(bounds, counts)`` on the Mersenne Twister ``(key, position)``.

    key: (624,) uint32 state words, advanced in place; position: index of the next word (624:
    twist first); bounds, counts: (n_calls,) int64, call j being
    ``randint(bounds[j], size=counts[j])``, whose i-th value is written to
    ``out[starts[j] + i * steps[j]]`` (every such index inside ``out``, int64; starts >= 0,
    steps >= 1). Returns the new position.

    Each value is ``word & mask`` for the next 32-bit output word, retried until it is
    <= bounds[j] - 1: it is written unconditionally and only an accepted one moves the output
    index on (no branch to mispredict). ``randint(1)`` draws no word. Indices are unsigned,
    which spares numba's negative-index wraparound.
    """
    words = np.empty(_N, dtype=np.uint32)  # the tempered output of the current key
    _temper(key, words)
    n_words = np.uint64(_N)
    next_word = np.uint64(position)  # a new name: int64 and uint64 would unify to float64
    one = np.uint64(1)
    for call in range(bounds.shape[0]):
        top = np.uint32(bounds[call] - 1)  # numpy's "rng": values are 0..top
        step = np.uint64(steps[call])
        index = np.uint64(starts[call])
        end = index + np.uint64(counts[call]) * step
        if top == 0:
            while index < end:
                out[index] = 0
                index += step
            continue
        mask = top  # all ones up to top's highest bit
        mask |= mask >> np.uint32(1)
        mask |= mask >> np.uint32(2)
        mask |= mask >> np.uint32(4)
        mask |= mask >> np.uint32(8)
        mask |= mask >> np.uint32(16)
        while index < end:
            if next_word == n_words:
                _twist(key)
                _temper(key, words)
                next_word = np.uint64(0)
            value = words[next_word] & mask
            next_word += one
            out[index] = value
            index += step * np.uint64(value <= top)
    return next_word


def mersenne_twister_state(random_state):
    """The state of ``random_state`` (``get_state(legacy=False)``) if it is a plain
    ``np.random.RandomState`` running MT19937 (its default), else None."""
    if type(random_state) is not np.random.RandomState:
        return None
    state = random_state.get_state(legacy=False)
    return state if state["bit_generator"] == "MT19937" else None


def randint_program(random_state, bounds, counts, *, starts=None, steps=None, out_size=None):
    """``np.concatenate([random_state.randint(b, size=n) for b, n in zip(bounds, counts)])``.

    Same values, and ``random_state`` (a legacy ``np.random.RandomState`` on MT19937) left in
    exactly the state those calls leave it in; its cached Gaussian is kept. ``bounds`` must lie
    in ``[1, 2**32]`` and ``counts`` be >= 0. Returns int64 values of shape ``(sum(counts),)``;
    with ``starts``, ``steps`` (int64 per call) and ``out_size``, the i-th value of call j goes
    to ``out[starts[j] + i * steps[j]]`` of an ``(out_size,)`` array instead (positions no call
    writes are left uninitialised).
    """
    state = mersenne_twister_state(random_state)
    if state is None:
        raise ValueError("random_state must be a np.random.RandomState running MT19937; got "
                         f"{random_state!r}.")
    bounds = np.ascontiguousarray(bounds, dtype=np.int64)
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    if bounds.shape != counts.shape or bounds.ndim != 1:
        raise ValueError(f"bounds and counts must be 1-D of one length; got shapes "
                         f"{bounds.shape} and {counts.shape}.")
    if bounds.size and (bounds.min() < 1 or bounds.max() > _LARGEST_BOUND or counts.min() < 0):
        raise ValueError(f"bounds must lie in [1, 2**32] and counts be >= 0; got bounds in "
                         f"[{bounds.min()}, {bounds.max()}], counts >= {counts.min()}.")
    if starts is None:
        out_size = int(counts.sum())
        starts = np.cumsum(counts) - counts
        steps = np.ones_like(counts)
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    steps = np.ascontiguousarray(steps, dtype=np.int64)
    if starts.shape != bounds.shape or steps.shape != bounds.shape:
        raise ValueError("starts and steps must have one entry per call.")
    writes = counts > 0  # the first and last index each call writes must lie inside out
    first, last = starts[writes], (starts + (counts - 1) * steps)[writes]
    if first.size and (first.min() < 0 or last.max() >= out_size or steps[writes].min() < 1):
        raise ValueError("starts and steps (>= 1) must place every value inside "
                         f"out_size={out_size}.")
    out = np.empty(out_size, dtype=np.int64)
    key = np.array(state["state"]["key"], dtype=np.uint32)  # a copy, advanced in place
    position = _masked_rejection(key, int(state["state"]["pos"]), bounds, counts, starts,
                                 steps, out)
    state["state"] = {"key": key, "pos": int(position)}  # has_gauss and gauss stay as they were
    random_state.set_state(state)
    return out


# ---------------------------------------------------------------------------------------------
# Which data sets qualify
# ---------------------------------------------------------------------------------------------

#: disentanglement_lib's classes whose sampling is plain randint draws (read from its code):
#: ``sample_factors`` = ``SplitDiscreteStateSpace.sample_latent_factors``, and observations only
#: draw the non-latent factors (one randint each). Colour / Noisy / Scream / Abstract dSprites
#: draw in their observations; SmallNORB redraws the instance; the dummy data sets use other
#: calls.
_DLIB_CLASSES = (
    ("disentanglement_lib.data.ground_truth.dsprites", "DSprites"),
    ("disentanglement_lib.data.ground_truth.shapes3d", "Shapes3D"),
    ("disentanglement_lib.data.ground_truth.mpi3d", "MPI3D"),
    ("disentanglement_lib.data.ground_truth.cars3d", "Cars3D"),
)
_SAMPLING_METHODS = ("sample", "sample_factors", "sample_observations_from_factors",
                     "sample_observations", "sample_observations_from_factors_no_color")


def _is_dlib_plain_class(cls) -> bool:
    for module_name, class_name in _DLIB_CLASSES:
        module = sys.modules.get(module_name)  # never imported here: an instance implies it
        if module is not None and cls is getattr(module, class_name, None):
            return True
    return False


def _dlib_sizes(data):
    """Latent randint bounds of a dlib data set, or None if a nuisance factor would draw."""
    util = getattr(sys.modules.get(type(data).__module__), "util", None)  # the one it uses
    space = getattr(data, "state_space", None)
    if util is None or type(space) is not util.SplitDiscreteStateSpace:
        return None
    if vars(space).keys() & {"_sample_factor", "sample_latent_factors", "sample_all_factors"}:
        return None
    sizes = [int(s) for s in space.factor_sizes]
    if any(sizes[i] != 1 for i in space.observation_factor_indices):
        return None
    return [sizes[i] for i in space.latent_factor_indices]


def _fastdis_sizes(data):
    """Latent randint bounds of a fastdis data set declaring plain sampling, or None."""
    from ...data._base import GridDataset

    if isinstance(data, GridDataset):
        nuisance = data.all_factors.sizes[data.nuisance_factor_indices]
        return None if (nuisance != 1).any() else data.grid.sizes.tolist()
    return list(data.factors_num_values)


def _is_count(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def plain_factor_sizes(ground_truth_data, random_state, *counts):
    """The randint bound of each factor, if the bulk path reproduces this data set exactly.

    Returns a list of ints (``sample_factors`` draws ``randint(size, size=num)`` for each, in
    order, and ``sample_observations_from_factors`` draws nothing), or None: then callers keep
    the reference's per-call path. ``random_state`` must be a plain ``np.random.RandomState``
    running MT19937 (its default), and ``counts`` (the caller's batch size, number of points)
    positive integers: anything else keeps the per-call path, and its errors.
    """
    if not _ENABLED or not all(_is_count(c) for c in counts):
        return None
    if mersenne_twister_state(random_state) is None:
        return None
    cls = type(ground_truth_data)
    if getattr(ground_truth_data, "__dict__", {}).keys() & set(_SAMPLING_METHODS):  # patched
        return None
    if cls.__dict__.get("plain_randint_sampling") is True:
        sizes = _fastdis_sizes(ground_truth_data)
    elif _is_dlib_plain_class(cls):
        sizes = _dlib_sizes(ground_truth_data)
    else:
        return None
    if not sizes or not all(1 <= s <= _LARGEST_BOUND for s in sizes):
        return None
    return sizes if len(sizes) == ground_truth_data.num_factors else None


# ---------------------------------------------------------------------------------------------
# Groups of factor batches
# ---------------------------------------------------------------------------------------------


def _group_program(groups, sizes, batch_size, batches_per_group, lead_bound):
    """The randint program of ``groups`` groups, and where each call's values go.

    Calls of one group: [lead], then for each batch one per factor. Factor k of batch b of
    group g fills column k of rows (g, b, :) of a (groups, batches, batch_size, n_factors)
    array; the leads follow it. Returns (bounds, counts, starts, steps, out_size).
    """
    n_factors = len(sizes)
    n_lead = 0 if lead_bound is None else 1
    per_group = batches_per_group * batch_size * n_factors
    batch_starts = np.arange(groups * batches_per_group).reshape(groups, batches_per_group)
    factor_starts = (batch_starts[..., None] * batch_size * n_factors
                     + np.arange(n_factors)).reshape(groups, -1)
    lead_starts = groups * per_group + np.arange(groups)[:, None]
    starts = np.hstack([lead_starts[:, :n_lead], factor_starts]).ravel()
    calls = n_factors * batches_per_group
    bounds = np.tile([lead_bound] * n_lead + list(sizes) * batches_per_group, groups)
    counts = np.tile([1] * n_lead + [batch_size] * calls, groups)
    steps = np.tile([1] * n_lead + [n_factors] * calls, groups)
    return bounds, counts, starts, steps, groups * (per_group + n_lead)


def iter_factor_groups(
    random_state, factor_sizes, num_groups, batch_size, batches_per_group=1, lead_bound=None,
) -> Iterator[tuple[np.ndarray | None, np.ndarray]]:
    """Draw ``num_groups`` groups, each ``[randint(lead_bound)]`` then ``batches_per_group``
    times ``sample_factors(batch_size)``, in successive chunks of groups.

    Yields ``(lead, factors)``: ``lead`` int64 (g,) (None without ``lead_bound``) and
    ``factors`` int64 (g, batches_per_group, batch_size, n_factors), for g groups at a time.
    A chunk is drawn when it is requested, so the caller may use it (drawing nothing) between
    chunks.
    """
    sizes = [int(s) for s in factor_sizes]
    per_group = batches_per_group * batch_size * len(sizes)  # factor values of one group
    chunk = max(1, _VALUES_PER_CHUNK // max(per_group, 1))
    programs = {}  # by number of groups: every full chunk runs the same program
    for first in range(0, num_groups, chunk):
        groups = min(chunk, num_groups - first)
        if groups not in programs:
            programs[groups] = _group_program(groups, sizes, batch_size, batches_per_group,
                                              lead_bound)
        bounds, counts, starts, steps, out_size = programs[groups]
        values = randint_program(random_state, bounds, counts, starts=starts, steps=steps,
                                 out_size=out_size)
        factors = values[: groups * per_group].reshape(
            groups, batches_per_group, batch_size, len(sizes))
        yield (values[groups * per_group :] if lead_bound is not None else None), factors
