"""Batch scoring of many checkpoints: plan, Zarr store, scoring engine, report.

Encode every checkpoint once on a fixed evaluation plan, store the codes, score every
(checkpoint, representation, metric) in parallel into one tidy Parquet table, and report::

    from fastdis.batch import make_plan, write_codes, score_store, write_report

    plan = make_plan(data, seed=0)                     # points + groups of every metric
    write_codes("reps.zarr", "run-1", {"mean": codes}, {"method": "beta_vae", "beta": 4},
                plan=plan)                             # codes of plan.factors, any framework
    scores = score_store("reps.zarr", "scores.parquet")   # resumable; scheduler= for Dask
    write_report(scores, "report/")

``fastdis encode | score | report`` are the same steps on the command line. Every name is
imported on first use (the metrics with numba and scipy, zarr, pandas, dask), so importing
``fastdis.batch.cli`` for ``fastdis --help`` stays fast.
"""

__all__ = [
    "EvaluationPlan", "make_plan", "plannable_metrics",
    "RepresentationStore", "StoreError", "create_store", "open_store", "write_codes",
    "encode_checkpoints", "score_store", "read_scores", "to_wide", "write_report",
]

_LAZY = {
    "EvaluationPlan": "plan", "make_plan": "plan", "plannable_metrics": "plan",
    "RepresentationStore": "store", "StoreError": "store", "create_store": "store",
    "open_store": "store", "write_codes": "store", "encode_checkpoints": "encode",
    "score_store": "engine", "read_scores": "results", "to_wide": "results",
    "write_report": "report",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
