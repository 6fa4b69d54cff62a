"""β-TCVAE's total correlation: Triton (interpreter on CPU) and torch against a plain float64 twin.

The twin below is dlib's ``vae.total_correlation`` transcribed into float64 torch (log 2π kept, as
dlib keeps it); it materialises the (B, B, d) tensor, which is fine at test sizes. Float32 runs
must agree with it to 1e-5 relative, gradients included; float64 runs to ~1e-12.
"""

import math

import fastdis.kernels.tc as tc_module
import fastdis.kernels.tc_triton as tc_triton
import pytest
import torch
from fastdis.kernels import tc_log_densities, total_correlation
from kernel_helpers import BACKENDS, check_against_twin, device_for


def dlib_total_correlation(z, z_mean, z_logvar):
    """dlib's estimator, line by line (gaussian_log_density with its log 2π)."""
    normalization = math.log(2.0 * math.pi)
    samples, mean, logvar = z.unsqueeze(1), z_mean.unsqueeze(0), z_logvar.unsqueeze(0)
    log_qz_prob = -0.5 * ((samples - mean) ** 2 * torch.exp(-logvar) + logvar + normalization)
    log_qz_product = torch.logsumexp(log_qz_prob, dim=1).sum(dim=1)
    log_qz = torch.logsumexp(log_qz_prob.sum(dim=2), dim=1)
    return (log_qz - log_qz_product).mean()


def make_posteriors(batch_size, num_latents, *, seed=0, logvar_center=0.0):
    """Posterior means and log-variances and reparameterised samples z, in float64."""
    generator = torch.Generator().manual_seed(seed)
    z_mean = torch.randn(batch_size, num_latents, generator=generator, dtype=torch.float64)
    z_logvar = logvar_center + 0.5 * torch.randn(
        batch_size, num_latents, generator=generator, dtype=torch.float64
    )
    noise = torch.randn(batch_size, num_latents, generator=generator, dtype=torch.float64)
    z = z_mean + torch.exp(0.5 * z_logvar) * noise
    return z, z_mean, z_logvar


def check_against_dlib(inputs64, dtype, backend):
    check_against_twin(
        lambda *inputs: total_correlation(*inputs, backend=backend),
        dlib_total_correlation,
        inputs64,
        ("z", "z_mean", "z_logvar"),
        dtype,
        backend,
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "shape",
    [(1, 1), (1, 10), (7, 1), (37, 10), (64, 10), (100, 10), (33, 3)],
    ids=lambda shape: "B{}xd{}".format(*shape),
)
def test_matches_dlib_formula(backend, dtype, shape):
    check_against_dlib(make_posteriors(*shape, seed=shape[0]), dtype, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_narrow_posteriors_stay_finite_and_accurate(backend):
    # Posterior std ~ 0.05: log-densities span thousands of nats, so an unstabilised
    # log-sum-exp over- or underflows; the online max must keep float32 accurate.
    inputs64 = make_posteriors(48, 10, seed=3, logvar_center=-6.0)
    check_against_dlib(inputs64, torch.float32, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_streamed_tiles(backend, monkeypatch):
    # Shrink the tiles so that B = 37 streams in several tiles per program with a ragged last
    # one; the torch path likewise runs one row per chunk.
    monkeypatch.setattr(tc_triton, "_TILE_ELEMENTS", 256)
    monkeypatch.setattr(tc_module, "_TORCH_CHUNK_ELEMENTS", 1)
    block_j, block_i, _ = tc_triton._tile_sizes(37, 10)
    assert block_i < 37 and 37 % block_i != 0
    check_against_dlib(make_posteriors(37, 10, seed=5), torch.float32, backend)


@pytest.mark.parametrize(
    ("backend", "batch_size", "num_latents"),
    # The Triton interpreter is kept to B <= 64 (it is ~1,500x slower than torch).
    [("torch", 1000, 10), ("torch", 64, 1), ("triton", 64, 10), ("triton", 64, 1)],
)
def test_dlib_unit_test_target(backend, batch_size, num_latents):
    # dlib's vae_test: z ~ N(0, 1) under B identical N(0, 1) posteriors. Every posterior scores
    # every sample alike, so log q(z_j) = ln B + Σ_l a_jl and log q(z_jl) = ln B + a_jl: the
    # estimate is exactly -(d - 1)·ln B (dlib: -82.89 at B = 10,000, d = 10) and 0 for d = 1.
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(batch_size, num_latents, generator=generator).to(device_for(backend))
    zeros = torch.zeros_like(z)
    value = total_correlation(z, zeros, zeros, backend=backend)
    expected = -(num_latents - 1) * math.log(batch_size)
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_float64(backend):
    device = device_for(backend)
    inputs = [x.to(device).requires_grad_() for x in make_posteriors(6, 3, seed=11)]
    assert torch.autograd.gradcheck(lambda *args: total_correlation(*args, backend=backend), inputs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_log_densities_gradcheck_with_arbitrary_upstream(backend):
    # Both outputs (J and M) with independent upstream gradients: covers the general backward,
    # not only the γ = 1/B, η = -1/B of the TC estimate.
    device = device_for(backend)
    inputs = [x.to(device).requires_grad_() for x in make_posteriors(5, 2, seed=12)]
    assert torch.autograd.gradcheck(lambda *args: tc_log_densities(*args, backend=backend), inputs)


def test_backends_agree_on_per_sample_reductions():
    inputs = make_posteriors(29, 4, seed=13)
    log_qz_torch, marginal_torch = tc_log_densities(*inputs, backend="torch")
    device = device_for("triton")
    on_device = [x.to(device) for x in inputs]
    log_qz_triton, marginal_triton = (
        x.cpu() for x in tc_log_densities(*on_device, backend="triton")
    )
    torch.testing.assert_close(log_qz_triton, log_qz_torch, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(marginal_triton, marginal_torch, rtol=1e-12, atol=1e-12)
