"""Triton kernels for β-TCVAE's total-correlation estimate (math: ``tc.py``).

Three kernels, each streaming over the batch in tiles so that no B×B×d tensor exists:

- ``_tc_forward_kernel``: one program per block of BLOCK_J samples j. It keeps, per sample, a
  running max and running sum for the joint log-sum-exp over posteriors i (BLOCK_J numbers) and
  for the d per-latent ones (BLOCK_J × d numbers), and folds in BLOCK_I posteriors at a time::

      for each tile of posteriors i:
          a[j, i, l] = -½ ((z[j,l] - μ[i,l])² · exp(-v[i,l]) + v[i,l])       # (BLOCK_J, BLOCK_I, D)
          s[j, i]    = Σ_l a[j, i, l]
          m_new      = max(m, max_i s);  acc = acc · exp(m - m_new) + Σ_i exp(s - m_new)   # joint
          (same update per latent l with a[j, i, l] in place of s)                       # marginals
      J[j] = m + log(acc);  M[j, l] = m_l + log(acc_l)

  Reads B·d (z) + (B/BLOCK_J)·2·B·d (μ, v) numbers and writes B·(d + 1); the naive torch version
  writes and re-reads B²d numbers several times.

- ``_tc_grad_samples_kernel`` (∂L/∂z, reduction over i) and ``_tc_grad_posteriors_kernel``
  (∂L/∂μ and ∂L/∂v, reduction over j) recompute a[j, i, l] tile by tile from the saved J and M:
  g[j, i, l] = γ_j exp(s[j, i] - J[j]) + η_jl exp(a[j, i, l] - M[j, l]) (``_gradient_tile``, shared
  by both). Two kernels, each owning its output rows, keep the sums deterministic (no atomics) at
  the price of computing a twice.

Latents are padded to a power of two (BLOCK_D): padded lanes contribute a = 0 to the joint sum and
are never stored. Masked posteriors or samples get a large finite negative log-density instead of
-inf, so exp() gives exactly 0 and the interpreter never evaluates -inf - (-inf).
"""

import torch
import triton
import triton.language as tl

from ._common import check_contiguous, on_device

# Finite stand-in for log(0) on masked lanes (see the module docstring).
# (A constexpr: compiled Triton kernels may only read globals declared as constexpr.)
MASKED_LOG_DENSITY = tl.constexpr(-1.0e30)

# Elements of one (BLOCK_J, BLOCK_I, BLOCK_D) tile: 4,096 keeps every live temporary of the
# tile at 32 registers per thread with 4 warps, which compiles without spills.
_TILE_ELEMENTS = 4096


def _tile_sizes(batch_size: int, num_latents: int) -> tuple[int, int, int]:
    """(rows per program, rows per streamed tile, padded latents).

    Few rows per program give enough programs to fill a GPU at the study's batch sizes (B = 1,024
    with 8 rows each is 128 programs); the streamed tile takes the rest of the element budget.
    """
    block_d = max(2, triton.next_power_of_2(num_latents))
    if batch_size >= 4096:
        block_out = 16
    elif batch_size >= 512:
        block_out = 8
    else:
        block_out = 4
    block_out = min(block_out, max(1, _TILE_ELEMENTS // (block_d * 16)))
    block_stream = max(1, _TILE_ELEMENTS // (block_out * block_d))
    block_stream = min(block_stream, max(16, triton.next_power_of_2(batch_size)))
    return block_out, block_stream, block_d


@triton.jit
def _row_tile(rows, batch_size, num_latents, latents, valid_latent):
    """Validity (rows,), flat offsets and load mask (rows, BLOCK_D) of rows of a (B, d) array."""
    valid = rows < batch_size
    offsets = rows[:, None] * num_latents + latents[None, :]
    mask = valid[:, None] & valid_latent[None, :]
    return valid, offsets, mask


@triton.jit
def _load_posteriors(mean_ptr, logvar_ptr, rows_i, batch_size, num_latents, latents, valid_latent):
    """μ and v of posteriors ``rows_i`` (masked lanes read 0), with their validity and offsets."""
    valid_i, offsets_i, mask_i = _row_tile(rows_i, batch_size, num_latents, latents, valid_latent)
    mean = tl.load(mean_ptr + offsets_i, mask=mask_i, other=0.0)
    logvar = tl.load(logvar_ptr + offsets_i, mask=mask_i, other=0.0)
    return mean, logvar, valid_i, offsets_i, mask_i


@triton.jit
def _load_samples(per_sample, rows_j, batch_size, num_latents, latents, valid_latent):
    """z, the saved J and M and the upstream γ and η of samples ``rows_j`` (masked lanes read 0).

    ``per_sample`` holds the pointers to these five arrays, in that order. Returns the loaded
    tensors as one tuple ``(z, J, M, γ, η)``, then the rows' validity, offsets and mask.
    """
    z_ptr, log_qz_ptr, log_qz_marginal_ptr, grad_log_qz_ptr, grad_log_qz_marginal_ptr = per_sample
    valid_j, offsets_j, mask_j = _row_tile(rows_j, batch_size, num_latents, latents, valid_latent)
    z = tl.load(z_ptr + offsets_j, mask=mask_j, other=0.0)
    log_qz = tl.load(log_qz_ptr + rows_j, mask=valid_j, other=0.0)
    log_qz_marginal = tl.load(log_qz_marginal_ptr + offsets_j, mask=mask_j, other=0.0)
    grad_log_qz = tl.load(grad_log_qz_ptr + rows_j, mask=valid_j, other=0.0)
    grad_log_qz_marginal = tl.load(grad_log_qz_marginal_ptr + offsets_j, mask=mask_j, other=0.0)
    samples = (z, log_qz, log_qz_marginal, grad_log_qz, grad_log_qz_marginal)
    return samples, valid_j, offsets_j, mask_j


@triton.jit
def _log_density_tile(z, mean, logvar, valid_latent):
    """(z - μ), exp(-v) and a = -½((z - μ)² exp(-v) + v) for a (samples, posteriors, latents) tile.

    ``z`` is (BLOCK_J, BLOCK_D), ``mean``/``logvar`` are (BLOCK_I, BLOCK_D); padded latents get
    a = 0 so that sums over latents ignore them.
    """
    precision = tl.exp(-logvar)[None, :, :]
    diff = z[:, None, :] - mean[None, :, :]
    scaled_square = diff * diff * precision
    log_density = -0.5 * (scaled_square + logvar[None, :, :])
    log_density = tl.where(valid_latent[None, None, :], log_density, 0.0)
    return diff, precision, scaled_square, log_density


@triton.jit
def _gradient_tile(samples, mean, logvar, valid_streamed, valid_latent):
    """g[j, i, l] (module docstring) for a (samples, posteriors, latents) tile, recomputed from
    ``samples = (z, J, M, γ, η)`` of the samples j and μ, v of the posteriors i.

    ``valid_streamed`` marks the real rows of the streamed side, shaped to broadcast against
    (BLOCK_J, BLOCK_I): ``valid_i[None, :]`` or ``valid_j[:, None]``. The owned side's masked
    rows need no mask, as they are never stored. Returns ``(g (z - μ) e^{-v}, g, (z - μ)² e^{-v})``:
    both gradient kernels sum the first (over i for ∂L/∂z, over j for ∂L/∂μ); ∂L/∂v sums
    g ((z - μ)² e^{-v} - 1) over j.
    """
    z, log_qz, log_qz_marginal, grad_log_qz, grad_log_qz_marginal = samples
    diff, precision, scaled_square, log_density = _log_density_tile(z, mean, logvar, valid_latent)

    # Masked streamed rows must weigh exactly 0: a masked sample's loaded J = 0 could make exp()
    # overflow, and a masked posterior would add to the softmax over i.
    joint = tl.where(valid_streamed, tl.sum(log_density, axis=2), MASKED_LOG_DENSITY)
    joint_weight = tl.exp(joint - log_qz[:, None])  # softmax over i, (BLOCK_J, BLOCK_I)
    marginal = tl.where(valid_streamed[:, :, None], log_density, MASKED_LOG_DENSITY)
    marginal_weight = tl.exp(marginal - log_qz_marginal[:, None, :])
    weight = (
        grad_log_qz[:, None, None] * joint_weight[:, :, None]
        + grad_log_qz_marginal[:, None, :] * marginal_weight
    )
    return weight * diff * precision, weight, scaled_square


@triton.jit
def _tc_forward_kernel(
    # pointers: inputs (B, d), outputs J (B,) and M (B, d); all contiguous
    z_ptr,
    mean_ptr,
    logvar_ptr,
    log_qz_ptr,
    log_qz_marginal_ptr,
    # sizes
    batch_size,
    num_latents,
    # meta-parameters
    BLOCK_J: tl.constexpr,  # samples j owned by this program
    BLOCK_I: tl.constexpr,  # posteriors i per streamed tile
    BLOCK_D: tl.constexpr,  # latents, padded to a power of two
):
    # -- the samples this program owns ---------------------------------------------------------
    rows_j = tl.program_id(0) * BLOCK_J + tl.arange(0, BLOCK_J)
    latents = tl.arange(0, BLOCK_D)
    valid_latent = latents < num_latents
    valid_j, offsets_j, mask_j = _row_tile(rows_j, batch_size, num_latents, latents, valid_latent)
    z = tl.load(z_ptr + offsets_j, mask=mask_j, other=0.0)

    # -- running max and sum of the two online log-sum-exps ------------------------------------
    joint_max = tl.full([BLOCK_J], MASKED_LOG_DENSITY, dtype=z.dtype)
    joint_sum = tl.zeros([BLOCK_J], dtype=z.dtype)
    marginal_max = tl.full([BLOCK_J, BLOCK_D], MASKED_LOG_DENSITY, dtype=z.dtype)
    marginal_sum = tl.zeros([BLOCK_J, BLOCK_D], dtype=z.dtype)

    # -- stream over the posteriors ------------------------------------------------------------
    for start_i in range(0, batch_size, BLOCK_I):
        rows_i = start_i + tl.arange(0, BLOCK_I)
        mean, logvar, valid_i, _, _ = _load_posteriors(
            mean_ptr, logvar_ptr, rows_i, batch_size, num_latents, latents, valid_latent
        )
        _, _, _, log_density = _log_density_tile(z, mean, logvar, valid_latent)

        joint = tl.where(valid_i[None, :], tl.sum(log_density, axis=2), MASKED_LOG_DENSITY)
        new_joint_max = tl.maximum(joint_max, tl.max(joint, axis=1))
        joint_sum = joint_sum * tl.exp(joint_max - new_joint_max) + tl.sum(
            tl.exp(joint - new_joint_max[:, None]), axis=1
        )
        joint_max = new_joint_max

        marginal = tl.where(valid_i[None, :, None], log_density, MASKED_LOG_DENSITY)
        new_marginal_max = tl.maximum(marginal_max, tl.max(marginal, axis=1))
        marginal_sum = marginal_sum * tl.exp(marginal_max - new_marginal_max) + tl.sum(
            tl.exp(marginal - new_marginal_max[:, None, :]), axis=1
        )
        marginal_max = new_marginal_max

    # -- J = log q(z_j), M = log q(z_jl), up to constants --------------------------------------
    tl.store(log_qz_ptr + rows_j, joint_max + tl.log(joint_sum), mask=valid_j)
    tl.store(log_qz_marginal_ptr + offsets_j, marginal_max + tl.log(marginal_sum), mask=mask_j)


# The two gradient kernels mirror each other: each owns a block of rows on one side (samples j or
# posteriors i), streams over the other side and sums _gradient_tile's terms over it.


@triton.jit
def _tc_grad_samples_kernel(
    # pointers: inputs (B, d), saved J (B,) and M (B, d), upstream γ (B,) and η (B, d), output
    # ∂L/∂z (B, d); all contiguous
    z_ptr,
    mean_ptr,
    logvar_ptr,
    log_qz_ptr,
    log_qz_marginal_ptr,
    grad_log_qz_ptr,
    grad_log_qz_marginal_ptr,
    grad_z_ptr,
    # sizes
    batch_size,
    num_latents,
    # meta-parameters
    BLOCK_J: tl.constexpr,  # samples j owned by this program
    BLOCK_I: tl.constexpr,  # posteriors i per streamed tile
    BLOCK_D: tl.constexpr,  # latents, padded to a power of two
):
    # -- the samples this program owns, with their saved reductions and upstream gradients -----
    rows_j = tl.program_id(0) * BLOCK_J + tl.arange(0, BLOCK_J)
    latents = tl.arange(0, BLOCK_D)
    valid_latent = latents < num_latents
    per_sample = (z_ptr, log_qz_ptr, log_qz_marginal_ptr, grad_log_qz_ptr, grad_log_qz_marginal_ptr)
    samples, valid_j, offsets_j, mask_j = _load_samples(
        per_sample, rows_j, batch_size, num_latents, latents, valid_latent
    )
    grad_z = tl.zeros([BLOCK_J, BLOCK_D], dtype=samples[0].dtype)

    # -- stream over the posteriors: ∂L/∂z_jl = -Σ_i g_jil (z_jl - μ_il) exp(-v_il) ------------
    for start_i in range(0, batch_size, BLOCK_I):
        rows_i = start_i + tl.arange(0, BLOCK_I)
        mean, logvar, valid_i, _, _ = _load_posteriors(
            mean_ptr, logvar_ptr, rows_i, batch_size, num_latents, latents, valid_latent
        )
        weighted_slope, _, _ = _gradient_tile(samples, mean, logvar, valid_i[None, :], valid_latent)
        grad_z -= tl.sum(weighted_slope, axis=1)

    tl.store(grad_z_ptr + offsets_j, grad_z, mask=mask_j)


@triton.jit
def _tc_grad_posteriors_kernel(
    # pointers: as _tc_grad_samples_kernel, outputs ∂L/∂μ and ∂L/∂v (B, d)
    z_ptr,
    mean_ptr,
    logvar_ptr,
    log_qz_ptr,
    log_qz_marginal_ptr,
    grad_log_qz_ptr,
    grad_log_qz_marginal_ptr,
    grad_mean_ptr,
    grad_logvar_ptr,
    # sizes
    batch_size,
    num_latents,
    # meta-parameters
    BLOCK_I: tl.constexpr,  # posteriors i owned by this program
    BLOCK_J: tl.constexpr,  # samples j per streamed tile
    BLOCK_D: tl.constexpr,  # latents, padded to a power of two
):
    # -- the posteriors this program owns ------------------------------------------------------
    rows_i = tl.program_id(0) * BLOCK_I + tl.arange(0, BLOCK_I)
    latents = tl.arange(0, BLOCK_D)
    valid_latent = latents < num_latents
    mean, logvar, valid_i, offsets_i, mask_i = _load_posteriors(
        mean_ptr, logvar_ptr, rows_i, batch_size, num_latents, latents, valid_latent
    )
    per_sample = (z_ptr, log_qz_ptr, log_qz_marginal_ptr, grad_log_qz_ptr, grad_log_qz_marginal_ptr)
    grad_mean = tl.zeros([BLOCK_I, BLOCK_D], dtype=mean.dtype)
    grad_logvar = tl.zeros([BLOCK_I, BLOCK_D], dtype=mean.dtype)

    # -- stream over the samples: ∂L/∂μ_il = Σ_j g_jil (z - μ) e^{-v},
    #                            ∂L/∂v_il = ½ Σ_j g_jil ((z - μ)² e^{-v} - 1)
    for start_j in range(0, batch_size, BLOCK_J):
        rows_j = start_j + tl.arange(0, BLOCK_J)
        samples, valid_j, _, _ = _load_samples(
            per_sample, rows_j, batch_size, num_latents, latents, valid_latent
        )
        weighted_slope, weight, scaled_square = _gradient_tile(
            samples, mean, logvar, valid_j[:, None], valid_latent
        )
        grad_mean += tl.sum(weighted_slope, axis=0)
        grad_logvar += tl.sum(weight * (scaled_square - 1.0), axis=0)

    tl.store(grad_mean_ptr + offsets_i, grad_mean, mask=mask_i)
    tl.store(grad_logvar_ptr + offsets_i, 0.5 * grad_logvar, mask=mask_i)


def tc_log_densities_triton(
    z: torch.Tensor, z_mean: torch.Tensor, z_logvar: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """J (B,) and M (B, d) with ``_tc_forward_kernel``: check, allocate, launch."""
    check_contiguous(z=z, z_mean=z_mean, z_logvar=z_logvar)
    batch_size, num_latents = z.shape
    log_qz = z.new_empty(batch_size)
    log_qz_marginal = torch.empty_like(z)
    block_j, block_i, block_d = _tile_sizes(batch_size, num_latents)
    grid = (triton.cdiv(batch_size, block_j),)
    with on_device(z):
        _tc_forward_kernel[grid](
            z,
            z_mean,
            z_logvar,
            log_qz,
            log_qz_marginal,
            batch_size,
            num_latents,
            BLOCK_J=block_j,
            BLOCK_I=block_i,
            BLOCK_D=block_d,
        )
    return log_qz, log_qz_marginal


def tc_log_densities_backward_triton(
    grads: tuple[torch.Tensor, torch.Tensor], saved: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """∂L/∂z, ∂L/∂μ, ∂L/∂v with the two gradient kernels: check, allocate, launch.

    Arguments as in ``tc.py``'s torch version: ``grads`` = (γ, η), ``saved`` = (z, μ, v, J, M).
    """
    grad_log_qz, grad_log_qz_marginal = grads
    z, z_mean, z_logvar, log_qz, log_qz_marginal = saved
    check_contiguous(
        grad_log_qz=grad_log_qz,
        grad_log_qz_marginal=grad_log_qz_marginal,
        z=z,
        z_mean=z_mean,
        z_logvar=z_logvar,
        log_qz=log_qz,
        log_qz_marginal=log_qz_marginal,
    )
    batch_size, num_latents = z.shape
    grad_z = torch.empty_like(z)
    grad_mean = torch.empty_like(z_mean)
    grad_logvar = torch.empty_like(z_logvar)
    block_out, block_stream, block_d = _tile_sizes(batch_size, num_latents)
    grid = (triton.cdiv(batch_size, block_out),)
    with on_device(z):
        _tc_grad_samples_kernel[grid](
            *saved,
            *grads,
            grad_z,
            batch_size,
            num_latents,
            BLOCK_J=block_out,
            BLOCK_I=block_stream,
            BLOCK_D=block_d,
        )
        _tc_grad_posteriors_kernel[grid](
            *saved,
            *grads,
            grad_mean,
            grad_logvar,
            batch_size,
            num_latents,
            BLOCK_I=block_out,
            BLOCK_J=block_stream,
            BLOCK_D=block_d,
        )
    return grad_z, grad_mean, grad_logvar
