"""dlib's networks in PyTorch: ``conv_encoder``, ``deconv_decoder`` and ``fc_discriminator``.

Shapes, strides and padding are those of ``disentanglement_lib/methods/shared/architectures.py``:
the encoder's four stride-2 ReLU convolutions (32 and 32 filters of 4x4, then 64 and 64 of
2x2), a 256-unit dense layer and two heads of ``num_latent`` units (mean, log-variance); the
decoder mirrors it. TF's ``padding="same"`` with stride 2 on even sizes is 1 pixel per
side for 4x4 kernels and none for 2x2 ones, hence ``padding=1`` / ``padding=0`` below. Weights
are Glorot-uniform and biases zero, as ``tf.layers`` initialises them.

The fully connected layers meet the feature maps in TF's (height, width, channel) order: the
encoder flattens NHWC and the decoder reshapes to NHWC before going back to NCHW. The numbers
do not depend on that order for freshly initialised weights, but it keeps every dense kernel
laid out as dlib's, so a TF checkpoint ports by transposing kernels only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: TF's ``tf.nn.leaky_relu`` slope; PyTorch's default (0.01) would change the discriminator.
LEAKY_RELU_SLOPE = 0.2
#: dlib clips the discriminator's probabilities before taking logs (``make_discriminator``).
PROBABILITY_CLIP = 1e-6


def glorot_init_(module: nn.Module, generator: torch.Generator) -> None:
    """Glorot-uniform weights and zero biases for every conv / linear layer, in module order.

    PyTorch's fan computation for ConvTranspose2d swaps fan_in and fan_out relative to TF's
    ``conv2d_transpose`` kernel, but Glorot's bound only depends on their sum.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight, generator=generator)
            nn.init.zeros_(layer.bias)


class ConvEncoder(nn.Module):
    """``conv_encoder``: (B, C, 64, 64) images -> mean and log-variance, each (B, num_latent)."""

    def __init__(self, num_channels: int, num_latent: int):
        super().__init__()
        self.e1 = nn.Conv2d(num_channels, 32, kernel_size=4, stride=2, padding=1)  # -> 32x32
        self.e2 = nn.Conv2d(32, 32, kernel_size=4, stride=2, padding=1)  # -> 16x16
        self.e3 = nn.Conv2d(32, 64, kernel_size=2, stride=2, padding=0)  # -> 8x8
        self.e4 = nn.Conv2d(64, 64, kernel_size=2, stride=2, padding=0)  # -> 4x4
        self.e5 = nn.Linear(4 * 4 * 64, 256)
        self.means = nn.Linear(256, num_latent)
        self.log_var = nn.Linear(256, num_latent)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.e1(images))  # (B, 32, 32, 32)
        h = F.relu(self.e2(h))  # (B, 32, 16, 16)
        h = F.relu(self.e3(h))  # (B, 64, 8, 8)
        h = F.relu(self.e4(h))  # (B, 64, 4, 4)
        h = h.permute(0, 2, 3, 1).flatten(1)  # (B, 1024) in TF's (h, w, c) order
        h = F.relu(self.e5(h))  # (B, 256)
        return self.means(h), self.log_var(h)  # (B, d), (B, d)


class DeconvDecoder(nn.Module):
    """``deconv_decoder``: (B, num_latent) latents -> (B, C, 64, 64) Bernoulli logits."""

    def __init__(self, num_channels: int, num_latent: int):
        super().__init__()
        self.d1 = nn.Linear(num_latent, 256)
        self.d2 = nn.Linear(256, 1024)
        self.d3 = nn.ConvTranspose2d(64, 64, kernel_size=4, stride=2, padding=1)  # -> 8x8
        self.d4 = nn.ConvTranspose2d(64, 32, kernel_size=4, stride=2, padding=1)  # -> 16x16
        self.d5 = nn.ConvTranspose2d(32, 32, kernel_size=4, stride=2, padding=1)  # -> 32x32
        self.d6 = nn.ConvTranspose2d(32, num_channels, kernel_size=4, stride=2, padding=1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.d1(latents))  # (B, 256)
        h = F.relu(self.d2(h))  # (B, 1024)
        # (B, 64, 4, 4) from TF's NHWC reshape; made contiguous because inductor's CUDA
        # convolution_backward mispredicts the strides a channels-last input propagates.
        h = h.view(-1, 4, 4, 64).permute(0, 3, 1, 2).contiguous()
        h = F.relu(self.d3(h))  # (B, 64, 8, 8)
        h = F.relu(self.d4(h))  # (B, 32, 16, 16)
        h = F.relu(self.d5(h))  # (B, 32, 32, 32)
        return self.d6(h)  # (B, C, 64, 64) logits; no sigmoid, as in dlib


class FCDiscriminator(nn.Module):
    """``fc_discriminator``: six Dense(1000) + LeakyReLU(0.2) layers and 2 logits.

    Class 0 means "a sample of q(z)", class 1 "a latent-permuted sample".
    """

    def __init__(self, num_latent: int, width: int = 1000, depth: int = 6):
        super().__init__()
        self.hidden = nn.ModuleList(
            nn.Linear(num_latent if i == 0 else width, width) for i in range(depth))
        self.logits = nn.Linear(width, 2)

    def forward(self, z: torch.Tensor, *, frozen: bool = False) -> torch.Tensor:
        """Logits (B, 2) of ``z`` (B, d).

        ``frozen=True`` uses detached weights: the gradient then reaches ``z`` (the VAE's TC
        term) but never the discriminator, which dlib gets from each optimiser's ``var_list``.
        """
        h = z
        for layer in self.hidden:
            weight, bias = layer.weight, layer.bias
            if frozen:
                weight, bias = weight.detach(), bias.detach()
            h = F.leaky_relu(F.linear(h, weight, bias), LEAKY_RELU_SLOPE)  # (B, 1000)
        weight, bias = self.logits.weight, self.logits.bias
        if frozen:
            weight, bias = weight.detach(), bias.detach()
        return F.linear(h, weight, bias)  # (B, 2)


class GaussianVAE(nn.Module):
    """Encoder and decoder of the study (plus the discriminator for FactorVAE).

    ``observation_shape`` is dlib's (64, 64, C); the networks take NCHW tensors.
    """

    def __init__(self, observation_shape, num_latent: int, *, discriminator: bool = False):
        super().__init__()
        height, width, channels = (int(s) for s in observation_shape)
        if (height, width) != (64, 64):
            raise ValueError(f"the study's conv encoder needs 64x64 observations; the dataset's "
                             f"observation_shape is {tuple(observation_shape)}.")
        self.observation_shape = (height, width, channels)
        self.num_latent = num_latent
        self.encoder = ConvEncoder(channels, num_latent)
        self.decoder = DeconvDecoder(channels, num_latent)
        self.discriminator = FCDiscriminator(num_latent) if discriminator else None

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Glorot/zero initialisation drawn from ``generator`` (a CPU one, so the weights of a
        seed are the same on every device). Order: encoder, decoder, discriminator."""
        glorot_init_(self.encoder, generator)
        glorot_init_(self.decoder, generator)
        if self.discriminator is not None:
            glorot_init_(self.discriminator, generator)

    def vae_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.decoder.parameters()]
