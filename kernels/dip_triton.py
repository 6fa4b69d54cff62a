"""Triton kernels for DIP-VAE's covariance penalty (math: ``dip.py``).

Forward, two launches:

- ``_dip_partial_moments_kernel``: each of P programs reads a contiguous slab of rows and sums
  the shifted means x_b - K, their outer products (x_b - K)(x_b - K)ᵀ and, for DIP-II, exp(v_b),
  into its own slot of a (P, ...) buffer. The shift K is the first row of the batch: it lies
  within the spread of the data, so C = S₂/B − (S₁/B)(S₁/B)ᵀ loses at most about a digit to
  cancellation, whereas dlib's unshifted E[μμᵀ] − E[μ]E[μ]ᵀ loses everything when |E[μ]| ≫ spread.
- ``_dip_penalty_kernel``: one program adds the P partials (fixed order, so results are
  deterministic), forms μ̄, C and P = λ_od Σ_{i≠j} C_ij² + λ_d Σ_i (C_ii − 1)², and stores them.

Backward, one launch: ``_dip_backward_kernel``, one program per block of rows, builds
S = ρG + (Γ + Γᵀ)/2 row by row from the saved C (d² numbers, recomputed by every program: cheaper
than a launch) and writes ∂L/∂μ_b = (2/B)(μ_b − μ̄)S + m/B and, for DIP-II, ∂L/∂v_b = S_ii e^{v_b}/B.

Reads B·d (B·2d for DIP-II) numbers forward and as many backward; eager torch makes about a
dozen launches each way for the same B·d² multiply-adds.

Penalty weights arrive as two float32 halves (hi + lo): Triton passes Python floats as float32,
and adding the halves in the kernel's dtype restores a float64 weight to full precision.
"""

import torch
import triton
import triton.language as tl

from ._common import check_contiguous, on_device

# Elements of one (BLOCK_B, BLOCK_D, BLOCK_D) outer-product tile (see tc_triton).
_TILE_ELEMENTS = 4096
# Most partial-moment programs: enough to fill a GPU, few enough for one program to add them up.
_MAX_PARTIALS = 128


@triton.jit
def _weight(high, low, dtype: tl.constexpr):
    """A penalty weight passed as two float32 halves, added in ``dtype``."""
    return tl.cast(high, dtype) + tl.cast(low, dtype)


@triton.jit
def _dip_partial_moments_kernel(
    # pointers: inputs (B, d) contiguous; outputs (P, BLOCK_D), (P, BLOCK_D, BLOCK_D), (P, BLOCK_D)
    mean_ptr,
    logvar_ptr,
    partial_sum_ptr,
    partial_cross_ptr,
    partial_variance_ptr,
    # sizes
    batch_size,
    num_latents,
    rows_per_program,  # a multiple of BLOCK_B
    # meta-parameters
    INCLUDE_VARIANCE: tl.constexpr,  # DIP-II
    BLOCK_B: tl.constexpr,  # rows per tile
    BLOCK_D: tl.constexpr,  # latents, padded to a power of two
):
    program = tl.program_id(0)
    latents = tl.arange(0, BLOCK_D)
    valid_latent = latents < num_latents
    shift = tl.load(mean_ptr + latents, mask=valid_latent, other=0.0)  # K = first row
    shifted_sum = tl.zeros([BLOCK_D], dtype=shift.dtype)
    cross = tl.zeros([BLOCK_D, BLOCK_D], dtype=shift.dtype)
    variance_sum = tl.zeros([BLOCK_D], dtype=shift.dtype)

    # -- this program's slab of rows, one tile at a time ---------------------------------------
    first_row = program * rows_per_program
    for start in range(first_row, first_row + rows_per_program, BLOCK_B):
        rows = start + tl.arange(0, BLOCK_B)
        mask = (rows < batch_size)[:, None] & valid_latent[None, :]
        offsets = rows[:, None] * num_latents + latents[None, :]
        means = tl.load(mean_ptr + offsets, mask=mask, other=0.0)
        shifted = tl.where(mask, means - shift[None, :], 0.0)
        shifted_sum += tl.sum(shifted, axis=0)
        cross += tl.sum(shifted[:, :, None] * shifted[:, None, :], axis=0)
        if INCLUDE_VARIANCE:
            logvar = tl.load(logvar_ptr + offsets, mask=mask, other=0.0)
            variance_sum += tl.sum(tl.where(mask, tl.exp(logvar), 0.0), axis=0)

    # -- this program's slot -------------------------------------------------------------------
    tl.store(partial_sum_ptr + program * BLOCK_D + latents, shifted_sum)
    square = latents[:, None] * BLOCK_D + latents[None, :]
    tl.store(partial_cross_ptr + program * BLOCK_D * BLOCK_D + square, cross)
    tl.store(partial_variance_ptr + program * BLOCK_D + latents, variance_sum)


@triton.jit
def _dip_penalty_kernel(
    # pointers: inputs (B, d) and the partials; outputs penalty (), covariance (d, d), mean (d,)
    mean_ptr,
    partial_sum_ptr,
    partial_cross_ptr,
    partial_variance_ptr,
    penalty_ptr,
    covariance_ptr,
    batch_mean_ptr,
    # sizes and weights
    batch_size,
    num_latents,
    num_partials,
    lambda_od_hi,
    lambda_od_lo,
    lambda_d_hi,
    lambda_d_lo,
    # meta-parameters
    INCLUDE_VARIANCE: tl.constexpr,
    BLOCK_P: tl.constexpr,  # partials added per step
    BLOCK_D: tl.constexpr,
):
    latents = tl.arange(0, BLOCK_D)
    valid_latent = latents < num_latents
    shift = tl.load(mean_ptr + latents, mask=valid_latent, other=0.0)
    shifted_sum = tl.zeros([BLOCK_D], dtype=shift.dtype)
    cross = tl.zeros([BLOCK_D, BLOCK_D], dtype=shift.dtype)
    variance_sum = tl.zeros([BLOCK_D], dtype=shift.dtype)
    square = latents[:, None] * BLOCK_D + latents[None, :]

    # -- add the partials ----------------------------------------------------------------------
    for start in range(0, num_partials, BLOCK_P):
        slots = start + tl.arange(0, BLOCK_P)
        valid_slot = slots < num_partials
        vector_offsets = slots[:, None] * BLOCK_D + latents[None, :]
        shifted_sum += tl.sum(
            tl.load(partial_sum_ptr + vector_offsets, mask=valid_slot[:, None], other=0.0), axis=0
        )
        variance_sum += tl.sum(
            tl.load(partial_variance_ptr + vector_offsets, mask=valid_slot[:, None], other=0.0),
            axis=0,
        )
        cross += tl.sum(
            tl.load(
                partial_cross_ptr + slots[:, None, None] * BLOCK_D * BLOCK_D + square[None, :, :],
                mask=valid_slot[:, None, None],
                other=0.0,
            ),
            axis=0,
        )

    # -- mean, covariance C = S₂/B − (S₁/B)(S₁/B)ᵀ [+ diag(mean variance)] ----------------------
    mean_shift = shifted_sum / batch_size
    covariance = cross / batch_size - mean_shift[:, None] * mean_shift[None, :]
    is_diagonal = latents[:, None] == latents[None, :]
    if INCLUDE_VARIANCE:
        covariance += tl.where(is_diagonal, (variance_sum / batch_size)[None, :], 0.0)

    # -- penalty over the real d × d block -----------------------------------------------------
    lambda_od = _weight(lambda_od_hi, lambda_od_lo, shift.dtype)
    lambda_d = _weight(lambda_d_hi, lambda_d_lo, shift.dtype)
    valid_square = valid_latent[:, None] & valid_latent[None, :]
    off_diagonal = tl.where(valid_square & ~is_diagonal, covariance, 0.0)
    diagonal_excess = tl.where(valid_square & is_diagonal, covariance - 1.0, 0.0)
    penalty = lambda_od * tl.sum(off_diagonal * off_diagonal) + lambda_d * tl.sum(
        diagonal_excess * diagonal_excess
    )

    tl.store(penalty_ptr, penalty)
    tl.store(
        covariance_ptr + latents[:, None] * num_latents + latents[None, :],
        covariance,
        mask=valid_square,
    )
    tl.store(batch_mean_ptr + latents, shift + mean_shift, mask=valid_latent)


@triton.jit
def _dip_backward_kernel(
    # pointers: upstream ρ (), Γ (d, d), m (d,); inputs (B, d); saved C (d, d), μ̄ (d,);
    # outputs ∂L/∂μ, ∂L/∂v (B, d)
    grad_penalty_ptr,
    grad_covariance_ptr,
    grad_batch_mean_ptr,
    mean_ptr,
    logvar_ptr,
    covariance_ptr,
    batch_mean_ptr,
    grad_mean_ptr,
    grad_logvar_ptr,
    # sizes and weights
    batch_size,
    num_latents,
    lambda_od_hi,
    lambda_od_lo,
    lambda_d_hi,
    lambda_d_lo,
    # meta-parameters
    INCLUDE_VARIANCE: tl.constexpr,
    BLOCK_B: tl.constexpr,  # rows per program
    BLOCK_D: tl.constexpr,
):
    latents = tl.arange(0, BLOCK_D)
    valid_latent = latents < num_latents
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    valid_rows = rows < batch_size
    mask = valid_rows[:, None] & valid_latent[None, :]
    offsets = rows[:, None] * num_latents + latents[None, :]
    grad_penalty = tl.load(grad_penalty_ptr)
    lambda_od = _weight(lambda_od_hi, lambda_od_lo, grad_penalty.dtype)
    lambda_d = _weight(lambda_d_hi, lambda_d_lo, grad_penalty.dtype)

    # -- ∂L/∂μ_b = (2/B) Σ_k (μ_bk − μ̄_k) S[k, :] + m/B, with S = ρ G + (Γ + Γᵀ)/2 ---------------
    # Summed as outer products, one latent k at a time, reading column k of the means and
    # building row k of S from C and Γ (cached loads). The broadcast-multiply-reduce form
    # sum(centered[:, :, None] * S[None, :, :], axis=1) is turned into a tl.dot by Triton's
    # compiler, which runs in TF32 on NVIDIA GPUs: 1e-3 relative error in float32.
    grad_mean = tl.zeros([BLOCK_B, BLOCK_D], dtype=grad_penalty.dtype)
    for k in range(0, num_latents):
        centered_column = tl.load(mean_ptr + rows * num_latents + k, mask=valid_rows, other=0.0)
        centered_column -= tl.load(batch_mean_ptr + k)
        covariance_row = tl.load(
            covariance_ptr + k * num_latents + latents, mask=valid_latent, other=0.0
        )
        penalty_gradient_row = tl.where(
            latents == k, 2.0 * lambda_d * (covariance_row - 1.0), 2.0 * lambda_od * covariance_row
        )
        grad_covariance_row = tl.load(
            grad_covariance_ptr + k * num_latents + latents, mask=valid_latent, other=0.0
        )
        grad_covariance_column = tl.load(
            grad_covariance_ptr + latents * num_latents + k, mask=valid_latent, other=0.0
        )
        weight_row = grad_penalty * penalty_gradient_row + 0.5 * (
            grad_covariance_row + grad_covariance_column
        )
        grad_mean += centered_column[:, None] * weight_row[None, :]
    # 2.0 / batch_size alone would be a float32 scalar; dividing the tensor keeps its dtype.
    grad_mean = grad_mean * 2.0 / batch_size
    grad_batch_mean = tl.load(grad_batch_mean_ptr + latents, mask=valid_latent, other=0.0)
    grad_mean += grad_batch_mean[None, :] / batch_size
    tl.store(grad_mean_ptr + offsets, grad_mean, mask=mask)

    # -- ∂L/∂v_bi = S_ii e^{v_bi} / B (DIP-II) -------------------------------------------------
    if INCLUDE_VARIANCE:
        diagonal = latents * (num_latents + 1)
        covariance_diagonal = tl.load(covariance_ptr + diagonal, mask=valid_latent, other=0.0)
        weight_diagonal = grad_penalty * 2.0 * lambda_d * (covariance_diagonal - 1.0)
        weight_diagonal += tl.load(grad_covariance_ptr + diagonal, mask=valid_latent, other=0.0)
        logvar = tl.load(logvar_ptr + offsets, mask=mask, other=0.0)
        grad_logvar = tl.exp(logvar) * weight_diagonal[None, :] / batch_size
    else:
        grad_logvar = tl.zeros([BLOCK_B, BLOCK_D], dtype=grad_penalty.dtype)
    tl.store(grad_logvar_ptr + offsets, grad_logvar, mask=mask)


def _split_weight(value: float) -> tuple[float, float]:
    """value = hi + lo with hi exactly a float32 (see the module docstring)."""
    high = float(torch.tensor(value, dtype=torch.float32))
    return high, value - high


def _rows_per_tile(num_latents: int) -> tuple[int, int]:
    block_d = max(2, triton.next_power_of_2(num_latents))
    return max(1, _TILE_ELEMENTS // (block_d * block_d)), block_d


def dip_forward_triton(
    z_mean: torch.Tensor,
    z_logvar: torch.Tensor,
    lambda_od: float,
    lambda_d: float,
    include_variance: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(P, C, μ̄) with the two forward kernels: check, allocate, launch."""
    check_contiguous(z_mean=z_mean, z_logvar=z_logvar)
    batch_size, num_latents = z_mean.shape
    block_b, block_d = _rows_per_tile(num_latents)
    num_tiles = triton.cdiv(batch_size, block_b)
    num_partials = min(num_tiles, _MAX_PARTIALS)
    rows_per_program = triton.cdiv(num_tiles, num_partials) * block_b
    num_partials = triton.cdiv(batch_size, rows_per_program)

    partial_sum = z_mean.new_empty(num_partials, block_d)
    partial_cross = z_mean.new_empty(num_partials, block_d, block_d)
    partial_variance = z_mean.new_empty(num_partials, block_d)
    penalty = z_mean.new_empty(())
    covariance = z_mean.new_empty(num_latents, num_latents)
    batch_mean = z_mean.new_empty(num_latents)
    with on_device(z_mean):
        _dip_partial_moments_kernel[(num_partials,)](
            z_mean,
            z_logvar,
            partial_sum,
            partial_cross,
            partial_variance,
            batch_size,
            num_latents,
            rows_per_program,
            INCLUDE_VARIANCE=include_variance,
            BLOCK_B=block_b,
            BLOCK_D=block_d,
        )
        _dip_penalty_kernel[(1,)](
            z_mean,
            partial_sum,
            partial_cross,
            partial_variance,
            penalty,
            covariance,
            batch_mean,
            batch_size,
            num_latents,
            num_partials,
            *_split_weight(lambda_od),
            *_split_weight(lambda_d),
            INCLUDE_VARIANCE=include_variance,
            BLOCK_P=block_b,
            BLOCK_D=block_d,
        )
    return penalty, covariance, batch_mean


def dip_backward_triton(
    grads: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    saved: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    lambda_od: float,
    lambda_d: float,
    include_variance: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """∂L/∂μ and ∂L/∂v with ``_dip_backward_kernel``: check, allocate, launch.

    Arguments as in ``dip.py``'s torch version: ``grads`` = (ρ, Γ, m), ``saved`` = (μ, v, C, μ̄).
    """
    grad_penalty, grad_covariance, grad_batch_mean = grads
    z_mean, z_logvar, covariance, batch_mean = saved
    check_contiguous(
        grad_covariance=grad_covariance,
        grad_batch_mean=grad_batch_mean,
        z_mean=z_mean,
        z_logvar=z_logvar,
        covariance=covariance,
        batch_mean=batch_mean,
    )
    batch_size, num_latents = z_mean.shape
    block_b, block_d = _rows_per_tile(num_latents)
    grad_z_mean = torch.empty_like(z_mean)
    grad_z_logvar = torch.empty_like(z_logvar)
    with on_device(z_mean):
        _dip_backward_kernel[(triton.cdiv(batch_size, block_b),)](
            *grads,
            *saved,
            grad_z_mean,
            grad_z_logvar,
            batch_size,
            num_latents,
            *_split_weight(lambda_od),
            *_split_weight(lambda_d),
            INCLUDE_VARIANCE=include_variance,
            BLOCK_B=block_b,
            BLOCK_D=block_d,
        )
    return grad_z_mean, grad_z_logvar
