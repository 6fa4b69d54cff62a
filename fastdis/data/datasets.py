"""Loaders for Shapes3D, MPI3D, SmallNORB and Cars3D, with dlib's factors and its traps fixed.

* Shapes3D reads DeepMind's public ``3dshapes/3dshapes.h5`` (dlib expects an npz that was never
  published). The grid sizes come from the ``labels`` array, which must list the grid in
  row-major order (orientation fastest): that is checked, not assumed.
* MPI3D's factor sizes are validated against the array: today's toy, realistic and real files
  hold 1,036,800 images, i.e. (6, 6, 2, 3, 3, 40, 40); dlib hard-codes 4x4 for toy/realistic,
  which only fits the early 460,800-image challenge file (also accepted). A file may carry its own
  ``factor_sizes`` array (fastdis' small test files do).
* SmallNORB reads the pixels as uint8 (dlib: int8), uses training + testing files (48,600
  images) with instance as a nuisance, camera 0 only, and resizes 96->64 with Lanczos (dlib's
  ``Image.ANTIALIAS`` no longer exists in Pillow >= 10).
* Cars3D numbers objects in sorted file-name order (dlib: the directory listing's order, which
  is filesystem-dependent) and resizes 128->64 with Lanczos.

Images stay uint8 (memory-mapped or lazily read where the format allows) and become float32 in
[0, 1] per batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._base import FactorGrid, GridDataset
from ._files import (
    bad_file,
    find_data_file,
    load_npz_member,
    read_binary_matrix,
    resolve_data_dir,
)

SHAPES3D_FILE = Path("3dshapes") / "3dshapes.h5"
SHAPES3D_FACTORS = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")

MPI3D_FACTORS = ("object_color", "object_shape", "object_size", "camera_height",
                 "background_color", "horizontal_axis", "vertical_axis")
#: Factor sizes by image count: today's files, and the early challenge toy file dlib assumed.
MPI3D_LAYOUTS = {1_036_800: (6, 6, 2, 3, 3, 40, 40), 460_800: (4, 4, 2, 3, 3, 40, 40)}

SMALLNORB_CHUNKS = ("5x46789x9x18x6x2x96x96-training", "5x01235x9x18x6x2x96x96-testing")
SMALLNORB_FACTORS = ("category", "elevation", "azimuth", "lighting")
CARS3D_FACTORS = ("elevation", "azimuth", "object_type")


def smallnorb_files() -> list[Path]:
    return [Path("small_norb") / f"smallnorb-{chunk}-{kind}.mat"
            for chunk in SMALLNORB_CHUNKS for kind in ("dat", "cat", "info")]


def mpi3d_file(mode: str) -> Path:
    return Path(mode) / f"{mode}.npz"


def _check_images(images, path: Path, key: str, channels: int, size: int = 64) -> None:
    shape, dtype = tuple(images.shape), np.dtype(images.dtype)
    expected = (size, size, channels) if channels > 1 else (size, size)
    if len(shape) != len(expected) + 1 or shape[1:] != expected or dtype != np.uint8:
        raise bad_file(path, f"{key} of shape (N, {', '.join(map(str, expected))}) uint8",
                       f"shape {shape} {dtype}")


class Shapes3D(GridDataset):
    """Shapes3D (3dshapes.h5): floor, wall, object hue, scale, shape, orientation.

    ``in_memory=True`` reads the whole uint8 array (5.9 GB for the real file) instead of
    memory-mapping it (uncompressed files) or reading batches lazily (compressed ones).
    """

    plain_randint_sampling = True  # no nuisance factor

    def __init__(self, data_dir=None, *, in_memory: bool = False):
        import h5py

        path = find_data_file(
            data_dir, SHAPES3D_FILE, "shapes3d",
            "Download 3dshapes.h5 from https://github.com/deepmind/3d-shapes, or render the "
            "look-alike with `fastdis data make shapes3d --out DIR`.",
        )
        try:
            self._h5 = h5py.File(path, "r")
        except OSError as exc:
            raise bad_file(path, "an HDF5 file", f"an unreadable file ({exc})") from None
        for key in ("images", "labels"):
            if not isinstance(self._h5.get(key), h5py.Dataset):
                raise bad_file(path, "HDF5 data sets 'images' and 'labels'", f"{list(self._h5)}")
        images, labels = self._h5["images"], self._h5["labels"]
        _check_images(images, path, "images", 3)
        if labels.shape != (images.shape[0], 6):
            raise bad_file(path, f"labels of shape ({images.shape[0]}, 6)", f"{labels.shape}")
        sizes = _grid_sizes_from_labels(np.asarray(labels[...], dtype=np.float64), path)
        if images.compression is None and images.chunks is None:
            images = np.memmap(path, dtype=np.uint8, mode="r", shape=images.shape,
                               offset=images.id.get_offset())
        super().__init__("shapes3d", images, sizes, range(6), SHAPES3D_FACTORS, [64, 64, 3],
                         source=str(path), in_memory=in_memory)


def _grid_sizes_from_labels(labels: np.ndarray, path: Path) -> list[int]:
    """Factor sizes from distinct label values, after checking row-major grid order."""
    classes = np.empty(labels.shape, dtype=np.int64)
    sizes = []
    for column in range(labels.shape[1]):
        values, classes[:, column] = np.unique(labels[:, column], return_inverse=True)
        sizes.append(values.size)
    grid = FactorGrid(sizes)
    if grid.num_points != labels.shape[0] or not np.array_equal(
        classes @ grid.bases, np.arange(labels.shape[0])
    ):
        raise bad_file(path, f"labels listing the full grid {sizes} in row-major order "
                       "(last factor fastest)", "another order or an incomplete grid")
    return sizes


class MPI3D(GridDataset):
    """MPI3D toy / realistic / real: colour, shape, size, camera height, background, 2 DOFs."""

    plain_randint_sampling = True  # no nuisance factor

    def __init__(self, mode: str = "mpi3d_toy", data_dir=None, *, in_memory: bool = False):
        if mode not in ("mpi3d_toy", "mpi3d_realistic", "mpi3d_real"):
            raise ValueError(
                f"mode must be 'mpi3d_toy', 'mpi3d_realistic' or 'mpi3d_real'; got {mode!r}."
            )
        path = find_data_file(
            data_dir, mpi3d_file(mode), mode,
            "Download it from https://github.com/rr-learning/disentanglement_dataset (now "
            "https://huggingface.co/datasets/waleedgondal/mpi3d).",
        )
        images = load_npz_member(path, "images")
        _check_images(images, path, "images", 3)
        with np.load(path) as archive:
            carried = archive["factor_sizes"] if "factor_sizes" in archive.files else None
        if carried is not None:
            sizes = tuple(int(s) for s in carried)
        elif images.shape[0] in MPI3D_LAYOUTS:
            sizes = MPI3D_LAYOUTS[images.shape[0]]
        else:
            raise bad_file(path, "1,036,800 images (6x6x2x3x3x40x40, today's files) or 460,800 "
                           "(4x4x2x3x3x40x40, the early toy file)", f"{images.shape[0]} images")
        if len(sizes) != 7 or int(np.prod(sizes)) != images.shape[0]:
            raise bad_file(path, f"7 factor_sizes whose product is {images.shape[0]}", str(sizes))
        super().__init__(mode, images, sizes, range(7), MPI3D_FACTORS, [64, 64, 3],
                         source=str(path), in_memory=in_memory)


def _resize_lanczos(images: np.ndarray) -> np.ndarray:
    """Resize each uint8 image (N, H, W[, 3]) to 64x64 with Pillow's Lanczos filter."""
    from PIL import Image

    out = np.empty((images.shape[0], 64, 64, *images.shape[3:]), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(
            (64, 64), Image.Resampling.LANCZOS))
    return out


class SmallNORB(GridDataset):
    """SmallNORB, train + test: category, elevation, azimuth, lighting; instance is nuisance.

    The images are resized at load time and always held in memory (``in_memory`` is accepted
    for a uniform signature).
    """

    plain_randint_sampling = False  # observations redraw the instance

    def __init__(self, data_dir=None, *, in_memory: bool = True):
        fix = ("Download the six files from https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/ "
               "and gunzip them.")
        paths = [find_data_file(data_dir, f, "smallnorb", fix) for f in smallnorb_files()]
        images, features = [], []
        for dat_path, cat_path, info_path in zip(paths[0::3], paths[1::3], paths[2::3],
                                                 strict=True):
            dat, cat, info = (read_binary_matrix(p) for p in (dat_path, cat_path, info_path))
            if dat.ndim != 4 or dat.shape[1:] != (2, 96, 96) or dat.dtype != np.uint8:
                raise bad_file(dat_path, "uint8 stereo pairs of shape (N, 2, 96, 96)",
                               f"{dat.dtype} {dat.shape}")
            if cat.shape != (dat.shape[0],) or info.shape != (dat.shape[0], 4):
                raise bad_file(info_path, f"cat ({dat.shape[0]},) and info ({dat.shape[0]}, 4)",
                               f"cat {cat.shape}, info {info.shape}")
            images.append(_resize_lanczos(dat[:, 0]))  # camera 0 only, as dlib
            features.append(np.column_stack((cat, info)).astype(np.int64))
        features = np.concatenate(features)
        features[:, 3] //= 2  # azimuth is stored as 0, 2, ..., 34
        sizes = (features.max(axis=0) + 1).tolist()
        grid = FactorGrid(sizes)
        state = features @ grid.bases
        if features.min() < 0 or np.unique(state).size != grid.num_points \
                or state.size != grid.num_points:
            raise bad_file(paths[2], f"(category, instance, elevation, azimuth/2, lighting) rows "
                           f"covering the grid {sizes} once", f"{state.size} rows, "
                           f"{np.unique(state).size} distinct")
        row_of_state = np.empty(grid.num_points, dtype=np.int64)
        row_of_state[state] = np.arange(state.size)
        super().__init__("smallnorb", np.concatenate(images), sizes, (0, 2, 3, 4),
                         SMALLNORB_FACTORS, [64, 64, 1], row_of_state=row_of_state,
                         source=str(paths[0].parent))


class Cars3D(GridDataset):
    """Cars3D: elevation (4), azimuth (24), object type (one per .mat file, 183 in the release).

    The images are resized at load time and always held in memory.
    """

    plain_randint_sampling = True  # no nuisance factor

    def __init__(self, data_dir=None, *, in_memory: bool = True):
        from scipy.io import loadmat

        folder, origin = resolve_data_dir(data_dir)
        cars_dir = folder / "cars"
        files = sorted(cars_dir.glob("*.mat")) if cars_dir.is_dir() else []
        if not files:
            raise FileNotFoundError(
                f"cars3d: no *_mesh.mat files found in {cars_dir} (data folder from {origin}). "
                "Download nips2015-analogy-data.tar.gz from http://www.scottreed.info/ and "
                "unpack data/cars/ there."
            )
        images = np.empty((4, 24, len(files), 64, 64, 3), dtype=np.uint8)
        for obj, path in enumerate(files):
            try:
                mesh = loadmat(path)["im"]
            except (KeyError, ValueError, OSError) as exc:
                raise bad_file(path, "a MATLAB file with array 'im'",
                               f"a read error ({exc})") from None
            if mesh.shape != (128, 128, 3, 24, 4) or mesh.dtype != np.uint8:
                raise bad_file(path, "im of shape (128, 128, 3, 24, 4) uint8 (H, W, C, azimuth, "
                               "elevation)", f"{mesh.shape} {mesh.dtype}")
            views = np.moveaxis(mesh, (4, 3), (0, 1)).reshape(96, 128, 128, 3)
            images[:, :, obj] = _resize_lanczos(views).reshape(4, 24, 64, 64, 3)
        super().__init__("cars3d", images.reshape(-1, 64, 64, 3), (4, 24, len(files)), (0, 1, 2),
                         CARS3D_FACTORS, [64, 64, 3], source=str(cars_dir))
