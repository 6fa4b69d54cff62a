"""fastdis.data against disentanglement_lib's own data classes: same draws, same observations.

dlib's data modules import TensorFlow only for file access (``gfile``); the ``dlib_data``
fixture serves them a stand-in whose gfile is Python's ``open`` / ``os``, then forgets them.
"""

import importlib
import io
import os
import sys
import types

import numpy as np
import pytest

from fastdis.data import FactorGrid, load_dataset, make_dsprites, make_shapes3d


class _ReadFile(io.BytesIO):
    """A file's bytes that stay readable after ``with``: dlib's MPI3D reads the npz lazily
    after its ``with gfile.GFile(...)`` block has closed the file."""

    def __init__(self, path, mode="rb"):
        with open(path, mode) as handle:
            super().__init__(handle.read())

    def close(self):
        pass


@pytest.fixture
def dlib_data(monkeypatch):
    """Import dlib's data modules with a fake ``tensorflow.compat.v1`` (file access only)."""
    gfile = types.SimpleNamespace(Open=_ReadFile, GFile=_ReadFile, ListDirectory=os.listdir,
                                  exists=os.path.exists)
    v1 = types.ModuleType("tensorflow.compat.v1")
    v1.gfile = gfile
    v1.io = types.SimpleNamespace(gfile=gfile)
    compat = types.ModuleType("tensorflow.compat")
    compat.v1 = v1
    tensorflow = types.ModuleType("tensorflow")
    tensorflow.compat = compat
    for name, module in (("tensorflow", tensorflow), ("tensorflow.compat", compat),
                         ("tensorflow.compat.v1", v1)):
        monkeypatch.setitem(sys.modules, name, module)
    before = set(sys.modules)

    def load(name):
        return importlib.import_module(f"disentanglement_lib.data.ground_truth.{name}")

    yield load
    for name in set(sys.modules) - before:  # they hold the fake TensorFlow
        if name.startswith("disentanglement_lib.data"):
            del sys.modules[name]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    make_dsprites(folder, small=True)
    make_shapes3d(folder, small=True)
    return folder


@pytest.fixture
def dlib_dsprites(dlib_data, data_dir, monkeypatch):
    module = dlib_data("dsprites")
    monkeypatch.setattr(module, "DSPRITES_PATH",
                        str(data_dir / "dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"))
    return module


# The factor grid ------------------------------------------------------------------------------

def test_flat_index_is_row_major_and_inverts():
    grid = FactorGrid([3, 1, 4, 2])
    factors = grid.factors_at(np.arange(grid.num_points))
    np.testing.assert_array_equal(grid.flat_index(factors), np.arange(24))
    np.testing.assert_array_equal(
        factors, np.stack(np.unravel_index(np.arange(24), (3, 1, 4, 2)), axis=1))
    chunks = list(grid.iter_chunks(5))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 4]
    np.testing.assert_array_equal(np.concatenate(chunks), factors)


def test_grid_rejects_bad_factors():
    grid = FactorGrid([3, 4])
    with pytest.raises(ValueError, match=r"factors\[1, 1\] = 4 is outside factor 1"):
        grid.flat_index([[0, 0], [2, 4]])
    with pytest.raises(ValueError, match="must have 2 columns"):
        grid.flat_index([[0, 0, 0]])
    with pytest.raises(ValueError, match=r"index values must be in \[0, 12\)"):
        grid.factors_at(np.array([12]))
    with pytest.raises(ValueError, match="factor_sizes"):
        FactorGrid([3, 0])


def test_sample_factors_with_fixed_keeps_the_random_stream(data_dir):
    data = load_dataset("dsprites_full", data_dir=data_dir)
    plain = data.sample_factors(50, np.random.RandomState(4))
    fixed = data.sample_factors_with_fixed(50, np.random.RandomState(4), {2: 5, 0: plain[:, 1] % 3})
    np.testing.assert_array_equal(fixed[:, [1, 3, 4]], plain[:, [1, 3, 4]])
    assert (fixed[:, 2] == 5).all()
    np.testing.assert_array_equal(fixed[:, 0], plain[:, 1] % 3)
    with pytest.raises(ValueError, match="outside factor 2"):
        data.sample_factors_with_fixed(3, np.random.RandomState(0), {2: 8})


def test_iter_grid_covers_every_point_in_order(data_dir):
    data = load_dataset("shapes3d", data_dir=data_dir)
    seen = []
    for factors, observations in data.iter_grid(chunk_size=1000):
        assert observations.shape == (len(factors), 64, 64, 3)
        seen.append(data.flat_index(factors))
    np.testing.assert_array_equal(np.concatenate(seen), np.arange(data.num_points))


# dSprites family against dlib's classes ------------------------------------------------------

@pytest.mark.parametrize("ours, theirs", [
    ("dsprites_full", "DSprites"), ("color_dsprites", "ColorDSprites"),
    ("noisy_dsprites", "NoisyDSprites"),
])
def test_dsprites_variants_match_dlib_draw_for_draw(ours, theirs, data_dir, dlib_dsprites):
    reference = getattr(dlib_dsprites, theirs)([1, 2, 3, 4, 5])  # dlib reads our file as is
    data = load_dataset(ours, data_dir=data_dir)
    assert data.observation_shape == reference.observation_shape
    assert data.num_factors == reference.num_factors
    ours_rs, theirs_rs = np.random.RandomState(7), np.random.RandomState(7)
    for num in (1, 64, 3):
        factors, observations = data.sample(num, ours_rs)
        ref_factors, ref_observations = reference.sample(num, theirs_rs)
        np.testing.assert_array_equal(factors, ref_factors)
        assert observations.dtype == np.float32
        np.testing.assert_array_equal(observations, ref_observations.astype(np.float32))
    assert ours_rs.randint(10**9) == theirs_rs.randint(10**9)  # same number of draws
    # dlib hard-codes the full grid's sizes here; fastdis reads them from the file.
    assert data.factors_num_values == [3, 3, 8, 12, 12]
    assert reference.factors_num_values == [3, 6, 40, 32, 32]


@pytest.mark.parametrize("ours, theirs", [
    ("dsprites_full", "DSprites"), ("color_dsprites", "ColorDSprites"),
    ("noisy_dsprites", "NoisyDSprites"),
])
def test_empty_samples_are_empty_arrays_like_dlibs(ours, theirs, data_dir, dlib_dsprites):
    # sample_factors(0) worked but sample(0) used to raise "factors has 0 sample(s)".
    reference = getattr(dlib_dsprites, theirs)([1, 2, 3, 4, 5])
    data = load_dataset(ours, data_dir=data_dir)
    factors, observations = data.sample(0, np.random.RandomState(7))
    ref_factors, ref_observations = reference.sample(0, np.random.RandomState(7))
    assert factors.shape == ref_factors.shape == (0, 5) and factors.dtype == np.int64
    assert observations.shape == ref_observations.shape and observations.dtype == np.float32
    assert data.flat_index(factors).shape == (0,)


def test_scream_dsprites_matches_dlib_and_names_missing_painting(
    data_dir, dlib_dsprites, tmp_path, monkeypatch
):
    with pytest.raises(FileNotFoundError, match=r"scream\.jpg.*The_Scream"):
        load_dataset("scream_dsprites", data_dir=data_dir)
    from PIL import Image

    (data_dir / "scream").mkdir(exist_ok=True)
    painting = np.random.RandomState(0).randint(0, 256, (420, 330, 3)).astype(np.uint8)
    Image.fromarray(painting).save(data_dir / "scream" / "scream.jpg")
    try:
        data = load_dataset("scream_dsprites", data_dir=data_dir)
        assert data.scream.shape == (274, 215, 3)  # fitted within 350x274 like dlib
        # dlib's constructor passes a 3-tuple to thumbnail, which Pillow >= 10 rejects; its
        # sampling code is run on the same painting.
        reference = dlib_dsprites.DSprites([1, 2, 3, 4, 5])
        reference.__class__ = dlib_dsprites.ScreamDSprites
        reference.scream = data.scream
        factors = data.sample_factors(20, np.random.RandomState(1))
        ours = data.sample_observations_from_factors(factors, np.random.RandomState(2))
        theirs = reference.sample_observations_from_factors(factors, np.random.RandomState(2))
        assert ours.shape == (20, 64, 64, 3) and ours.dtype == np.float32
        np.testing.assert_array_equal(ours, theirs.astype(np.float32))
    finally:
        (data_dir / "scream" / "scream.jpg").unlink()


def test_generated_dsprites_factor_values_match_the_real_file_conventions(data_dir):
    archive = np.load(data_dir / "dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
                      allow_pickle=True, encoding="latin1")
    metadata = archive["metadata"][()]
    assert list(metadata["latents_sizes"]) == [1, 3, 3, 8, 12, 12]
    # DeepMind's metadata names (code that reads latents_possible_values["posX"] must work)
    names = ("color", "shape", "scale", "orientation", "posX", "posY")
    assert tuple(metadata["latents_names"]) == names
    assert set(metadata["latents_possible_values"]) == set(names)
    values, classes = archive["latents_values"], archive["latents_classes"]
    np.testing.assert_array_equal(classes, FactorGrid([1, 3, 3, 8, 12, 12]).factors_at(
        np.arange(len(classes))))
    np.testing.assert_allclose(values[-1], [1, 3, 1.0, 2 * np.pi, 1.0, 1.0])
    images = archive["imgs"]
    assert images.dtype == np.uint8 and set(np.unique(images)) == {0, 1}
    # every image holds a sprite, and moving posY moves it down the rows
    assert images.reshape(len(images), -1).sum(axis=1).min() > 5
    rows = lambda i: np.nonzero(images[i].any(axis=1))[0].mean()  # noqa: E731
    assert rows(11) > rows(0)


# Datasets with hard-coded sizes in dlib: its sampling code on our storage --------------------

def _dlib_with_grid(reference, sizes, util):
    reference.factor_sizes = list(sizes)
    reference.state_space = util.SplitDiscreteStateSpace(reference.factor_sizes,
                                                         list(range(len(sizes))))
    reference.factor_bases = np.prod(sizes) / np.cumprod(sizes)
    return reference


def test_shapes3d_storage_order_matches_dlib_indexing(data_dir, dlib_data):
    shapes3d, util = dlib_data("shapes3d"), dlib_data("util")
    data = load_dataset("shapes3d", data_dir=data_dir)
    # dlib's class reads an unpublished 9-D npz and hard-codes [10, 10, 10, 8, 4, 15]; its
    # indexing runs here on our file's images with our small grid's sizes.
    reference = _dlib_with_grid(object.__new__(shapes3d.Shapes3D), data.factor_sizes, util)
    reference.images = np.asarray(data.images).astype(np.float32) / 255.0
    factors, observations = data.sample(64, np.random.RandomState(3))
    ref_factors, ref_observations = reference.sample(64, np.random.RandomState(3))
    np.testing.assert_array_equal(factors, ref_factors)
    np.testing.assert_array_equal(observations, ref_observations)


def test_mpi3d_matches_dlib_on_a_tiny_file(tmp_path, dlib_data, monkeypatch):
    mpi3d, util = dlib_data("mpi3d"), dlib_data("util")
    sizes = (2, 3, 2, 1, 1, 3, 2)
    images = np.random.RandomState(0).randint(0, 256, (72, 64, 64, 3)).astype(np.uint8)
    (tmp_path / "mpi3d_real").mkdir()
    np.savez(tmp_path / "mpi3d_real" / "mpi3d_real.npz", images=images,
             factor_sizes=np.array(sizes))
    data = load_dataset("mpi3d_real", data_dir=tmp_path)
    assert isinstance(data.images, np.memmap)  # uncompressed npz: memory-mapped
    monkeypatch.setenv("DISENTANGLEMENT_LIB_DATA", str(tmp_path))
    mpi3d = importlib.reload(mpi3d)
    reference = _dlib_with_grid(mpi3d.MPI3D("mpi3d_real"), sizes, util)
    factors, observations = data.sample(64, np.random.RandomState(5))
    ref_factors, ref_observations = reference.sample(64, np.random.RandomState(5))
    np.testing.assert_array_equal(factors, ref_factors)
    np.testing.assert_array_equal(observations, ref_observations.astype(np.float32))


# Both directions through the metrics ----------------------------------------------------------

def _position_codes(observations):
    """A representation function: where the bright pixels are, plus their amount."""
    mass = observations.sum(axis=(1, 2, 3)) + 1e-6
    rows = (observations.sum(axis=(2, 3)) * np.arange(64)).sum(axis=1) / mass
    cols = (observations.sum(axis=(1, 3)) * np.arange(64)).sum(axis=1) / mass
    return np.stack([rows, cols, mass], axis=1)


def test_metrics_take_either_side_data_set(data_dir, dlib_dsprites):
    from conftest import dlib_module

    from fastdis.compat.disentanglement_lib import mig as fast_mig

    ours = load_dataset("dsprites_full", data_dir=data_dir)
    theirs = dlib_dsprites.DSprites([1, 2, 3, 4, 5])
    reference_mig = dlib_module("mig")
    import gin

    gin.clear_config()
    gin.parse_config("discretizer.discretizer_fn = @histogram_discretizer\n"
                     "discretizer.num_bins = 20")
    try:
        dlib_on_ours = reference_mig.compute_mig(ours, _position_codes,
                                                 np.random.RandomState(0), num_train=500)
        fast_on_theirs = fast_mig.compute_mig(theirs, _position_codes,
                                              np.random.RandomState(0), num_train=500)
    finally:
        gin.clear_config()
    assert dlib_on_ours["discrete_mig"] > 0.1  # position codes are informative
    assert fast_on_theirs["discrete_mig"] == pytest.approx(dlib_on_ours["discrete_mig"],
                                                           abs=1e-12)
