"""DIP-VAE's covariance regularizer (Kumar et al. 2018, Eq. 6, 7) as disentanglement_lib has it.

For encoder means μ (B, d) and log-variances v (B, d):

.. math::

    \\bar\\mu &= \\frac1B \\sum_b \\mu_b, \\qquad
    C = \\frac1B \\sum_b (\\mu_b - \\bar\\mu)(\\mu_b - \\bar\\mu)^\\top
        \\;\\Big[ + \\operatorname{diag}\\Big(\\frac1B \\sum_b e^{v_b}\\Big)
        \\text{ for DIP-II} \\Big] \\\\
    P &= \\lambda_{od} \\sum_{i \\ne j} C_{ij}^2 + \\lambda_d \\sum_i (C_{ii} - 1)^2 .

C is the biased (1/B) batch covariance: dlib's ``compute_covariance_z_mean`` writes it as
E[μμᵀ] − E[μ]E[μ]ᵀ, which is the same number; the centred two-pass form is used here because it does
not cancel catastrophically in float32 when the means sit far from zero. DIP-II adds the mean
posterior variance to the diagonal only. Both sums are full sums, not means. In dlib's ``DIPVAE``,
λ_d = ``lambda_d_factor`` · λ_od (factor 10 for DIP-I and 1 for DIP-II in the study); this module
takes λ_d itself.

Gradients. With G = ∂P/∂C, i.e. G_ij = 2λ_od C_ij off the diagonal and G_ii = 2λ_d (C_ii − 1), and
upstream gradients ρ = ∂L/∂P, Γ = ∂L/∂C and m = ∂L/∂μ̄ (C and μ̄ are outputs of the op too, saved
for the backward), let S = ρG + (Γ + Γᵀ)/2 (symmetric). Then

.. math::

    \\frac{∂L}{∂\\mu_b} = \\frac2B (\\mu_b - \\bar\\mu)\\, S + \\frac{m}{B}, \\qquad
    \\frac{∂L}{∂v_{bi}} = \\frac1B S_{ii}\\, e^{v_{bi}} \\;\\text{(DIP-II; zero for DIP-I)}.

(The centring drops out of ∂L/∂μ_b because the centred rows sum to zero.)

Motivation. The work is tiny (B·d² multiply-adds) but eager torch spends it in about a dozen small
kernel launches forward and as many backward; on a GPU these launches, not arithmetic, set the
time. The Triton path (``dip_triton.py``) is two launches forward and one backward.
"""

import torch

from ._common import (
    check_latents,
    check_weight,
    register_slicewise_vmap,
    resolve_backend,
    run_backend,
)

DIP_TYPES = ("i", "ii")


def dip_regularizer_reference(
    z_mean: torch.Tensor,
    z_logvar: torch.Tensor,
    *,
    lambda_od: float,
    lambda_d: float,
    dip_type: str = "i",
) -> torch.Tensor:
    """dlib's formula written in torch, line for line (uncentred covariance); autograd gradients.

    The baseline of ``bench/bench_kernels.py``. Use :func:`dip_regularizer` instead.
    """
    expectation_mean_mean_t = (z_mean.unsqueeze(2) * z_mean.unsqueeze(1)).mean(dim=0)
    expectation_mean = z_mean.mean(dim=0)
    covariance = expectation_mean_mean_t - expectation_mean.unsqueeze(1) * expectation_mean
    if dip_type == "ii":
        covariance = covariance + torch.diag(torch.exp(z_logvar).mean(dim=0))
    diagonal = torch.diagonal(covariance)
    off_diagonal = covariance - torch.diag(diagonal)
    return lambda_od * off_diagonal.square().sum() + lambda_d * (diagonal - 1.0).square().sum()


def covariance_penalty(covariance: torch.Tensor, lambda_od, lambda_d) -> torch.Tensor:
    """P = λ_od·Σ_{i≠j} C_ij² + λ_d·Σ_i (C_ii − 1)² of a (d, d) covariance; the weights may be
    numbers or 0-d tensors (a packed model's own under ``torch.vmap``).

    The off-diagonal entries are summed on their own: Σ C² − Σ C_ii² would cancel when C is
    near the identity (the off-diagonal part is then tiny beside d), in float32 to a few per
    cent.
    """
    diagonal = covariance.diagonal()
    off_diagonal = covariance - torch.diag(diagonal)
    return lambda_od * off_diagonal.square().sum() + lambda_d * (diagonal - 1.0).square().sum()


def penalty_gradient(covariance: torch.Tensor, lambda_od: float, lambda_d: float) -> torch.Tensor:
    """G = ∂P/∂C: 2λ_od C off the diagonal, 2λ_d (C_ii − 1) on it."""
    gradient = (2.0 * lambda_od) * covariance
    gradient.diagonal().copy_((2.0 * lambda_d) * (covariance.diagonal() - 1.0))
    return gradient


def _dip_forward_torch(z_mean, z_logvar, lambda_od, lambda_d, include_variance):
    batch_size = z_mean.shape[0]
    batch_mean = z_mean.mean(dim=0)
    centered = z_mean - batch_mean
    covariance = centered.T @ centered / batch_size
    if include_variance:
        covariance.diagonal().add_(torch.exp(z_logvar).mean(dim=0))
    return covariance_penalty(covariance, lambda_od, lambda_d), covariance, batch_mean


def _dip_backward_torch(grads, saved, lambda_od, lambda_d, include_variance):
    """∂L/∂μ, ∂L/∂v from ``grads`` = (ρ, Γ, m) and the forward's ``saved`` = (μ, v, C, μ̄)."""
    grad_penalty, grad_covariance, grad_batch_mean = grads
    z_mean, z_logvar, covariance, batch_mean = saved
    batch_size = z_mean.shape[0]
    weight = grad_penalty * penalty_gradient(covariance, lambda_od, lambda_d)
    weight = weight + 0.5 * (grad_covariance + grad_covariance.T)  # S, symmetric (d, d)
    grad_z_mean = (z_mean - batch_mean) @ weight * (2.0 / batch_size) + grad_batch_mean / batch_size
    if include_variance:
        grad_z_logvar = torch.exp(z_logvar) * weight.diagonal() / batch_size
    else:
        grad_z_logvar = torch.zeros_like(z_logvar)
    return grad_z_mean, grad_z_logvar


@torch.library.custom_op("fastdis::dip_covariance_penalty", mutates_args=())
def _dip_covariance_penalty(
    z_mean: torch.Tensor,
    z_logvar: torch.Tensor,
    lambda_od: float,
    lambda_d: float,
    include_variance: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P, C, μ̄) of the module docstring; ``backend`` is "triton" or "torch"."""
    args = (z_mean, z_logvar, lambda_od, lambda_d, include_variance)
    return run_backend(backend, _dip_forward_torch, "dip_triton.dip_forward_triton", *args)


@_dip_covariance_penalty.register_fake
def _(z_mean, z_logvar, lambda_od, lambda_d, include_variance, backend):
    num_latents = z_mean.shape[1]
    return (
        z_mean.new_empty(()),
        z_mean.new_empty(num_latents, num_latents),
        z_mean.new_empty(num_latents),
    )


@torch.library.custom_op("fastdis::dip_covariance_penalty_backward", mutates_args=())
def _dip_covariance_penalty_backward(
    grad_penalty: torch.Tensor,
    grad_covariance: torch.Tensor,
    grad_batch_mean: torch.Tensor,
    z_mean: torch.Tensor,
    z_logvar: torch.Tensor,
    covariance: torch.Tensor,
    batch_mean: torch.Tensor,
    lambda_od: float,
    lambda_d: float,
    include_variance: bool,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """∂L/∂μ and ∂L/∂v of the (P, C, μ̄) op; its own op so torch.compile keeps it opaque."""
    grads = (grad_penalty, grad_covariance, grad_batch_mean)
    saved = (z_mean, z_logvar, covariance, batch_mean)
    options = (lambda_od, lambda_d, include_variance)
    return run_backend(
        backend, _dip_backward_torch, "dip_triton.dip_backward_triton", grads, saved, *options
    )


@_dip_covariance_penalty_backward.register_fake
def _(grad_penalty, grad_covariance, grad_batch_mean, z_mean, z_logvar, *rest):
    return torch.empty_like(z_mean), torch.empty_like(z_logvar)


def _setup_context(ctx, inputs, output):
    z_mean, z_logvar, lambda_od, lambda_d, include_variance, backend = inputs
    _, covariance, batch_mean = output
    ctx.save_for_backward(z_mean, z_logvar, covariance, batch_mean)
    ctx.options = (lambda_od, lambda_d, include_variance, backend)


def _backward(ctx, grad_penalty, grad_covariance, grad_batch_mean):
    z_mean, z_logvar, covariance, batch_mean = ctx.saved_tensors
    # An output that does not reach the loss may arrive as None: its gradient is zero.
    if grad_penalty is None:
        grad_penalty = covariance.new_zeros(())
    if grad_covariance is None:
        grad_covariance = torch.zeros_like(covariance)
    if grad_batch_mean is None:
        grad_batch_mean = torch.zeros_like(batch_mean)
    grad_z_mean, grad_z_logvar = _dip_covariance_penalty_backward(
        grad_penalty.contiguous(),
        grad_covariance.contiguous(),
        grad_batch_mean.contiguous(),
        z_mean,
        z_logvar,
        covariance,
        batch_mean,
        *ctx.options,
    )
    return grad_z_mean, grad_z_logvar, None, None, None, None


_dip_covariance_penalty.register_autograd(_backward, setup_context=_setup_context)
register_slicewise_vmap(_dip_covariance_penalty)
register_slicewise_vmap(_dip_covariance_penalty_backward)


def dip_covariance(
    z_mean: torch.Tensor,
    z_logvar: torch.Tensor,
    *,
    lambda_od: float,
    lambda_d: float,
    dip_type: str = "i",
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(penalty, covariance, batch_mean)``: P, C (d, d) and μ̄ (d,) of the module docstring.

    All three are differentiable. Same arguments and errors as :func:`dip_regularizer`, which
    returns the first. Under ``torch.compile`` the weights should be constants of the graph:
    Dynamo's automatic dynamic turns a float that changed since the previous compile into a
    symbolic one, which the weight check cannot test without a graph break
    (``fastdis.train.objectives.compile_objective`` compiles with ``dynamic=False`` for this).
    """
    z_mean, z_logvar = check_latents(z_mean=z_mean, z_logvar=z_logvar)
    lambda_od = check_weight("lambda_od", lambda_od)
    lambda_d = check_weight("lambda_d", lambda_d)
    if dip_type not in DIP_TYPES:
        raise ValueError(
            f"dip_type must be one of {DIP_TYPES} (DIP-VAE-I or -II); got {dip_type!r}."
        )
    return _dip_covariance_penalty(
        z_mean, z_logvar, lambda_od, lambda_d, dip_type == "ii", resolve_backend(backend, z_mean)
    )


def dip_regularizer(
    z_mean: torch.Tensor,
    z_logvar: torch.Tensor,
    *,
    lambda_od: float,
    lambda_d: float,
    dip_type: str = "i",
    backend: str = "auto",
) -> torch.Tensor:
    """DIP-VAE's covariance penalty λ_od·Σ_{i≠j} C_ij² + λ_d·Σ_i (C_ii − 1)², as dlib computes it.

    C is the biased batch covariance of ``z_mean`` (plus the mean of exp(``z_logvar``) on the
    diagonal for DIP-II); see the module docstring for the formula and gradients. The DIP-VAE
    loss is reconstruction + KL + this penalty.

    Parameters
    ----------
    z_mean, z_logvar : Tensor of shape (batch_size, num_latents), float32 or float64
        Encoder means and log-variances (same shape, dtype and device). DIP-I ignores
        ``z_logvar`` (its gradient is zero) but still checks it.
    lambda_od : float
        Weight of the off-diagonal squares (dlib's ``lambda_od``).
    lambda_d : float
        Weight of the diagonal terms: dlib's ``lambda_d_factor * lambda_od``.
    dip_type : {"i", "ii"}, default="i"
        DIP-VAE-I (covariance of the means) or DIP-VAE-II (plus the mean posterior variance).
    backend : {"auto", "triton", "torch"}, default="auto"
        As in :func:`fastdis.kernels.total_correlation`.

    Returns
    -------
    0-d tensor, same dtype and device, ≥ 0 for non-negative weights, differentiable w.r.t.
    ``z_mean`` and ``z_logvar``. dlib's unit-test targets, with both weights 1: C = ones(10, 10)
    gives 90, C = 2·I gives 10.

    Raises
    ------
    ValueError
        If the inputs are not 2-D float tensors of one shape, dtype and device, a weight is not
        a finite number, or ``dip_type`` / ``backend`` is unknown or cannot run here.
    """
    penalty, _, _ = dip_covariance(
        z_mean,
        z_logvar,
        lambda_od=lambda_od,
        lambda_d=lambda_d,
        dip_type=dip_type,
        backend=backend,
    )
    return penalty
