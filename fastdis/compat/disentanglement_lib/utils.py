"""Drop-in for ``disentanglement_lib.evaluation.metrics.utils``: sampling, encoding, configuration.

Layouts follow the reference: codes ``mus`` are ``(n_codes, n_points)`` and factors ``ys`` are
``(n_factors, n_points)`` (transposed with respect to fastdis' array-level API).

Sampling draws from ``random_state`` exactly as the reference does (same calls, same sizes, same
order), so the same points are drawn. Only the encoder calls differ: observations are collected,
in the reference's order, and passed to ``representation_function`` in chunks whose size is
picked for speed (see :data:`ENCODE_BATCH_SIZE`) instead of one call per sampling batch of 16 or
64. Results are identical as long as the representation function encodes each observation
independently of the others in its batch and does not draw from ``random_state`` (true of the
reference's TF-Hub representation functions and of fastdis checkpoints' ``mean`` and
``sampled`` representations, whose noise is drawn row after row from the function's own
generator).

For data sets whose observations draw no random numbers (see
:func:`._bulk_sampling.plain_factor_sizes`: fastdis' own, dlib's plain DSprites, Shapes3D,
MPI3D, Cars3D), the per-batch ``sample_factors`` calls are replayed in bulk with the same numbers
and the same final state of ``random_state``; every other data set is called batch by batch.

Configuration: every function here and in the sibling modules that the reference declares as a
gin configurable (``discretizer.*``, ``predictor.*``, ``prune_dims.*``,
``reduced_representation.*``, ``dci.*``, ``mig.*``, ...) takes the parameters its caller leaves
at their defaults from gin's bindings, exactly as the reference's gin wrapper would, whenever
disentanglement_lib's configurables are registered (its modules imported), patched or not
(:func:`gin_configurable`). A binding that names one of the reference's own functions
(``@histogram_discretizer``, ``@logistic_regression_cv``, ``@gradient_boosting_classifier``,
``@factorwise_dci``, the unified-score matrices) runs fastdis' equivalent. Without gin, without
the reference imported, or without a binding, parameters keep the values :func:`configure` sets,
by default the study's (20-bin histograms, gradient-boosted trees, no pruning); where the
reference has no default (``gin.REQUIRED``) the error says to pass the value or bind it.
"""

from __future__ import annotations

import os
import time
import weakref

import numpy as np

from ..._validation import check_positive_int
from ...metrics import _information
from . import _bulk_sampling

#: Functions that patch() routes from the reference's utils module to this one. make_discretizer
#: and make_predictor_fn stay the reference's: they are how gin bindings are resolved.
DLIB_NAMES = (
    "generate_batch_factor_code",
    "obtain_representation",
    "_histogram_discretize",
    "discrete_mutual_info",
    "discrete_entropy",
    "logistic_regression_cv",
    "gradient_boosting_classifier",
)

#: Observations per call of the representation function. None (the default) picks, for each
#: representation function, the size that encodes fastest, timed on calls a metric makes
#: anyway, first and again whenever the chosen size has become slower
#: (:class:`_ChunkSizeTuner`); an integer fixes the size. While it is None, the environment
#: variable named by :data:`ENCODE_BATCH_SIZE_ENV` fixes it for the process. No choice
#: changes which observations are drawn or their order. The codes are the same as long
#: as the function encodes each observation independently of its batch; a library that picks
#: its kernels by batch shape (cuDNN, oneDNN) may round the last bit differently, so fix the
#: size by hand where that matters.
ENCODE_BATCH_SIZE = None
ENCODE_BATCH_SIZE_ENV = "FASTDIS_ENCODE_BATCH_SIZE"

#: Sizes the automatic choice times, smallest first. 64 is the reference's own batch (BetaVAE,
#: FactorVAE). Bigger calls pay the per-call overhead (Python, the framework's dispatch, a
#: device transfer) less often; on CPU, activations of too many images stop fitting in cache.
#: Which wins depends on the encoder and the machine (bench/bench_encoder_chunks.py), hence
#: the measurement.
TRIED_CHUNK_SIZES = (64, 128, 256, 512, 1024, 2048)
_CALLS_PER_SIZE = 2  # the faster of two calls: a size's first call pays one-off set-up
_SLOWER = 1.1  # a size this much slower per observation than the best one ends the search
#: The chosen size's cost per observation (the median of its last ``_WATCHED_CALLS`` full calls)
#: this many times what it cost when chosen starts a new search. The fastest size moves with the
#: machine's load: on a 2-core VM the study's conv encoder cost 83-124 µs per image in calls of
#: 64 and twice that in calls of 128 or more while the VM was quiet, but 1,663 µs in calls of 64
#: and 556 µs in calls of 512 while another process kept a core busy (torch's threads wait for
#: each other at every layer). Searching only then keeps a quiet machine from paying for
#: searches (a search's calls of other sizes cost ~1 % of a BetaVAE score there).
_SEARCH_AGAIN_SLOWER = 1.5
_WATCHED_CALLS = 8
_tuners = weakref.WeakKeyDictionary()  # representation function -> its _ChunkSizeTuner

_config = {"num_bins": 20, "discretizer_fn": None, "predictor_fn": None, "prune_threshold": 0.0}


def configure(*, num_bins=None, discretizer_fn=None, predictor_fn=None, prune_threshold=None):
    """Set what the reference's gin bindings would set; returns the previous settings.

    ``discretizer.num_bins``, ``discretizer.discretizer_fn``, ``predictor.predictor_fn`` and
    ``prune_dims.threshold`` (reference code default 0.0; the study binds 0.05). A gin binding
    of the same parameter takes precedence (see the module docstring).
    """
    previous = dict(_config)
    updates = {"num_bins": num_bins, "discretizer_fn": discretizer_fn,
               "predictor_fn": predictor_fn, "prune_threshold": prune_threshold}
    _config.update({key: value for key, value in updates.items() if value is not None})
    return previous


def restore_configuration(previous):
    """Undo :func:`configure` with the settings it returned."""
    _config.clear()
    _config.update(previous)


def require(value, name, *, function, usual=None):
    """Return ``value``, or raise the error gin would raise for a missing ``gin.REQUIRED``."""
    if value is None:
        hint = f" (the reference's configs use {usual})" if usual is not None else ""
        raise ValueError(f"{function} needs {name}{hint}: pass it, or bind it with gin.")
    return value


_REFERENCE_PREFIX = "disentanglement_lib.evaluation.metrics."


def gin_binding(scope: str, parameter: str):
    """``(True, value)`` when gin binds ``scope.parameter``, else ``(False, None)``.

    The value is resolved as the reference's gin wrapper would receive it, except that a
    reference to one of the reference's own functions becomes fastdis' equivalent
    (:func:`fastdis_equivalent`); lists and tuples are resolved element by element.
    """
    try:
        import gin

        scopes = list(gin.current_scope())
    except Exception:  # gin absent
        return False, None
    # The innermost active gin.config_scope first, as gin's own wrapper resolves bindings.
    for depth in range(len(scopes), -1, -1):
        try:
            value = gin.query_parameter("/".join([*scopes[:depth], f"{scope}.{parameter}"]))
        except Exception:  # the configurable not registered, or nothing bound here
            continue
        return True, _resolve(value)
    return False, None


def _resolve(value):
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(item) for item in value)
    try:
        from gin.config import ConfigurableReference
    except ImportError:  # pragma: no cover - a value came from gin, so gin is there
        return value
    if isinstance(value, ConfigurableReference):
        function = fastdis_equivalent(value.scoped_configurable_fn)
        return function() if value.evaluate else function
    return fastdis_equivalent(value)


def fastdis_equivalent(function):
    """fastdis' function for one of the reference's metric functions, else ``function``.

    A function of ``disentanglement_lib.evaluation.metrics.<module>`` (through any gin
    wrappers) maps to the function of the same name in the compat module ``<module>`` when
    that module lists it in ``DLIB_NAMES`` (what :func:`patch` routes); anything else, a
    user's own configurable included, is returned unchanged.
    """
    import importlib
    import inspect

    inner = inspect.unwrap(function) if callable(function) else function
    module, name = getattr(inner, "__module__", "") or "", getattr(inner, "__name__", None)
    if not module.startswith(_REFERENCE_PREFIX):
        return function
    try:
        compat = importlib.import_module(f"{__package__}.{module[len(_REFERENCE_PREFIX):]}")
    except ImportError:
        return function
    return getattr(compat, name) if name in getattr(compat, "DLIB_NAMES", ()) else function


def gin_configurable(scope: str):
    """Decorator: parameters the caller leaves at their defaults come from gin's bindings of
    the reference's configurable ``scope`` (see the module docstring).

    The signature, name and docstring stay the function's own, so :func:`patch` can route the
    reference's gin wrapper to it; through that wrapper the bound values arrive as arguments.
    """
    import functools
    import inspect

    def decorate(function):
        signature = inspect.signature(function)
        optional = [name for name, parameter in signature.parameters.items()
                    if parameter.default is not inspect.Parameter.empty]

        @functools.wraps(function)
        def with_bindings(*args, **kwargs):
            given = signature.bind_partial(*args, **kwargs).arguments
            for name in optional:
                if name not in given:
                    bound, value = gin_binding(scope, name)
                    if bound:
                        kwargs[name] = value
            return function(*args, **kwargs)

        # gin's wrapper reads the argument spec without following __wrapped__.
        with_bindings.__signature__ = signature
        return with_bindings

    return decorate


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------


def _check_representation(codes, n_observations):
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] != n_observations:
        raise ValueError(
            "representation_function must return an array of shape (n_observations, n_codes); "
            f"for {n_observations} observations it returned shape {codes.shape}."
        )
    return codes


class _ChunkSizeTuner:
    """How many observations to hand one representation function per call: the fastest size.

    Sizes of :data:`TRIED_CHUNK_SIZES` are tried in turn, each on ``_CALLS_PER_SIZE`` full calls,
    until one is ``_SLOWER`` times slower per observation than the best so far (or the list
    ends); the best is kept until its calls cost ``_SEARCH_AGAIN_SLOWER`` times what they cost
    when it was chosen (the machine's load changed), then the search starts again. The timed
    calls are the metric's own, so a search costs only the difference between the sizes it
    tries. One tuner serves every metric called with the same
    function, so the searches span metric calls.
    """

    def __init__(self):
        self._start_search()

    def _start_search(self):
        self._index = 0
        self._seconds_per_row = {}  # size -> timings of its full calls
        self._recent = []  # per-row timings of the chosen size's last full calls
        self.chosen = None

    @property
    def size(self) -> int:
        return self.chosen or TRIED_CHUNK_SIZES[self._index]

    def record(self, rows: int, seconds: float) -> None:
        """Note that a call with ``rows`` observations took ``seconds``."""
        if rows < self.size:  # a short last call says little
            return
        if self.chosen is not None:
            self._recent = [*self._recent[1 - _WATCHED_CALLS:], seconds / rows]
            if (len(self._recent) == _WATCHED_CALLS and float(np.median(self._recent))
                    > _SEARCH_AGAIN_SLOWER * min(self._seconds_per_row[self.chosen])):
                self._start_search()
            return
        timings = self._seconds_per_row.setdefault(self.size, [])
        timings.append(seconds / rows)
        if len(timings) < _CALLS_PER_SIZE:
            return
        fastest = {size: min(times) for size, times in self._seconds_per_row.items()}
        best = min(fastest, key=fastest.get)
        if fastest[self.size] > _SLOWER * fastest[best] or \
                self._index + 1 == len(TRIED_CHUNK_SIZES):
            self.chosen = best
        else:
            self._index += 1


class _FixedChunkSize:
    """A size set by hand (:data:`ENCODE_BATCH_SIZE`, its environment variable, or a caller)."""

    def __init__(self, size: int):
        self.size = size

    def record(self, rows: int, seconds: float) -> None:
        pass


def _chunk_size_setting():
    """The size set by hand, or None for the automatic choice."""
    if ENCODE_BATCH_SIZE is not None:
        return check_positive_int(ENCODE_BATCH_SIZE, name="utils.ENCODE_BATCH_SIZE")
    text = os.environ.get(ENCODE_BATCH_SIZE_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"environment variable {ENCODE_BATCH_SIZE_ENV} must be a positive "
                         f"integer (observations per encoder call); got {text!r}.")
    return int(text)


def _tuner_for(representation_function):
    """The chunk-size policy for ``representation_function``: fixed by hand, or its tuner."""
    size = _chunk_size_setting()
    if size is not None:
        return _FixedChunkSize(size)
    # A bound method (``model.encode``) is a new object at every attribute access: its tuner
    # lives with the instance, one per method, or every metric call would search again.
    owner, method = (getattr(representation_function, "__self__", None),
                     getattr(representation_function, "__func__", None))
    try:
        if owner is not None and method is not None:
            tuners, key = _tuners.setdefault(owner, {}), method
        else:
            tuners, key = _tuners, representation_function
        tuner = tuners.get(key)
        if tuner is None:
            tuner = tuners[key] = _ChunkSizeTuner()
    except TypeError:  # not weak-referenceable or not hashable: tune for this encoder only
        tuner = _ChunkSizeTuner()
    return tuner


class _ChunkedEncoder:
    """Collects observations and encodes them in calls of :attr:`chunk_size` observations.

    ``add`` returns the row offset of the added observations in the final code array, so callers
    can sample first (in the reference's RNG order) and address the codes afterwards. The call
    size comes from ``chunk_size`` if given, else from :func:`_tuner_for`, and may change
    between calls while the tuner searches; every call but the last has exactly the size of
    its turn. With ``total_rows`` (how many observations will be added), codes are copied into
    one array as they come, while the chunk is still in cache, instead of concatenated at the
    end; a chunk of another dtype or width, or rows beyond ``total_rows``, fall back to
    concatenation (same result either way).
    """

    def __init__(self, representation_function, chunk_size=None, total_rows=None):
        self._fn = representation_function
        self._policy = (_tuner_for(representation_function) if chunk_size is None
                        else _FixedChunkSize(chunk_size))
        self._pending = []
        self._pending_rows = 0
        self._codes = []
        self._rows = 0
        self._total_rows = total_rows
        self._out = None  # (total_rows, n_codes) while every chunk fits into it

    @property
    def chunk_size(self) -> int:
        """Observations in the next call of the representation function."""
        return self._policy.size

    def add_rows(self, n_rows: int, make) -> None:
        """Add observations ``0 .. n_rows - 1``, made by ``make(start, stop)`` in pieces that
        each fill the next call exactly (no piece is copied to join another)."""
        start = 0
        while start < n_rows:
            stop = min(start + max(self.chunk_size - self._pending_rows, 1), n_rows)
            self.add(make(start, stop))
            start = stop

    def add(self, observations) -> int:
        offset = self._rows + self._pending_rows
        self._pending.append(observations)
        self._pending_rows += len(observations)
        while self._pending and self._pending_rows >= self.chunk_size:
            self._encode(self._take(self.chunk_size))
        return offset

    def _take(self, rows=None):
        """The first ``rows`` pending observations (all with None) as one array."""
        batch = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        rest = batch[rows:] if rows is not None else batch[:0]
        self._pending, self._pending_rows = ([rest] if len(rest) else []), len(rest)
        return batch if rows is None else batch[:rows]

    def _encode(self, batch):
        start = time.perf_counter()
        codes = self._fn(batch)
        self._policy.record(len(batch), time.perf_counter() - start)
        self._store(_check_representation(codes, len(batch)))
        self._rows += len(batch)

    def _store(self, codes):
        if self._total_rows and self._out is None and not self._codes:
            self._out = np.empty((self._total_rows, codes.shape[1]), dtype=codes.dtype)
        out = self._out
        if out is not None and codes.dtype == out.dtype and codes.shape[1] == out.shape[1] \
                and self._rows + len(codes) <= len(out):
            out[self._rows : self._rows + len(codes)] = codes
            return
        if out is not None:
            self._codes, self._out = [out[: self._rows]], None
        self._codes.append(codes)

    def codes(self) -> np.ndarray:
        """All codes, (n_observations, n_codes), in the order observations were added."""
        if self._pending:
            self._encode(self._take())
        if self._out is not None:
            return self._out if self._rows == len(self._out) else self._out[: self._rows]
        if not self._codes:
            raise ValueError("no observations were sampled (num_points must be >= 1).")
        return self._codes[0] if len(self._codes) == 1 else np.concatenate(self._codes)


def generate_batch_factor_code(
    ground_truth_data, representation_function, num_points, random_state, batch_size
):
    """Sample ``num_points`` points in batches of ``batch_size`` and encode them.

    Returns ``(representations (n_codes, num_points), factors (n_factors, num_points))``.
    """
    if num_points is None or num_points < 1:
        raise ValueError(f"num_points must be a positive integer; got {num_points!r}.")
    sizes = _bulk_sampling.plain_factor_sizes(ground_truth_data, random_state, batch_size,
                                              num_points)
    encoder = _ChunkedEncoder(representation_function, total_rows=num_points if sizes else None)
    if sizes is not None:
        factors = _bulk_factor_batches(ground_truth_data, sizes, num_points, random_state,
                                       batch_size, encoder)
        return np.transpose(encoder.codes()), np.transpose(factors)
    factors = []
    i = 0
    while i < num_points:
        num_points_iter = min(num_points - i, batch_size)
        current_factors, current_observations = ground_truth_data.sample(
            num_points_iter, random_state
        )
        factors.append(current_factors)
        encoder.add(current_observations)
        i += num_points_iter
    return np.transpose(encoder.codes()), np.transpose(np.vstack(factors))


def _bulk_factor_batches(ground_truth_data, sizes, num_points, random_state, batch_size,
                         encoder):
    """generate_batch_factor_code's draws for a data set whose observations draw nothing.

    The batches' factors are replayed in bulk (full batches, then the last, shorter one) and
    their observations encoded chunk by chunk. Returns the factors, (num_points, n_factors).
    """
    full, rest = divmod(int(num_points), int(batch_size))
    factors = []
    for groups, size in ((full, int(batch_size)), (int(rest > 0), rest)):
        for _, batches in _bulk_sampling.iter_factor_groups(random_state, sizes, groups, size):
            rows = batches.reshape(-1, len(sizes))
            _add_observations(ground_truth_data, rows, random_state, encoder)
            factors.append(rows)
    return factors[0] if len(factors) == 1 else np.concatenate(factors)


def _add_observations(ground_truth_data, factors, random_state, encoder) -> None:
    """Queue the observations of factor rows (n, n_factors) on ``encoder``, a chunk at a time.

    Only for data sets whose observations draw nothing (the bulk paths): making them in
    chunks then changes no number, and at most one chunk of observations is held at a time.
    """
    encoder.add_rows(factors.shape[0], lambda start, stop: (
        ground_truth_data.sample_observations_from_factors(factors[start:stop], random_state)))


def _encode_factors(ground_truth_data, representation_function, factors,
                    random_state) -> np.ndarray:
    """Codes (n, n_codes) of the observations of factor rows (n, n_factors): bulk paths only."""
    encoder = _ChunkedEncoder(representation_function, total_rows=len(factors))
    _add_observations(ground_truth_data, factors, random_state, encoder)
    return encoder.codes()


def generate_train_test(
    ground_truth_data, representation_function, num_train, num_test, random_state, batch_size
):
    """A training set, then a test set, sampled as the reference does (train draws first).

    Returns ``(mus_train, ys_train, mus_test, ys_test)`` in the reference's layouts.
    """
    mus_train, ys_train = generate_batch_factor_code(
        ground_truth_data, representation_function, num_train, random_state, batch_size
    )
    mus_test, ys_test = generate_batch_factor_code(
        ground_truth_data, representation_function, num_test, random_state, batch_size
    )
    return mus_train, ys_train, mus_test, ys_test


def obtain_representation(observations, representation_function, batch_size):
    """Encode a fixed array of observations; returns codes of shape (n_codes, n_points).

    ``batch_size`` is the reference's call size; calls here take the encoder's chunk size.
    """
    del batch_size
    encoder = _ChunkedEncoder(representation_function, total_rows=observations.shape[0])
    encoder.add_rows(observations.shape[0], lambda start, stop: observations[start:stop])
    return np.transpose(encoder.codes())


def split_train_test(observations, train_percentage):
    """Split (n_dims, n_points) data into the first ceil(n*p) points and the rest."""
    num_labelled_samples = observations.shape[1]
    num_train = int(np.ceil(num_labelled_samples * train_percentage))
    return observations[:, :num_train], observations[:, num_train:]


def normalize_data(data, mean=None, stddev=None):
    """Per-row z-scoring of (n_dims, n_points) data; returns (normalized, mean, stddev)."""
    if mean is None:
        mean = np.mean(data, axis=1)
    if stddev is None:
        stddev = np.std(data, axis=1)
    return (data - mean[:, np.newaxis]) / stddev[:, np.newaxis], mean, stddev


# ---------------------------------------------------------------------------------------------
# Discretisation and information
# ---------------------------------------------------------------------------------------------


def _histogram_discretize(target, num_bins=20):
    """Histogram discretisation of each row of ``target``; labels 1..num_bins, dtype of target."""
    target = np.asarray(target)
    labels = _information.histogram_discretize(np.ascontiguousarray(target.T), num_bins)
    return labels.T.astype(target.dtype, copy=False)


@gin_configurable("discretizer")
def make_discretizer(target, num_bins=None, discretizer_fn=None):
    """Discretize ``target`` (n_dims, n_points) with the configured discretizer."""
    num_bins = _config["num_bins"] if num_bins is None else num_bins
    discretizer_fn = discretizer_fn or _config["discretizer_fn"] or _histogram_discretize
    return discretizer_fn(target, num_bins)


def discrete_mutual_info(mus, ys):
    """MI matrix (n_codes, n_factors) between discrete rows of ``mus`` and ``ys``, in nats."""
    return _information.mutual_info_matrix(np.asarray(mus).T, np.asarray(ys).T)


def discrete_entropy(ys):
    """Entropy (nats) of each discrete row of ``ys``."""
    return _information.discrete_entropy(np.asarray(ys).T)


# ---------------------------------------------------------------------------------------------
# Predictors
# ---------------------------------------------------------------------------------------------


@gin_configurable("predictor")
def make_predictor_fn(predictor_fn=None):
    """Return the configured predictor *factory* (a callable that builds a fresh estimator)."""
    return predictor_fn or _config["predictor_fn"] or gradient_boosting_classifier


def logistic_regression_cv():
    """LogisticRegressionCV(Cs=10, cv=KFold(5)), fastdis' fast implementation."""
    from ...metrics._predictors import make_predictor

    return make_predictor("logistic_regression_cv")


def gradient_boosting_classifier():
    """GradientBoostingClassifier() at scikit-learn's defaults, fastdis' fast implementation."""
    from ...metrics._predictors import make_predictor

    return make_predictor("gradient_boosting")
