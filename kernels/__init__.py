"""Triton kernels for the training regularizers, imported as ``fastdis.kernels`` (issue 4)."""
