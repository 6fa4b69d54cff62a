"""DIP-VAE's covariance penalty: Triton (interpreter on CPU) and torch against a plain float64 twin.

The twin is dlib's ``compute_covariance_z_mean`` + ``regularize_diag_off_diag_dip`` (+ DIPVAE's
DIP-II diagonal) transcribed into float64 torch. Float32 runs must agree with it to 1e-5 relative,
gradients included.
"""

import math

import fastdis.kernels.dip_triton as dip_triton
import pytest
import torch
from fastdis.kernels import dip_covariance, dip_regularizer
from kernel_helpers import BACKENDS, check_against_twin, device_for

from fastdis.train.config import TrainConfig
from fastdis.train.models import GaussianVAE
from fastdis.train.objectives import Objective, compile_objective


def dlib_dip_regularizer(z_mean, z_logvar, lambda_od, lambda_d, dip_type):
    expectation_mean_mean_t = (z_mean.unsqueeze(2) * z_mean.unsqueeze(1)).mean(dim=0)
    expectation_mean = z_mean.mean(dim=0)
    covariance = expectation_mean_mean_t - expectation_mean.unsqueeze(1) * expectation_mean
    if dip_type == "ii":
        covariance = covariance + torch.diag_embed(torch.exp(z_logvar)).mean(dim=0)
    diagonal = torch.diagonal(covariance)
    off_diagonal = covariance - torch.diag(diagonal)
    return lambda_od * (off_diagonal**2).sum() + lambda_d * ((diagonal - 1) ** 2).sum()


def make_encodings(batch_size, num_latents, *, seed=0, offset=0.0):
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(num_latents, num_latents, generator=generator, dtype=torch.float64)
    z_mean = offset + torch.randn(
        batch_size, num_latents, generator=generator, dtype=torch.float64
    ) @ (0.3 * mixing + torch.eye(num_latents, dtype=torch.float64))
    z_logvar = -1.0 + 0.5 * torch.randn(
        batch_size, num_latents, generator=generator, dtype=torch.float64
    )
    return z_mean, z_logvar


def check_against_dlib(inputs64, dtype, backend, dip_type, lambda_od=2.5, lambda_d=7.0):
    check_against_twin(
        lambda *inputs: dip_regularizer(
            *inputs, lambda_od=lambda_od, lambda_d=lambda_d, dip_type=dip_type, backend=backend
        ),
        lambda *inputs: dlib_dip_regularizer(*inputs, lambda_od, lambda_d, dip_type),
        inputs64,
        ("z_mean", "z_logvar"),
        dtype,
        backend,
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dip_type", ["i", "ii"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "shape",
    [(1, 1), (1, 10), (9, 1), (37, 10), (64, 10), (300, 7)],
    ids=lambda shape: "B{}xd{}".format(*shape),
)
def test_matches_dlib_formula(backend, dip_type, dtype, shape):
    check_against_dlib(make_encodings(*shape, seed=shape[0]), dtype, backend, dip_type)


@pytest.mark.parametrize("backend", BACKENDS)
def test_means_far_from_zero_keep_float32_accuracy(backend):
    # |mean| = 30 with unit spread: dlib's E[μμᵀ] - E[μ]E[μ]ᵀ would cancel ~3 digits in float32;
    # the shifted/centred sums must not.
    check_against_dlib(make_encodings(64, 10, seed=4, offset=30.0), torch.float32, backend, "i")


def encodings_with_covariance(target, batch_size, *, seed, variance=0.0):
    """Float64 (z_mean, z_logvar) whose DIP covariance is exactly ``target`` (d, d): the means'
    biased covariance is ``target − variance·I`` and every exp(z_logvar) is ``variance`` (0 for
    DIP-I, whose z_logvar is unused)."""
    generator = torch.Generator().manual_seed(seed)
    num_latents = target.shape[0]
    samples = torch.randn(batch_size, num_latents, generator=generator, dtype=torch.float64)
    samples = samples - samples.mean(dim=0)
    whitening = torch.linalg.cholesky(samples.T @ samples / batch_size)
    white = torch.linalg.solve_triangular(whitening, samples.T, upper=False).T  # Cov = I
    means_covariance = target - variance * torch.eye(num_latents, dtype=torch.float64)
    z_mean = white @ torch.linalg.cholesky(means_covariance).T + 0.5
    z_logvar = torch.full_like(z_mean, math.log(variance) if variance else 0.0)
    return z_mean, z_logvar


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("dip_type", "variance"), [("i", 0.0), ("ii", 0.5)])
def test_covariance_near_identity_keeps_float32_accuracy(backend, dip_type, variance):
    # C = I + 0.003·(±1 off the diagonal): the off-diagonal squares sum to ~8e-4 beside
    # Σ C_ii² ≈ 10, so Σ C² − Σ C_ii² in float32 would lose about 1e-3 of the penalty. Summed
    # directly, as dlib does, the float32 penalty keeps 1e-5 of the float64 one.
    num_latents = 10
    generator = torch.Generator().manual_seed(12)
    signs = torch.randint(0, 2, (num_latents, num_latents), generator=generator) * 2.0 - 1.0
    off_diagonal = 0.003 * torch.triu(signs, diagonal=1).double()
    target = torch.eye(num_latents, dtype=torch.float64) + off_diagonal + off_diagonal.T
    inputs64 = encodings_with_covariance(target, 64, seed=13, variance=variance)
    inputs = [x.to(device_for(backend), torch.float32) for x in inputs64]
    kwargs = dict(lambda_od=1.0, lambda_d=1.0, dip_type=dip_type)
    value = dip_regularizer(*inputs, backend=backend, **kwargs).item()
    expected = dlib_dip_regularizer(*inputs64, 1.0, 1.0, dip_type).item()
    assert expected == pytest.approx(2 * 45 * 0.003**2, rel=1e-6)  # the target's penalty
    assert value == pytest.approx(expected, rel=1e-5)
    if backend == "torch":  # a packed model's tensor weights take the same path
        from fastdis.train.objectives import dip_penalty

        packed = dip_penalty(*inputs, torch.tensor(1.0), torch.tensor(1.0), dip_type).item()
        assert packed == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_partials_and_tiles(backend, monkeypatch):
    # Small tiles and few partial programs: each program adds several tiles, the last one ragged,
    # and the penalty kernel adds the partials in several steps.
    monkeypatch.setattr(dip_triton, "_TILE_ELEMENTS", 128)
    monkeypatch.setattr(dip_triton, "_MAX_PARTIALS", 7)
    check_against_dlib(make_encodings(37, 10, seed=6), torch.float32, backend, "ii")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("name", "dip_type", "means", "logvar", "target"),
    [
        # dlib's vae_test targets for regularize_diag_off_diag_dip(matrix, 1, 1): the means are
        # chosen so that the covariance is exactly that matrix.
        ("ones", "i", [[1.0] * 10, [-1.0] * 10], 0.0, 90.0),  # C = ones(10, 10)
        ("zeros", "i", [[0.5] * 10] * 4, 0.0, 10.0),  # C = 0
        ("identity", "ii", [[0.5] * 10] * 4, 0.0, 0.0),  # C = mean exp(0) on the diagonal = I
        ("two_identity", "ii", [[0.5] * 10] * 4, math.log(2.0), 10.0),  # C = 2·I
    ],
)
def test_dlib_unit_test_targets(backend, name, dip_type, means, logvar, target):
    z_mean = torch.tensor(means, dtype=torch.float32, device=device_for(backend))
    z_logvar = torch.full_like(z_mean, logvar)
    value = dip_regularizer(
        z_mean, z_logvar, lambda_od=1.0, lambda_d=1.0, dip_type=dip_type, backend=backend
    )
    assert value.item() == pytest.approx(target, abs=1e-5)


def test_lambdas_weigh_their_own_parts():
    # Off-diagonal mass only (DIP-II with unit variance on the diagonal): λ_d must not matter.
    z_mean = torch.tensor([[1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    z_logvar = torch.full_like(z_mean, -30.0)  # variance ~1e-13: C ≈ [[1, 1], [1, 1]]
    for lambda_d in (0.0, 5.0):
        value = dip_regularizer(
            z_mean, z_logvar, lambda_od=3.0, lambda_d=lambda_d, dip_type="ii", backend="torch"
        )
        assert value.item() == pytest.approx(3.0 * 2, rel=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dip_type", ["i", "ii"])
def test_gradcheck_float64_all_outputs(backend, dip_type):
    # Penalty, covariance and batch mean together: exercises every upstream gradient path.
    device = device_for(backend)
    inputs = [x.to(device).requires_grad_() for x in make_encodings(7, 3, seed=8)]
    assert torch.autograd.gradcheck(
        lambda *args: dip_covariance(
            *args, lambda_od=0.7, lambda_d=1.9, dip_type=dip_type, backend=backend
        ),
        inputs,
    )


def test_float64_weights_keep_full_precision_on_triton():
    # Triton passes Python floats as float32; the hi + lo split must restore 0.1 exactly.
    inputs = make_encodings(16, 4, seed=9)
    kwargs = dict(lambda_od=0.1, lambda_d=0.1 * 10, dip_type="ii")
    on_device = [x.to(device_for("triton")) for x in inputs]
    triton_value = dip_regularizer(*on_device, backend="triton", **kwargs)
    torch_value = dip_regularizer(*inputs, backend="torch", **kwargs)
    assert triton_value.item() == pytest.approx(torch_value.item(), rel=1e-13)


def test_compiled_objectives_of_two_dip_settings_stay_whole_graphs():
    # Two DIP objectives compiled in one process share Objective.forward's code: the second
    # compile (a different lambda_d_factor) must not turn the weight symbolic and break the
    # graph at the DIP weight check. Dynamo alone (backend="eager") shows it in seconds.
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # reset() keeps them
    images = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(14))
    noise = torch.randn(4, 10, generator=torch.Generator().manual_seed(15))
    for method in ("dip_vae_i", "dip_vae_ii"):
        model = GaussianVAE((64, 64, 1), 10)
        model.reset_parameters(torch.Generator().manual_seed(0))
        objective = Objective(TrainConfig(method=method).resolved(), model)
        expected = objective(images, noise)["loss"]
        compiled = compile_objective(objective, backend="eager")(images, noise)["loss"]
        torch.testing.assert_close(compiled, expected)
    counters = torch._dynamo.utils.counters
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 2

