"""How many observations the compat layer hands the representation function per call.

A fake clock stands in for the timer, so an encoder's cost per call is exact: the tuner must
find the fastest size, keep it for the function, never change a result or a draw, and yield to
a size set by hand.
"""

import types

import numpy as np
import pytest

from fastdis.compat.disentanglement_lib import beta_vae, utils
from fastdis.demo import SyntheticFactors


class TimedEncoder:
    """A representation function whose calls 'take' ``cost(rows)`` seconds on a fake clock."""

    def __init__(self, clock, best=256):
        self.clock, self.best, self.sizes = clock, best, []

    def cost(self, rows):
        return rows * (1.0 + abs(np.log2(rows / self.best)))  # per row: fastest at best

    def __call__(self, observations):
        self.sizes.append(len(observations))
        self.clock.now += self.cost(len(observations))
        return np.asarray(observations, dtype=np.float32).reshape(len(observations), -1) * 2


@pytest.fixture
def clock(monkeypatch):
    fake = types.SimpleNamespace(now=0.0)
    fake.perf_counter = lambda: fake.now
    monkeypatch.setattr(utils, "time", fake)
    monkeypatch.setattr(utils, "ENCODE_BATCH_SIZE", None)
    monkeypatch.delenv(utils.ENCODE_BATCH_SIZE_ENV, raising=False)
    return fake


def _codes_and_state(encoder, num_points=15000, batch_size=16):
    random_state = np.random.RandomState(0)
    codes, factors = utils.generate_batch_factor_code(SyntheticFactors(), encoder, num_points,
                                                      random_state, batch_size)
    return codes, factors, random_state.randint(1 << 30)


@pytest.mark.parametrize("best", [64, 256, 2048])
def test_the_fastest_size_is_found_and_kept(clock, best):
    encoder = TimedEncoder(clock, best)
    _codes_and_state(encoder)
    tried = [size for size in utils.TRIED_CHUNK_SIZES if size <= 2 * best]
    searched = [size for size in tried for _ in range(2)]  # two timed calls per size
    assert encoder.sizes[: len(searched)] == searched
    kept = encoder.sizes[len(searched) : -1]
    assert kept and set(kept) == {best}  # then every call but the last one
    _codes_and_state(encoder)  # the next metric call with the same function: no new search
    assert set(encoder.sizes[len(searched) + len(kept) + 1 : -1]) == {best}


def test_the_search_runs_again_when_the_chosen_size_slows(clock):
    encoder = TimedEncoder(clock, best=64)
    for _ in range(6):  # 90,000 observations at a steady cost: one search only
        _codes_and_state(encoder)
    searched = 2 * 2  # two timed calls of 64, two of 128
    assert set(encoder.sizes[searched:]) <= {64, 15000 % 64}
    encoder.best = 512  # the machine's load changed: larger calls became the fastest
    _codes_and_state(encoder)  # the slower calls start a search, which finds 512
    assert encoder.sizes[-2] == 512


def test_tuning_changes_no_code_and_no_draw(clock, monkeypatch):
    tuned = _codes_and_state(TimedEncoder(clock, 512))
    monkeypatch.setattr(utils, "ENCODE_BATCH_SIZE", 2048)
    fixed = _codes_and_state(TimedEncoder(clock, 512))
    for a, b in zip(tuned, fixed, strict=True):
        np.testing.assert_array_equal(a, b)


def test_per_call_sampling_is_split_into_exact_chunks(clock, monkeypatch):
    """Sampling batches of 64 that do not divide a chunk are cut to the chunk's size."""
    monkeypatch.setattr(utils, "ENCODE_BATCH_SIZE", 100)
    encoder = TimedEncoder(clock)
    random_state = np.random.RandomState(0)
    beta_vae._sample_pairs(SyntheticFactors(), 64, 5, random_state,
                           utils._ChunkedEncoder(encoder))
    assert encoder.sizes == [100] * 6  # 640 observations: 6 calls, 40 still pending


def test_size_set_by_hand(clock, monkeypatch):
    monkeypatch.setenv(utils.ENCODE_BATCH_SIZE_ENV, "300")
    encoder = TimedEncoder(clock)
    _codes_and_state(encoder, num_points=1000)
    assert encoder.sizes == [300, 300, 300, 100]
    monkeypatch.setattr(utils, "ENCODE_BATCH_SIZE", 128)  # the module setting wins
    encoder = TimedEncoder(clock)
    _codes_and_state(encoder, num_points=300)
    assert encoder.sizes == [128, 128, 44]


@pytest.mark.parametrize("setting, text", [(None, "0"), (None, "many"), (0, ""), (2.5, "")])
def test_bad_size_settings_are_named(clock, monkeypatch, setting, text):
    monkeypatch.setattr(utils, "ENCODE_BATCH_SIZE", setting)
    monkeypatch.setenv(utils.ENCODE_BATCH_SIZE_ENV, text)
    name = "ENCODE_BATCH_SIZE" if setting is not None else utils.ENCODE_BATCH_SIZE_ENV
    with pytest.raises(ValueError, match=name):
        _codes_and_state(TimedEncoder(clock), num_points=10)


def test_a_bound_method_keeps_its_tuner_across_metric_calls():
    # model.encode is a new object at every access; its search must still run only once.
    class Model:
        def encode(self, observations):
            return observations

    model = Model()
    assert utils._tuner_for(model.encode) is utils._tuner_for(model.encode)
    assert utils._tuner_for(model.encode) is not utils._tuner_for(Model().encode)
