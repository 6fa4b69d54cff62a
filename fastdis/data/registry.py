"""The named data sets (dlib's names): one list, used by :func:`load_dataset` and the CLI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from . import datasets, dsprites
from ._files import resolve_data_dir


@dataclass(frozen=True)
class DatasetSpec:
    """A named data set: its factors as in the real files, the files it reads, how to build it."""

    name: str
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]  # of the real files; fastdis reads them from the files
    files: tuple[Path, ...]  # relative to the data folder
    loader: Callable
    make: str = ""  # the `fastdis data make` target that renders a look-alike, if any

    def missing_files(self, data_dir=None) -> list[Path]:
        folder, _ = resolve_data_dir(data_dir)
        if self.name == "cars3d":
            cars = folder / "cars"
            return [] if cars.is_dir() and any(cars.glob("*.mat")) else [folder / "cars"]
        return [folder / f for f in self.files if not (folder / f).is_file()]


_DSPRITES = dsprites.DSPRITES_ALL_FACTORS[1:]  # dlib exposes all but the colour
_DSPRITES_SIZES = (3, 6, 40, 32, 32)
_MPI3D_SIZES = datasets.MPI3D_LAYOUTS[1_036_800]

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("dsprites_full", _DSPRITES, _DSPRITES_SIZES, (dsprites.DSPRITES_FILE,),
                    dsprites.DSprites, "dsprites"),
        DatasetSpec("color_dsprites", _DSPRITES, _DSPRITES_SIZES, (dsprites.DSPRITES_FILE,),
                    dsprites.ColorDSprites, "dsprites"),
        DatasetSpec("noisy_dsprites", _DSPRITES, _DSPRITES_SIZES, (dsprites.DSPRITES_FILE,),
                    dsprites.NoisyDSprites, "dsprites"),
        DatasetSpec("scream_dsprites", _DSPRITES, _DSPRITES_SIZES,
                    (dsprites.DSPRITES_FILE, dsprites.SCREAM_FILE), dsprites.ScreamDSprites),
        DatasetSpec("smallnorb", datasets.SMALLNORB_FACTORS, (5, 9, 18, 6),
                    tuple(datasets.smallnorb_files()), datasets.SmallNORB),
        DatasetSpec("cars3d", datasets.CARS3D_FACTORS, (4, 24, 183),
                    (Path("cars") / "car_001_mesh.mat",), datasets.Cars3D),
        DatasetSpec("shapes3d", datasets.SHAPES3D_FACTORS, (10, 10, 10, 8, 4, 15),
                    (datasets.SHAPES3D_FILE,), datasets.Shapes3D, "shapes3d"),
        *(
            DatasetSpec(mode, datasets.MPI3D_FACTORS, _MPI3D_SIZES, (datasets.mpi3d_file(mode),),
                        partial(datasets.MPI3D, mode))
            for mode in ("mpi3d_toy", "mpi3d_realistic", "mpi3d_real")
        ),
    )
}


def load_dataset(name: str, data_dir=None, *, in_memory: bool = False):
    """Load the data set ``name`` (dlib's names, see ``DATASETS``) from ``data_dir``.

    ``data_dir`` defaults to ``$FASTDIS_DATA``, then ``$DISENTANGLEMENT_LIB_DATA``, then ".".
    Images stay uint8; uncompressed files are memory-mapped and compressed h5 files read
    lazily, unless ``in_memory=True`` reads them into RAM at once (faster batches for long
    training runs: no page faults or h5 reads per batch).

    Raises
    ------
    ValueError
        Unknown name, or a file with the wrong shape, type or content.
    FileNotFoundError
        A file is missing; the message names it and the folder searched.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}.")
    return DATASETS[name].loader(data_dir=data_dir, in_memory=in_memory)
