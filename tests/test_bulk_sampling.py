"""Bulk replay of the reference's factor draws: same numbers, same final RandomState.

Three layers: the randint program against real ``RandomState`` calls (and a plain-numpy twin
that replays the rejection on raw words); which data sets are recognised; and every compat
sampling loop, bulk against per-call (``_bulk_sampling._ENABLED = False``), on every recognised
class, fastdis' and dlib's, fabricated from tiny files in the real formats.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_data_interface import _dlib_with_grid, dlib_data  # noqa: F401 (a fixture)
from test_data_loaders import _tiny_dsprites, _tiny_norb, _tiny_shapes3d

from fastdis.compat.disentanglement_lib import _bulk_sampling, beta_vae, factor_vae, utils
from fastdis.data import load_dataset
from fastdis.demo import SyntheticFactors

BOUNDS = (1, 2, 3, 6, 32, 33, 40, 1000, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 1, 2**32)


def _states_equal(a, b):
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]


def _fresh(seed, gaussian=True):
    """A RandomState with a cached Gaussian (standard_normal draws two, keeps one)."""
    rs = np.random.RandomState(seed)
    if gaussian:
        rs.standard_normal()
        assert rs.get_state()[3] == 1
    return rs


def _numpy_twin(random_state, bounds, counts):
    """The replay on raw words from numpy (randint(0, 2**32, uint32)), in plain Python."""
    probe = np.random.RandomState()
    probe.set_state(random_state.get_state())
    values, used = [], 0
    words = probe.randint(0, 2**32, size=4 * int(np.sum(counts)) + 64, dtype=np.uint32)
    for bound, count in zip(bounds, counts, strict=True):
        top = bound - 1
        mask = (1 << top.bit_length()) - 1
        for _ in range(count):
            value = 0
            while top:
                value = int(words[used]) & mask
                used += 1
                if value <= top:
                    break
            values.append(value)
    random_state.randint(0, 2**32, size=used, dtype=np.uint32)  # advance by the words used
    return np.array(values, dtype=np.int64)


# The randint program --------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(program=st.lists(st.tuples(st.sampled_from(BOUNDS), st.integers(0, 700)), max_size=12),
       seed=st.integers(0, 2**32 - 1), gaussian=st.booleans())
def test_program_matches_randint_calls_and_final_state(program, seed, gaussian):
    bounds = [b for b, _ in program]
    counts = [n for _, n in program]
    expected_rs, ours, twin = _fresh(seed, gaussian), _fresh(seed, gaussian), _fresh(seed, gaussian)
    expected = [expected_rs.randint(b, size=n) for b, n in program]
    expected = np.concatenate(expected) if expected else np.empty(0, np.int64)
    got = _bulk_sampling.randint_program(ours, bounds, counts)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(_numpy_twin(twin, bounds, counts), expected)
    assert _states_equal(ours.get_state(), expected_rs.get_state())  # Gaussian cache included
    assert _states_equal(twin.get_state(), expected_rs.get_state())
    assert ours.standard_normal() == expected_rs.standard_normal()


@pytest.mark.parametrize("bound", BOUNDS)
def test_each_bound_over_many_twists(bound):
    expected_rs, ours = _fresh(bound % 1000), _fresh(bound % 1000)
    expected = expected_rs.randint(bound, size=5000)  # > 8 Mersenne-Twister blocks
    np.testing.assert_array_equal(_bulk_sampling.randint_program(ours, [bound], [5000]),
                                  expected)
    assert _states_equal(ours.get_state(), expected_rs.get_state())


def test_scalar_draw_is_a_program_of_one():
    expected_rs, ours = _fresh(3), _fresh(3)
    expected = [expected_rs.randint(5), expected_rs.randint(40, size=7)]
    got = _bulk_sampling.randint_program(ours, [5, 40], [1, 7])
    assert got[0] == expected[0]
    np.testing.assert_array_equal(got[1:], expected[1])
    assert _states_equal(ours.get_state(), expected_rs.get_state())


def test_strided_output_places_each_call():
    expected_rs, ours = _fresh(0), _fresh(0)
    a, b = expected_rs.randint(7, size=4), expected_rs.randint(3, size=4)
    got = _bulk_sampling.randint_program(ours, [7, 3], [4, 4], starts=[0, 1], steps=[2, 2],
                                         out_size=8)
    np.testing.assert_array_equal(got.reshape(4, 2), np.stack([a, b], axis=1))
    for starts, steps in (([0, 1], [2, 2]), ([0, 6], [2, -1]), ([0, 7], [2, 0])):
        with pytest.raises(ValueError, match="inside out_size=7"):
            _bulk_sampling.randint_program(ours, [7, 3], [4, 4], starts=starts, steps=steps,
                                           out_size=7)


def test_program_refuses_bad_input_and_other_generators():
    rs = np.random.RandomState(0)
    with pytest.raises(ValueError, match=r"bounds must lie in \[1, 2\*\*32\]"):
        _bulk_sampling.randint_program(rs, [0], [3])
    with pytest.raises(ValueError, match=r"bounds must lie in \[1, 2\*\*32\]"):
        _bulk_sampling.randint_program(rs, [2**32 + 1], [3])
    with pytest.raises(ValueError, match="1-D of one length"):
        _bulk_sampling.randint_program(rs, [3, 4], [3])
    with pytest.raises(ValueError, match="running MT19937"):
        _bulk_sampling.randint_program(np.random.RandomState(np.random.PCG64(0)), [3], [3])


def test_factor_groups_match_the_reference_loop():
    sizes = [3, 1, 40, 32]
    expected_rs, ours = _fresh(11), _fresh(11)
    leads, batches = [], []
    for _ in range(23):
        leads.append(expected_rs.randint(len(sizes)))
        batches.append([np.stack([expected_rs.randint(c, size=5) for c in sizes], axis=1)
                        for _ in range(2)])
    chunks = list(_chunked(lambda: list(_bulk_sampling.iter_factor_groups(
        ours, sizes, 23, 5, batches_per_group=2, lead_bound=len(sizes))), values=64))
    assert len(chunks) > 3
    np.testing.assert_array_equal(np.concatenate([lead for lead, _ in chunks]), leads)
    np.testing.assert_array_equal(np.concatenate([f for _, f in chunks]), np.array(batches))
    assert _states_equal(ours.get_state(), expected_rs.get_state())


def _chunked(run, values):
    """Run with tiny chunks of groups (so several chunks are drawn)."""
    original = _bulk_sampling._VALUES_PER_CHUNK
    _bulk_sampling._VALUES_PER_CHUNK = values
    try:
        return run()
    finally:
        _bulk_sampling._VALUES_PER_CHUNK = original


# Which data sets are recognised --------------------------------------------------------------

class _Wrapped:
    """Delegates to a data set: same draws, but not a recognised type (per-call path)."""

    def __init__(self, data):
        self.data = data

    def __getattr__(self, name):
        return getattr(self.data, name)

    def sample(self, num, random_state):
        return self.data.sample(num, random_state)


class _SyntheticSubclass(SyntheticFactors):
    pass


def test_recognition_is_an_allowlist_of_exact_types():
    rs = np.random.RandomState(0)
    data = SyntheticFactors((3, 1, 7))
    assert _bulk_sampling.plain_factor_sizes(data, rs, 64, 10) == [3, 1, 7]
    assert _bulk_sampling.plain_factor_sizes(_SyntheticSubclass(), rs) is None
    assert _bulk_sampling.plain_factor_sizes(_Wrapped(data), rs) is None
    patched = SyntheticFactors()
    patched.sample_factors = lambda num, random_state: None
    assert _bulk_sampling.plain_factor_sizes(patched, rs) is None
    assert _bulk_sampling.plain_factor_sizes(data, np.random.default_rng(0)) is None
    assert _bulk_sampling.plain_factor_sizes(data, np.random.RandomState(np.random.PCG64())) \
        is None
    for bad in (0, -1, 2.0, True, None):
        assert _bulk_sampling.plain_factor_sizes(data, rs, bad) is None
    assert _bulk_sampling.plain_factor_sizes(SyntheticFactors((3, 0)), rs) is None


def test_dlib_dummy_data_is_not_recognised():
    from disentanglement_lib.data.ground_truth import dummy_data

    rs = np.random.RandomState(0)
    for data in (dummy_data.IdentityObservationsData(), dummy_data.DummyData()):
        assert _bulk_sampling.plain_factor_sizes(data, rs) is None


# The encoder's preallocated output ------------------------------------------------------------

@pytest.mark.parametrize("total_rows", [None, 40, 30, 50])  # exact, too few, too many
def test_encoder_output_equals_concatenation(total_rows):
    chunks = [np.arange(8 * k, 8 * k + 8, dtype=np.float32).reshape(4, 2) for k in range(10)]
    chunks[6] = chunks[6].astype(np.float64)  # another dtype from the 7th chunk on
    encoder = utils._ChunkedEncoder(lambda x: x, 4, total_rows)
    for chunk in chunks:
        encoder.add(chunk)
    expected = np.concatenate(chunks)
    got = encoder.codes()
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == expected.dtype
    same = utils._ChunkedEncoder(lambda x: x, 4, total_rows)
    for chunk in chunks[:6]:
        same.add(chunk)
    np.testing.assert_array_equal(same.codes(), np.concatenate(chunks[:6]))


# Every compat sampling loop, bulk against per-call --------------------------------------------

def _codes(observations):
    """Codes of any observations, each row on its own: 8 segment sums of its values."""
    flat = np.asarray(observations, dtype=np.float64).reshape(len(observations), -1)
    if flat.shape[1] < 16:
        return flat
    return np.add.reduceat(flat, np.linspace(0, flat.shape[1], 9)[:-1].astype(int), axis=1)


def _every_loop(data, seed):
    """All compat sampling loops on one RandomState, then the state it ends in."""
    rs = _fresh(seed)
    out = list(utils.generate_batch_factor_code(data, _codes, 50, rs, 16))  # 3 x 16 + 2
    out += beta_vae._generate_training_batch(data, _codes, 6, 9, rs)
    variances = factor_vae._compute_variances(data, _codes, 70, rs)
    active = np.arange(variances.size) != 1
    with np.errstate(divide="ignore", invalid="ignore"):  # codes constant over the tiny grids
        out += [variances, factor_vae._generate_training_batch(data, _codes, 7, 11, rs,
                                                                variances, active)]
        out += factor_vae._generate_training_sample(data, _codes, 5, rs, variances, active)
    out += beta_vae._generate_training_sample(data, _codes, 5, rs)
    return out, rs.get_state()


def _assert_bulk_equals_per_call(data, monkeypatch, seed=0):
    assert _bulk_sampling.plain_factor_sizes(data, np.random.RandomState(0)) is not None
    monkeypatch.setattr(utils, "ENCODE_BATCH_SIZE", 32)  # several observation chunks
    monkeypatch.setattr(_bulk_sampling, "_VALUES_PER_CHUNK", 200)  # several group chunks
    bulk, bulk_state = _every_loop(data, seed)
    monkeypatch.setattr(_bulk_sampling, "_ENABLED", False)
    per_call, per_call_state = _every_loop(data, seed)
    assert len(bulk) == len(per_call)
    monkeypatch.setattr(_bulk_sampling, "_ENABLED", True)
    wrapped, wrapped_state = _every_loop(_Wrapped(data), seed)  # the per-call path, really
    for other, other_state in ((per_call, per_call_state), (wrapped, wrapped_state)):
        for got, expected in zip(bulk, other, strict=True):
            np.testing.assert_array_equal(got, expected)
            assert np.asarray(got).dtype == np.asarray(expected).dtype
        assert _states_equal(bulk_state, other_state)


def _assert_observations_draw_nothing(data):
    rs = _fresh(5)
    factors = data.sample_factors(40, rs)
    before = rs.get_state()
    data.sample_observations_from_factors(factors, rs)
    assert _states_equal(rs.get_state(), before)


def test_synthetic_factors(monkeypatch):
    data = SyntheticFactors((3, 6, 1, 40, 32))
    _assert_observations_draw_nothing(data)
    _assert_bulk_equals_per_call(data, monkeypatch)


@pytest.fixture
def fastdis_files(tmp_path):
    from scipy.io import savemat

    _tiny_dsprites(tmp_path, sizes=(1, 3, 2, 4, 3, 5))
    _tiny_shapes3d(tmp_path, sizes=(2, 1, 3, 2, 3, 2))
    (tmp_path / "mpi3d_toy").mkdir()
    np.savez(tmp_path / "mpi3d_toy" / "mpi3d_toy.npz",
             images=np.random.RandomState(1).randint(0, 256, (72, 64, 64, 3)).astype(np.uint8),
             factor_sizes=np.array([2, 3, 2, 1, 1, 3, 2]))
    (tmp_path / "cars").mkdir()
    for obj in range(2):
        views = np.random.RandomState(obj).randint(0, 256, (128, 128, 3, 24, 4)).astype("u1")
        savemat(tmp_path / "cars" / f"car_{obj:03d}_mesh.mat", {"im": views})
    _tiny_norb(tmp_path, np.random.RandomState(0))
    return tmp_path


@pytest.mark.parametrize("name", ["dsprites_full", "shapes3d", "mpi3d_toy", "cars3d"])
def test_fastdis_data_sets(name, fastdis_files, monkeypatch):
    data = load_dataset(name, data_dir=fastdis_files)
    _assert_observations_draw_nothing(data)
    _assert_bulk_equals_per_call(data, monkeypatch)


def test_fastdis_data_sets_that_draw_keep_the_per_call_path(fastdis_files):
    from fastdis.data.dsprites import DSprites

    rs = np.random.RandomState(0)
    for name in ("color_dsprites", "noisy_dsprites", "smallnorb"):
        assert _bulk_sampling.plain_factor_sizes(load_dataset(name, data_dir=fastdis_files),
                                                 rs) is None
    # shape as a nuisance factor (3 values) is redrawn for each observation
    assert _bulk_sampling.plain_factor_sizes(
        DSprites(fastdis_files, latent_factor_indices=(2, 3, 4, 5)), rs) is None


@pytest.fixture
def dlib_tiny(request, tmp_path, monkeypatch):
    """dlib's data modules (test_data_interface's fixture), and a tiny dSprites file."""
    load = request.getfixturevalue("dlib_data")
    path = _tiny_dsprites(tmp_path, sizes=(1, 3, 2, 4, 3, 5))
    monkeypatch.setattr(load("dsprites"), "DSPRITES_PATH", str(path))
    return load


@pytest.mark.parametrize("latent", [[1, 2, 3, 4, 5], None])  # None: dlib's default, all six
def test_dlib_dsprites(latent, dlib_tiny, monkeypatch):
    data = dlib_tiny("dsprites").DSprites(latent)
    assert _bulk_sampling.plain_factor_sizes(data, np.random.RandomState(0)) == (
        [3, 2, 4, 3, 5] if latent else [1, 3, 2, 4, 3, 5])
    _assert_observations_draw_nothing(data)
    _assert_bulk_equals_per_call(data, monkeypatch)


def test_dlib_classes_that_draw_keep_the_per_call_path(dlib_tiny):
    dsprites = dlib_tiny("dsprites")
    rs = np.random.RandomState(0)
    assert _bulk_sampling.plain_factor_sizes(dsprites.DSprites([2, 3, 4, 5]), rs) is None
    for variant in ("ColorDSprites", "NoisyDSprites"):
        assert _bulk_sampling.plain_factor_sizes(
            getattr(dsprites, variant)([1, 2, 3, 4, 5]), rs) is None
    norb = dlib_tiny("norb")
    reference = object.__new__(norb.SmallNORB)  # its sampling code, on a tiny grid
    reference.factor_sizes = [2, 2, 2, 2, 2]
    reference.latent_factor_indices = [0, 2, 3, 4]
    reference.state_space = norb.util.SplitDiscreteStateSpace(reference.factor_sizes,
                                                              reference.latent_factor_indices)
    assert _bulk_sampling.plain_factor_sizes(reference, rs) is None


def _dlib_grid_data(dlib_tiny, module, name, sizes, images):
    """dlib's class with its sampling code on a tiny grid (it hard-codes the real sizes)."""
    module = dlib_tiny(module)
    reference = _dlib_with_grid(object.__new__(getattr(module, name)), sizes, module.util)
    reference.latent_factor_indices = list(range(len(sizes)))
    reference.images = images
    if name == "Cars3D":
        from sklearn.utils import extmath

        features = extmath.cartesian([np.arange(s) for s in sizes])
        reference.index = module.util.StateSpaceAtomIndex(sizes, features)
        reference.data_shape = [64, 64, 3]
    return reference


@pytest.mark.parametrize("module, name, sizes", [
    ("shapes3d", "Shapes3D", [2, 1, 3, 2, 3, 2]),
    ("mpi3d", "MPI3D", [2, 3, 2, 1, 1, 3, 2]),
    ("cars3d", "Cars3D", [4, 3, 2]),
])
def test_dlib_grid_classes(module, name, sizes, dlib_tiny, monkeypatch):
    images = np.random.RandomState(2).randint(0, 256, (int(np.prod(sizes)), 64, 64, 3))
    images = images.astype(np.uint8 if module == "mpi3d" else np.float32)
    data = _dlib_grid_data(dlib_tiny, module, name, sizes, images)
    assert _bulk_sampling.plain_factor_sizes(data, np.random.RandomState(0)) == sizes
    _assert_observations_draw_nothing(data)
    _assert_bulk_equals_per_call(data, monkeypatch)


def test_against_dlib_generate_batch_factor_code(dlib_tiny):
    from conftest import dlib_module

    reference = dlib_module("utils")
    data = dlib_tiny("dsprites").DSprites([1, 2, 3, 4, 5])
    ours_rs, theirs_rs = _fresh(4), _fresh(4)
    got = utils.generate_batch_factor_code(data, _codes, 301, ours_rs, 16)
    expected = reference.generate_batch_factor_code(data, _codes, 301, theirs_rs, 16)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    assert _states_equal(ours_rs.get_state(), theirs_rs.get_state())
