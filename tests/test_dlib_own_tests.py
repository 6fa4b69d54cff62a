"""disentanglement_lib's own metric unit tests, run unchanged against fastdis via patch().

The PyPI package ships ``evaluation/metrics/*_test.py``; with
``fastdis.compat.disentanglement_lib.patch()`` active every metric function they call (through
the module attribute or gin) runs fastdis. ``unified_scores_test`` imports TensorFlow through
the reference's visualisation modules and cannot run here; ``udr`` is not in the package: both
are covered by tests/test_unified.py and tests/test_udr.py.
"""

from __future__ import annotations

import importlib
import unittest

import pytest

import fastdis.compat.disentanglement_lib as fdl

DLIB_TEST_MODULES = [
    "beta_vae_test",
    "dci_test",
    "factor_vae_test",
    "fairness_test",
    "irs_test",
    "mig_test",
    "modularity_explicitness_test",
    "sap_score_test",
    "strong_downstream_task_test",
    "unsupervised_metrics_test",
    "utils_test",
]


def _collect():
    cases = []
    for name in DLIB_TEST_MODULES:
        module = importlib.import_module(f"disentanglement_lib.evaluation.metrics.{name}")
        suite = unittest.TestLoader().loadTestsFromModule(module)
        stack = [suite]
        while stack:
            item = stack.pop()
            if isinstance(item, unittest.TestSuite):
                stack.extend(reversed(list(item)))
            else:
                cases.append(pytest.param(item, id=item.id().split("metrics.")[-1]))
    return cases


@pytest.fixture(scope="module", autouse=True)
def patched():
    patched = fdl.patch()
    yield patched
    fdl.unpatch()


def test_patch_routes_every_reference_module(patched):
    from disentanglement_lib.evaluation.metrics import dci, mig, utils

    from fastdis.compat.disentanglement_lib import dci as compat_dci
    from fastdis.compat.disentanglement_lib import mig as compat_mig
    from fastdis.compat.disentanglement_lib import utils as compat_utils

    assert mig.compute_mig.__wrapped__ is compat_mig.compute_mig  # gin wrapper kept
    assert dci.disentanglement is compat_dci.disentanglement  # plain function replaced
    assert utils._histogram_discretize.__wrapped__ is compat_utils._histogram_discretize
    assert len(patched) >= len(DLIB_TEST_MODULES) - 1


@pytest.mark.parametrize("case", _collect())
def test_reference_unit_test(case):
    import gin

    gin.clear_config()
    result = unittest.TestResult()
    case.run(result)
    problems = result.errors + result.failures
    assert not problems, problems[0][1]
    assert not result.skipped, result.skipped
