"""Predictor names and factories: the one place that maps a predictor name to an estimator.

disentanglement_lib configures its downstream predictors through gin
(``predictor.predictor_fn = @gradient_boosting_classifier`` or ``@logistic_regression_cv``) and
receives a *factory*: a callable without arguments that builds a fresh, unfitted estimator.
fastdis keeps that protocol and adds names, so array-level callers can write
``predictor="gradient_boosting"``:

==========================  ====================================================================
name                        estimator built (fastdis implementation, scikit-learn interface)
==========================  ====================================================================
``"gradient_boosting"``     ``GradientBoostingClassifier()`` at scikit-learn's defaults
                            (100 stages, depth 3, learning rate 0.1); option ``backend``.
``"logistic_regression_cv"`` ``LogisticRegressionCV(Cs=10, cv=KFold(n_splits=5))``, no shuffling.
==========================  ====================================================================

:func:`predictor_name` recognises the reference's factories (``utils.gradient_boosting_classifier``,
``utils.logistic_regression_cv``, plain or wrapped by ``gin.configurable``) and the compat layer's
own, so a factory resolved from a gin configuration is swapped for the fast estimator. Any other
callable factory is used as it is.
"""

from __future__ import annotations

import functools

__all__ = ["PREDICTORS", "make_predictor", "predictor_name", "resolve_predictor"]

#: Names understood by :func:`make_predictor`.
PREDICTORS = ("gradient_boosting", "logistic_regression_cv")

# Factory functions that stand for a named predictor: (defining module, function name).
_KNOWN_FACTORIES = {
    ("disentanglement_lib.evaluation.metrics.utils", "gradient_boosting_classifier"):
        "gradient_boosting",
    ("disentanglement_lib.evaluation.metrics.utils", "logistic_regression_cv"):
        "logistic_regression_cv",
    ("fastdis.compat.disentanglement_lib.utils", "gradient_boosting_classifier"):
        "gradient_boosting",
    ("fastdis.compat.disentanglement_lib.utils", "logistic_regression_cv"):
        "logistic_regression_cv",
}


def make_predictor(name: str, **options):
    """Build a fresh, unfitted estimator for the predictor called ``name``.

    Parameters
    ----------
    name : {"gradient_boosting", "logistic_regression_cv"}
    **options
        Passed to the estimator's constructor (e.g. ``backend="lightgbm"`` for gradient boosting).

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`PREDICTORS`.
    """
    if name == "gradient_boosting":
        from ._gbt import GradientBoostingClassifier

        return GradientBoostingClassifier(**options)
    if name == "logistic_regression_cv":
        from ._linear import LogisticRegressionCV

        return LogisticRegressionCV(**options)
    raise ValueError(
        f"predictor must be one of {list(PREDICTORS)} or a callable returning an estimator; "
        f"got {name!r}."
    )


def predictor_name(obj) -> str | None:
    """The predictor name that the factory ``obj`` stands for, or ``None`` if it is not known.

    Recognises disentanglement_lib's ``utils.gradient_boosting_classifier`` and
    ``utils.logistic_regression_cv`` (also when wrapped by ``gin.configurable``, which keeps the
    original in ``__wrapped__``) and the same factories of ``fastdis.compat.disentanglement_lib``.
    """
    seen = 0
    while obj is not None and seen < 8:  # unwrap decorators (gin, functools.wraps)
        key = (getattr(obj, "__module__", None), getattr(obj, "__qualname__", None))
        if key in _KNOWN_FACTORIES:
            return _KNOWN_FACTORIES[key]
        obj = getattr(obj, "__wrapped__", None)
        seen += 1
    return None


def resolve_predictor(predictor, **options):
    """Turn a predictor name or factory into a factory (callable without arguments).

    A name, or a factory recognised by :func:`predictor_name`, gives a factory of the fast
    fastdis estimator (``options`` are passed to it); any other callable is returned unchanged.

    Raises
    ------
    ValueError
        If ``predictor`` is neither a known name nor callable, or if ``options`` are given
        together with a foreign factory (they could not be applied).
    """
    if isinstance(predictor, str):
        if predictor not in PREDICTORS:
            make_predictor(predictor)  # raises the ValueError listing the names
        if predictor == "gradient_boosting":
            # Named (array-level) use is reproducible: seeded tie-breaking. Reference factories
            # (below) keep random_state=None, drawing from numpy's global RNG like the reference.
            options = {"random_state": 0, **options}
        return functools.partial(make_predictor, predictor, **options)
    if not callable(predictor):
        raise ValueError(
            f"predictor must be one of {list(PREDICTORS)} or a callable returning an estimator; "
            f"got {predictor!r}."
        )
    name = predictor_name(predictor)
    if name is not None:
        return functools.partial(make_predictor, name, **options)
    if options:
        raise ValueError(
            f"predictor options {sorted(options)} only apply to the named predictors "
            f"{list(PREDICTORS)}; got the custom factory {predictor!r}."
        )
    return predictor
