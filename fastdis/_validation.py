"""Input validation shared by every public entry point.

Each metric calls one checker on its first line and only ever sees the clean arrays it returns
(the pattern of scikit-learn's ``check_array`` / ``check_clusterings``). Every error is a
``ValueError`` that names the argument, says what was expected and what arrived, so no bad input
reaches a numba kernel, where it would surface as an unreadable traceback or a silent wrong number.

Vocabulary used everywhere in fastdis:

* ``codes``: the representation, shape ``(n_samples, n_codes)``, floating point.
* ``factors``: the ground-truth factors of variation, shape ``(n_samples, n_factors)``, integer
  values ``>= 0`` (integral floats are accepted and converted).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "check_random_state",
    "check_codes",
    "check_factors",
    "check_labels",
    "check_matrix",
    "check_same_rows",
    "check_codes_factors",
    "check_train_test",
    "check_min_columns",
    "check_num_bins",
    "check_fraction",
    "check_positive_int",
    "check_informative_factors",
]


def _as_2d(array, name: str, *, min_samples: int = 1) -> np.ndarray:
    try:
        array = np.asarray(array)
    except Exception as exc:  # ragged lists, objects numpy cannot stack
        raise ValueError(f"{name} could not be converted to an array: {exc}") from None
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_{name.split('_')[-1]}); "
            f"got {array.ndim}-D array of shape {array.shape}. "
            "Reshape your data, e.g. array.reshape(-1, 1) for a single column."
        )
    if array.shape[0] < min_samples:
        raise ValueError(
            f"{name} has {array.shape[0]} sample(s) (rows); at least {min_samples} required."
        )
    if array.shape[1] == 0:
        raise ValueError(f"{name} has 0 columns; at least one is required.")
    return array


def _check_real(array, name: str) -> None:
    """Raise unless ``array`` holds real numbers (bool and complex are not)."""
    if (array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number)
            or np.iscomplexobj(array)):
        raise ValueError(f"{name} must hold real numbers; got dtype {array.dtype}.")


def check_codes(codes, *, name: str = "codes", min_samples: int = 1) -> np.ndarray:
    """Return ``codes`` as a C-contiguous float32/float64 array of shape (n_samples, n_codes).

    float32 stays float32 (the reference feeds float32 encoder outputs straight to numpy, and
    histogram edges depend on the dtype); every other real dtype becomes float64.

    Raises
    ------
    ValueError
        If codes is not 2-D, is empty, is not real-valued, or holds NaN or infinity.
    """
    codes = _as_2d(codes, name, min_samples=min_samples)
    _check_real(codes, name)
    if codes.dtype not in (np.float32, np.float64):
        codes = codes.astype(np.float64)
    codes = np.ascontiguousarray(codes)
    if not np.isfinite(codes).all():
        bad = ~np.isfinite(codes)
        rows, cols = np.nonzero(bad)
        kind = "NaN" if np.isnan(codes[rows[0], cols[0]]) else "infinity"
        raise ValueError(
            f"{name} contains {int(bad.sum())} non-finite value(s) ({kind} first at row "
            f"{rows[0]}, column {cols[0]}); a diverged or broken encoder? Drop or fix these rows."
        )
    return codes


def check_factors(factors, *, name: str = "factors", min_samples: int = 1) -> np.ndarray:
    """Return ``factors`` as a C-contiguous int64 array of shape (n_samples, n_factors).

    Raises
    ------
    ValueError
        If factors is not 2-D, is empty, holds non-integer, negative or non-finite values.
    """
    factors = _as_2d(factors, name, min_samples=min_samples)
    if np.issubdtype(factors.dtype, np.bool_):
        factors = factors.astype(np.int64)
    elif np.issubdtype(factors.dtype, np.integer):
        pass
    elif np.issubdtype(factors.dtype, np.floating):
        if not np.isfinite(factors).all():
            raise ValueError(f"{name} contains NaN or infinity; factors must be integers >= 0.")
        if not np.array_equal(factors, np.round(factors)):
            raise ValueError(
                f"{name} must hold integer class labels; got non-integer values such as "
                f"{factors[factors != np.round(factors)][0]!r}. Discretize continuous factors "
                "first (e.g. fastdis.metrics.histogram_discretize)."
            )
    else:
        raise ValueError(f"{name} must hold integers; got dtype {factors.dtype}.")
    largest = factors.max()
    if largest > np.iinfo(np.int64).max:  # unsigned or float labels that int64 cannot hold
        raise ValueError(
            f"{name} holds labels up to {largest}, beyond int64; relabel each factor to "
            "0, 1, ... (e.g. np.unique(column, return_inverse=True)[1])."
        )
    if factors.min() < 0:
        raise ValueError(
            f"{name} must hold integer labels >= 0; found {factors.min()} in column "
            f"{int(np.argmin(factors.min(axis=0)))}. Shift each factor so its values start at 0."
        )
    return np.ascontiguousarray(factors, dtype=np.int64)


def check_labels(labels, *, name: str) -> np.ndarray:
    """Return class labels of any real values as a 2-D array (bool becomes int64).

    For functions that, like scikit-learn's ``mutual_info_score``, accept any label values
    (negative, sparse, integral or not) as long as they are finite numbers.

    Raises
    ------
    ValueError
        If labels is not 2-D, is empty, is not real-valued, or holds NaN or infinity.
    """
    labels = _as_2d(labels, name)
    if labels.dtype == np.bool_:
        return labels.astype(np.int64)
    _check_real(labels, name)
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise ValueError(f"{name} contains NaN or infinity; labels must be finite numbers.")
    return labels


def check_matrix(matrix, *, name: str, shape=None, nonnegative: bool = False,
                 dtype=np.float64) -> np.ndarray:
    """Return a precomputed score matrix, checked: 2-D (of ``shape`` if given), non-empty,
    real, finite, and ``>= 0`` if ``nonnegative``; converted to ``dtype`` (``None``: the
    matrix keeps its own real dtype, for callers whose arithmetic follows the input's, as
    the reference's does).

    For matrices a caller passes in or a callable returns (importances, mutual informations).
    """
    try:
        matrix = np.asarray(matrix, dtype=dtype)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a 2-D array of numbers; got {type(matrix).__name__}."
        ) from None
    wanted = "(n_codes, n_factors)" if shape is None else f"(n_codes, n_factors) = {shape}"
    if matrix.ndim != 2 or matrix.size == 0 or (shape is not None and matrix.shape != shape):
        raise ValueError(f"{name} must be a non-empty 2-D array {wanted}; got shape "
                         f"{matrix.shape}.")
    _check_real(matrix, name)
    if not np.isfinite(matrix).all() or (nonnegative and (matrix < 0).any()):
        found = "NaN or infinity" if not np.isfinite(matrix).all() else "negative values"
        raise ValueError(f"{name} must hold finite values{' >= 0' if nonnegative else ''}; "
                         f"it contains {found}.")
    return matrix


def check_same_rows(a, b, a_name: str, b_name: str) -> None:
    """Raise unless the 2-D arrays ``a`` and ``b`` have the same number of samples (rows)."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{a_name} and {b_name} must have the same number of samples (rows); "
            f"got {a.shape[0]} and {b.shape[0]}."
        )


def check_codes_factors(
    codes,
    factors,
    *,
    codes_name: str = "codes",
    factors_name: str = "factors",
    min_samples: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (codes, factors) pair: both 2-D and with the same number of samples."""
    codes = check_codes(codes, name=codes_name, min_samples=min_samples)
    factors = check_factors(factors, name=factors_name, min_samples=min_samples)
    check_same_rows(codes, factors, codes_name, factors_name)
    return codes, factors


def check_train_test(
    codes, factors, test_codes, test_factors, *, continuous_factors: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate a train and a test set: each pair consistent, the same columns in both.

    With ``continuous_factors`` the factors are real-valued and validated like codes.
    """
    if continuous_factors:
        codes = check_codes(codes)
        factors = check_codes(factors, name="factors")
        test_codes = check_codes(test_codes, name="test_codes")
        test_factors = check_codes(test_factors, name="test_factors")
        check_same_rows(codes, factors, "codes", "factors")
        check_same_rows(test_codes, test_factors, "test_codes", "test_factors")
    else:
        codes, factors = check_codes_factors(codes, factors)
        test_codes, test_factors = check_codes_factors(
            test_codes, test_factors, codes_name="test_codes", factors_name="test_factors"
        )
    for name, train, test in (("codes", codes, test_codes), ("factors", factors, test_factors)):
        if test.shape[1] != train.shape[1]:
            raise ValueError(
                f"test_{name} must have as many columns as {name} ({train.shape[1]}); got "
                f"{test.shape[1]}."
            )
    return codes, factors, test_codes, test_factors


def check_min_columns(array, minimum: int, *, name: str, why: str) -> None:
    """Raise if ``array`` has fewer than ``minimum`` columns, saying ``why`` they are needed."""
    if array.shape[1] < minimum:
        raise ValueError(
            f"{name} has {array.shape[1]} column(s); at least {minimum} are needed: {why}."
        )


def check_informative_factors(factors, *, name: str = "factors", columns=None) -> None:
    """Raise if a factor takes a single value: it has zero entropy and cannot be predicted.

    The reference divides by that zero entropy (MIG becomes nan) or lets scikit-learn fail inside
    a classifier fit. ``columns``: the factors to check (default: all).
    """
    for k in range(factors.shape[1]) if columns is None else columns:
        column = factors[:, k]
        if column.size and (column == column[0]).all():
            raise ValueError(
                f"{name}[:, {k}] takes a single value ({column[0]}) in all {column.size} samples: "
                "a constant factor has zero entropy and no class to predict. Drop that column "
                "or sample more points."
            )


def check_positive_int(value, *, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}.")
    return int(value)


def check_num_bins(num_bins, n_samples: int | None = None, *, name: str = "codes") -> int:
    """Validate ``num_bins``; with ``n_samples``, also that there are more samples than bins.

    With fewer samples than bins most samples get a bin of their own, and histogram mutual
    information measures the sample size rather than the representation.
    """
    num_bins = check_positive_int(num_bins, name="num_bins", minimum=1)
    if n_samples is not None and n_samples < num_bins:
        raise ValueError(
            f"{name} has {n_samples} samples, fewer than num_bins={num_bins}: the histogram "
            "estimate would be meaningless. Use more samples or fewer bins."
        )
    return num_bins


def check_fraction(value, *, name: str, low: float = 0.0, high: float = 1.0) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [{low}, {high}]; got {value!r}.") from None
    if not (low <= value <= high):
        raise ValueError(f"{name} must be in [{low}, {high}]; got {value}.")
    return value


#: What a ``random_state`` with one seed or RNG per model (per factor) may be.
PER_MODEL_SEEDS = (list, tuple, np.ndarray)


def check_random_state(random_state, *, name: str = "random_state") -> np.random.RandomState:
    """The ``numpy.random.RandomState`` that ``random_state`` stands for, as scikit-learn's
    ``check_random_state``:

    - ``None``: numpy's global RandomState (the singleton behind ``np.random.seed`` and
      ``np.random.rand``), so ``np.random.seed(s)`` makes a call reproducible exactly as it
      does for the reference, whose estimators default to that generator;
    - an int in ``[0, 2**32)``: a new ``RandomState(seed)``;
    - a ``RandomState``: itself, advanced by the call.

    Anything else (a bool, ``numpy.random.Generator``, an out-of-range seed) is a ValueError
    naming ``name``.
    """
    if random_state is None:
        return np.random.mtrand._rand
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if not 0 <= random_state < 2**32:
            raise ValueError(f"{name} must be in [0, 2**32); got {random_state}.")
        return np.random.RandomState(random_state)
    if isinstance(random_state, np.random.RandomState):
        return random_state
    raise ValueError(f"{name} must be None, an int seed or a numpy.random.RandomState; got "
                     f"{type(random_state).__name__}.")
