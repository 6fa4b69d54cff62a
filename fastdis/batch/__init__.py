"""Batch scoring: evaluation plan, Zarr representation store, scoring engine, report (issue 5)."""
