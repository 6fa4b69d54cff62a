"""fastdis as a drop-in metric backend for google-research/disentanglement_lib.

Each submodule mirrors the reference module of the same name
(``disentanglement_lib.evaluation.metrics.<name>``, and ``evaluation.udr.metrics.udr``): the same
function names, positional signatures, result keys and draws from ``random_state`` in the same
order, so the same points are sampled and the same numbers come back, faster. Use them directly::

    from fastdis.compat.disentanglement_lib import mig
    scores = mig.compute_mig(ground_truth_data, representation_function,
                             np.random.RandomState(0), None, 10000)

or make an installed disentanglement_lib use them everywhere, gin configs included::

    import fastdis.compat.disentanglement_lib as fdl
    fdl.patch()      # ... evaluate.evaluate(...) now runs fastdis
    fdl.unpatch()

Where the reference has a bug that changes returned values, these modules reproduce it (that is
what "drop-in" means) and say so; the array-level API in :mod:`fastdis.metrics` fixes it.
"""

from ._patch import MODULES, is_patched, patch, unpatch

__all__ = ["MODULES", "patch", "unpatch", "is_patched"]
