"""Drop-in for ``disentanglement_lib.evaluation.metrics.irs`` (gin name ``irs``)."""

from __future__ import annotations

import numpy as np

from ...metrics._irs import irs_from_matrix, irs_matrix
from . import utils

DLIB_NAMES = ("compute_irs", "_drop_constant_dims", "scalable_disentanglement_score")


@utils.gin_configurable("irs")
def compute_irs(
    ground_truth_data,
    representation_function,
    random_state,
    artifact_dir=None,
    diff_quantile=0.99,
    num_train=None,
    batch_size=None,
):
    """IRS on ``num_train`` points sampled as the reference does.

    Returns ``{"IRS", "num_active_dims"}``. As in the reference, ``num_active_dims`` is the
    *sum of the values* of the non-constant codes (a reference bug, kept for parity; the
    array-level :func:`fastdis.metrics._irs` returns the count), and a code is dropped only if
    its variance is exactly 0.
    """
    del artifact_dir
    if num_train is None or batch_size is None:
        raise ValueError("compute_irs needs num_train and batch_size (sample config: 10000, 16).")
    mus, ys = utils.generate_batch_factor_code(
        ground_truth_data, representation_function, num_train, random_state, batch_size
    )
    ys_discrete = utils.make_discretizer(ys)
    active_mus = _drop_constant_dims(mus)
    if not active_mus.any():
        irs_score = 0.0
    else:
        irs_score = scalable_disentanglement_score(ys_discrete.T, active_mus.T, diff_quantile)[
            "avg_score"
        ]
    return {"IRS": irs_score, "num_active_dims": np.sum(active_mus)}


def _drop_constant_dims(ys):
    """Rows of ``ys`` with non-zero variance (a view, as the reference)."""
    ys = np.asarray(ys)
    if ys.ndim != 2:
        raise ValueError("Expecting a matrix.")
    return ys[ys.var(axis=1) > 0.0, :]


def scalable_disentanglement_score(gen_factors, latents, diff_quantile=0.99):
    """IRS of latents (n_points, n_latents) given factors (n_points, n_factors).

    Returns the reference's dict: disentanglement_scores, avg_score, parents, IRS_matrix,
    max_deviations.
    """
    gen_factors = np.asarray(gen_factors)
    if gen_factors.dtype.kind == "f":  # discretized factors come back in the input dtype
        _, labels = np.unique(gen_factors, return_inverse=True)
        gen_factors = labels.reshape(gen_factors.shape)
    latents = np.asarray(latents)
    with np.errstate(divide="ignore", invalid="ignore"):  # nan/inf as the reference
        if latents.dtype == np.float64:
            matrix, max_deviations = irs_matrix(
                latents, np.asarray(gen_factors, dtype=np.int64), diff_quantile=diff_quantile
            )
        else:  # the reference's arithmetic in the codes' own precision (e.g. float32)
            matrix, max_deviations = _irs_matrix_in_dtype(latents, gen_factors, diff_quantile)
    return {
        "disentanglement_scores": matrix.max(axis=1),
        "avg_score": irs_from_matrix(matrix, max_deviations),
        "parents": matrix.argmax(axis=1),
        "IRS_matrix": matrix,
        "max_deviations": max_deviations,
    }


def _irs_matrix_in_dtype(latents, gen_factors, diff_quantile):
    """IRS matrix with numpy reductions in the latents' dtype, group by group.

    fastdis' kernel accumulates in float64; for float32 codes the reference's float32 sums
    round differently, which matters for near-constant codes (0/0 versus a tiny deviation).
    """
    max_deviations = np.max(np.abs(latents - latents.mean(axis=0)), axis=0)
    deviations = np.zeros((latents.shape[1], gen_factors.shape[1]))
    for f in range(gen_factors.shape[1]):
        values = np.unique(gen_factors[:, f])
        for value in values:
            group = latents[gen_factors[:, f] == value, :]
            spread = np.abs(group - np.mean(group, axis=0))
            deviations[:, f] += np.percentile(spread, q=diff_quantile * 100, axis=0)
        deviations[:, f] /= values.size
    return 1.0 - deviations / max_deviations[:, np.newaxis], max_deviations
