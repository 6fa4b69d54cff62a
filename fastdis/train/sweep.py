"""The ``unsupervised_study_v1`` grid of Locatello et al. with dlib's model_num numbering.

dlib builds it (``config/unsupervised_study_v1/sweep.py``) as the product, outermost first, of
7 datasets x 1 architecture x 36 models x 50 seeds, where the 36 models chain 6 methods (in the
order beta_vae, factor_vae, dip_vae_i, dip_vae_ii, beta_tc_vae, annealed_vae) x 6 strengths.
Hence ``model_num = 1800 * dataset + 50 * (6 * method + strength) + seed``; each entry
carries dlib's gin bindings, so the numbering can be checked against dlib's.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import TrainConfig, canonical_method

STUDIES = ("unsupervised_study_v1",)

DATASETS = ("dsprites_full", "color_dsprites", "noisy_dsprites", "scream_dsprites",
            "smallnorb", "cars3d", "shapes3d")
NUM_SEEDS = 50

#: (method, gin bindings of the method, the swept binding, its six values, fixed bindings).
_MODELS = (
    ("beta_vae", "vae.beta", (1.0, 2.0, 4.0, 6.0, 8.0, 16.0), {"model.model": "@vae()"}),
    ("factor_vae", "factor_vae.gamma", (10.0, 20.0, 30.0, 40.0, 50.0, 100.0),
     {"model.model": "@factor_vae()", "discriminator.discriminator_fn": "@fc_discriminator"}),
    ("dip_vae_i", "dip_vae.lambda_od", (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
     {"model.model": "@dip_vae()", "dip_vae.lambda_d_factor": 10.0, "dip_vae.dip_type": "i"}),
    ("dip_vae_ii", "dip_vae.lambda_od", (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
     {"model.model": "@dip_vae()", "dip_vae.lambda_d_factor": 1.0, "dip_vae.dip_type": "ii"}),
    ("beta_tc_vae", "beta_tc_vae.beta", (1.0, 2.0, 4.0, 6.0, 8.0, 10.0),
     {"model.model": "@beta_tc_vae()"}),
    ("annealed_vae", "annealed_vae.c_max", (5.0, 10.0, 25.0, 50.0, 75.0, 100.0),
     {"model.model": "@annealed_vae()", "annealed_vae.iteration_threshold": 100_000,
      "annealed_vae.gamma": 1000}),
)
MODELS_PER_DATASET = sum(len(values) for _, _, values, _ in _MODELS) * NUM_SEEDS  # 1800
NUM_MODELS = len(DATASETS) * MODELS_PER_DATASET  # 12,600

#: gin binding -> TrainConfig field.
_FIELDS = {"vae.beta": "beta", "beta_tc_vae.beta": "beta", "factor_vae.gamma": "gamma",
           "annealed_vae.gamma": "gamma", "annealed_vae.c_max": "c_max",
           "annealed_vae.iteration_threshold": "iteration_threshold",
           "dip_vae.lambda_od": "lambda_od", "dip_vae.lambda_d_factor": "lambda_d_factor"}


def regularization_strengths(method: str) -> tuple[str, tuple[float, ...]]:
    """The :class:`TrainConfig` field the study sweeps for ``method``, and its six values."""
    method = canonical_method(method)
    for name, binding, values, _ in _MODELS:
        if name == method:
            return _FIELDS[binding], values
    raise ValueError(f"{method} is not swept by the study.")  # every canonical method is


@dataclass(frozen=True)
class StudyModel:
    """One entry of the study: its number, dlib's gin bindings, and a TrainConfig for it."""

    model_num: int
    bindings: dict

    @property
    def dataset(self) -> str:
        return self.bindings["dataset.name"]

    @property
    def method(self) -> str:
        return self.bindings["model.name"]

    @property
    def seed(self) -> int:
        return self.bindings["model.random_seed"]

    def hyperparameters(self) -> dict:
        return {_FIELDS[k]: v for k, v in self.bindings.items() if k in _FIELDS}

    def train_config(self, **overrides) -> TrainConfig:
        """The run's TrainConfig (study defaults), with ``overrides`` (steps, data_dir, ...)."""
        return TrainConfig(method=self.method, dataset=self.dataset, seed=self.seed,
                           **self.hyperparameters(), **overrides).resolved()

    def gin_bindings(self) -> list[str]:
        """The bindings as dlib prints them (strings quoted, references and numbers bare)."""
        def escape(value):
            if isinstance(value, str) and not value.startswith("@"):
                return f"'{value}'"
            return str(value)
        return [f"{key} = {escape(value)}" for key, value in self.bindings.items()]


def study_model(model_num: int, study: str = "unsupervised_study_v1") -> StudyModel:
    """Entry ``model_num`` of the study (0 <= model_num < 12,600)."""
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; fastdis knows {', '.join(STUDIES)}.")
    if not isinstance(model_num, int) or not 0 <= model_num < NUM_MODELS:
        raise ValueError(f"model_num must be an integer in [0, {NUM_MODELS}); got {model_num!r}.")
    dataset_index, rest = divmod(model_num, MODELS_PER_DATASET)
    model_index, seed = divmod(rest, NUM_SEEDS)
    method_index, strength_index = divmod(model_index, 6)  # six strengths per method
    method, swept, values, fixed = _MODELS[method_index]
    bindings = {
        "dataset.name": DATASETS[dataset_index],
        "encoder.encoder_fn": "@conv_encoder",
        "decoder.decoder_fn": "@deconv_decoder",
        "model.name": method,
        swept: values[strength_index],
        **fixed,
        "model.random_seed": seed,
    }
    return StudyModel(model_num, bindings)


def study_models(study: str = "unsupervised_study_v1", *, dataset: str | None = None,
                 model_nums=None) -> list[StudyModel]:
    """The study's entries in model_num order, optionally only ``dataset``'s or ``model_nums``.

    Raises
    ------
    ValueError
        Unknown study or dataset, a model_num out of range, or one of another dataset.
    """
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; fastdis knows {', '.join(STUDIES)}.")
    if dataset is not None and dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r} is not in {study}; its datasets are "
                         f"{', '.join(DATASETS)}.")
    if model_nums is None:
        if dataset is None:
            model_nums = range(NUM_MODELS)
        else:
            start = DATASETS.index(dataset) * MODELS_PER_DATASET
            model_nums = range(start, start + MODELS_PER_DATASET)
    models = [study_model(num, study) for num in model_nums]
    if dataset is not None:
        foreign = [m.model_num for m in models if m.dataset != dataset]
        if foreign:
            start = DATASETS.index(dataset) * MODELS_PER_DATASET
            raise ValueError(f"model_num {foreign[0]} is not a {dataset} model; {dataset}'s are "
                             f"{start}-{start + MODELS_PER_DATASET - 1}.")
    return models


def parse_model_nums(text: str) -> list[int]:
    """``"0-5,17"`` -> [0, 1, 2, 3, 4, 5, 17] (sorted, without repeats)."""
    nums = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                low, high = (int(s) for s in part.split("-", 1))
                if low > high:
                    raise ValueError
                nums.update(range(low, high + 1))
            else:
                nums.add(int(part))
        except ValueError:
            raise ValueError(f"cannot read model numbers {text!r} at {part!r}; write them like "
                             f"'0-5,17'.") from None
    return sorted(nums)


def parse_seeds(text: str) -> list[int]:
    """``"0-49"`` or ``"0,3,7"`` -> the seeds, sorted, without repeats."""
    try:
        return parse_model_nums(text)
    except ValueError:
        raise ValueError(f"cannot read seeds {text!r}; write them like '0-49' or '0,3,7'.") \
            from None


def plan_packs(models: list[StudyModel], pack_size: int) -> list[list[StudyModel]]:
    """The sweep's packs: models of one dataset and method, in model_num order, at most
    ``pack_size`` each (a pack trains one method on one data set)."""
    if isinstance(pack_size, bool) or not isinstance(pack_size, int) or pack_size < 1:
        raise ValueError(f"pack size must be a positive integer; got {pack_size!r}.")
    groups: dict[tuple[str, str], list[StudyModel]] = {}
    for model in sorted(models, key=lambda m: m.model_num):
        groups.setdefault((model.dataset, model.method), []).append(model)
    return [group[start:start + pack_size] for group in groups.values()
            for start in range(0, len(group), pack_size)]


def train_study_pack(model_nums: list[int], out: str, overrides: dict, *,
                     progress: bool = False, study: str = "unsupervised_study_v1") -> dict:
    """Train study models as one pack into ``out/<model_num>/``; the unit of work of a sweep,
    with plain arguments so that a Dask worker can run it.

    Returns ``{model_num: None, or its stop record if its loss turned non-finite}``.
    """
    from pathlib import Path

    from .training import train_pack

    configs = [study_model(num, study).train_config(**overrides) for num in model_nums]
    records = train_pack(configs, [Path(out) / str(num) for num in model_nums],
                         progress=progress)
    return dict(zip(model_nums, records, strict=True))


def run_sweep(packs: list[list[StudyModel]], out, overrides: dict, *,
              scheduler: str | None = None, progress: bool = True, report=None) -> dict:
    """Train ``packs`` here, one after another, or on the Dask cluster at ``scheduler``, one
    task per pack (start workers with one thread each, so that a worker trains one pack).

    ``report(text)`` hears of each pack as it finishes. Returns ``{model_num: stop record or
    None}`` for every model.
    """
    def finished(result):
        if report is not None:
            stopped = [num for num, record in result.items() if record is not None]
            report(f"trained models {min(result)}-{max(result)} ({len(result)})"
                   + (f"; stopped non-finite: {stopped}" if stopped else ""))
        return result

    jobs = [[model.model_num for model in pack] for pack in packs]
    results = {}
    if scheduler is None:
        for nums in jobs:
            results.update(finished(train_study_pack(nums, str(out), overrides,
                                                     progress=progress)))
        return results
    from distributed import Client, as_completed

    with Client(scheduler) as client:
        futures = [client.submit(train_study_pack, nums, str(out), overrides, pure=False)
                   for nums in jobs]
        for future in as_completed(futures):
            results.update(finished(future.result()))
    return results
