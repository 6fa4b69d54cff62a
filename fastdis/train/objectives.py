"""The six objectives of disentanglement_lib, one function each, and the module torch.compile sees.

Every objective is ``R + regularizer`` (dlib's ``methods/unsupervised/vae.py``), with

- ``R``: Bernoulli reconstruction loss, BCE-with-logits summed over the 64*64*C values of each
  image and averaged over the batch;
- ``KL``: the analytic KL of N(mu, sigma^2) from N(0, I), summed over latents, batch-averaged.

The total-correlation and DIP regularizers come from :mod:`fastdis.kernels` (torch custom ops
that trace through torch.compile). All randomness (the reparameterisation noise, FactorVAE's
shuffle keys) is an input: the training loop draws it from its own generator, so eager and
compiled runs see the same numbers and a resumed run continues the same stream.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import kernels
from .config import TrainConfig
from .models import PROBABILITY_CLIP, GaussianVAE


def bernoulli_reconstruction_loss(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """dlib's ``bernoulli_loss`` (activation "logits"): per-image sum of BCE, batch mean."""
    per_value = F.binary_cross_entropy_with_logits(logits, images, reduction="none")
    return per_value.flatten(1).sum(dim=1).mean()  # (B, C*64*64) -> (B,) -> ()


def gaussian_kl(z_mean: torch.Tensor, z_logvar: torch.Tensor) -> torch.Tensor:
    """dlib's ``compute_gaussian_kl``: the batch mean of :func:`fastdis.kernels.gaussian_kl`."""
    return kernels.gaussian_kl(z_mean, z_logvar).mean()  # (B,) -> ()


def annealed_capacity(c_max: float, iteration_threshold: int, global_step: int) -> float:
    """AnnealedVAE's capacity C(step) = min(c_max, c_max * step / threshold); dlib reads the
    global step before the update it is computing, so the first step uses C = 0."""
    return min(c_max, c_max * global_step / iteration_threshold)


def dip_penalty(z_mean: torch.Tensor, z_logvar: torch.Tensor, lambda_od, lambda_d,
                dip_type: str) -> torch.Tensor:
    """DIP-VAE's penalty λ_od·Σ_{i≠j} C_ij² + λ_d·Σ_i (C_ii − 1)² of the batch covariance C.

    Number weights go into :func:`fastdis.kernels.dip_regularizer`. Tensor weights (each
    model's own inside a ``torch.vmap``ped pack, which the op's float arguments cannot take)
    weigh the op's covariance here instead.
    """
    if not isinstance(lambda_od, torch.Tensor):
        return kernels.dip_regularizer(z_mean, z_logvar, lambda_od=lambda_od,
                                       lambda_d=lambda_d, dip_type=dip_type)
    _, covariance, _ = kernels.dip_covariance(z_mean, z_logvar, lambda_od=0.0, lambda_d=0.0,
                                              dip_type=dip_type)
    return kernels.covariance_penalty(covariance, lambda_od, lambda_d)


def permute_dims(z: torch.Tensor, shuffle_keys: torch.Tensor) -> torch.Tensor:
    """FactorVAE's permute-dims (dlib's ``shuffle_codes``): each latent column of ``z`` (B, d)
    shuffled across the batch on its own. ``shuffle_keys`` (B, d) are i.i.d. keys (uniforms,
    or distinct integers) whose per-column argsort is the permutation, so the draw is the
    caller's."""
    return z.gather(0, shuffle_keys.argsort(dim=0))


class Objective(nn.Module):
    """The model plus its method's loss: ``forward`` returns the terms of one training step.

    This is what ``torch.compile`` compiles (forward and, through AOTAutograd, backward); the
    optimiser steps stay outside it. For FactorVAE the discriminator loss is returned as well,
    built so that one ``backward()`` of ``loss + discriminator_loss`` gives each network only
    its own gradient (see :meth:`FCDiscriminator.forward`'s ``frozen``).
    """

    def __init__(self, config: TrainConfig, model: GaussianVAE):
        super().__init__()
        self.method = config.method
        self.hyperparameters = config.hyperparameters()
        self.model = model

    def forward(self, images: torch.Tensor, noise: torch.Tensor,
                shuffle_keys: torch.Tensor | None = None,
                capacity: torch.Tensor | None = None,
                hyperparameters: dict | None = None) -> dict[str, torch.Tensor]:
        """Loss terms for ``images`` (B, C, 64, 64) in [0, 1].

        ``noise`` (B, d) is the reparameterisation's standard normal draw; ``shuffle_keys``
        (B, d) sort keys (uniforms, or unique integers) for FactorVAE; ``capacity`` ()
        AnnealedVAE's C(step). ``hyperparameters`` replaces the config's: a pack passes each
        model's own (numbers, or 0-d tensors under ``torch.vmap``). The terms are what
        ``log.jsonl`` records. Two signs against dlib's tensors of the same names: ``elbo``
        is −(R + KL), the value dlib logs (its tensor ``elbo`` is R + KL), and
        ``discriminator_loss`` is the loss minimised here, the negative of dlib's tensor, the
        log-likelihood its discriminator optimizer maximises.
        """
        hp = self.hyperparameters if hyperparameters is None else hyperparameters
        z_mean, z_logvar = self.model.encoder(images)  # (B, d), (B, d)
        z = z_mean + torch.exp(z_logvar / 2) * noise  # (B, d) reparameterised sample
        logits = self.model.decoder(z)  # (B, C, 64, 64)
        reconstruction_loss = bernoulli_reconstruction_loss(logits, images)
        kl_loss = gaussian_kl(z_mean, z_logvar)
        terms = {}
        if self.method == "beta_vae":
            regularizer = hp["beta"] * kl_loss
        elif self.method == "annealed_vae":
            regularizer = hp["gamma"] * (kl_loss - capacity).abs()
        elif self.method == "beta_tc_vae":
            tc = kernels.total_correlation(z, z_mean, z_logvar)
            regularizer = kl_loss + (hp["beta"] - 1.0) * tc
            terms["total_correlation"] = tc
        elif self.method in ("dip_vae_i", "dip_vae_ii"):
            dip = dip_penalty(z_mean, z_logvar, hp["lambda_od"],
                              hp["lambda_d_factor"] * hp["lambda_od"],
                              "i" if self.method == "dip_vae_i" else "ii")
            regularizer = kl_loss + dip
            terms["dip_penalty"] = dip
        elif self.method == "factor_vae":
            discriminator = self.model.discriminator
            # TC estimate mean(logit_0 - logit_1): its gradient reaches the encoder only.
            logits_z = discriminator(z, frozen=True)  # (B, 2)
            tc = (logits_z[:, 0] - logits_z[:, 1]).mean()
            regularizer = kl_loss + hp["gamma"] * tc
            # The discriminator's loss sees detached latents: its gradient reaches D only.
            z_detached = z.detach()
            z_permuted = permute_dims(z_detached, shuffle_keys)  # (B, d), same batch as dlib
            probs_z = F.softmax(discriminator(z_detached), dim=1)
            probs_z = probs_z.clamp(PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
            probs_permuted = F.softmax(discriminator(z_permuted), dim=1)
            probs_permuted = probs_permuted.clamp(PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
            # dlib maximises 0.5 E log p0(z) + 0.5 E log p1(perm z); we minimise its negative.
            terms["discriminator_loss"] = -(0.5 * probs_z[:, 0].log().mean()
                                            + 0.5 * probs_permuted[:, 1].log().mean())
            terms["tc_estimate"] = tc
        else:  # resolved configs never get here
            raise ValueError(f"unknown method {self.method!r}")
        return {
            "loss": reconstruction_loss + regularizer,
            "reconstruction_loss": reconstruction_loss,
            "kl_loss": kl_loss,
            "regularizer": regularizer,
            "elbo": -(reconstruction_loss + kl_loss),  # dlib logs the negative of R + KL
            **terms,
        }


def compile_objective(objective, mode: str | None = None, backend: str = "inductor"):
    """``torch.compile`` of ``objective`` (an :class:`Objective`, or a pack's step terms built
    on one) with every shape and hyperparameter specialised.

    ``dynamic=False`` matters when one process compiles several objectives (``fastdis sweep
    --compile``, ``bench/bench_training.py``): they share ``Objective.forward``'s code, so Dynamo
    recompiles it for each, and by default ("automatic dynamic") a float that differs from the
    previous compile, such as DIP-VAE-II's ``lambda_d_factor`` after DIP-VAE-I's, becomes a
    symbolic input. The DIP kernel's weight check (``math.isfinite``) cannot take a symbolic
    float, so DIP-VAE-II's step broke into three graphs instead of one, with more launches and
    nothing fused across the breaks: the H200 bench, which compiles DIP-VAE-II right after
    DIP-VAE-I, measured it slower than eager (0.74x) with a 60 s compile. Specialised, each
    (method, hyperparameters) gets one whole graph with the weights folded in as constants;
    seeds and batches of one setting reuse it. The cost: each distinct setting compiles once,
    and past Dynamo's ``recompile_limit`` (8 per process) further settings run eager. ``mode``
    is torch.compile's; ``backend="eager"`` traces without generating code (tests).
    """
    return torch.compile(objective, mode=mode, dynamic=False, backend=backend)

