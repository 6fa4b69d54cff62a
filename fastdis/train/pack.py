"""A pack: P models of one method trained as one program, each with its own seed and strength.

Every weight of the study's networks is stored once for the whole pack, stacked on a leading
pack axis: ``params["encoder.e1.weight"]`` is (P, 32, C, 4, 4). Model k is slice k of every
tensor. Its slice is initialised from ``torch.Generator(seed_k)`` exactly as a lone model, and
the step evaluates the per-model :class:`~fastdis.train.objectives.Objective` on each slice through
``torch.func.functional_call``, in one of two ways:

- ``"loop"``: one call per model on its slices (``unbind``), so model k runs the very kernels it
  runs alone: bit for bit the same numbers whatever the pack. Fastest on CPU, where a
  model-step is long: at batch 64 on one thread a vmap pack of 8 ran 0.94 model-steps/s against
  2.50 for the loop (bench/RESULTS.md), because oneDNN runs the grouped convolutions that vmap
  makes far off its fast paths.
- ``"vmap"``: ``torch.vmap`` over the pack: one batched matmul or grouped convolution per layer
  for all models, and no per-model work on the host; the design for GPUs. Reductions inside
  grouped kernels may round differently, so a model's numbers agree with its lone run to float32
  rounding (tested), not bit for bit. The fastdis custom ops (TC, DIP) map slice by slice.

One Adam per network group (encoder + decoder; FactorVAE's discriminator) steps over the
stacked tensors with ``foreach`` kernels. Adam is elementwise and the pack shares its step count,
so this is every model's own Adam.
"""

from __future__ import annotations

import torch
from torch.func import functional_call

from .config import TrainConfig
from .models import GaussianVAE
from .objectives import Objective, compile_objective

PACK_STRATEGIES = ("loop", "vmap")
DISCRIMINATOR_PREFIX = "discriminator."


def default_strategy(device) -> str:
    """"vmap" on accelerators (no per-model work on the host), "loop" on the CPU."""
    return "loop" if torch.device(device).type == "cpu" else "vmap"


def pack_key(config: TrainConfig) -> dict:
    """What every model of a pack must share: the config less seed and strengths."""
    from .config import HYPERPARAMETERS

    return {name: value for name, value in config.to_dict().items()
            if name != "seed" and name not in HYPERPARAMETERS}


def check_pack(configs: list[TrainConfig]) -> None:
    """Refuse an empty pack, or models that differ in more than seed and strengths."""
    if not configs:
        raise ValueError("a pack needs at least one model.")
    first = pack_key(configs[0])
    for index, config in enumerate(configs[1:], start=1):
        differing = [name for name, value in pack_key(config).items() if first[name] != value]
        if differing:
            raise ValueError(
                f"models of one pack may differ in seed and regularisation strength only; "
                f"model {index} differs from model 0 in {', '.join(differing)}.")


class Pack:
    """Stacked weights, per-model hyperparameters and the fused optimisers of a pack."""

    def __init__(self, configs: list[TrainConfig], observation_shape, device,
                 strategy: str | None = None):
        check_pack(configs)
        self.configs = configs
        self.device = torch.device(device)
        self.strategy = strategy or default_strategy(device)
        if self.strategy not in PACK_STRATEGIES:
            raise ValueError(f"pack strategy must be one of {PACK_STRATEGIES}; "
                             f"got {self.strategy!r}.")
        first = configs[0]
        self.method = first.method
        factor_vae = first.method == "factor_vae"
        self.generators, models = [], []
        for config in configs:  # each model's weights from its own seed, as a lone run's
            generator = torch.Generator().manual_seed(config.seed)
            model = GaussianVAE(observation_shape, config.num_latent, discriminator=factor_vae)
            model.reset_parameters(generator)
            self.generators.append(generator)
            models.append(model)
        self.objective = Objective(first, models[0].to(self.device))
        self.params = {name: torch.stack([dict(m.named_parameters())[name].detach()
                                          for m in models]).to(self.device).requires_grad_()
                       for name, _ in models[0].named_parameters()}
        self.optimizers = self._make_optimizers(first)
        self.hyperparameters = [config.hyperparameters() for config in configs]
        self.stacked_hyperparameters = {
            name: torch.tensor([hp[name] for hp in self.hyperparameters], dtype=torch.float32,
                               device=self.device)
            for name in self.hyperparameters[0]}
        if self.method == "annealed_vae":  # c_max and threshold (P,) for capacity()
            self.capacity_schedule = tuple(
                torch.tensor([hp[name] for hp in self.hyperparameters], dtype=torch.float64)
                for name in ("c_max", "iteration_threshold"))
        self.terms = self._loop_terms if self.strategy == "loop" else self._vmap_terms
        if first.compile:
            self.terms = compile_objective(self.terms, first.compile_mode)

    def __len__(self) -> int:
        return len(self.configs)

    def _make_optimizers(self, config: TrainConfig) -> list[torch.optim.Optimizer]:
        """dlib's Adam for encoder + decoder, and FactorVAE's own Adam for the discriminator."""
        vae = [p for name, p in self.params.items() if not name.startswith(DISCRIMINATOR_PREFIX)]
        optimizers = [torch.optim.Adam(vae, lr=config.learning_rate, betas=config.adam_betas,
                                       eps=config.adam_epsilon, foreach=True)]
        discriminator = [p for name, p in self.params.items()
                         if name.startswith(DISCRIMINATOR_PREFIX)]
        if discriminator:
            optimizers.append(torch.optim.Adam(
                discriminator, lr=config.discriminator_learning_rate,
                betas=config.discriminator_adam_betas, eps=config.discriminator_adam_epsilon,
                foreach=True))
        return optimizers

    # -- the step ---------------------------------------------------------------------------

    def capacity(self, global_step: int) -> torch.Tensor | None:
        """AnnealedVAE's C (P,) before update ``global_step``: min(c_max, c_max·step/threshold)
        in float64, as a lone run computes it, then float32."""
        if self.method != "annealed_vae":
            return None
        c_max, threshold = self.capacity_schedule
        return torch.minimum(c_max, c_max * global_step / threshold).float().to(self.device)

    def _loop_terms(self, params, images, noise, shuffle_keys, capacity):
        slices = {f"model.{name}": tensor.unbind(0) for name, tensor in params.items()}
        per_model = []
        for index, hyperparameters in enumerate(self.hyperparameters):
            arguments = (images[index], noise[index],
                         None if shuffle_keys is None else shuffle_keys[index],
                         None if capacity is None else capacity[index], hyperparameters)
            weights = {name: parts[index] for name, parts in slices.items()}
            per_model.append(functional_call(self.objective, weights, arguments))
        return {name: torch.stack([terms[name] for terms in per_model])
                for name in per_model[0]}

    def _vmap_terms(self, params, images, noise, shuffle_keys, capacity):
        def one_model(weights, images, noise, shuffle_keys, capacity, hyperparameters):
            weights = {f"model.{name}": tensor for name, tensor in weights.items()}
            return functional_call(self.objective, weights,
                                   (images, noise, shuffle_keys, capacity, hyperparameters))

        in_dims = (0, 0, 0, None if shuffle_keys is None else 0, None if capacity is None else 0,
                   0)
        return torch.vmap(one_model, in_dims=in_dims)(
            params, images, noise, shuffle_keys, capacity, self.stacked_hyperparameters)

    def step(self, images, noise, shuffle_keys=None, capacity=None) -> dict[str, torch.Tensor]:
        """One update of every model; returns its loss terms, each (P,), detached.

        One backward of the pack's summed losses gives each slice its own model's gradient
        (the models share no weight); for FactorVAE the objective routes each network's.
        """
        terms = self.terms(self.params, images, noise, shuffle_keys, capacity)
        total = terms["loss"].sum()
        if "discriminator_loss" in terms:
            total = total + terms["discriminator_loss"].sum()
        total.backward()
        for optimizer in self.optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return {name: value.detach() for name, value in terms.items()}

    # -- per-model state --------------------------------------------------------------------

    def model_state(self, index: int) -> dict[str, torch.Tensor]:
        """Model ``index``'s ``GaussianVAE.state_dict()`` on the CPU."""
        return {name: tensor[index].detach().cpu().clone() for name, tensor in self.params.items()}

    def optimizer_states(self, index: int) -> list[dict]:
        """Model ``index``'s Adam state dicts, as a lone model's Adams would hold them."""
        states = []
        for optimizer in self.optimizers:
            full = optimizer.state_dict()
            states.append({"state": {key: {field: value if field == "step"
                                            else value[index].cpu().clone()
                                            for field, value in slot.items()}
                                     for key, slot in full["state"].items()},
                           "param_groups": full["param_groups"]})
        return states

    def load_models(self, states: list[dict]) -> None:
        """Restore every model from its checkpoint state (``model`` and ``optimizers``)."""
        with torch.no_grad():
            for name, tensor in self.params.items():
                tensor.copy_(torch.stack([state["model"][name] for state in states]))
        for position, optimizer in enumerate(self.optimizers):
            saved = [state["optimizers"][position] for state in states]
            slots = {}
            for key, slot in saved[0]["state"].items():
                slots[key] = {field: value if field == "step" else
                              torch.stack([s["state"][key][field] for s in saved])
                              for field, value in slot.items()}
            optimizer.load_state_dict({"state": slots,
                                       "param_groups": optimizer.state_dict()["param_groups"]})
