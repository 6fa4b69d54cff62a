"""The two ``exp`` routes of the compiled kernels, for the tests: libm's own ``exp``, and the
vectorised copy of glibc's (``fastdis/metrics/_libm_exp.py``), which exists only where it
reproduces this process's libm.

Imported as ``from exp_helpers import ...``: pytest puts tests/ on sys.path (tests/ has no
``__init__.py``).
"""

import pytest

from fastdis.metrics._libm_exp import reproduces_libm

needs_vectorised_exp = pytest.mark.skipif(
    not reproduces_libm(),
    reason="this libm's exp is not glibc's FMA build, so fastdis calls libm itself here",
)

#: ``vectorised_exp`` values for ``pytest.mark.parametrize``: False (libm) and True.
EXP_ROUTES = [
    pytest.param(False, id="libm-exp"),
    pytest.param(True, id="vectorised-exp", marks=needs_vectorised_exp),
]
