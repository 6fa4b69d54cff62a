"""InfoMEC: information-based modularity (InfoM), explicitness (InfoE) and compactness (InfoC).

Hsu, Dorrell, Whittington, Wu and Finn, "Disentanglement via Latent Quantization", NeurIPS 2023.
From the normalised mutual information :math:`\\tilde I_{jk} = I(z_j; v_k) / H(v_k)` between
code :math:`z_j` and factor :math:`v_k` (K factors), over the :math:`J` *active* codes
:math:`\\mathcal{A}` (those whose range exceeds 1/20 of the largest code range),

.. math::

    \\mathrm{InfoM} = \\left(\\frac{1}{J} \\sum_{j \\in \\mathcal{A}}
        \\frac{\\max_k \\tilde I_{jk}}{\\sum_k \\tilde I_{jk}} - \\frac{1}{K}\\right)
        \\Big/ \\left(1 - \\frac{1}{K}\\right),
    \\qquad
    \\mathrm{InfoC} = \\left(\\frac{1}{K} \\sum_k
        \\frac{\\max_{j \\in \\mathcal{A}} \\tilde I_{jk}}{\\sum_{j \\in \\mathcal{A}}
        \\tilde I_{jk}} - \\frac{1}{J}\\right) \\Big/ \\left(1 - \\frac{1}{J}\\right)

(each ratio is 1 when the information sits in one place and 1/K or 1/J when it is spread
evenly, so both scores run from 0 to 1), and the explicitness is the normalised predictive
information of a linear probe,

.. math::

    \\mathrm{InfoE} = \\frac{1}{K} \\sum_k \\frac{H_0(v_k) - \\mathrm{CE}_k}{H_0(v_k)}

with :math:`\\mathrm{CE}_k` the log-loss (nats) of an unpenalised, class-balanced multinomial
logistic regression from the standardised codes to :math:`v_k`, and :math:`H_0(v_k)` that of the
same regression without features. Under class balancing that null model predicts every class
with probability :math:`1/C_k`, so :math:`H_0(v_k) = \\log C_k` exactly (C_k training classes).

Differences from the authors' implementation (``disentangle/metrics/infomec.py`` in
kylehkhsu/latent_quantization), and why:

* the mutual information of continuous codes uses the study's 20-bin histograms, as MIG does,
  instead of scikit-learn's k-nearest-neighbour estimator (``mutual_info_classif``, which adds
  random jitter to the codes): the scores then share MIG's matrix and do not depend on a seed;
* a code that carries no information about any factor, or a factor about which no active code
  carries any, has a 0/0 ratio (the authors' code returns nan for the whole score); it is left
  out of its mean instead;
* the probe is fitted on the training set and its log-loss is reported on the training set
  (``infoe_train``, the authors' setting and the headline) and on the held-out test set
  (``infoe_test``, which can be negative when the probe overfits).
"""

from __future__ import annotations

import warnings

import numpy as np

from .._parallel import default_workers, thread_map
from .._validation import check_fraction, check_matrix, check_min_columns, check_train_test
from ._mi_gaps import binned_information

__all__ = ["infomec", "infom_infoc", "active_codes", "normalized_predictive_information"]


def active_codes(codes: np.ndarray, range_fraction: float = 0.05) -> np.ndarray:
    """Boolean mask of the codes whose range (max - min) exceeds ``range_fraction`` times the
    largest range (the authors' pruning of inactive latents)."""
    ranges = np.ptp(codes, axis=0)
    return ranges > np.max(ranges) * range_fraction


def _chance_normalised_concentration(matrix: np.ndarray, axis: int) -> float:
    """Mean over the other axis of max/sum along ``axis``, rescaled so that chance (information
    spread evenly over the n entries along ``axis``) gives 0 and one entry gives 1.

    Lines whose sum is 0 carry no information and have no ratio; they are left out.
    """
    n = matrix.shape[axis]
    totals = matrix.sum(axis=axis)
    informative = totals > 0
    if not informative.any():
        raise ValueError("no code carries information about any factor (the mutual-information "
                         "matrix is 0): InfoM and InfoC are undefined.")
    ratios = matrix.max(axis=axis)[informative] / totals[informative]
    return float((np.mean(ratios) - 1.0 / n) / (1.0 - 1.0 / n))


def infom_infoc(normalized_mi: np.ndarray) -> tuple[float, float]:
    """(InfoM, InfoC) of a normalised mutual-information matrix (n_active_codes, n_factors).

    Both need at least two rows and two columns (the chance level 1/n must be below 1).
    """
    normalized_mi = check_matrix(normalized_mi, name="normalized_mi", nonnegative=True)
    for axis, what in ((0, "active codes (rows)"), (1, "factors (columns)")):
        if normalized_mi.shape[axis] < 2:
            raise ValueError(f"normalized_mi has {normalized_mi.shape[axis]} {what}; at least "
                             "2 are needed for a chance level 1/n below 1.")
    return (_chance_normalised_concentration(normalized_mi, axis=1),
            _chance_normalised_concentration(normalized_mi, axis=0))


def _probe_log_losses(codes, factor, test_codes, test_factor, name):
    """Train and test log-loss (nats) of the balanced, unpenalised multinomial probe, and C_k."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    classes = np.unique(factor)
    unseen = np.setdiff1d(np.unique(test_factor), classes)
    if unseen.size:
        raise ValueError(
            f"{name} holds value(s) {unseen[:5].tolist()} never seen in training: the probe has "
            "no probability for them, so the test log-loss is undefined. Sample a larger "
            "training set."
        )
    # C=inf: no penalty, as the authors' penalty=None (scikit-learn >= 1.8 deprecates penalty)
    model = LogisticRegression(C=np.inf, class_weight="balanced", max_iter=100, tol=1e-4)
    model.fit(codes, factor)
    losses = [log_loss(y, model.predict_proba(x), labels=classes)
              for x, y in ((codes, factor), (test_codes, test_factor))]
    return losses[0], losses[1], classes.size


def normalized_predictive_information(codes, factors, test_codes, test_factors):
    """Per-factor InfoE on the training and the test set: arrays of shape (n_factors,).

    ``codes`` and ``test_codes`` are standardised with the training statistics first, by
    scikit-learn's ``StandardScaler`` as the authors do: it leaves a (near-)constant code
    centred but unscaled, where dividing by a rounding-noise deviation would amplify the noise.
    """
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(codes)
    train_std, test_std = scaler.transform(codes), scaler.transform(test_codes)
    # The filter is set here, around all the threads: catch_warnings inside a thread would
    # restore the process-wide filters while other threads still fit.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs stops at max_iter=100, as in the authors' code
        results = thread_map(  # one independent, single-threaded fit per factor
            lambda k: _probe_log_losses(train_std, factors[:, k], test_std, test_factors[:, k],
                                        f"test_factors[:, {k}]"),
            range(factors.shape[1]),
            default_workers(),
        )
    train_loss, test_loss, n_classes = np.array(results).T
    null_loss = np.log(n_classes)
    return (null_loss - train_loss) / null_loss, (null_loss - test_loss) / null_loss


def infomec(codes, factors, test_codes, test_factors, *, num_bins: int = 20,
            active_range_fraction: float = 0.05, mutual_info=None) -> dict:
    """InfoM, InfoC (training set) and InfoE (probe fitted on training, scored on both sets).

    See the module docstring for the formulas and the differences from the authors' code.

    Parameters
    ----------
    codes : array of shape (n_samples, n_codes)
        Training representation (e.g. posterior means).
    factors : int array of shape (n_samples, n_factors)
        Training factors; at least two, each taking at least two values.
    test_codes : array of shape (n_test, n_codes)
    test_factors : int array of shape (n_test, n_factors)
        Held-out set for ``infoe_test``; its factor values must occur in training.
    num_bins : int, default=20
        Histogram bins per code for the mutual information (the study's MIG discretisation).
    active_range_fraction : float, default=0.05
        A code is active when its training range exceeds this fraction of the largest range
        (the authors' 1/20).
    mutual_info : array of shape (n_codes, n_factors), optional
        A precomputed mutual-information matrix (nats) of the binned training codes.

    Returns
    -------
    dict
        ``"infom"``, ``"infoc"`` in [0, 1]; ``"infoe_train"`` in [0, 1], ``"infoe_test"`` <= 1;
        ``"num_active_codes"``. Higher is better for all scores.

    Raises
    ------
    ValueError
        Bad shapes or values, fewer than two factors, a factor with a single value, fewer than
        two active codes (InfoC's chance level 1/J would be 1), or test factor values unseen in
        training.

    References
    ----------
    K. Hsu, W. Dorrell, J. C. R. Whittington, J. Wu and C. Finn, "Disentanglement via Latent
    Quantization", NeurIPS 2023.
    """
    codes, factors, test_codes, test_factors = check_train_test(
        codes, factors, test_codes, test_factors)
    codes, factors, _, mutual_info, factor_entropy = binned_information(
        codes, factors, num_bins=num_bins, mutual_info=mutual_info, min_factors=2,
        why="InfoM's chance level 1/n_factors must be below 1")
    active = active_codes(codes, check_fraction(active_range_fraction,
                                                name="active_range_fraction"))
    check_min_columns(codes[:, active], 2, name="the active codes of codes",
                      why="InfoC's chance level 1/n_active_codes must be below 1")
    infom, infoc = infom_infoc(mutual_info[active] / factor_entropy[np.newaxis, :])
    infoe_train, infoe_test = normalized_predictive_information(
        codes, factors, test_codes, test_factors)
    return {"infom": infom, "infoc": infoc, "infoe_train": float(np.mean(infoe_train)),
            "infoe_test": float(np.mean(infoe_test)), "num_active_codes": int(active.sum())}
