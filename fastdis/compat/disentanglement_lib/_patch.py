"""Make an installed disentanglement_lib compute its metrics with fastdis.

Each compat module lists in ``DLIB_NAMES`` the functions it replaces in the reference module of
the same name. For a plain function the module attribute is replaced. For a gin configurable
(``@gin.configurable("mig", ...)``) the *wrapped* function inside gin's wrapper is swapped, so
every path that reaches it — the module attribute, a gin reference such as ``@mig`` in a config
file, ``evaluate.evaluate``, and parameter injection from gin bindings
(``mig.num_train = 10000``, ``discretizer.discretizer_fn = @histogram_discretizer``) — now runs
fastdis while gin keeps supplying the bound parameters.
"""

from __future__ import annotations

import importlib
import inspect
import sys

_REFERENCE_PACKAGE = "disentanglement_lib.evaluation"

#: compat module -> reference module (relative to disentanglement_lib.evaluation).
MODULES = {
    "utils": "metrics.utils",
    "beta_vae": "metrics.beta_vae",
    "factor_vae": "metrics.factor_vae",
    "mig": "metrics.mig",
    "modularity_explicitness": "metrics.modularity_explicitness",
    "dci": "metrics.dci",
    "sap_score": "metrics.sap_score",
    "irs": "metrics.irs",
    "unsupervised_metrics": "metrics.unsupervised_metrics",
    "downstream_task": "metrics.downstream_task",
    "reduced_downstream_task": "metrics.reduced_downstream_task",
    "strong_downstream_task": "metrics.strong_downstream_task",
    "fairness": "metrics.fairness",
    "unified_scores": "metrics.unified_scores",
    "udr": "udr.metrics.udr",
}

_originals: list[tuple[object, str, object]] = []  # (owner, attribute or cell, original)


def _ensure_gin_without_tensorflow():
    """The reference imports ``gin.tf`` (TensorFlow); its metrics only need gin itself."""
    if "gin.tf" in sys.modules:
        return
    try:
        import gin.tf  # noqa: F401
    except Exception:  # TensorFlow missing or broken: gin's core is all the metrics use
        import gin

        sys.modules["gin.tf"] = gin
        gin.tf = gin


def _gin_cells(wrapper):
    """Closure cells of a gin wrapper that hold the wrapped function."""
    original = getattr(wrapper, "__wrapped__", None)
    if original is None or not wrapper.__closure__:
        return None, []
    return original, [c for c in wrapper.__closure__ if c.cell_contents is original]


def _install(reference_module, name, replacement):
    current = getattr(reference_module, name)
    original, cells = _gin_cells(current)
    if cells:
        # Keep the reference's signature contract: gin validates bound parameters against it.
        if list(inspect.signature(original).parameters) != list(
            inspect.signature(replacement).parameters
        ):
            raise RuntimeError(
                f"fastdis compat {name} does not mirror the signature of "
                f"{reference_module.__name__}.{name}"
            )
        for cell in cells:
            _originals.append((cell, "cell_contents", original))
            cell.cell_contents = replacement
        _originals.append((current, "__wrapped__", original))
        current.__wrapped__ = replacement
    else:
        _originals.append((reference_module, name, current))
        setattr(reference_module, name, replacement)


def patch(modules=None):
    """Route disentanglement_lib's metric functions to fastdis.

    Parameters
    ----------
    modules : iterable of str, optional
        Compat module names to patch (keys of ``MODULES``); default all whose reference module
        imports (the reference's ``unified_scores`` and ``udr`` need TensorFlow and are skipped
        when it is missing).

    Returns
    -------
    patched : list of str
        The reference modules now served by fastdis.
    """
    _ensure_gin_without_tensorflow()
    if _originals:
        unpatch()
    names = list(MODULES) if modules is None else list(modules)
    unknown = sorted(set(names) - set(MODULES))
    if unknown:
        raise ValueError(f"unknown compat modules {unknown}; choose from {sorted(MODULES)}.")
    patched = []
    for name in names:
        try:
            reference = importlib.import_module(f"{_REFERENCE_PACKAGE}.{MODULES[name]}")
        except ImportError:
            if modules is not None:
                raise
            continue  # not importable here (e.g. needs TensorFlow): nothing to route
        compat = importlib.import_module(f"{__package__}.{name}")
        for function_name in compat.DLIB_NAMES:
            if hasattr(reference, function_name):
                _install(reference, function_name, getattr(compat, function_name))
        patched.append(reference.__name__)
    return patched


def unpatch():
    """Undo :func:`patch`: the reference computes with its own code again."""
    while _originals:
        owner, attribute, original = _originals.pop()
        setattr(owner, attribute, original)


def is_patched() -> bool:
    return bool(_originals)
