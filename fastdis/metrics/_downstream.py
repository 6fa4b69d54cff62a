"""Downstream classification tasks: plain, reduced and strong (out-of-distribution).

A representation is useful downstream when a simple classifier predicts each ground-truth factor
from the codes. For every factor :math:`k` a fresh predictor :math:`f_k` is fitted on the training
codes and scored by accuracy

.. math::

    \\mathrm{acc}_k = \\frac{1}{N} \\sum_{n=1}^{N} [f_k(z_n) = y_{nk}]

on the training and on the test set (Locatello et al., "Challenging Common Assumptions in the
Unsupervised Learning of Disentangled Representations", ICML 2019, section 6 / appendix). Three
variants, all as in disentanglement_lib:

* :func:`downstream_task`: the accuracies above, for one training-set size.
* :func:`reduced_downstream_task`: for each factor of interest, first delete the
  ``num_factors_to_remove`` codes most important for it (DCI gradient-boosting importances, one
  code per step), then fit every factor on the reduced codes.
* :func:`strong_downstream_task`: train on data where one other factor was fixed to a single value
  (an intervention) and test where it takes every other value (Locatello et al., "A Sober Look at
  the Unsupervised Learning of Disentangled Representations and their Evaluation", JMLR 2020).

Result keys are the reference's, prefixed by the number of training points ``"{n_train}:"``.
Fits of different factors are independent; ``n_jobs`` runs them on threads (the fastdis
estimators release the GIL in their compiled loops).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._parallel import thread_map
from .._validation import (
    PER_MODEL_SEEDS,
    check_informative_factors,
    check_matrix,
    check_positive_int,
    check_random_state,
    check_train_test,
)
from . import _gbt, _linear
from ._predictors import resolve_predictor

__all__ = [
    "Intervention",
    "downstream_task",
    "intervene",
    "predictive_accuracies",
    "reduced_downstream_task",
    "strong_downstream_task",
]


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def check_n_jobs(n_jobs) -> int:
    """``None`` means 1 (sequential); otherwise a positive integer number of threads."""
    return 1 if n_jobs is None else check_positive_int(n_jobs, name="n_jobs")


def _fit_and_score(model, x_train, y_train, x_test, y_test, *, fitted=False):
    """(train accuracy, test accuracy) of ``model``, fitted here unless ``fitted``."""
    if not fitted:
        model.fit(x_train, y_train)
    train_accuracy = float(np.mean(model.predict(x_train) == y_train))
    test_accuracy = float(np.mean(model.predict(x_test) == y_test))
    return train_accuracy, test_accuracy


def predictive_accuracies(
    codes, factors, test_codes, test_factors, factory, *, factor_indices=None, n_jobs=1,
    random_state=None,
) -> tuple[list[float], list[float]]:
    """Fit ``factory()`` on each factor; return (train accuracies, test accuracies) per factor.

    Array-level twin of the reference's ``_compute_loss`` / ``compute_predictive_accuracy``.
    Inputs must already be validated; ``factory`` is a callable building a fresh estimator,
    called once per factor. fastdis' boosted trees are fitted for all factors in one boosting
    run (same trees, same RNG draws; see :func:`fastdis.metrics._gbt.boosted_together`), and
    fastdis' LogisticRegressionCV fold paths of all factors share one thread pool
    (:func:`fastdis.metrics._linear.fit_cv_together`). ``random_state`` (see
    :func:`downstream_task`) seeds the estimators.
    """
    indices = list(range(factors.shape[1]) if factor_indices is None else factor_indices)
    models = [factory() for _ in indices]
    _seed_models(models, random_state)
    together = _gbt.boosted_together(models, codes, factors[:, indices], test_codes,
                                     test_factors[:, indices])
    if together is not None:
        return together
    fitted = _linear.fit_cv_together(models, codes, factors[:, indices])

    def fit_one(item):
        model, k = item
        return _fit_and_score(model, codes, factors[:, k], test_codes, test_factors[:, k],
                              fitted=fitted)

    results = thread_map(fit_one, zip(models, indices, strict=True), n_jobs)
    return [r[0] for r in results], [r[1] for r in results]


def _seed_models(models, random_state):
    """Set each model's ``random_state``: one seed for all, or a sequence with one per model."""
    if random_state is None:
        return
    seeds = (list(random_state) if isinstance(random_state, PER_MODEL_SEEDS)
             else [random_state] * len(models))
    if len(seeds) != len(models):
        raise ValueError(f"random_state must be one seed or one per factor ({len(models)}); "
                         f"got {len(seeds)}.")
    for model, seed in zip(models, seeds, strict=True):
        if not hasattr(model, "random_state"):
            raise ValueError(f"random_state given, but the predictor "
                             f"{type(model).__name__} has no random_state to seed.")
        model.random_state = seed


# ---------------------------------------------------------------------------------------------
# Downstream task
# ---------------------------------------------------------------------------------------------


def downstream_task(
    codes, factors, test_codes, test_factors, *, predictor="logistic_regression_cv", n_jobs=None,
    random_state=None,
) -> dict:
    """Accuracy of a classifier predicting each factor from the codes, for one training size.

    For every factor a fresh predictor is fitted on ``(codes, factors[:, k])`` and scored on
    the training and test sets (see the module docstring for the formula).

    Parameters
    ----------
    codes : array of shape (n_train, n_codes)
    factors : int array of shape (n_train, n_factors)
    test_codes : array of shape (n_test, n_codes)
    test_factors : int array of shape (n_test, n_factors)
    predictor : {"logistic_regression_cv", "gradient_boosting"} or callable, \
            default="logistic_regression_cv"
        A predictor name (see ``fastdis.metrics._predictors``) or a factory returning a fresh
        scikit-learn-like estimator. The study runs both named predictors.
    n_jobs : int, default=None
        Threads over factors for predictors fitted one by one (custom factories);
        ``None`` means 1. fastdis' LogisticRegressionCV and numba boosted trees ignore it:
        they fit every factor at once on all of numba's threads (see
        :func:`predictive_accuracies`).
    random_state : None, int or sequence of int, default=None
        ``None`` keeps the predictor's own seed (a named ``"gradient_boosting"`` seeds every
        factor's trees with 0). An int seeds every factor's estimator with it, a sequence seeds
        factor k's with ``random_state[k]``, as the batch does
        (:func:`fastdis.metrics.fit_seeds`): then DCI and this task fit the same boosted trees
        at the same training size, and :func:`fastdis.metrics.shared_fits` fits them once.

    Returns
    -------
    dict
        With ``S = n_train``: ``"S:mean_train_accuracy"``, ``"S:mean_test_accuracy"``,
        ``"S:min_train_accuracy"``, ``"S:min_test_accuracy"``, then ``"S:train_accuracy_factor_k"``
        and ``"S:test_accuracy_factor_k"`` for every factor k. Accuracies lie in [0, 1].

    Raises
    ------
    ValueError
        On malformed arrays, a train factor with a single value, or an unknown predictor.

    References
    ----------
    Locatello et al., "Challenging Common Assumptions in the Unsupervised Learning of
    Disentangled Representations", ICML 2019.
    """
    codes, factors, test_codes, test_factors = check_train_test(
        codes, factors, test_codes, test_factors
    )
    check_informative_factors(factors)
    factory = resolve_predictor(predictor)
    train_acc, test_acc = predictive_accuracies(
        codes, factors, test_codes, test_factors, factory, n_jobs=check_n_jobs(n_jobs),
        random_state=random_state,
    )
    size = str(codes.shape[0])
    scores = {
        f"{size}:mean_train_accuracy": float(np.mean(train_acc)),
        f"{size}:mean_test_accuracy": float(np.mean(test_acc)),
        f"{size}:min_train_accuracy": float(np.min(train_acc)),
        f"{size}:min_test_accuracy": float(np.min(test_acc)),
    }
    for k in range(len(train_acc)):
        scores[f"{size}:train_accuracy_factor_{k}"] = train_acc[k]
        scores[f"{size}:test_accuracy_factor_{k}"] = test_acc[k]
    return scores


# ---------------------------------------------------------------------------------------------
# Reduced downstream task
# ---------------------------------------------------------------------------------------------


def _default_importance(gbt_backend):
    def importance(codes, factors, test_codes, test_factors):
        from ._dci import gbt_importance_matrix

        kwargs = {} if gbt_backend is None else {"backend": gbt_backend}
        return gbt_importance_matrix(
            codes, factors, test_codes, test_factors, random_state=0, **kwargs
        )[0]

    return importance


def reduced_downstream_task(
    codes,
    factors,
    test_codes,
    test_factors,
    *,
    num_factors_to_remove=1,
    predictor="gradient_boosting",
    importance=None,
    gbt_backend=None,
    n_jobs=None,
    share_fits=True,
) -> dict:
    """Downstream accuracy after deleting the codes most informative about one factor.

    For each factor of interest :math:`f`: repeat ``num_factors_to_remove`` times "compute the
    importance matrix :math:`R` (n_codes, n_factors) of the remaining codes and delete the code
    :math:`\\arg\\max_d R_{df}` from train and test codes"; then fit a predictor for every factor
    on the reduced codes. A representation that stores each factor in few codes loses the factor
    of interest (low ``reduced_factor`` accuracy) but keeps the others.

    The importance matrix depends only on which codes remain, so it is computed once per distinct
    set of remaining codes (the first removal step's matrix is shared by every factor of
    interest; the reference recomputes it for each). Fits on identical reduced codes are shared
    the same way.

    Parameters
    ----------
    codes, factors, test_codes, test_factors : arrays
        As in :func:`downstream_task`.
    num_factors_to_remove : int, default=1
        Codes deleted per factor of interest (the reference's test configuration uses 1). Must
        be smaller than n_codes.
    predictor : str or callable, default="gradient_boosting"
        Predictor fitted on the reduced codes (name or factory, see :func:`downstream_task`).
    share_fits : bool, default=True
        Compute each importance matrix and each set of fits once per distinct set of remaining
        codes. ``False`` recomputes them factor by factor in the reference's order, which only
        matters for predictors that draw from numpy's global random state (the compat module).
    importance : callable, default=None
        ``importance(codes, factors, test_codes, test_factors) -> (n_codes, n_factors)`` array;
        ``None`` means the DCI gradient-boosting importances
        (``fastdis.metrics._dci.gbt_importance_matrix``), the reference's ``factorwise_dci``.
    gbt_backend : str, default=None
        Backend of the default importance's boosted trees (``None``: its default).
    n_jobs : int, default=None
        Threads over factors for predictors fitted one by one (custom factories);
        ``None`` means 1. fastdis' LogisticRegressionCV and numba boosted trees ignore it:
        they fit every factor at once on all of numba's threads (see
        :func:`predictive_accuracies`).

    Returns
    -------
    dict
        With ``S = n_train``, for each factor of interest f:
        ``"S:reduced_factor_f:mean_train_accuracy_reduced_factor"`` (and ``test``),
        ``"S:reduced_factor_f:mean_train_accuracy_factor_k"`` (and ``test``) for every k,
        ``"S:reduced_factor_f:mean_train_accuracy_non_reduced_factor"`` (and ``test``); then
        ``"S:mean_{train,test}_accuracy_reduced_factor"`` and
        ``"S:mean_{train,test}_accuracy_other_factors"``.

    Raises
    ------
    ValueError
        On malformed arrays, a constant train factor, fewer than 2 factors, or
        ``num_factors_to_remove >= n_codes``.
    """
    codes, factors, test_codes, test_factors = check_train_test(
        codes, factors, test_codes, test_factors
    )
    check_informative_factors(factors)
    n_codes, n_factors = codes.shape[1], factors.shape[1]
    num_factors_to_remove = check_positive_int(
        num_factors_to_remove, name="num_factors_to_remove", minimum=0
    )
    if num_factors_to_remove >= n_codes:
        raise ValueError(
            f"num_factors_to_remove must be smaller than the number of codes ({n_codes}); got "
            f"{num_factors_to_remove}: no code would be left to predict from."
        )
    if n_factors < 2:
        raise ValueError(
            "factors must have at least 2 columns: the reduced task averages over the factors "
            f"other than the reduced one; got {n_factors}."
        )
    importance_fn = _default_importance(gbt_backend) if importance is None else importance
    factory = resolve_predictor(predictor)
    n_jobs = check_n_jobs(n_jobs)

    # Importances and fits depend only on which codes remain; with share_fits they are computed
    # once per distinct set of remaining codes (the reference recomputes them per factor).
    importance_cache: dict[tuple, np.ndarray] = {}
    fit_cache: dict[tuple, tuple[list, list]] = {}
    accuracies_per_factor = []
    for f in range(n_factors):
        kept = tuple(range(n_codes))
        for _ in range(num_factors_to_remove):
            matrix = importance_cache.get(kept) if share_fits else None
            if matrix is None:
                columns = list(kept)
                matrix = check_matrix(
                    importance_fn(codes[:, columns], factors, test_codes[:, columns], test_factors),
                    name="importance's result", shape=(len(columns), n_factors),
                )
                importance_cache[kept] = matrix
            remove = int(np.argmax(matrix[:, f]))
            kept = kept[:remove] + kept[remove + 1 :]
        accuracies = fit_cache.get(kept) if share_fits else None
        if accuracies is None:
            columns = list(kept)
            accuracies = predictive_accuracies(
                np.ascontiguousarray(codes[:, columns]),
                factors,
                np.ascontiguousarray(test_codes[:, columns]),
                test_factors,
                factory,
                n_jobs=n_jobs,
            )
            fit_cache[kept] = accuracies
        accuracies_per_factor.append(accuracies)

    size = str(codes.shape[0])
    scores = {}
    reduced_train, reduced_test, other_train, other_test = [], [], [], []
    for f, (train_acc, test_acc) in enumerate(accuracies_per_factor):
        prefix = f"{size}:reduced_factor_{f}:"
        scores[prefix + "mean_train_accuracy_reduced_factor"] = train_acc[f]
        scores[prefix + "mean_test_accuracy_reduced_factor"] = test_acc[f]
        reduced_train.append(train_acc[f])
        reduced_test.append(test_acc[f])
        local_train, local_test = [], []
        for k in range(n_factors):
            scores[prefix + f"mean_train_accuracy_factor_{k}"] = train_acc[k]
            scores[prefix + f"mean_test_accuracy_factor_{k}"] = test_acc[k]
            if k != f:
                local_train.append(train_acc[k])
                local_test.append(test_acc[k])
        scores[prefix + "mean_train_accuracy_non_reduced_factor"] = float(np.mean(local_train))
        scores[prefix + "mean_test_accuracy_non_reduced_factor"] = float(np.mean(local_test))
        other_train.append(np.mean(local_train))
        other_test.append(np.mean(local_test))
    scores[f"{size}:mean_train_accuracy_reduced_factor"] = float(np.mean(reduced_train))
    scores[f"{size}:mean_test_accuracy_reduced_factor"] = float(np.mean(reduced_test))
    scores[f"{size}:mean_train_accuracy_other_factors"] = float(np.mean(other_train))
    scores[f"{size}:mean_test_accuracy_other_factors"] = float(np.mean(other_test))
    return scores


# ---------------------------------------------------------------------------------------------
# Strong (out-of-distribution) downstream task
# ---------------------------------------------------------------------------------------------


class Intervention(NamedTuple):
    """One intervened train/test set of the strong downstream task (already encoded).

    ``target`` is the factor to predict; in ``factors`` another factor was fixed to a single
    value, and in ``test_factors`` that factor takes only the other values (see :func:`intervene`).
    """

    target: int
    codes: np.ndarray  # (n_train, n_codes)
    factors: np.ndarray  # (n_train, n_factors)
    test_codes: np.ndarray  # (n_test, n_codes)
    test_factors: np.ndarray  # (n_test, n_factors)


def intervene(factors, test_factors, target, factor_sizes, random_state):
    """Fix one non-target factor in the train set and move it to other values in the test set.

    Draws, in this order, from ``random_state``: the factor ``j`` to intervene on, uniformly
    among the factors other than ``target``; its train value ``v`` uniformly in
    ``range(factor_sizes[j])``; and one test value per test point, uniformly among the other
    values. These are the reference's draws (which come from numpy's global random state there:
    pass ``None`` to draw from it too).

    Parameters
    ----------
    factors : int array of shape (n_train, n_factors)
    test_factors : int array of shape (n_test, n_factors)
    target : int
        The factor that will be predicted (never intervened on).
    factor_sizes : sequence of int
        Number of values of each factor.
    random_state : numpy.random.RandomState or int or None
        The draws' source (``None``: numpy's global RandomState, as everywhere in fastdis;
        see :func:`fastdis._validation.check_random_state`).

    Returns
    -------
    (train_factors, test_factors, intervened_factor, train_value)
        New arrays (the inputs are not modified), ``j`` and ``v``.

    Raises
    ------
    ValueError
        If ``target`` is out of range, there is no other factor, or the drawn factor has a
        single value (nothing is left for the test set).
    """
    factors = np.array(factors, copy=True)
    test_factors = np.array(test_factors, copy=True)
    n_factors = factors.shape[1]
    if not 0 <= int(target) < n_factors:
        raise ValueError(f"target must be in [0, {n_factors}); got {target}.")
    if n_factors < 2:
        raise ValueError("intervene needs at least 2 factors: one to predict, one to fix.")
    random_state = check_random_state(random_state)
    candidates = [j for j in range(n_factors) if j != target]
    factor = random_state.choice(candidates)
    values = list(range(int(factor_sizes[factor])))
    if len(values) < 2:
        raise ValueError(
            f"factor {factor} has {len(values)} value(s) (factor_sizes[{factor}]); an "
            "intervention needs at least 2: one for training, the others for testing."
        )
    train_value = random_state.choice(values)
    values.remove(train_value)
    factors[:, factor] = train_value
    test_factors[:, factor] = random_state.choice(values, size=test_factors.shape[0])
    return factors, test_factors, int(factor), int(train_value)


def strong_downstream_task(
    codes,
    factors,
    test_codes,
    test_factors,
    interventions,
    *,
    predictor="gradient_boosting",
    n_jobs=None,
) -> dict:
    """Out-of-distribution downstream accuracy under interventions on a nuisance factor.

    First the plain accuracies of :func:`downstream_task` (every factor, i.i.d. train and test).
    Then, for each :class:`Intervention` (typically ``n_experiment`` per target factor, drawn with
    :func:`intervene` and encoded by the caller), a predictor for the intervention's target is
    fitted on its train set and scored on its test set, in which the intervened factor takes
    values never seen in training. The strong generalisation gap is

    .. math:: \\mathrm{gap} = 1 - \\frac{\\overline{\\mathrm{acc}}_{\\mathrm{strong,test}}}
                                        {\\overline{\\mathrm{acc}}_{\\mathrm{test}}}.

    Sampling and encoding are the caller's step, so the function is deterministic for
    deterministic estimators (the reference draws the interventions from numpy's global random
    state inside the metric).

    Parameters
    ----------
    codes, factors, test_codes, test_factors : arrays
        The i.i.d. train and test sets, as in :func:`downstream_task`.
    interventions : iterable of Intervention or of 5-tuples
        ``(target, codes, factors, test_codes, test_factors)`` for each experiment; at least one.
        With ``n_jobs`` 1 it is consumed lazily, one set fitted before the next is asked for,
        so a generator can sample each set just in time.
    predictor : str or callable, default="gradient_boosting"
    n_jobs : int, default=None
        Threads over fits; ``None`` means 1.

    Returns
    -------
    dict
        With ``S = n_train``: ``"S:mean_train_accuracy"``, ``"S:mean_test_accuracy"``,
        ``"S:mean_strong_train_accuracy"``, ``"S:mean_strong_test_accuracy"``,
        ``"S:strong_generalization_gap"``.

    Raises
    ------
    ValueError
        On malformed arrays, a constant train factor, an empty ``interventions`` or a target
        out of range.

    References
    ----------
    Locatello et al., "A Sober Look at the Unsupervised Learning of Disentangled
    Representations and their Evaluation", JMLR 2020.
    """
    codes, factors, test_codes, test_factors = check_train_test(
        codes, factors, test_codes, test_factors
    )
    check_informative_factors(factors)
    factory = resolve_predictor(predictor)
    n_jobs = check_n_jobs(n_jobs)
    train_acc, test_acc = predictive_accuracies(
        codes, factors, test_codes, test_factors, factory, n_jobs=n_jobs
    )

    def checked(e, item):
        item = Intervention(*item)
        target = item.target
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not (
            0 <= target < factors.shape[1]
        ):
            raise ValueError(
                f"interventions[{e}].target must be an integer in [0, {factors.shape[1]}); got "
                f"{target!r}."
            )
        target = int(target)
        arrays = check_train_test(item.codes, item.factors, item.test_codes, item.test_factors)
        if arrays[0].shape[1] != codes.shape[1]:
            raise ValueError(
                f"interventions[{e}].codes must have {codes.shape[1]} codes (columns) like "
                f"codes; got {arrays[0].shape[1]}."
            )
        if arrays[1].shape[1] <= target:  # check_train_test: test_factors has as many columns
            raise ValueError(
                f"interventions[{e}].factors has {arrays[1].shape[1]} column(s); the target "
                f"factor {target} needs at least {target + 1}."
            )
        check_informative_factors(arrays[1], name=f"interventions[{e}].factors",
                                  columns=[target])
        return (target, *arrays)

    def fit_intervention(item):
        target, x_train, y_train, x_test, y_test = item
        return _fit_and_score(factory(), x_train, y_train[:, target], x_test, y_test[:, target])

    if n_jobs <= 1:
        # One at a time, in order: ``interventions`` may be a generator that samples each set
        # only when asked (the compat layer does, so that draws from numpy's global random
        # state interleave with the predictors' own draws exactly as in the reference).
        strong = [fit_intervention(checked(e, item)) for e, item in enumerate(interventions)]
    else:
        strong = thread_map(
            fit_intervention, [checked(e, item) for e, item in enumerate(interventions)], n_jobs
        )
    if not strong:
        raise ValueError("interventions must hold at least one intervened train/test set.")
    size = str(codes.shape[0])
    scores = {
        f"{size}:mean_train_accuracy": float(np.mean(train_acc)),
        f"{size}:mean_test_accuracy": float(np.mean(test_acc)),
        f"{size}:mean_strong_train_accuracy": float(np.mean([s[0] for s in strong])),
        f"{size}:mean_strong_test_accuracy": float(np.mean([s[1] for s in strong])),
    }
    with np.errstate(divide="ignore", invalid="ignore"):  # test accuracy 0: inf/nan as numpy
        ratio = np.float64(scores[f"{size}:mean_strong_test_accuracy"]) / np.float64(
            scores[f"{size}:mean_test_accuracy"]
        )
    scores[f"{size}:strong_generalization_gap"] = float(1.0 - ratio)
    return scores
