"""fastdis.kernels' public surface: KL targets, input checks, backend dispatch, torch.compile."""

import math

import fastdis.kernels.dip_triton as dip_triton
import fastdis.kernels.tc_triton as tc_triton
import pytest
import torch
from fastdis.kernels import dip_regularizer, gaussian_kl, total_correlation
from fastdis.kernels._common import TRITON_MAX_LATENTS, resolve_backend
from kernel_helpers import BACKENDS, device_for


@pytest.mark.parametrize(
    ("mean", "logvar", "target"),
    # dlib's vae_test::test_compute_gaussian_kl: 10 latents, batch mean of the per-example KL.
    [(0.0, 0.0, 0.0), (1.0, 0.0, 5.0), (1.0, 1.0, 5.0 * (math.e - 1.0))],
)
def test_gaussian_kl_dlib_targets(mean, logvar, target):
    z_mean = torch.full((10, 10), mean)
    z_logvar = torch.full((10, 10), logvar)
    kl = gaussian_kl(z_mean, z_logvar)
    assert kl.shape == (10,)
    assert kl.mean().item() == pytest.approx(target, abs=1e-5)
    if mean == 1.0 and logvar == 1.0:
        assert 8.58 <= kl.mean().item() <= 8.6  # dlib's bracket


def latents(shape=(8, 3), dtype=torch.float32, device="cpu"):
    return torch.zeros(shape, dtype=dtype, device=device)


BAD_INPUTS = [
    # (which argument is broken, replacement, words the message must contain)
    ("z_mean", latents((8,)), "z_mean must be 2-D"),
    ("z_mean", latents((8, 3), torch.int64), "z_mean must be float32 or float64"),
    ("z_logvar", latents((8, 4)), "z_logvar must have the shape of"),
    ("z_logvar", latents(dtype=torch.float64), "z_logvar must have the dtype of"),
    ("z_logvar", latents(device="meta"), "z_logvar must be on the device of"),
    ("z_mean", latents((0, 3)), "at least one sample"),
    ("z_mean", [[0.0] * 3] * 8, "z_mean must be a torch.Tensor"),
]


@pytest.mark.parametrize(("argument", "value", "message"), BAD_INPUTS)
def test_bad_latents_name_the_argument(argument, value, message):
    good = {"z_mean": latents(), "z_logvar": latents()}
    with pytest.raises(ValueError, match=message):
        dip_regularizer(**{**good, argument: value}, lambda_od=1.0, lambda_d=1.0)
    with pytest.raises(ValueError, match=message):
        total_correlation(latents(), **{**good, argument: value})
    with pytest.raises(ValueError, match=message):
        gaussian_kl(**{**good, argument: value})


def test_bad_z_is_named():
    with pytest.raises(ValueError, match="z must be 2-D"):
        total_correlation(latents((3, 2, 1)), latents(), latents())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lambda_od": float("nan"), "lambda_d": 1.0}, "lambda_od must be finite"),
        ({"lambda_od": 1.0, "lambda_d": "10"}, "lambda_d must be a real number"),
        ({"lambda_od": 1.0, "lambda_d": 1.0, "dip_type": "iii"}, "dip_type must be one of"),
        ({"lambda_od": 1.0, "lambda_d": 1.0, "backend": "cuda"}, "backend must be one of"),
    ],
)
def test_bad_dip_options(options, message):
    with pytest.raises(ValueError, match=message):
        dip_regularizer(latents(), latents(), **options)


def test_auto_runs_torch_on_cpu_even_under_the_interpreter():
    assert resolve_backend("auto", latents()) == "torch"
    assert resolve_backend("torch", latents()) == "torch"


def test_forced_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        total_correlation(latents(), latents(), latents(), backend="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend("triton", latents()) == "triton"


def test_wide_latents_fall_back_or_are_refused():
    wide = latents((2, TRITON_MAX_LATENTS + 1))
    assert resolve_backend("auto", wide) == "torch"
    with pytest.raises(ValueError, match="at most"):
        resolve_backend("triton", wide)


def spy_on(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)

    def spy(*args):
        calls.append(name)
        return original(*args)

    monkeypatch.setattr(module, name, spy)
    return calls


@pytest.mark.parametrize(
    ("backend", "expect_triton"), [("triton", True), ("torch", False), ("auto", False)]
)
def test_backend_choice_reaches_the_kernels(monkeypatch, backend, expect_triton):
    calls = []
    for module, name in [
        (tc_triton, "tc_log_densities_triton"),
        (tc_triton, "tc_log_densities_backward_triton"),
        (dip_triton, "dip_forward_triton"),
        (dip_triton, "dip_backward_triton"),
    ]:
        calls_for = spy_on(monkeypatch, module, name)
        calls.append(calls_for)
    # On CPU "auto" means torch; on a GPU machine Triton runs on CUDA tensors.
    device = device_for("triton") if backend == "triton" else "cpu"
    inputs = [torch.randn(5, 3, device=device, requires_grad=True) for _ in range(3)]
    loss = total_correlation(*inputs, backend=backend) + dip_regularizer(
        *inputs[1:], lambda_od=1.0, lambda_d=1.0, dip_type="ii", backend=backend
    )
    loss.backward()
    assert [len(c) == 1 for c in calls] == [expect_triton] * 4


def loss_with_both_ops(z, z_mean, z_logvar, backend):
    """A small β-TCVAE + DIP-II style objective calling each custom op once."""
    tc = total_correlation(z, z_mean, z_logvar, backend=backend)
    dip = dip_regularizer(
        z_mean, z_logvar, lambda_od=2.0, lambda_d=20.0, dip_type="ii", backend=backend
    )
    return 3.0 * tc + dip + gaussian_kl(z_mean, z_logvar).mean()


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph_matches_eager(backend):
    torch._dynamo.reset()
    generator = torch.Generator().manual_seed(0)
    device = device_for(backend)
    inputs = [torch.randn(12, 4, generator=generator).to(device) for _ in range(3)]
    eager_inputs = [x.clone().requires_grad_() for x in inputs]
    compiled_inputs = [x.clone().requires_grad_() for x in inputs]

    eager = loss_with_both_ops(*eager_inputs, backend)
    eager.backward()
    # fullgraph=True turns any graph break into an error, so passing means one graph.
    compiled_loss = torch.compile(loss_with_both_ops, fullgraph=True)
    compiled = compiled_loss(*compiled_inputs, backend)
    compiled.backward()

    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    for eager_input, compiled_input in zip(eager_inputs, compiled_inputs, strict=True):
        torch.testing.assert_close(compiled_input.grad, eager_input.grad, rtol=1e-5, atol=1e-5)
