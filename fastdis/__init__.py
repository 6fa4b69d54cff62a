"""fastdis: a compiled engine for training and scoring disentangled representations.

It makes the study of Locatello et al. (ICML 2019, "Challenging common assumptions in the
unsupervised learning of disentangled representations") cheap and exact. Data flow one way,
each step a subpackage and a command:

- :mod:`fastdis.data`: the study's ground-truth data sets (dSprites and its colour, noise and
  Scream variants, SmallNORB, Cars3D, Shapes3D, MPI3D) read from the reference's files, and
  look-alike renderers for demos and tests (``fastdis data``).
- :mod:`fastdis.train`: the six VAE methods of the study in PyTorch with the reference's
  networks, losses and initialisation, the study's model grid, checkpoints and resume
  (``fastdis train``, ``fastdis sweep``).
- :mod:`fastdis.kernels`: Triton kernels (CPU fallbacks in torch) for the β-TCVAE total
  correlation and the DIP-VAE covariance penalty.
- :mod:`fastdis.batch`: encode every checkpoint once on one evaluation plan into a Zarr store,
  score every checkpoint x representation x metric in parallel (local processes or Dask,
  resumable), one long Parquet table, and the report (``fastdis encode``, ``score``,
  ``report``).
- :mod:`fastdis.metrics`: every disentanglement_lib metric (and several proposed since) as a
  pure function of arrays with numba kernels, plus the metric registry, the one list of metrics.
- :mod:`fastdis.compat.disentanglement_lib`: drop-in replacements of the reference's metric
  modules (same names, signatures, random draws, gin configuration and numbers), and
  ``patch()`` to make an installed disentanglement_lib use them.
- :mod:`fastdis.bench`: every hot path against its reference, side by side
  (``fastdis bench``).

``fastdis quickstart`` runs the whole chain on a small look-alike data set.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fastdis")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
