"""A synthetic scores table with a known structure, for the report's tests."""

from __future__ import annotations

import numpy as np

#: Method -> (config field of its strength, strengths).
STRENGTHS = {"beta_vae": ("beta", (1.0, 4.0, 16.0)), "factor_vae": ("gamma", (10.0, 20.0, 40.0))}
DOWNSTREAM_SIZES = (10, 100, 1000, 10000)


def synthetic_scores(*, datasets=("d1", "d2"), seeds=(0, 1, 2), representations=("mean",
                                                                                  "sampled")):
    """A long scores table (``fastdis score`` layout) whose scores have a known structure.

    * ``mig:discrete_mig`` depends only on the setting (its rank among the six settings);
    * ``sap_score:SAP_score`` is noise, independent of the setting;
    * ``dci:disentanglement`` is minus the MIG (the opposite ranking);
    * the downstream accuracies grow with the MIG, so they rank exactly as it does;
    * ``unsupervised:gaussian_total_correlation`` falls with the strength on the sampled
      codes and rises on the mean ones.
    """
    import pandas as pd

    from fastdis.batch.engine import RESULT_COLUMNS

    rng = np.random.default_rng(0)
    rows = []
    for dataset in datasets:
        for m, (method, (field, strengths)) in enumerate(STRENGTHS.items()):
            for s, strength in enumerate(strengths):
                quality = 0.1 + 0.15 * (3 * m + s)  # one value per setting
                for seed in seeds:
                    checkpoint = f"{dataset}-{method}-{strength:g}-{seed}"
                    config = {"train_config.method": method, "train_config.dataset": dataset,
                              "train_config.seed": seed, "train_config.beta": np.nan,
                              "train_config.gamma": np.nan, f"train_config.{field}": strength}
                    for representation in representations:
                        tc = 1.0 + s if representation == "mean" else 3.0 - s
                        scores = {("mig", "discrete_mig"): quality,
                                  ("sap_score", "SAP_score"): rng.uniform(),
                                  ("dci", "disentanglement"): -quality,
                                  ("unsupervised", "gaussian_total_correlation"):
                                      tc + 0.01 * seed}
                        for size in DOWNSTREAM_SIZES:
                            scores[("downstream_task_logistic_regression",
                                    f"{size}:mean_test_accuracy")] = quality * np.log10(size)
                        for (metric, key), value in scores.items():
                            rows.append({"checkpoint": checkpoint,
                                         "representation": representation, "metric": metric,
                                         "key": key, "value": value, "error": None,
                                         "warnings": None, "elapsed_time": 1.0,
                                         "encoding_id": "id", **config})
    table = pd.DataFrame(rows)
    return table[[*RESULT_COLUMNS, *[c for c in table.columns if c not in RESULT_COLUMNS]]]
