"""Networks and objectives of fastdis.train against dlib's definitions, written out plainly here.

The float64 references below restate dlib's formulas (``methods/unsupervised/vae.py``,
``methods/shared/architectures.py``) in the simplest torch, independent of fastdis.train and of
fastdis.kernels: BCE from its log-sum-exp form, the TC estimate from the full [B, B, d] tensor,
the DIP covariance from its definition, TF's "same" padding from TF's formula.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from fastdis.train.config import METHODS, TrainConfig
from fastdis.train.models import FCDiscriminator, GaussianVAE
from fastdis.train.objectives import (
    Objective,
    annealed_capacity,
    gaussian_kl,
    permute_dims,
)

torch.set_num_threads(1)

BATCH = 8
LATENT = 10


def make_objective(method, channels=1, seed=0, **hyperparameters):
    config = TrainConfig(method=method, batch_size=BATCH, **hyperparameters).resolved()
    model = GaussianVAE((64, 64, channels), LATENT, discriminator=method == "factor_vae")
    model.reset_parameters(torch.Generator().manual_seed(seed))
    return config, Objective(config, model)


def step_inputs(channels=1, seed=1):
    generator = torch.Generator().manual_seed(seed)
    images = (torch.rand(BATCH, channels, 64, 64, generator=generator) > 0.7).float()
    noise = torch.randn(BATCH, LATENT, generator=generator)
    shuffle_keys = torch.rand(BATCH, LATENT, generator=generator)
    return images, noise, shuffle_keys


# -- plain float64 references ---------------------------------------------------------------

def reference_bce_sum(logits, targets):
    """sigmoid_cross_entropy_with_logits as TF documents it: max(l, 0) - l*x + log(1 + e^-|l|)."""
    per_value = logits.clamp(min=0) - logits * targets + torch.log1p(torch.exp(-logits.abs()))
    return per_value.flatten(1).sum(1).mean()


def reference_total_correlation(z, mean, logvar):
    """dlib's total_correlation from the full [B(j), B(i), d] tensor of log q(z_j | x_i)."""
    diff = z[:, None, :] - mean[None, :, :]
    log_q = -0.5 * (diff**2 * torch.exp(-logvar[None]) + logvar[None] + math.log(2 * math.pi))
    log_qz = torch.logsumexp(log_q.sum(2), dim=1)
    log_qz_product = torch.logsumexp(log_q, dim=1).sum(1)
    return (log_qz - log_qz_product).mean()


def reference_dip(mean, logvar, lambda_od, lambda_d, dip_type):
    centred = mean - mean.mean(0)
    covariance = centred.T @ centred / len(mean)  # biased, as dlib's E[mu mu^T] - E[mu]E[mu]^T
    if dip_type == "ii":
        covariance = covariance + torch.diag(torch.exp(logvar).mean(0))
    diagonal = torch.diagonal(covariance)
    off_diagonal = covariance - torch.diag(diagonal)
    return lambda_od * (off_diagonal**2).sum() + lambda_d * ((diagonal - 1) ** 2).sum()


def reference_terms(config, model, images, noise, shuffle_keys, capacity):
    """dlib's loss terms in float64; ``model`` is a float64 copy of the weights."""
    hp = config.hyperparameters()
    images, noise = images.double(), noise.double()
    mean, logvar = model.encoder(images)
    z = mean + torch.exp(logvar / 2) * noise
    reconstruction = reference_bce_sum(model.decoder(z), images)
    kl = 0.5 * (mean**2 + torch.exp(logvar) - logvar - 1).sum(1).mean()
    terms = {"reconstruction_loss": reconstruction, "kl_loss": kl}
    if config.method == "beta_vae":
        regularizer = hp["beta"] * kl
    elif config.method == "annealed_vae":
        regularizer = hp["gamma"] * abs(kl - capacity)
    elif config.method == "beta_tc_vae":
        regularizer = kl + (hp["beta"] - 1) * reference_total_correlation(z, mean, logvar)
    elif config.method.startswith("dip_vae"):
        regularizer = kl + reference_dip(mean, logvar, hp["lambda_od"],
                                         hp["lambda_od"] * hp["lambda_d_factor"],
                                         config.method.rsplit("_", 1)[1])
    else:  # factor_vae
        logits = model.discriminator(z)
        regularizer = kl + hp["gamma"] * (logits[:, 0] - logits[:, 1]).mean()
        permuted = torch.stack([z[torch.argsort(shuffle_keys[:, j]), j] for j in range(LATENT)],
                               dim=1)
        p_real = F.softmax(logits, 1).clamp(1e-6, 1 - 1e-6)
        p_permuted = F.softmax(model.discriminator(permuted), 1).clamp(1e-6, 1 - 1e-6)
        terms["discriminator_loss"] = -(0.5 * torch.log(p_real[:, 0]).mean()
                                        + 0.5 * torch.log(p_permuted[:, 1]).mean())
    terms["regularizer"] = regularizer
    terms["loss"] = reconstruction + regularizer
    return terms


STRONG = {  # strengths where every term matters (the study's largest)
    "beta_vae": {"beta": 16.0},
    "annealed_vae": {"c_max": 25.0},
    "factor_vae": {"gamma": 100.0},
    "dip_vae_i": {"lambda_od": 50.0},
    "dip_vae_ii": {"lambda_od": 20.0},
    "beta_tc_vae": {"beta": 10.0},
}


# -- architecture ------------------------------------------------------------------------------

def test_parameter_counts_are_dlibs():
    # conv_encoder / deconv_decoder with C = 1 and 10 latents, counted from dlib's layer list.
    encoder = (4 * 4 * 1 * 32 + 32) + (4 * 4 * 32 * 32 + 32) + (2 * 2 * 32 * 64 + 64) \
        + (2 * 2 * 64 * 64 + 64) + (1024 * 256 + 256) + 2 * (256 * 10 + 10)
    decoder = (10 * 256 + 256) + (256 * 1024 + 1024) + (4 * 4 * 64 * 64 + 64) \
        + (4 * 4 * 64 * 32 + 32) + (4 * 4 * 32 * 32 + 32) + (4 * 4 * 32 * 1 + 1)
    discriminator = (10 * 1000 + 1000) + 5 * (1000 * 1000 + 1000) + (1000 * 2 + 2)
    model = GaussianVAE((64, 64, 1), 10, discriminator=True)
    assert sum(p.numel() for p in model.vae_parameters()) == encoder + decoder
    assert sum(p.numel() for p in model.discriminator.parameters()) == discriminator


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes(channels):
    model = GaussianVAE((64, 64, channels), 7)
    mean, logvar = model.encoder(torch.zeros(2, channels, 64, 64))
    assert mean.shape == logvar.shape == (2, 7)
    assert model.decoder(mean).shape == (2, channels, 64, 64)


def test_rejects_observations_that_are_not_64x64():
    with pytest.raises(ValueError, match="64x64"):
        GaussianVAE((32, 32, 1), 10)


def tf_same_conv(x, weight, stride):
    """TF's padding="same": total padding max((ceil(n/s) - 1) * s + k - n, 0), extra at the end."""
    k, n = weight.shape[-1], x.shape[-1]
    total = max((math.ceil(n / stride) - 1) * stride + k - n, 0)
    before = total // 2
    return F.conv2d(F.pad(x, (before, total - before, before, total - before)), weight,
                    stride=stride)


def test_encoder_is_tf_same_conv_and_hwc_flatten():
    torch.manual_seed(0)
    model = GaussianVAE((64, 64, 1), 10)
    enc = model.encoder
    x = torch.rand(3, 1, 64, 64)
    h = x
    for layer in (enc.e1, enc.e2, enc.e3, enc.e4):
        h = F.relu(tf_same_conv(h, layer.weight, 2) + layer.bias[:, None, None])
    h = F.relu(enc.e5(h.permute(0, 2, 3, 1).reshape(3, -1)))  # TF flattens NHWC
    mean, logvar = enc(x)
    torch.testing.assert_close(mean, enc.means(h))
    torch.testing.assert_close(logvar, enc.log_var(h))


def test_decoder_deconvs_are_the_transpose_of_tf_same_convs():
    # TF's conv2d_transpose is the gradient of conv2d with the same padding.
    torch.manual_seed(0)
    decoder = GaussianVAE((64, 64, 1), 10).decoder
    for layer, size in ((decoder.d3, 4), (decoder.d4, 8), (decoder.d5, 16), (decoder.d6, 32)):
        h = torch.rand(2, layer.in_channels, size, size)
        probe = torch.zeros(2, layer.out_channels, 2 * size, 2 * size, requires_grad=True)
        (vjp,) = torch.autograd.grad(tf_same_conv(probe, layer.weight, 2), probe, h)
        torch.testing.assert_close(layer(h) - layer.bias[:, None, None], vjp)


def test_glorot_uniform_weights_and_zero_biases():
    model = GaussianVAE((64, 64, 1), 10, discriminator=True)
    model.reset_parameters(torch.Generator().manual_seed(0))
    for name, module in model.named_modules():
        if not isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            continue
        w = module.weight
        receptive = w[0, 0].numel() if w.dim() == 4 else 1
        fan_sum = (w.shape[0] + w.shape[1]) * receptive
        bound = math.sqrt(6 / fan_sum)
        assert w.abs().max() <= bound, name
        assert w.abs().max() > 0.9 * bound, name  # uniform on the whole interval
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1), name
        assert torch.count_nonzero(module.bias) == 0, name


def test_same_seed_same_weights_other_seed_other_weights():
    def weights(seed):
        model = GaussianVAE((64, 64, 1), 10)
        model.reset_parameters(torch.Generator().manual_seed(seed))
        return torch.cat([p.flatten() for p in model.parameters()])
    assert torch.equal(weights(3), weights(3))
    assert not torch.equal(weights(3), weights(4))


def test_discriminator_uses_leaky_relu_slope_of_tf():
    disc = FCDiscriminator(2, width=1, depth=1)
    with torch.no_grad():
        disc.hidden[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        disc.hidden[0].bias.zero_()
        disc.logits.weight.copy_(torch.tensor([[1.0], [0.0]]))
        disc.logits.bias.zero_()
    out = disc(torch.tensor([[-1.0, 0.0]]))
    assert out[0, 0].item() == pytest.approx(-0.2)  # tf.nn.leaky_relu's alpha


# -- losses ------------------------------------------------------------------------------------

def test_kl_matches_dlibs_unit_test_values():
    # vae_test.py: mean 1, logvar 0 over 10 latents -> 5;
    # mean 1, logvar 1 -> 0.5 * 10 * (e - 1) ~ 8.59.
    ones = torch.ones(4, 10)
    assert gaussian_kl(ones, torch.zeros(4, 10)).item() == pytest.approx(5.0)
    assert gaussian_kl(ones, ones).item() == pytest.approx(5 * (math.e - 1), rel=1e-6)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_loss_term_matches_the_float64_reference(method):
    config, objective = make_objective(method, **STRONG[method])
    images, noise, shuffle_keys = step_inputs()
    capacity = torch.tensor(7.5)
    terms = objective(images, noise, shuffle_keys, capacity)
    model64 = copy.deepcopy(objective.model).double()
    expected = reference_terms(config, model64, images, noise, shuffle_keys, 7.5)
    for name, value in expected.items():
        # float32 sums of 4096 BCE values per image: ~1e-6 relative; the regularizers' scale
        # (up to 1000 * |KL - C|) makes 1e-4 absolute on small terms too strict, so both.
        torch.testing.assert_close(terms[name].double(), value, rtol=2e-5, atol=1e-3,
                                   msg=f"{method}: {name}")
    assert terms["elbo"].item() == pytest.approx(
        -(expected["reconstruction_loss"] + expected["kl_loss"]).item(), rel=1e-5)


@pytest.mark.parametrize("method", ["beta_tc_vae", "dip_vae_ii", "factor_vae", "annealed_vae"])
def test_gradients_match_the_float64_reference(method):
    config, objective = make_objective(method, **STRONG[method])
    images, noise, shuffle_keys = step_inputs(seed=2)
    terms = objective(images, noise, shuffle_keys, torch.tensor(3.0))
    grads = torch.autograd.grad(terms["loss"], objective.model.vae_parameters())
    model64 = copy.deepcopy(objective.model).double()
    reference = reference_terms(config, model64, images, noise, shuffle_keys, 3.0)
    reference_grads = torch.autograd.grad(reference["loss"], model64.vae_parameters())
    for grad, expected in zip(grads, reference_grads, strict=True):
        scale = expected.abs().max().item()
        torch.testing.assert_close(grad.double(), expected, rtol=1e-3, atol=1e-4 * scale)


def test_factor_vae_gradients_never_cross_between_the_two_networks():
    _, objective = make_objective("factor_vae", gamma=40.0)
    images, noise, shuffle_keys = step_inputs()
    model = objective.model
    terms = objective(images, noise, shuffle_keys)
    terms["loss"].backward(retain_graph=True)
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert all(p.grad is not None for p in model.encoder.parameters())
    model.zero_grad(set_to_none=True)
    terms["discriminator_loss"].backward()
    assert all(p.grad is None for p in model.vae_parameters())
    assert all(p.grad is not None for p in model.discriminator.parameters())


def test_factor_vae_tc_term_still_trains_the_encoder_through_the_discriminator():
    # gamma changes only the TC term, so the encoder's gradient must depend on it.
    images, noise, shuffle_keys = step_inputs()
    grads = []
    for gamma in (0.0, 100.0):
        _, objective = make_objective("factor_vae", gamma=gamma)
        loss = objective(images, noise, shuffle_keys)["loss"]
        grads.append(torch.autograd.grad(loss, objective.model.encoder.means.weight)[0])
    assert not torch.allclose(grads[0], grads[1])


def test_permute_dims_shuffles_each_column_on_its_own():
    z = torch.arange(40.0).reshape(8, 5)
    keys = torch.rand(8, 5, generator=torch.Generator().manual_seed(0))
    permuted = permute_dims(z, keys)
    for j in range(5):  # every column is a permutation of itself
        assert torch.equal(permuted[:, j].sort().values, z[:, j])
    orders = {tuple(((permuted[:, j] - j) / 5).long().tolist()) for j in range(5)}
    assert len(orders) > 1  # columns are not shuffled alike


def test_annealed_capacity_is_linear_then_flat():
    assert annealed_capacity(25.0, 100_000, 0) == 0.0
    assert annealed_capacity(25.0, 100_000, 50_000) == pytest.approx(12.5)
    assert annealed_capacity(25.0, 100_000, 100_000) == 25.0
    assert annealed_capacity(25.0, 100_000, 250_000) == 25.0


@pytest.mark.parametrize("method", list(METHODS))
def test_objective_traces_as_one_graph_with_the_kernels_inside(method):
    # torch._dynamo.explain only traces (no code generation), so this is cheap.
    _, objective = make_objective(method)
    images, noise, shuffle_keys = step_inputs()
    explanation = torch._dynamo.explain(objective)(images, noise, shuffle_keys, torch.tensor(1.0))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    code = explanation.graphs[0].code
    if method == "beta_tc_vae" or method.startswith("dip_vae"):
        # The regularizer stays one opaque fastdis custom op inside the graph.
        assert "torch.ops.fastdis." in code


def test_compiled_objective_matches_eager_forward_and_backward():
    # The suite's one cold torch.compile of the conv model (~20-30 s on one thread); DIP-VAE-II
    # exercises a fastdis.kernels custom op inside the compiled graph, fullgraph=True.
    _, objective = make_objective("dip_vae_ii", lambda_od=20.0)
    images, noise, shuffle_keys = step_inputs()
    params = objective.model.vae_parameters()
    eager = objective(images, noise, shuffle_keys)
    eager_grads = torch.autograd.grad(eager["loss"], params)
    compiled = torch.compile(objective, fullgraph=True)(images, noise, shuffle_keys)
    compiled_grads = torch.autograd.grad(compiled["loss"], params)
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], rtol=1e-5, atol=1e-4)
    for got, expected in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
