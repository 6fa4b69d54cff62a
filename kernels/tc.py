"""β-TCVAE's total-correlation estimate as disentanglement_lib computes it, without B×B×d memory.

The estimator (minibatch weighted sampling, Chen et al. 2018, "Isolating Sources of
Disentanglement in VAEs", with every constant dropped as in dlib's ``vae.total_correlation``)
scores each of B samples z_j under each of the B posteriors q(·|x_i) = N(μ_i, diag(exp(v_i))):

.. math::

    a_{jil} &= -\\tfrac12\\left[(z_{jl} - \\mu_{il})^2 e^{-v_{il}} + v_{il}\\right]
        && \\text{log-density of } z_{jl} \\text{ under posterior } i
        \\text{ (the } \\log 2\\pi \\text{ cancels, see below)} \\\\
    J_j &= \\operatorname{logsumexp}_i \\sum_l a_{jil}
        && \\log \\hat q(z_j) + \\text{const} \\\\
    M_{jl} &= \\operatorname{logsumexp}_i a_{jil}
        && \\log \\hat q(z_{jl}) + \\text{const} \\\\
    \\mathrm{TC} &= \\frac1B \\sum_j \\Big(J_j - \\sum_l M_{jl}\\Big).

The sums over i include i = j (the sample's own posterior). dlib keeps ``-½ log 2π`` inside each
a_jil; it shifts J_j and Σ_l M_jl by the same ``-d/2 · log 2π``, so it cancels exactly and is left
out here. The constant dlib drops, (d − 1)·log(B·N), makes the estimate of independent latents
≈ −(d − 1)·ln B instead of ≈ 0 (dlib's unit test: −82.89 for B = 10,000, d = 10).

Gradients. With upstream gradients γ_j = ∂L/∂J_j and η_jl = ∂L/∂M_jl (for TC: γ = 1/B, η = −1/B),

.. math::

    g_{jil} = γ_j\\, \\underbrace{e^{\\sum_l a_{jil} - J_j}}_{\\text{softmax over } i}
            + η_{jl}\\, e^{a_{jil} - M_{jl}},
    \\qquad
    \\frac{∂L}{∂z_{jl}} = -\\sum_i g_{jil}\\,(z_{jl}-\\mu_{il})e^{-v_{il}},\\quad
    \\frac{∂L}{∂\\mu_{il}} = \\sum_j g_{jil}\\,(z_{jl}-\\mu_{il})e^{-v_{il}},\\quad
    \\frac{∂L}{∂v_{il}} = \\sum_j g_{jil}\\,
        \\tfrac12\\left[(z_{jl}-\\mu_{il})^2 e^{-v_{il}} - 1\\right].

Motivation (memory). dlib's formula materialises a_jil: B²d numbers, and autograd keeps several
such tensors alive for the backward (the difference, its square, the scaled square, the sums):
at B = 4,096, d = 10 one of them is 671 MB in float32. Everything above only needs J (B numbers)
and M (B·d numbers): the forward streams over posteriors i in tiles with an online log-sum-exp, and
the backward recomputes a_jil tile by tile from (z, μ, v, J, M). Extra memory is O(B·d).

Layout of this module: the plain torch reference (dlib's formula, autograd), the chunked torch
implementation used where Triton cannot run (same math as the kernels, O(chunk·B·d) memory), the
custom ops that make either backend one opaque node for autograd and torch.compile, and the public
:func:`total_correlation`. The Triton kernels are in ``tc_triton.py``.
"""

import torch

from ._common import check_latents, register_slicewise_vmap, resolve_backend, run_backend

# Rows j per chunk in the torch implementation: chunk·B·d stays near 1 M elements (4 MB per
# temporary in float32), which bounds memory and keeps each chunk large enough to run at speed.
_TORCH_CHUNK_ELEMENTS = 1 << 20


def total_correlation_reference(
    z: torch.Tensor, z_mean: torch.Tensor, z_logvar: torch.Tensor
) -> torch.Tensor:
    """dlib's ``total_correlation`` written in torch: materialises the (B, B, d) tensor.

    The baseline of ``bench/bench_kernels.py`` (eager and torch.compile'd); autograd gives the
    gradients. Use :func:`total_correlation` instead.
    """
    diff = z.unsqueeze(1) - z_mean.unsqueeze(0)  # (B_j, B_i, d)
    log_density = -0.5 * (diff * diff * torch.exp(-z_logvar).unsqueeze(0) + z_logvar.unsqueeze(0))
    log_qz_product = torch.logsumexp(log_density, dim=1).sum(dim=1)  # (B_j,)
    log_qz = torch.logsumexp(log_density.sum(dim=2), dim=1)  # (B_j,)
    return (log_qz - log_qz_product).mean()


def _rows_per_chunk(batch_size: int, num_latents: int) -> int:
    return max(1, _TORCH_CHUNK_ELEMENTS // (batch_size * num_latents))


def _log_densities_torch(
    z: torch.Tensor, z_mean: torch.Tensor, z_logvar: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """J (B,) and M (B, d) of the module docstring, in chunks of rows j."""
    batch_size, num_latents = z.shape
    precision = torch.exp(-z_logvar)  # (B_i, d)
    log_qz = z.new_empty(batch_size)
    log_qz_marginal = z.new_empty(batch_size, num_latents)
    step = _rows_per_chunk(batch_size, num_latents)
    for start in range(0, batch_size, step):
        rows = slice(start, start + step)
        # In place from here on: one (chunk, B_i, d) temporary besides logsumexp's own.
        log_density = z[rows].unsqueeze(1) - z_mean  # (chunk, B_i, d)
        log_density.square_().mul_(precision).add_(z_logvar).mul_(-0.5)
        log_qz_marginal[rows] = torch.logsumexp(log_density, dim=1)
        log_qz[rows] = torch.logsumexp(log_density.sum(dim=2), dim=1)
    return log_qz, log_qz_marginal


def _log_densities_backward_torch(
    grads: tuple[torch.Tensor, torch.Tensor], saved: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """∂L/∂z, ∂L/∂μ, ∂L/∂v from ``grads`` = (γ, η) = (∂L/∂J, ∂L/∂M) and the forward's
    ``saved`` = (z, μ, v, J, M), recomputing a_jil chunk by chunk."""
    grad_log_qz, grad_log_qz_marginal = grads
    z, z_mean, z_logvar, log_qz, log_qz_marginal = saved
    batch_size, num_latents = z.shape
    precision = torch.exp(-z_logvar)
    grad_z = torch.empty_like(z)
    grad_mean = torch.zeros_like(z_mean)
    grad_logvar = torch.zeros_like(z_logvar)
    step = _rows_per_chunk(batch_size, num_latents)
    for start in range(0, batch_size, step):
        rows = slice(start, start + step)
        # Three (chunk, B_i, d) temporaries, updated in place; the names say what each holds.
        slope = (z[rows].unsqueeze(1) - z_mean).mul_(precision)  # (z - μ) e^{-v}
        scaled_square = (z[rows].unsqueeze(1) - z_mean).mul_(slope)  # (z - μ)² e^{-v}
        weight = torch.add(scaled_square, z_logvar).mul_(-0.5)  # a_jil
        joint_weight = torch.exp(weight.sum(dim=2) - log_qz[rows].unsqueeze(1))  # (chunk, B_i)
        # g_jil = γ_j softmax_i(s_ji) + η_jl exp(a_jil - M_jl)
        weight.sub_(log_qz_marginal[rows].unsqueeze(1)).exp_()
        weight.mul_(grad_log_qz_marginal[rows].unsqueeze(1))
        weight.add_((grad_log_qz[rows].unsqueeze(1) * joint_weight).unsqueeze(2))
        grad_logvar += scaled_square.sub_(1.0).mul_(weight).sum(dim=0)
        weighted_slope = slope.mul_(weight)
        grad_z[rows] = -weighted_slope.sum(dim=1)
        grad_mean += weighted_slope.sum(dim=0)
    return grad_z, grad_mean, grad_logvar.mul_(0.5)


@torch.library.custom_op("fastdis::tc_log_densities", mutates_args=())
def _tc_log_densities(
    z: torch.Tensor, z_mean: torch.Tensor, z_logvar: torch.Tensor, backend: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(J, M): log q̂(z_j) and log q̂(z_jl) up to constants. ``backend`` is "triton" or "torch"."""
    return run_backend(
        backend, _log_densities_torch, "tc_triton.tc_log_densities_triton", z, z_mean, z_logvar
    )


@_tc_log_densities.register_fake
def _(z, z_mean, z_logvar, backend):
    return z.new_empty(z.shape[0]), z.new_empty(z.shape)


@torch.library.custom_op("fastdis::tc_log_densities_backward", mutates_args=())
def _tc_log_densities_backward(
    grad_log_qz: torch.Tensor,
    grad_log_qz_marginal: torch.Tensor,
    z: torch.Tensor,
    z_mean: torch.Tensor,
    z_logvar: torch.Tensor,
    log_qz: torch.Tensor,
    log_qz_marginal: torch.Tensor,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of the (J, M) op; its own op so that torch.compile keeps it opaque too."""
    grads = (grad_log_qz, grad_log_qz_marginal)
    saved = (z, z_mean, z_logvar, log_qz, log_qz_marginal)
    return run_backend(
        backend,
        _log_densities_backward_torch,
        "tc_triton.tc_log_densities_backward_triton",
        grads,
        saved,
    )


@_tc_log_densities_backward.register_fake
def _(grad_log_qz, grad_log_qz_marginal, z, z_mean, z_logvar, log_qz, log_qz_marginal, backend):
    return torch.empty_like(z), torch.empty_like(z_mean), torch.empty_like(z_logvar)


def _setup_context(ctx, inputs, output):
    z, z_mean, z_logvar, backend = inputs
    log_qz, log_qz_marginal = output
    ctx.save_for_backward(z, z_mean, z_logvar, log_qz, log_qz_marginal)
    ctx.backend = backend


def _backward(ctx, grad_log_qz, grad_log_qz_marginal):
    z, z_mean, z_logvar, log_qz, log_qz_marginal = ctx.saved_tensors
    # An output that does not reach the loss may arrive as None: its gradient is zero.
    if grad_log_qz is None:
        grad_log_qz = torch.zeros_like(log_qz)
    if grad_log_qz_marginal is None:
        grad_log_qz_marginal = torch.zeros_like(log_qz_marginal)
    grad_z, grad_mean, grad_logvar = _tc_log_densities_backward(
        grad_log_qz.contiguous(),
        grad_log_qz_marginal.contiguous(),
        z,
        z_mean,
        z_logvar,
        log_qz,
        log_qz_marginal,
        ctx.backend,
    )
    return grad_z, grad_mean, grad_logvar, None


_tc_log_densities.register_autograd(_backward, setup_context=_setup_context)
register_slicewise_vmap(_tc_log_densities)
register_slicewise_vmap(_tc_log_densities_backward)


def tc_log_densities(
    z: torch.Tensor, z_mean: torch.Tensor, z_logvar: torch.Tensor, *, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two log-sum-exp reductions behind the TC estimate, differentiable.

    Returns ``(log_qz, log_qz_marginal)``, shapes (B,) and (B, d): J and M of the module
    docstring (log q̂(z_j) and log q̂(z_jl), constants dropped). ``total_correlation`` is
    ``(log_qz - log_qz_marginal.sum(1)).mean()``. Same arguments and errors as
    :func:`total_correlation`.
    """
    z, z_mean, z_logvar = check_latents(z=z, z_mean=z_mean, z_logvar=z_logvar)
    return _tc_log_densities(z, z_mean, z_logvar, resolve_backend(backend, z))


def total_correlation(
    z: torch.Tensor, z_mean: torch.Tensor, z_logvar: torch.Tensor, *, backend: str = "auto"
) -> torch.Tensor:
    """β-TCVAE's minibatch-weighted-sampling total-correlation estimate, as dlib computes it.

    .. math:: \\mathrm{TC} = \\frac1B \\sum_j \\Big[\\operatorname{logsumexp}_i \\sum_l a_{jil}
              - \\sum_l \\operatorname{logsumexp}_i a_{jil}\\Big],\\quad
              a_{jil} = -\\tfrac12\\big[(z_{jl}-\\mu_{il})^2 e^{-v_{il}} + v_{il}\\big]

    (the module docstring derives it and its gradients). The β-TCVAE loss adds (β − 1)·TC.
    Extra memory is O(B·d) on the Triton path; the torch path works in row chunks of about
    2^20 elements (a few 4 MB temporaries in float32). The B×B×d tensor is never built.

    Parameters
    ----------
    z : Tensor of shape (batch_size, num_latents), float32 or float64
        Samples drawn from the posteriors (the reparameterised z).
    z_mean, z_logvar : Tensor of the same shape, dtype and device
        Posterior means μ and log-variances v.
    backend : {"auto", "triton", "torch"}, default="auto"
        "auto" runs the Triton kernels on CUDA tensors when triton imports, torch otherwise;
        "triton" forces them (CPU tensors need ``TRITON_INTERPRET=1``); "torch" forces torch.

    Returns
    -------
    0-d tensor, same dtype and device, in nats, differentiable w.r.t. all three inputs. It is
    dlib's value: shifted by the dropped (d − 1)·log(B·N), so about −(d − 1)·ln B for independent
    latents, and exactly 0 when d = 1.

    Raises
    ------
    ValueError
        If an input is not a 2-D float32/float64 tensor of the shape, dtype and device of ``z``,
        or ``backend`` is unknown or cannot run here.
    """
    log_qz, log_qz_marginal = tc_log_densities(z, z_mean, z_logvar, backend=backend)
    return (log_qz - log_qz_marginal.sum(dim=1)).mean()
