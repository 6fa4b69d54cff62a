"""Packed training: counter-based numbers, pack independence, the packed objective, faults.

Runs use a tiny uint8 grid data set (192 binary 64x64 squares), batches of 8 and a few steps.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_runs import TinySquares, assert_same_state, log_lines, state_of

from fastdis import kernels
from fastdis.data._base import GridDataset
from fastdis.train import TrainConfig, load_checkpoint, train
from fastdis.train.checkpoint import STOP_FILE
from fastdis.train.config import METHODS
from fastdis.train.models import GaussianVAE
from fastdis.train.objectives import Objective, annealed_capacity
from fastdis.train.pack import Pack
from fastdis.train.sampling import (
    CounterSampler,
    philox4x32,
    philox4x32_reference,
    random_words,
)
from fastdis.train.training import train_pack

torch.set_num_threads(1)
TESTS = Path(__file__).parent
#: A strength per method that differs from the default, so packs mix strengths.
OTHER_STRENGTH = {"beta_vae": {"beta": 4.0}, "factor_vae": {"gamma": 30.0},
                  "dip_vae_i": {"lambda_od": 5.0}, "dip_vae_ii": {"lambda_od": 20.0},
                  "beta_tc_vae": {"beta": 6.0}, "annealed_vae": {"c_max": 25.0}}


def tiny_grid():
    """The tiny squares as a fastdis grid data set of stored uint8 images."""
    images = (TinySquares().images[..., 0] > 0).astype(np.uint8)  # (192, 64, 64)
    return GridDataset("tiny_squares", images, [3, 8, 8], [0, 1, 2], ["size", "x", "y"],
                       [64, 64, 1], binary=True)


def pack_config(seed, method="beta_tc_vae", **overrides):
    values = {"method": method, "seed": seed, "batch_size": 8, "steps": 4, "log_every": 1,
              "checkpoint_every": 2, "dataset": "tiny_squares", "data_sampling": "counter"}
    values.update(overrides)
    return TrainConfig(**values)


def run_pack(configs, out_dirs, **kwargs):
    return train_pack(configs, out_dirs, progress=False, dataset=tiny_grid(), **kwargs)


# -- counter-based numbers -----------------------------------------------------------------

def test_philox_matches_random123_known_answers_and_its_python_twin():
    known = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
             ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2,
              (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
             ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
              (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    for counter, key, expected in known:
        assert philox4x32_reference(counter, key) == expected
    rng = np.random.default_rng(0)
    counters = rng.integers(0, 2**32, size=(64, 4), dtype=np.int64)
    keys = rng.integers(0, 2**32, size=(64, 2), dtype=np.int64)
    words = philox4x32(torch.from_numpy(counters), torch.from_numpy(keys))
    expected = [philox4x32_reference(c, k) for c, k in zip(counters, keys, strict=True)]
    assert words.tolist() == [list(e) for e in expected]


def test_counter_numbers_are_a_function_of_seed_and_step_only():
    seeds = torch.tensor([3, 5])
    assert torch.equal(random_words(seeds, 7, 1, 10)[1], random_words(seeds[1:], 7, 1, 10)[0])
    assert not torch.equal(random_words(seeds, 7, 1, 10), random_words(seeds, 8, 1, 10))
    assert not torch.equal(random_words(seeds, 7, 1, 10), random_words(seeds, 7, 2, 10))
    configs = [pack_config(seed, "factor_vae").resolved() for seed in (3, 5)]
    generators = [torch.Generator() for _ in configs]
    pair = CounterSampler(tiny_grid(), configs, generators, "cpu").draw(7)
    alone = CounterSampler(tiny_grid(), configs[1:], generators[1:], "cpu").draw(7)
    for in_pair, by_itself in zip(pair, alone, strict=True):
        assert torch.equal(in_pair[1], by_itself[0])
    images, noise, keys = pair
    assert images.shape == (2, 8, 1, 64, 64) and set(images.unique().tolist()) <= {0.0, 1.0}
    assert noise.shape == (2, 8, 10) and abs(noise.mean()) < 0.3 and 0.7 < noise.std() < 1.3
    assert all(len(column.unique()) == 8 for column in keys.flatten(0, 1).T.reshape(-1, 8))


def test_counter_sampling_refuses_data_drawn_per_observation(tmp_path):
    with pytest.raises(ValueError, match="data_sampling='dlib'"):
        train(pack_config(0), tmp_path, progress=False, dataset=TinySquares())


# -- the packed step -----------------------------------------------------------------------

def step_inputs(configs, step=0):
    pack_sampler = CounterSampler(tiny_grid(), configs, [None] * len(configs), "cpu")
    return pack_sampler.draw(step)


@pytest.mark.parametrize("method", list(METHODS))
def test_packed_terms_are_each_models_objective(method):
    configs = [pack_config(0, method).resolved(),
               pack_config(1, method, **OTHER_STRENGTH[method]).resolved()]
    pack = Pack(configs, (64, 64, 1), "cpu", "loop")
    images, noise, keys = step_inputs(configs)
    capacity = pack.capacity(50_000)
    packed = pack.terms(pack.params, images, noise, keys, capacity)
    if method == "annealed_vae":  # C(step) as a lone run computes it: 2.5 and 12.5 nats
        expected = [annealed_capacity(c.c_max, c.iteration_threshold, 50_000) for c in configs]
        assert torch.equal(capacity, torch.tensor(expected)) and expected == [2.5, 12.5]
    for index, config in enumerate(configs):
        model = GaussianVAE((64, 64, 1), 10, discriminator=method == "factor_vae")
        model.reset_parameters(torch.Generator().manual_seed(config.seed))
        alone = Objective(config, model)(images[index], noise[index],
                                         None if keys is None else keys[index],
                                         None if capacity is None else capacity[index])
        assert packed.keys() == alone.keys()
        for name, value in alone.items():
            assert torch.equal(packed[name][index], value), name


@pytest.mark.parametrize("method", list(METHODS))
def test_vmap_pack_agrees_with_the_loop_to_float32_rounding(method):
    configs = [pack_config(0, method).resolved(),
               pack_config(1, method, **OTHER_STRENGTH[method]).resolved()]
    images, noise, keys = step_inputs(configs)
    results = {}
    for strategy in ("loop", "vmap"):
        pack = Pack(configs, (64, 64, 1), "cpu", strategy)
        terms = pack.terms(pack.params, images, noise, keys, pack.capacity(50_000))
        total = terms["loss"].sum() + terms.get("discriminator_loss", torch.zeros(2)).sum()
        total.backward()
        results[strategy] = terms, {name: p.grad for name, p in pack.params.items()}
    (loop_terms, loop_grads), (vmap_terms, vmap_grads) = results["loop"], results["vmap"]
    for name, value in loop_terms.items():
        torch.testing.assert_close(vmap_terms[name], value, rtol=1e-5, atol=1e-5)
    for name, value in loop_grads.items():
        scale = value.abs().max().item()
        torch.testing.assert_close(vmap_grads[name], value, rtol=1e-4, atol=1e-5 * scale)


def test_the_kernels_map_over_a_pack_slice_by_slice():
    generator = torch.Generator().manual_seed(0)
    z, mean, logvar = (torch.randn(3, 16, 10, generator=generator).requires_grad_()
                       for _ in range(3))

    def both(z, mean, logvar):
        return (kernels.total_correlation(z, mean, logvar),
                kernels.dip_covariance(mean, logvar, lambda_od=2.0, lambda_d=3.0,
                                       dip_type="ii")[0])

    mapped = torch.vmap(both)(z, mean, logvar)
    grads = torch.autograd.grad(sum(t.sum() for t in mapped), (z, mean, logvar))
    sliced = [torch.stack(parts) for parts in zip(*(both(z[k], mean[k], logvar[k])
                                                    for k in range(3)), strict=True)]
    expected = torch.autograd.grad(sum(t.sum() for t in sliced), (z, mean, logvar))
    for got, want in zip((*mapped, *grads), (*sliced, *expected), strict=True):
        assert torch.equal(got, want)


# -- pack independence and runs ------------------------------------------------------------

@pytest.mark.parametrize("method, sampling", [("beta_tc_vae", "counter"),
                                              ("factor_vae", "counter"),
                                              ("dip_vae_i", "dlib")])
def test_a_model_trains_bit_for_bit_the_same_alone_and_in_any_pack(tmp_path, method, sampling):
    def config(seed, **strengths):
        return pack_config(seed, method, data_sampling=sampling, **strengths)

    strengths = OTHER_STRENGTH[method]
    alone = tmp_path / "alone"
    train(config(1, **strengths), alone, progress=False, dataset=tiny_grid())
    run_pack([config(0), config(1, **strengths), config(2)],
             [tmp_path / f"a{k}" for k in range(3)])
    run_pack([config(1, **strengths), config(4, **strengths)], [tmp_path / "b0", tmp_path / "b1"])
    for packed in (tmp_path / "a1", tmp_path / "b0"):
        assert_same_state(state_of(alone), state_of(packed))
        assert log_lines(alone) == log_lines(packed)
    assert not torch.equal(state_of(tmp_path / "a0")["model"]["encoder.e1.weight"],
                           state_of(alone)["model"]["encoder.e1.weight"])
    observations = tiny_grid().sample_observations_from_factors(np.zeros((2, 3), int), None)
    mean, _ = load_checkpoint(tmp_path / "a1").encode(observations)  # as `fastdis encode` does
    np.testing.assert_array_equal(mean, load_checkpoint(alone).encode(observations)[0])


def test_models_left_at_two_steps_by_a_kill_catch_up_exactly(tmp_path):
    configs = [pack_config(seed, steps=6) for seed in range(3)]
    straight = [tmp_path / f"straight{k}" for k in range(3)]
    run_pack(configs, straight)
    broken = [tmp_path / f"broken{k}" for k in range(3)]
    run_pack([pack_config(seed, steps=4) for seed in range(2)], broken[:2])  # at step 4
    run_pack([pack_config(2, steps=2)], broken[2:])  # the kill left this one at step 2
    run_pack(configs, broken)
    for a, b in zip(straight, broken, strict=True):
        assert_same_state(state_of(a), state_of(b))
        assert log_lines(a) == log_lines(b)


KILLED_PACK = """
import sys
from test_pack import pack_config, run_pack
run_pack([pack_config(seed, steps=24, checkpoint_every=3) for seed in range(3)],
         [sys.argv[1] + f"/{k}" for k in range(3)])
"""


def test_kill_9_of_a_pack_resumes_every_model_exactly(tmp_path):
    configs = [pack_config(seed, steps=24, checkpoint_every=3) for seed in range(3)]
    run_pack(configs, [tmp_path / "straight" / str(k) for k in range(3)])
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS),
                                                        os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", KILLED_PACK, str(killed)], env=env)
    deadline = time.monotonic() + 300
    log = killed / "2" / "log.jsonl"
    while not (log.exists() and len(log.read_text().splitlines()) >= 7):
        assert process.poll() is None and time.monotonic() < deadline, "the pack did not start"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert json.loads((killed / "0" / "config.json").read_text())["step"] < 24
    run_pack(configs, [killed / str(k) for k in range(3)])
    for k in range(3):
        assert_same_state(state_of(tmp_path / "straight" / str(k)), state_of(killed / str(k)))
        assert log_lines(tmp_path / "straight" / str(k)) == log_lines(killed / str(k))


def test_a_non_finite_model_stops_while_the_others_train_on(tmp_path, monkeypatch):
    original_step = Pack.step

    def diverging_step(self, *args):  # seed 1's weights turn NaN before its 3rd update
        self.updates = getattr(self, "updates", 0) + 1
        seeds = [config.seed for config in self.configs]
        if self.updates == 3 and 1 in seeds:
            with torch.no_grad():
                self.params["decoder.d6.bias"][seeds.index(1)].fill_(float("nan"))
        return original_step(self, *args)

    monkeypatch.setattr(Pack, "step", diverging_step)
    configs = [pack_config(seed, "beta_vae", checkpoint_every=1) for seed in range(3)]
    records = run_pack(configs, [tmp_path / str(k) for k in range(3)])
    assert records[0] is None and records[2] is None
    record = json.loads((tmp_path / "1" / STOP_FILE).read_text())
    assert record == records[1] and record["reason"] == "a loss term is not finite"
    assert record["step"] == record["global_step"] == 3 and "loss" in record["non_finite_terms"]
    assert "kl_loss" not in record["non_finite_terms"]  # the decoder's bias spoils R only
    assert record["values"]["loss"] == "nan" and np.isfinite(record["values"]["kl_loss"])
    saved = state_of(tmp_path / "1")
    assert json.loads(saved["config_json"])["step"] == 2  # the last finite checkpoint
    assert all(torch.isfinite(v).all() for v in saved["model"].values())
    assert [line["step"] for line in log_lines(tmp_path / "1")] == [1, 2]
    assert run_pack(configs, [tmp_path / str(k) for k in range(3)])[1] == records[1]  # kept
    with pytest.raises(FloatingPointError, match="step 3: a loss term is not finite"):
        train(configs[1], tmp_path / "lone", progress=False, dataset=tiny_grid())
    monkeypatch.setattr(Pack, "step", original_step)
    for k in (0, 2):  # the others end as they do alone
        alone = tmp_path / f"alone{k}"
        train(configs[k], alone, progress=False, dataset=tiny_grid())
        assert_same_state(state_of(alone), state_of(tmp_path / str(k)))


def test_a_stop_record_of_another_configuration_no_longer_applies(tmp_path, monkeypatch):
    # Diverged before its first checkpoint, then rerun with a lower strength: it trains.
    original_step = Pack.step

    def diverging_step(self, *args):
        with torch.no_grad():
            self.params["decoder.d6.bias"].fill_(float("nan"))
        return original_step(self, *args)

    monkeypatch.setattr(Pack, "step", diverging_step)
    config = pack_config(0, "beta_vae", beta=16.0, checkpoint_every=100)
    assert run_pack([config], [tmp_path])[0]["step"] == 1
    assert run_pack([config], [tmp_path])[0]["step"] == 1  # the same run: still stopped
    monkeypatch.setattr(Pack, "step", original_step)
    assert run_pack([pack_config(0, "beta_vae", beta=4.0, checkpoint_every=100)],
                    [tmp_path]) == [None]
    assert not (tmp_path / STOP_FILE).exists()


def test_weights_that_overflow_in_an_update_are_never_saved(tmp_path, monkeypatch):
    original_step = Pack.step

    def overflowing_step(self, *args):  # seed 1's 2nd update leaves an infinite weight
        self.updates = getattr(self, "updates", 0) + 1
        terms = original_step(self, *args)
        if self.updates == 2:
            with torch.no_grad():
                self.params["encoder.e1.bias"][1].fill_(float("inf"))
        return terms

    monkeypatch.setattr(Pack, "step", overflowing_step)
    configs = [pack_config(seed, "beta_vae", checkpoint_every=1) for seed in range(2)]
    records = run_pack(configs, [tmp_path / str(k) for k in range(2)])
    assert records[0] is None
    assert (records[1]["step"], records[1]["non_finite_terms"]) == (2, ["weights"])
    assert json.loads(state_of(tmp_path / "1")["config_json"])["step"] == 1


def test_a_pack_too_large_for_the_device_splits_itself(tmp_path, monkeypatch, capsys):
    configs = [pack_config(seed) for seed in range(3)]
    run_pack(configs, [tmp_path / f"fits{k}" for k in range(3)])
    original_step = Pack.step

    def step_needing_memory(self, *args):
        if len(self) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original_step(self, *args)

    monkeypatch.setattr(Pack, "step", step_needing_memory)
    run_pack(configs, [tmp_path / f"split{k}" for k in range(3)])
    assert "training packs of at most 1" in capsys.readouterr().err
    for k in range(3):
        assert_same_state(state_of(tmp_path / f"fits{k}"), state_of(tmp_path / f"split{k}"))
    with pytest.raises(MemoryError, match="does not fit"):
        monkeypatch.setattr(Pack, "step", lambda self, *args: (_ for _ in ()).throw(
            torch.cuda.OutOfMemoryError("simulated")))
        run_pack(configs[:1], [tmp_path / "none"])


def test_a_pack_mixes_seeds_and_strengths_only(tmp_path):
    with pytest.raises(ValueError, match="model 1 differs from model 0 in batch_size"):
        run_pack([pack_config(0), pack_config(1, batch_size=4)], [tmp_path / "a", tmp_path / "b"])


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_the_compiled_pack_follows_the_eager_pack(strategy):
    # A cold compile of the whole packed objective (forward and backward), custom ops inside.
    configs = [pack_config(0, "dip_vae_ii").resolved(),
               pack_config(1, "dip_vae_ii", lambda_od=20.0).resolved()]
    eager = Pack(configs, (64, 64, 1), "cpu", strategy)
    compiled = Pack([TrainConfig(**{**c.to_dict(), "compile": True}).resolved()
                     for c in configs], (64, 64, 1), "cpu", strategy)
    for step in range(2):
        images, noise, keys = step_inputs(configs, step)
        expected, got = eager.step(images, noise, keys), compiled.step(images, noise, keys)
        for name, value in expected.items():
            torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-4)
    for name, value in eager.params.items():
        torch.testing.assert_close(compiled.params[name], value, rtol=1e-4, atol=1e-5)


# -- sweeps --------------------------------------------------------------------------------

def test_a_dask_sweep_trains_the_same_runs_as_a_local_one(tmp_path):
    from distributed import LocalCluster

    from fastdis.data import make_dsprites
    from fastdis.train.sweep import plan_packs, run_sweep, study_models

    make_dsprites(tmp_path / "data", small=True)
    overrides = {"data_dir": str(tmp_path / "data"), "steps": 2, "batch_size": 8,
                 "data_sampling": "counter", "checkpoint_every": 1}
    packs = plan_packs(study_models(model_nums=[0, 1, 50]), 2)
    assert [[m.model_num for m in pack] for pack in packs] == [[0, 1], [50]]
    local = run_sweep(packs, tmp_path / "local", overrides, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        remote = run_sweep(packs, tmp_path / "dask", overrides, scheduler=cluster.scheduler_address)
    assert local == remote == {0: None, 1: None, 50: None}
    for num in (0, 1, 50):
        assert_same_state(state_of(tmp_path / "local" / str(num)),
                          state_of(tmp_path / "dask" / str(num)))
