"""The bench suite, installed as ``fastdis.bench``: every hot path timed against its reference.

Run a bench as ``fastdis bench metrics|arrays|kernels|training|batch|data`` (or ``python
bench/bench_<name>.py`` in a clone); ``--json FILE`` saves its tables and ``fastdis bench compare
A.json B.json`` prints the ratios of two runs. Rows that need disentanglement_lib are skipped,
with a note on stderr, where it is not installed.
"""
