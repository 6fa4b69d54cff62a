"""fastdis' six objectives against disentanglement_lib 1.5's own TensorFlow training graph.

For one study model of each method (the study's gin bindings, the third regularisation strength),
dlib's ``model_fn`` is built in TRAIN mode with both Adam optimizers; the weights of a fastdis
model are assigned to its variables, and both see the same 64 dSprites-look-alike images, the same
reparameterisation noise and the same FactorVAE permutation. Every loss term and the gradient of
each optimizer's loss w.r.t. each of its variables must agree to float32 precision. AnnealedVAE's
capacity is checked before, during and after its ramp.

Needs the ``tf`` extra (TensorFlow + tf-keras); skipped, with the reason, where TensorFlow is not
installed. tests/tf_reference.py says what it takes to run dlib's TF 1 code on TF 2.
"""

import numpy as np
import pytest
import torch
from tf_reference import (
    ReferenceGraph,
    parse_study_bindings,
    reference_on_tf2,
    tensorflow_installed,
    torch_to_tf_kernel,
)

from fastdis.data import load_dataset
from fastdis.data.render_dsprites import make_dsprites
from fastdis.train.models import GaussianVAE
from fastdis.train.objectives import Objective, annealed_capacity
from fastdis.train.sweep import study_model
from fastdis.train.training import data_random_state, sample_batch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not tensorflow_installed(),
                       reason="TensorFlow is not installed: pip install -e '.[test,tf]'"),
    # dlib's tf.layers calls are deprecated on TF 2, not wrong.
    pytest.mark.filterwarnings(r"ignore:`tf\.layers\.:UserWarning"),
]

#: model_num of the study's third strength, seed 0, for each method (dSprites).
MODEL_NUMS = {"beta_vae": 100, "factor_vae": 400, "dip_vae_i": 700, "dip_vae_ii": 1000,
              "beta_tc_vae": 1300, "annealed_vae": 1600}
#: dlib's terms whose sign fastdis' logs flip: dlib's tensor ``elbo`` is R + KL (it logs -elbo);
#: its ``discriminator_loss`` is the log-likelihood its optimizer maximises.
NEGATED = {"elbo", "discriminator_loss"}
#: Float32 agreement (measured on 2 CPU cores, TensorFlow 2.21, torch 2.13): every loss term to
#: 2e-6 of its size (measured ≤ 7e-7); the gradient of every variable to 5e-4 relative L2
#: (measured ≤ 2e-5, except the biases of the decoder's last two transposed convolutions, whose
#: gradients sum over every output value: 2e-5 and 1.6e-4 there, from TensorFlow's float32
#: bias-gradient sum, 1.6e-4 from float64 where torch's is 2.5e-7).
TERM_TOLERANCE = 2e-6
GRADIENT_TOLERANCE = 5e-4


@pytest.fixture(scope="module")
def reference():
    """TensorFlow, dlib's ``vae`` module and the monkeypatch that holds the stand-ins."""
    with pytest.MonkeyPatch.context() as monkeypatch, reference_on_tf2(monkeypatch) as modules:
        yield (*modules, monkeypatch)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """The first batch a seed-0 run draws from the dSprites look-alike: (64, 64, 64, 1)."""
    folder = tmp_path_factory.mktemp("data")
    make_dsprites(folder, small=True)
    dataset = load_dataset("dsprites_full", data_dir=folder)
    return sample_batch(dataset, 64, data_random_state(0))


def fastdis_model(config, observation_shape):
    """The run's initial weights, with random biases (zero at initialisation) so that their
    layout is checked too."""
    model = GaussianVAE(observation_shape, config.num_latent,
                        discriminator=config.method == "factor_vae")
    generator = torch.Generator().manual_seed(config.seed)
    model.reset_parameters(generator)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model


def parameters_by_scope(model):
    """Each network's parameters in module order, keyed by dlib's variable scope."""
    networks = {"encoder": model.encoder, "decoder": model.decoder,
                "discriminator": model.discriminator}
    return {scope: list(network.named_parameters())
            for scope, network in networks.items() if network is not None}


def reference_graph(reference, model_num, model, images, noise, permutation):
    """dlib's graph for ``model_num`` under the study's gin bindings, with ``model``'s weights."""
    import gin

    tf, vae, monkeypatch = reference
    model_name = parse_study_bindings(gin, model_num)
    graph = ReferenceGraph(tf, vae, model_name, images, noise.numpy(), permutation, monkeypatch)
    graph.assign({scope: [(name, p.detach().numpy()) for name, p in parameters]
                  for scope, parameters in parameters_by_scope(model).items()})
    return graph


def fastdis_step(objective, images, noise, shuffle_keys, capacity):
    """Terms (floats) and gradients as ``train_step`` computes them, before the optimizers step."""
    objective.zero_grad(set_to_none=True)
    terms = objective(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), noise,
                      shuffle_keys, capacity)
    total = terms["loss"]
    if "discriminator_loss" in terms:
        total = total + terms["discriminator_loss"]
    total.backward()
    return {name: value.item() for name, value in terms.items()}


def check_terms(fastdis_terms, reference_terms, what, scales):
    """Each of dlib's terms to ``TERM_TOLERANCE`` of its size, or of ``scales[name]`` where the
    term is a near-cancelling difference of larger numbers."""
    for name, reference_value in reference_terms.items():
        expected = -float(reference_value) if name in NEGATED else float(reference_value)
        error = abs(fastdis_terms[name] - expected)
        scale = max(abs(expected), scales.get(name, 0.0))
        assert error <= TERM_TOLERANCE * scale, (
            f"{what} {name}: fastdis {fastdis_terms[name]!r}, dlib {expected!r}")


def check_gradients(model, reference_gradients, variables, method):
    """The relative L2 error of the gradient of every variable."""
    tf_gradients = dict(zip((v.name for v in variables), reference_gradients, strict=True))
    for scope, parameters in parameters_by_scope(model).items():
        names = [v.name for v in variables if v.name.startswith(scope + "/")]
        for tf_name, (name, parameter) in zip(names, parameters, strict=True):
            ours = torch_to_tf_kernel(parameter.grad.double().numpy())
            theirs = tf_gradients[tf_name].astype(np.float64)
            relative = np.linalg.norm(ours - theirs) / np.linalg.norm(theirs)
            assert relative <= GRADIENT_TOLERANCE, (
                f"{method} gradient of {scope}.{name}: relative L2 error {relative:.3g}")


def annealed_steps(hp, kl_loss):
    """Global steps before, during and after the ramp, and the one where C(step) ≈ KL, where
    |KL − C| cancels."""
    crossing = round(kl_loss * hp["iteration_threshold"] / hp["c_max"])
    return sorted({0, 1, crossing, hp["iteration_threshold"] // 2, hp["iteration_threshold"],
                   2 * hp["iteration_threshold"]})


@pytest.mark.parametrize("method", [m for m in MODEL_NUMS if m != "annealed_vae"])
def test_terms_and_gradients_match_dlib_model_fn(method, reference, images):
    model_num = MODEL_NUMS[method]
    config = study_model(model_num).train_config()
    assert config.method == method
    model = fastdis_model(config, images.shape[1:])
    objective = Objective(config, model)

    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(images.shape[0], config.num_latent, generator=generator)
    shuffle_keys = torch.rand(noise.shape, generator=generator)
    permutation = shuffle_keys.argsort(dim=0).numpy()
    graph = reference_graph(reference, model_num, model, images, noise, permutation)

    fastdis_terms = fastdis_step(objective, images, noise, shuffle_keys, None)
    reference_terms, reference_gradients = graph.run(global_step=0)
    check_terms(fastdis_terms, reference_terms, method, {})
    check_gradients(model, reference_gradients, graph.variables, method)


def test_annealed_capacity_matches_dlib_through_the_ramp(reference, images):
    model_num = MODEL_NUMS["annealed_vae"]
    config = study_model(model_num).train_config()
    hp = config.hyperparameters()
    model = fastdis_model(config, images.shape[1:])
    objective = Objective(config, model)
    noise = torch.randn(images.shape[0], config.num_latent,
                        generator=torch.Generator().manual_seed(2))
    graph = reference_graph(reference, model_num, model, images, noise, permutation=None)

    for global_step in annealed_steps(hp, float(graph.run(0)[0]["kl_loss"])):
        capacity = annealed_capacity(hp["c_max"], hp["iteration_threshold"], global_step)
        fastdis_terms = fastdis_step(objective, images, noise, None, torch.tensor(capacity))
        reference_terms, reference_gradients = graph.run(global_step)
        # γ·|KL − C| is measured against γ·max(KL, C), the size of the numbers it subtracts.
        scales = {"regularizer": hp["gamma"] * max(fastdis_terms["kl_loss"], capacity)}
        check_terms(fastdis_terms, reference_terms, f"annealed_vae at global step {global_step}",
                    scales)
        check_gradients(model, reference_gradients, graph.variables,
                        f"annealed_vae at global step {global_step}")
