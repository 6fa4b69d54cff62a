"""disentanglement_lib 1.5's own training graph, run on TensorFlow 2.x, for tests/test_tf_parity.py.

dlib was written for TensorFlow 1.14; its ``BaseVAE.model_fn`` / ``FactorVAE.model_fn`` build the
study's training graph (TRAIN mode, both Adam optimizers) in graph mode. TensorFlow 2.16+ runs that
code unchanged once a few things it imports are stood in for:

- ``tensorflow.contrib.tpu`` is gone: ``TPUEstimatorSpec`` is replaced by a record of its arguments;
- ``tf.compat.v1.estimator`` is gone: a namespace with ``ModeKeys`` (``model_fn`` compares the mode
  with ``ModeKeys.TRAIN``);
- ``tf.compat.v1.layers`` needs legacy Keras: ``TF_USE_LEGACY_KERAS=1`` with ``tf-keras``, set
  before TensorFlow is imported;
- ``tensorflow_hub`` and ``tensorflow_probability`` are imported at module level but unused by the
  training graph (TF-Hub export; the Bernoulli entropy option the study leaves off): empty modules;
- ``gin.tf``: tests/conftest.py already stands ``gin`` itself in for it, so gin's TF utilities
  (which subclass ``tf.estimator.SessionRunHook``) are never imported; ``AdamOptimizer``, which
  the study's bindings name, is registered as ``gin.tf.external_configurables`` would.

Every stand-in is installed by :func:`reference_on_tf2`, a context manager the test enters; nothing
here happens at import, so the default suite never touches TensorFlow. Randomness is routed, not
re-implemented: while :meth:`ReferenceGraph` builds ``model_fn``, ``tf.random_normal`` (called by
dlib's ``sample_from_latent_distribution``) returns the given noise and ``tf.random_shuffle``
(called once per latent column by ``shuffle_codes``) gathers by the given permutation, so dlib's own
formulas run on fastdis' numbers.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import types
from dataclasses import dataclass

import numpy as np

#: dlib's ``model.model`` configurable name -> its class in ``methods/unsupervised/vae.py``.
MODEL_CLASSES = {"vae": "BetaVAE", "annealed_vae": "AnnealedVAE", "factor_vae": "FactorVAE",
                 "dip_vae": "DIPVAE", "beta_tc_vae": "BetaTCVAE"}


def tensorflow_installed() -> bool:
    """Whether TensorFlow and tf-keras are installed, found without importing them."""
    return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "tf_keras"))


def import_tensorflow():
    """TensorFlow with legacy Keras, which ``tf.compat.v1.layers`` needs on TF >= 2.16.

    The environment variables must be set before the first import. oneDNN's custom operations
    are turned off (TensorFlow warns that they change float32 round-off): TF's own kernels run.
    """
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf_keras  # noqa: F401

    return tf


@dataclass
class TPUEstimatorSpec:
    """Stand-in for ``tensorflow.contrib.tpu.TPUEstimatorSpec``: keeps what ``model_fn`` returns."""

    mode: str
    loss: object = None
    train_op: object = None
    training_hooks: object = None
    eval_metrics: object = None


def _estimator_stand_in():
    class ModeKeys:
        TRAIN, EVAL, PREDICT = "train", "eval", "infer"

    return types.SimpleNamespace(ModeKeys=ModeKeys)


def _stand_in_modules():
    contrib = types.ModuleType("tensorflow.contrib")
    contrib.tpu = types.ModuleType("tensorflow.contrib.tpu")
    contrib.tpu.TPUEstimatorSpec = TPUEstimatorSpec
    return {"tensorflow.contrib": contrib, "tensorflow.contrib.tpu": contrib.tpu,
            "tensorflow_hub": types.ModuleType("tensorflow_hub"),
            "tensorflow_probability": types.ModuleType("tensorflow_probability")}


def _register_adam(gin, tf):
    """``@AdamOptimizer`` as gin's ``gin.tf.external_configurables`` registers it (once)."""
    try:
        gin.external_configurable(tf.compat.v1.train.AdamOptimizer, "AdamOptimizer",
                                  module="tf.train")
    except ValueError:  # registered already: gin keeps its registry for the whole process
        pass


@contextlib.contextmanager
def reference_on_tf2(monkeypatch):
    """Import TensorFlow and install the stand-ins of the module docstring; yields TensorFlow
    and dlib's ``vae`` module."""
    import gin

    tf = import_tensorflow()
    monkeypatch.setattr(tf.compat.v1, "estimator", _estimator_stand_in(), raising=False)
    for name, module in _stand_in_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    _register_adam(gin, tf)
    try:
        # Imported once per process: a second import would register dlib's gin names twice.
        yield tf, importlib.import_module("disentanglement_lib.methods.unsupervised.vae")
    finally:
        gin.clear_config()  # the study bindings parse_study_bindings left


def parse_study_bindings(gin, model_num: int) -> str:
    """The study's gin configuration of ``model_num`` (shared.gin + its sweep bindings), parsed;
    returns the ``model.model`` configurable's name (e.g. ``"dip_vae"``).

    ``model.*`` and ``dataset.*`` belong to dlib's train.py, which the graph does not need; gin
    skips them.
    """
    from disentanglement_lib.config.unsupervised_study_v1 import sweep

    bindings, config_file = sweep.UnsupervisedStudyV1().get_model_config(model_num)
    gin.clear_config()
    gin.parse_config_files_and_bindings([config_file], bindings, finalize_config=False,
                                        skip_unknown=True)
    (model_binding,) = [b for b in bindings if b.startswith("model.model")]
    return model_binding.split("@")[1].rstrip("()'\"")


def torch_to_tf_kernel(weight: np.ndarray) -> np.ndarray:
    """A torch weight in TF's layout: conv OIHW -> HWIO; transposed conv (in, out, kh, kw) ->
    (kh, kw, out, in); dense (out, in) -> (in, out); biases as they are."""
    if weight.ndim == 4:
        return weight.transpose(2, 3, 1, 0)
    if weight.ndim == 2:
        return weight.T
    return weight


def _weighted(product):
    """x of a graph tensor w·x (a Mul of a constant weight and x)."""
    (factor,) = [t for t in product.op.inputs if t.op.type != "Const"]
    return factor


class ReferenceGraph:
    """dlib's ``model_fn`` for one study model, built on fixed images, noise and permutation.

    ``images`` (B, 64, 64, C) NHWC float32; ``noise`` (B, d); ``permutation`` (B, d) int, column i
    the batch order ``shuffle_codes`` gives latent i (FactorVAE only).
    """

    def __init__(self, tf, vae, model_name, images, noise, permutation, monkeypatch):
        v1 = tf.compat.v1
        self.tf, self.graph = tf, tf.Graph()
        with self.graph.as_default():
            self.global_step = v1.train.get_or_create_global_step()
            features = v1.constant(images)
            columns = iter(range(noise.shape[1]))
            with monkeypatch.context() as patch:
                patch.setattr(v1, "random_normal",
                              lambda shape, mean, stddev: v1.constant(noise))
                patch.setattr(v1, "random_shuffle", lambda column: v1.gather(
                    column, v1.constant(permutation[:, next(columns)])))
                model = getattr(vae, MODEL_CLASSES[model_name])()
                self.spec = model.model_fn(features, None, v1.estimator.ModeKeys.TRAIN, {})
            self.variables = v1.trainable_variables()
            self.terms = self._terms(model_name)
            self.gradients = self._gradients(model_name)
            self.session = v1.Session(graph=self.graph)
            self.session.run(v1.global_variables_initializer())

    def _terms(self, model_name):
        """dlib's named tensors; the unnamed ones through the ops that add them up."""
        graph = self.graph
        if model_name == "factor_vae":
            reconstruction, kl = graph.get_operation_by_name("VAE_loss").inputs
            gamma_tc = graph.get_operation_by_name("factor_VAE_loss").inputs[1]
            return {"loss": self.spec.loss, "reconstruction_loss": reconstruction,
                    "kl_loss": kl, "tc_estimate": _weighted(gamma_tc),
                    "discriminator_loss": graph.get_tensor_by_name("discriminator_loss:0")}
        reconstruction, regularizer = graph.get_operation_by_name("loss").inputs
        terms = {"loss": self.spec.loss, "reconstruction_loss": reconstruction,
                 "regularizer": regularizer, "kl_loss": graph.get_tensor_by_name("kl_loss:0"),
                 "elbo": graph.get_tensor_by_name("elbo:0")}
        if model_name == "dip_vae":
            terms["dip_penalty"] = regularizer.op.inputs[1]  # kl_loss + cov_dip_regularizer
        if model_name == "beta_tc_vae":
            terms["total_correlation"] = _weighted(regularizer.op.inputs[0])  # (β-1)·TC + KL
        return terms

    def _gradients(self, model_name):
        """Each loss' gradients w.r.t. the variables its optimizer updates (dlib's var_lists)."""
        v1 = self.tf.compat.v1
        vae_variables = [v for v in self.variables if "discriminator" not in v.name]
        gradients = dict(zip(vae_variables, v1.gradients(self.spec.loss, vae_variables),
                             strict=True))
        if model_name == "factor_vae":
            discriminator_variables = [v for v in self.variables if "discriminator" in v.name]
            maximised = self.terms["discriminator_loss"]
            gradients.update(zip(discriminator_variables,
                                 v1.gradients(-maximised, discriminator_variables), strict=True))
        return [gradients[v] for v in self.variables]

    def assign(self, torch_parameters):
        """Load torch weights: ``torch_parameters`` maps each network's scope ("encoder",
        "decoder", "discriminator") to its (name, array) pairs in module order, which is the
        order in which dlib's layers create their variables."""
        with self.graph.as_default():
            for scope, parameters in torch_parameters.items():
                variables = [v for v in self.variables if v.name.startswith(scope + "/")]
                for variable, (name, weight) in zip(variables, parameters, strict=True):
                    value = torch_to_tf_kernel(weight)
                    if tuple(variable.shape) != value.shape:
                        raise AssertionError(f"{scope}.{name} {value.shape} does not fit "
                                             f"{variable.name} {tuple(variable.shape)}")
                    variable.load(value, self.session)

    def run(self, global_step: int = 0):
        """(terms, gradients) as numpy arrays at dlib's ``global_step``."""
        with self.graph.as_default():
            self.global_step.load(global_step, self.session)
        return self.session.run((self.terms, self.gradients))
