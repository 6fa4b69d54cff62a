"""The ground-truth data protocol, the factor grid, and the uint8 grid data set behind every loader.

disentanglement_lib's ``GroundTruthData`` is duck-typed: metrics only call ``num_factors``,
``factors_num_values``, ``observation_shape``, ``sample_factors``,
``sample_observations_from_factors``, ``sample`` and ``sample_observations``.
:class:`GroundTruthData` has the same members, so fastdis data sets work in dlib code and
dlib's work in fastdis code.

Random draws follow the reference exactly, in its order (what metric parity rests on):

1. ``sample_factors``: one ``random_state.randint(size, size=num)`` per latent factor, left to
   right;
2. ``sample_observations_from_factors``: one ``randint`` per nuisance factor, in index order,
   then the variant's own draws (colour, noise, crop) in :meth:`GridDataset._transform`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from .._validation import check_factors, check_positive_int

__all__ = ["GroundTruthData", "FactorGrid", "GridDataset"]


class GroundTruthData:
    """disentanglement_lib's interface: a two-step generative model, factors then observations."""

    #: Declares that ``sample_factors`` is exactly one ``random_state.randint(size, size=num)``
    #: per factor, left to right (sizes ``factors_num_values``; for a :class:`GridDataset`, its
    #: latent grid), and that ``sample_observations_from_factors`` draws nothing (a grid's
    #: nuisance factors must then have one value each, which is checked). fastdis' compat
    #: metrics then replay a metric's many small ``sample_factors`` calls in bulk, with the same
    #: numbers. Read from the class's own body only: a subclass declares for itself.
    plain_randint_sampling = False

    @property
    def num_factors(self) -> int:
        raise NotImplementedError

    @property
    def factors_num_values(self) -> list[int]:
        raise NotImplementedError

    @property
    def observation_shape(self) -> list[int]:
        raise NotImplementedError

    def sample_factors(self, num, random_state) -> np.ndarray:
        """Draw ``num`` factor rows, int64 of shape (num, num_factors)."""
        raise NotImplementedError

    def sample_observations_from_factors(self, factors, random_state) -> np.ndarray:
        """Observations for given factors: float32 of shape (num, *observation_shape), in [0, 1]."""
        raise NotImplementedError

    def sample(self, num, random_state) -> tuple[np.ndarray, np.ndarray]:
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)

    def sample_observations(self, num, random_state) -> np.ndarray:
        return self.sample(num, random_state)[1]


class FactorGrid:
    """Row-major mixed-radix indexing of a full factor grid: the last factor varies fastest.

    ``flat_index(f) = sum_j f_j * base_j`` with ``base_j = prod(sizes[j+1:])``, the order in
    which dSprites, Shapes3D, MPI3D and Cars3D store their images (dlib's ``factor_bases``).
    """

    def __init__(self, factor_sizes: Sequence[int], name: str = "factor_sizes"):
        sizes = [check_positive_int(int(s), name=f"{name}[{j}]")
                 for j, s in enumerate(factor_sizes)]
        if not sizes:
            raise ValueError(f"{name} must name at least one factor; got {list(factor_sizes)}.")
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.bases = np.append(np.cumprod(self.sizes[::-1])[::-1][1:], 1).astype(np.int64)
        self.num_points = int(np.prod(self.sizes))

    def check(self, factors, *, name: str = "factors") -> np.ndarray:
        """Return ``factors`` as int64 (n, n_factors), every value inside the grid, or raise.

        Zero rows are allowed: ``sample(0, rs)`` gives empty arrays, as dlib's does.
        """
        array = np.asarray(factors)
        if array.ndim == 2 and array.shape[0] == 0 and array.shape[1] == self.sizes.size:
            return np.empty((0, self.sizes.size), dtype=np.int64)
        factors = check_factors(factors, name=name)
        if factors.shape[1] != self.sizes.size:
            raise ValueError(
                f"{name} must have {self.sizes.size} columns (one per factor, sizes "
                f"{self.sizes.tolist()}); got shape {factors.shape}."
            )
        too_big = factors >= self.sizes
        if too_big.any():
            row, col = np.argwhere(too_big)[0]
            raise ValueError(
                f"{name}[{row}, {col}] = {factors[row, col]} is outside factor {col}, which has "
                f"{self.sizes[col]} values (0..{self.sizes[col] - 1})."
            )
        return factors

    def flat_index(self, factors) -> np.ndarray:
        """Flat grid index (int64, shape (n,)) of each factor row."""
        return self.check(factors) @ self.bases

    def factors_at(self, index) -> np.ndarray:
        """Factor rows (int64, shape (n, n_factors)) of flat grid indices: inverse of flat_index."""
        index = np.asarray(index)
        if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
            raise ValueError(f"index must be a 1-D integer array; got {index.dtype} {index.shape}.")
        if index.size and (index.min() < 0 or index.max() >= self.num_points):
            raise ValueError(
                f"index values must be in [0, {self.num_points}); got range "
                f"[{index.min()}, {index.max()}]."
            )
        return (index[:, None] // self.bases) % self.sizes

    def iter_chunks(self, chunk_size: int = 4096) -> Iterator[np.ndarray]:
        """Every factor row of the grid in flat-index order, ``chunk_size`` rows at a time."""
        chunk_size = check_positive_int(chunk_size, name="chunk_size")
        for start in range(0, self.num_points, chunk_size):
            yield self.factors_at(np.arange(start, min(start + chunk_size, self.num_points)))


def _as_unit_float(pixels: np.ndarray, binary: bool) -> np.ndarray:
    """uint8 pixels as float32 in [0, 1], bit-identical to the reference's conversions.

    For uint8 ``k``, float32 ``k / 255`` equals the float64 ``k / 255.`` cast to float32 (checked
    for all 256 values), so every loader's conversion is this one. dSprites stores {0, 1} and
    is only cast.
    """
    out = pixels.astype(np.float32)
    if not binary:
        out /= np.float32(255)
    return out


def _gather_rows(images, rows: np.ndarray) -> np.ndarray:
    """``images[rows]`` for an in-memory/memory-mapped array or a lazily read h5py data set.

    h5py's fancy selection needs strictly increasing indices, so it reads the sorted unique rows
    once and scatters them back to the requested order.
    """
    if isinstance(images, np.ndarray):
        return images[rows]
    unique_rows, inverse = np.unique(rows, return_inverse=True)
    return images[unique_rows][inverse]


class GridDataset(GroundTruthData):
    """A data set whose uint8 images cover a full factor grid, some factors nuisance.

    Parameters
    ----------
    name : str
        The registry name (dlib's), used in messages.
    images : array-like of uint8, shape (n_rows, H, W) or (n_rows, H, W, C)
        One image per point of the full grid (latent and nuisance factors): a numpy array,
        a ``np.memmap`` or an h5py data set (read lazily, sorted-index batches).
    all_factor_sizes : sequence of int
        Sizes of every factor, latent and nuisance, in storage order.
    latent_factor_indices : sequence of int
        Which of them are exposed (dlib's ``latent_factor_indices``); the rest are nuisance,
        redrawn uniformly for each observation.
    factor_names : sequence of str
        Names of the latent factors.
    observation_shape : sequence of int
        (H, W, C) of one observation, as returned.
    binary : bool
        Pixels are {0, 1} (dSprites) and are only cast; otherwise divided by 255.
    row_of_state : ndarray of int64, optional
        Storage row of each full-grid index, where the file is not in row-major order (SmallNORB).
    in_memory : bool
        Read a memory-mapped or lazily read ``images`` into RAM now (uint8): no page faults
        or h5py reads per batch afterwards.
    """

    plain_randint_sampling = True  # if every nuisance factor has one value (checked)

    def __init__(
        self,
        name: str,
        images,
        all_factor_sizes: Sequence[int],
        latent_factor_indices: Sequence[int],
        factor_names: Sequence[str],
        observation_shape: Sequence[int],
        *,
        binary: bool = False,
        row_of_state: np.ndarray | None = None,
        source: str = "",
        in_memory: bool = False,
    ):
        self.name = name
        if in_memory and type(images) is not np.ndarray:  # a np.memmap or an h5py data set
            images = np.array(images[...])
        self.images = images
        self.source = source
        self.all_factors = FactorGrid(all_factor_sizes)
        self.latent_factor_indices = [int(i) for i in latent_factor_indices]
        self.nuisance_factor_indices = [
            i for i in range(self.all_factors.sizes.size) if i not in self.latent_factor_indices
        ]
        self.grid = FactorGrid(self.all_factors.sizes[self.latent_factor_indices])
        self.factor_names = list(factor_names)
        self._observation_shape = [int(s) for s in observation_shape]
        self._binary = binary
        self._row_of_state = row_of_state
        if len(self.factor_names) != self.grid.sizes.size:
            raise ValueError(
                f"{name}: {len(self.factor_names)} factor names for {self.grid.sizes.size} factors."
            )
        if len(images) != self.all_factors.num_points:
            raise ValueError(
                f"{name}: {len(images)} images for a grid of {self.all_factors.num_points} points "
                f"(factor sizes {self.all_factors.sizes.tolist()}){self._from_source()}."
            )

    def _from_source(self) -> str:
        return f" in {self.source}" if self.source else ""

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r}: factors "
            f"{dict(zip(self.factor_names, self.factor_sizes, strict=True))}{self._from_source()}>"
        )

    # dlib's protocol ------------------------------------------------------------------------

    @property
    def num_factors(self) -> int:
        return int(self.grid.sizes.size)

    @property
    def factors_num_values(self) -> list[int]:
        return self.grid.sizes.tolist()

    @property
    def observation_shape(self) -> list[int]:
        return list(self._observation_shape)

    def sample_factors(self, num, random_state) -> np.ndarray:
        num = check_positive_int(num, name="num", minimum=0)
        factors = np.empty((num, self.num_factors), dtype=np.int64)
        for column, size in enumerate(self.grid.sizes):
            factors[:, column] = random_state.randint(size, size=num)
        return factors

    def sample_observations_from_factors(self, factors, random_state) -> np.ndarray:
        factors = self.grid.check(factors)
        all_factors = self.complete_factors(factors, random_state)
        return self._transform(self._observations_at(all_factors), random_state)

    # fastdis helpers ------------------------------------------------------------------------

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        """Sizes of the latent factors (same as ``factors_num_values``, as a tuple)."""
        return tuple(self.grid.sizes.tolist())

    @property
    def num_points(self) -> int:
        """Number of points of the latent factor grid."""
        return self.grid.num_points

    def flat_index(self, factors) -> np.ndarray:
        """Flat index over the latent grid (last factor fastest) of each factor row."""
        return self.grid.flat_index(factors)

    def factors_at(self, index) -> np.ndarray:
        """Latent factor rows of flat indices (inverse of :meth:`flat_index`)."""
        return self.grid.factors_at(index)

    def complete_factors(self, factors: np.ndarray, random_state) -> np.ndarray:
        """Add the nuisance columns, drawn uniformly in index order (dlib's sample_all_factors)."""
        all_factors = np.empty((factors.shape[0], self.all_factors.sizes.size), dtype=np.int64)
        all_factors[:, self.latent_factor_indices] = factors
        for column in self.nuisance_factor_indices:
            all_factors[:, column] = random_state.randint(
                self.all_factors.sizes[column], size=factors.shape[0]
            )
        return all_factors

    def sample_factors_with_fixed(
        self, num, random_state, fixed: Mapping[int, int | np.ndarray]
    ) -> np.ndarray:
        """``sample_factors`` then overwrite the columns in ``fixed`` ({factor: value(s)}).

        The draws are those of ``sample_factors``, so BetaVAE's pairs (a factor copied from a
        first batch) and FactorVAE's batches (one factor held at one value) keep the reference's
        random stream: ``fixed={k: first[:, k]}`` or ``fixed={k: value}``.
        """
        factors = self.sample_factors(num, random_state)
        for column, value in fixed.items():
            if not 0 <= int(column) < self.num_factors:
                raise ValueError(
                    f"fixed names factor {column}; there are {self.num_factors} factors."
                )
            factors[:, int(column)] = value
        return self.grid.check(factors, name="fixed factor values")

    def iter_grid(
        self, chunk_size: int = 4096, random_state=None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(factors, observations) over the whole latent grid in flat-index order, in chunks.

        Nuisance factors and variant draws come from ``random_state`` (default: RandomState(0)).
        """
        if random_state is None:
            random_state = np.random.RandomState(0)
        for factors in self.grid.iter_chunks(chunk_size):
            yield factors, self.sample_observations_from_factors(factors, random_state)

    def images_at(self, all_factors: np.ndarray) -> np.ndarray:
        """Stored uint8 images of full factor rows (latent and nuisance), no conversion."""
        state = all_factors @ self.all_factors.bases
        rows = state if self._row_of_state is None else self._row_of_state[state]
        return _gather_rows(self.images, rows)

    def _observations_at(self, all_factors: np.ndarray) -> np.ndarray:
        pixels = _as_unit_float(self.images_at(all_factors), self._binary)
        return pixels.reshape((pixels.shape[0], *self._base_observation_shape()))

    def _base_observation_shape(self) -> list[int]:
        """Shape of one stored image with its channel axis, before a variant's transform."""
        shape = list(self.images.shape[1:])
        return shape + [1] if len(shape) == 2 else shape

    def _transform(self, observations: np.ndarray, random_state) -> np.ndarray:
        """A variant's per-observation randomness (colour, noise, crop); none by default."""
        return observations
