"""fastdis: a compiled engine for scoring disentangled representations.

- :mod:`fastdis.metrics`: every disentanglement_lib metric as a pure function of arrays, plus
  the metric registry.
- :mod:`fastdis.compat.disentanglement_lib`: drop-in replacements of the reference's metric
  modules, and ``patch()`` to make an installed disentanglement_lib use them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fastdis")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
