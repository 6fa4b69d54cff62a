"""Ground-truth data sets: dlib's loaders with its traps fixed, and offline look-alikes.

Load a data set by dlib's name from a data folder laid out as dlib's (``dsprites/...npz``,
``3dshapes/3dshapes.h5``, ``small_norb/...``, ``cars/*.mat``, ``mpi3d_*/mpi3d_*.npz``,
``scream/scream.jpg``)::

    from fastdis.data import load_dataset, DATASETS, make_dsprites
    make_dsprites("data", small=True)                    # the dSprites look-alike, CI-sized
    data = load_dataset("dsprites_full", data_dir="data")
    factors, observations = data.sample(64, np.random.RandomState(0))

The folder is ``data_dir=``, else ``$FASTDIS_DATA``, else ``$DISENTANGLEMENT_LIB_DATA``, else ".".

Every data set object has disentanglement_lib's ``GroundTruthData`` members, with the
reference's random draws in its order (dlib code and fastdis' compat metrics take either):

* ``num_factors``, ``factors_num_values`` (list), ``observation_shape`` ([64, 64, C]);
* ``sample_factors(num, random_state)`` -> int64 (num, num_factors);
* ``sample_observations_from_factors(factors, random_state)`` -> float32 (num, 64, 64, C) in [0, 1];
* ``sample(num, random_state)`` -> (factors, observations); ``sample_observations(num, rs)``.

and fastdis' helpers:

* ``factor_sizes`` (tuple), ``factor_names``, ``num_points`` (size of the latent grid);
* ``flat_index(factors)`` / ``factors_at(index)``: row-major index over the latent grid (last
  factor fastest) and back; ``grid`` is the :class:`FactorGrid` (``iter_chunks(chunk_size)``);
* ``sample_factors_with_fixed(num, random_state, fixed={factor: value or column})``: the
  BetaVAE / FactorVAE draws with factors held fixed, same random stream as ``sample_factors``;
* ``iter_grid(chunk_size, random_state)``: (factors, observations) over the whole grid;
* ``images`` (the stored uint8 array: in RAM, memory-mapped or a lazy h5py data set) and
  ``images_at(all_factors)``.

Observations are stored as uint8 and converted per batch. ``make_dsprites(out_dir, small=False)``
and ``make_shapes3d(out_dir, small=False)`` render look-alikes (not pixel copies) in the real
formats; ``fastdis data list | make | show`` is the command line.
"""

from ._base import FactorGrid, GridDataset, GroundTruthData
from .datasets import MPI3D, Cars3D, Shapes3D, SmallNORB
from .dsprites import ColorDSprites, DSprites, NoisyDSprites, ScreamDSprites
from .registry import DATASETS, DatasetSpec, load_dataset
from .render_dsprites import make_dsprites
from .render_shapes3d import make_shapes3d

__all__ = [
    "DATASETS",
    "MPI3D",
    "Cars3D",
    "ColorDSprites",
    "DSprites",
    "DatasetSpec",
    "FactorGrid",
    "GridDataset",
    "GroundTruthData",
    "NoisyDSprites",
    "ScreamDSprites",
    "Shapes3D",
    "SmallNORB",
    "load_dataset",
    "make_dsprites",
    "make_shapes3d",
]
