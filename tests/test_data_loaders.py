"""Loaders on tiny files fabricated in each real format, and their errors on bad files."""

import itertools
import zipfile

import numpy as np
import pytest

from fastdis.data import DATASETS, load_dataset, make_dsprites

DSPRITES = "dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"


def _tiny_dsprites(folder, sizes=(1, 2, 2, 2, 2, 3), imgs=None, compressed=False):
    """A tiny file with dSprites' keys; image i is all zeros but pixel (i // 64, i % 64)."""
    n = int(np.prod(sizes))
    if imgs is None:
        imgs = np.zeros((n, 64, 64), dtype=np.uint8)
        imgs.reshape(n, -1)[np.arange(n), np.arange(n)] = 1
    path = folder / DSPRITES
    path.parent.mkdir(parents=True, exist_ok=True)
    save = np.savez_compressed if compressed else np.savez
    save(path, imgs=imgs, latents_classes=np.zeros((n, 6), dtype=np.int64),
         latents_values=np.zeros((n, 6)),
         metadata=np.array({"latents_sizes": np.array(sizes)}, dtype=object))
    return path


# dSprites: memory-mapping, data folder resolution --------------------------------------------

@pytest.mark.parametrize("compressed", [False, True])
def test_dsprites_rows_follow_the_grid_whether_mapped_or_read(tmp_path, compressed):
    _tiny_dsprites(tmp_path, compressed=compressed)
    data = load_dataset("dsprites_full", data_dir=tmp_path)
    assert isinstance(data.images, np.memmap) != compressed
    factors = data.factors_at(np.arange(data.num_points))
    observations = data.sample_observations_from_factors(factors, np.random.RandomState(0))
    lit = observations.reshape(len(factors), -1).argmax(axis=1)
    np.testing.assert_array_equal(lit, np.arange(data.num_points))  # colour has one value


def test_data_folder_precedence(tmp_path, monkeypatch):
    for name, sizes in (("arg", (1, 1, 1, 1, 1, 2)), ("fastdis", (1, 1, 1, 1, 1, 3)),
                        ("dlib", (1, 1, 1, 1, 1, 4))):
        _tiny_dsprites(tmp_path / name, sizes)
    monkeypatch.setenv("DISENTANGLEMENT_LIB_DATA", str(tmp_path / "dlib"))
    monkeypatch.delenv("FASTDIS_DATA", raising=False)
    assert load_dataset("dsprites_full").factor_sizes[-1] == 4
    monkeypatch.setenv("FASTDIS_DATA", str(tmp_path / "fastdis"))
    assert load_dataset("dsprites_full").factor_sizes[-1] == 3
    assert load_dataset("dsprites_full", data_dir=tmp_path / "arg").factor_sizes[-1] == 2


def test_missing_file_names_file_folder_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTDIS_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("dsprites_full")
    message = str(info.value)
    assert "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz" in message
    assert str(tmp_path) in message and "$FASTDIS_DATA" in message
    assert "fastdis data make dsprites" in message


def test_truncated_and_misshapen_files_are_named(tmp_path):
    path = _tiny_dsprites(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=f"{path}.*expected"):
        load_dataset("dsprites_full", data_dir=tmp_path)
    _tiny_dsprites(tmp_path, imgs=np.zeros((48, 32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"imgs of shape \(48, 64, 64\) uint8.*\(48, 32, 32\)"):
        load_dataset("dsprites_full", data_dir=tmp_path)
    _tiny_dsprites(tmp_path, sizes=(1, 2, 2))
    with pytest.raises(ValueError, match="latents_sizes"):
        load_dataset("dsprites_full", data_dir=tmp_path)



def test_metadata_that_is_not_a_dict_is_named(tmp_path):
    # A plain array as "metadata" used to escape as a bare IndexError.
    path = tmp_path / "dsprites" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
    path.parent.mkdir(parents=True)
    np.savez(path, imgs=np.zeros((2, 64, 64), np.uint8), metadata=np.array([1, 1, 1, 1, 1, 2]))
    with pytest.raises(ValueError, match=rf"{path}.*metadata\['latents_sizes'\]"):
        load_dataset("dsprites_full", data_dir=tmp_path)

def test_truncated_stored_member_is_caught_before_mapping(tmp_path):
    path = _tiny_dsprites(tmp_path)
    with zipfile.ZipFile(path) as archive:  # rewrite imgs.npy with its last bytes missing
        members = {name: archive.read(name) for name in archive.namelist()}
    members["imgs.npy"] = members["imgs.npy"][:-100]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    with pytest.raises(ValueError, match="truncated"):
        load_dataset("dsprites_full", data_dir=tmp_path)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown data set 'dsprites'.*dsprites_full"):
        load_dataset("dsprites")
    assert list(DATASETS) == ["dsprites_full", "color_dsprites", "noisy_dsprites",
                              "scream_dsprites", "smallnorb", "cars3d", "shapes3d", "mpi3d_toy",
                              "mpi3d_realistic", "mpi3d_real"]


def test_bad_factors_are_refused_with_the_column(tmp_path):
    make_dsprites(tmp_path, small=True)
    data = load_dataset("dsprites_full", data_dir=tmp_path)
    with pytest.raises(ValueError, match=r"factors\[0, 2\] = 8 is outside factor 2"):
        data.sample_observations_from_factors([[0, 0, 8, 0, 0]], np.random.RandomState(0))
    with pytest.raises(ValueError, match="must have 5 columns"):
        data.sample_observations_from_factors([[0, 0, 0]], np.random.RandomState(0))


# Shapes3D -------------------------------------------------------------------------------------

def _tiny_shapes3d(folder, sizes=(2, 1, 2, 1, 3, 2), shuffle=False, **create):
    import h5py

    n = int(np.prod(sizes))
    grid = np.stack(np.unravel_index(np.arange(n), sizes), axis=1).astype(np.float64)
    labels = grid / 10 + [0.0, 0.0, 0.0, 0.75, 0.0, -30.0]
    if shuffle:
        labels = labels[::-1]
    images = np.random.RandomState(0).randint(0, 256, (n, 64, 64, 3)).astype(np.uint8)
    (folder / "3dshapes").mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / "3dshapes" / "3dshapes.h5", "w") as handle:
        handle.create_dataset("images", data=images, **create)
        handle.create_dataset("labels", data=labels)
    return images


def test_shapes3d_compressed_file_reads_batches_lazily(tmp_path):
    import h5py

    images = _tiny_shapes3d(tmp_path, compression="gzip", chunks=(1, 64, 64, 3))
    data = load_dataset("shapes3d", data_dir=tmp_path)
    assert isinstance(data.images, h5py.Dataset)
    assert data.factor_sizes == (2, 1, 2, 1, 3, 2)
    factors = np.array([[1, 0, 1, 0, 2, 1], [0, 0, 0, 0, 0, 0], [1, 0, 1, 0, 2, 1]])
    observations = data.sample_observations_from_factors(factors, np.random.RandomState(0))
    np.testing.assert_array_equal(observations,
                                  images[data.flat_index(factors)].astype(np.float32) / 255)
    in_memory = load_dataset("shapes3d", data_dir=tmp_path, in_memory=True)
    assert type(in_memory.images) is np.ndarray
    np.testing.assert_array_equal(
        in_memory.sample_observations_from_factors(factors, np.random.RandomState(0)),
        observations)


def test_shapes3d_labels_out_of_grid_order_are_refused(tmp_path):
    _tiny_shapes3d(tmp_path, shuffle=True)
    with pytest.raises(ValueError, match="row-major order"):
        load_dataset("shapes3d", data_dir=tmp_path)


def test_shapes3d_missing_dataset_key(tmp_path):
    import h5py

    (tmp_path / "3dshapes").mkdir()
    with h5py.File(tmp_path / "3dshapes" / "3dshapes.h5", "w") as handle:
        handle.create_dataset("images", data=np.zeros((2, 64, 64, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="'images' and 'labels'"):
        load_dataset("shapes3d", data_dir=tmp_path)


# MPI3D ----------------------------------------------------------------------------------------

def test_mpi3d_sizes_are_validated_against_the_array(tmp_path):
    folder = tmp_path / "mpi3d_toy"
    folder.mkdir()
    np.savez_compressed(folder / "mpi3d_toy.npz", images=np.zeros((10, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="1,036,800 images.*got 10 images"):
        load_dataset("mpi3d_toy", data_dir=tmp_path)
    np.savez(folder / "mpi3d_toy.npz", images=np.zeros((10, 64, 64, 3), np.uint8),
             factor_sizes=np.array([1, 1, 1, 1, 1, 2, 4]))
    with pytest.raises(ValueError, match="product is 10"):
        load_dataset("mpi3d_toy", data_dir=tmp_path)
    np.savez(folder / "mpi3d_toy.npz", images=np.zeros((10, 64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"images of shape \(N, 64, 64, 3\) uint8"):
        load_dataset("mpi3d_toy", data_dir=tmp_path)


# SmallNORB ------------------------------------------------------------------------------------

_MAGIC = {np.uint8: 0x1E3D4C55, np.int32: 0x1E3D4C54}


def _write_binary_matrix(path, array):
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    header = np.array([_MAGIC[array.dtype.type], array.ndim, *dims], dtype="<i4")
    path.write_bytes(header.tobytes() + array.astype(array.dtype.newbyteorder("<")).tobytes())


def _tiny_norb(folder, rng):
    """Two chunks, 2 categories x 1 instance each x 2 elevations x 2 azimuths x 2 lightings."""
    folder = folder / "small_norb"
    folder.mkdir(parents=True, exist_ok=True)
    chunks = {}
    for chunk, instance in (("5x46789x9x18x6x2x96x96-training", 1),
                            ("5x01235x9x18x6x2x96x96-testing", 0)):
        rows = np.array([(c, instance, e, 2 * a, light) for c, e, a, light
                         in itertools.product(range(2), range(2), range(2), range(2))])
        rows = rows[rng.permutation(len(rows))]  # the real files are not in grid order
        pairs = rng.randint(0, 256, (len(rows), 2, 96, 96)).astype(np.uint8)
        _write_binary_matrix(folder / f"smallnorb-{chunk}-dat.mat", pairs)
        _write_binary_matrix(folder / f"smallnorb-{chunk}-cat.mat", rows[:, 0].astype(np.int32))
        _write_binary_matrix(folder / f"smallnorb-{chunk}-info.mat", rows[:, 1:].astype(np.int32))
        chunks[instance] = (rows, pairs)
    return chunks


def test_smallnorb_reads_uint8_train_and_test_with_instance_as_nuisance(tmp_path):
    from PIL import Image

    chunks = _tiny_norb(tmp_path, np.random.RandomState(0))
    data = load_dataset("smallnorb", data_dir=tmp_path)
    assert data.factor_sizes == (2, 2, 2, 2) and data.observation_shape == [64, 64, 1]
    assert data.all_factors.sizes.tolist() == [2, 2, 2, 2, 2]
    factors = data.sample_factors(40, np.random.RandomState(1))
    rs = np.random.RandomState(2)
    observations = data.sample_observations_from_factors(factors, rs)
    reference = np.random.RandomState(2)
    instances = reference.randint(2, size=40)  # dlib's nuisance draw, and nothing else
    assert rs.randint(10**9) == reference.randint(10**9)
    for k in range(40):
        rows, pairs = chunks[instances[k]]
        c, e, a, light = factors[k]
        match = np.flatnonzero((rows == [c, instances[k], e, 2 * a, light]).all(axis=1))[0]
        expected = Image.fromarray(pairs[match, 0]).resize((64, 64), Image.Resampling.LANCZOS)
        np.testing.assert_array_equal(observations[k, ..., 0],
                                      np.asarray(expected, dtype=np.float32) / 255)


def test_smallnorb_truncated_or_missing_file(tmp_path):
    _tiny_norb(tmp_path, np.random.RandomState(0))
    info = tmp_path / "small_norb" / "smallnorb-5x01235x9x18x6x2x96x96-testing-info.mat"
    info.write_bytes(info.read_bytes()[:-8])
    with pytest.raises(ValueError, match=f"{info.name}.*truncated"):
        load_dataset("smallnorb", data_dir=tmp_path)
    info.unlink()
    with pytest.raises(FileNotFoundError, match=info.name):
        load_dataset("smallnorb", data_dir=tmp_path)


# Cars3D ---------------------------------------------------------------------------------------

def test_cars3d_orders_objects_by_file_name_and_views_like_dlib(tmp_path):
    from scipy.io import savemat

    (tmp_path / "cars").mkdir()
    for obj, name in enumerate(("car_001_mesh.mat", "car_002_mesh.mat")):
        views = np.empty((128, 128, 3, 24, 4), dtype=np.uint8)  # H, W, C, azimuth, elevation
        # each view is flat, valued by (object, elevation, azimuth); resizing keeps it
        views[:] = (obj * 100 + np.arange(4)[None, :] * 24 + np.arange(24)[:, None])
        savemat(tmp_path / "cars" / name, {"im": views})
    data = load_dataset("cars3d", data_dir=tmp_path)
    assert data.factor_sizes == (4, 24, 2)
    factors = data.factors_at(np.arange(data.num_points))
    observations = data.sample_observations_from_factors(factors, np.random.RandomState(0))
    expected = (factors[:, 2] * 100 + factors[:, 0] * 24 + factors[:, 1]) / np.float32(255)
    np.testing.assert_array_equal(observations[:, 10, 20, 1], expected.astype(np.float32))
    savemat(tmp_path / "cars" / "car_003_mesh.mat", {"im": np.zeros((64, 64, 3, 24, 4), "u1")})
    with pytest.raises(ValueError, match=r"car_003_mesh\.mat.*\(128, 128, 3, 24, 4\)"):
        load_dataset("cars3d", data_dir=tmp_path)


def test_cars3d_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="cars.*scottreed"):
        load_dataset("cars3d", data_dir=tmp_path)


def _traversal_moments(data, factor):
    """Area and centre of mass of the sprite while ``factor`` sweeps its values (others at 0)."""
    factors = np.zeros((data.factor_sizes[factor], data.num_factors), dtype=np.int64)
    factors[:, 1] = data.factor_sizes[1] - 1  # the largest scale, so rotations show
    factors[:, factor] = np.arange(data.factor_sizes[factor])
    images = data.sample_observations_from_factors(factors, np.random.RandomState(0))[..., 0]
    rows, cols = np.mgrid[:64, :64]
    area = images.sum(axis=(1, 2))
    return area, (images * cols).sum(axis=(1, 2)) / area, (images * rows).sum(axis=(1, 2)) / area


def test_dsprites_look_alike_images_follow_their_factors(tmp_path):
    # Each image must sit where its latents say: a block written in the wrong storage order
    # swaps factors (orientation moving the sprite, posX rotating it) without any shape error.
    data = load_dataset("dsprites_full", data_dir=make_dsprites(tmp_path, small=True).parents[1])
    area, x, y = _traversal_moments(data, 1)  # scale: area grows, centre stays
    assert np.all(np.diff(area) > 0) and np.ptp(x) < 1 and np.ptp(y) < 1
    area, x, y = _traversal_moments(data, 2)  # orientation: centre stays
    assert np.ptp(area) > 0 and np.ptp(x) < 1 and np.ptp(y) < 1
    area, x, y = _traversal_moments(data, 3)  # posX: moves right only
    assert np.all(np.diff(x) > 0) and np.ptp(y) < 1 and np.ptp(area) == 0
    area, x, y = _traversal_moments(data, 4)  # posY: moves down only
    assert np.all(np.diff(y) > 0) and np.ptp(x) < 1 and np.ptp(area) == 0
