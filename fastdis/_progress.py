"""The Rich progress bar that long jobs (training runs, batch scoring) draw on stderr.

One layout everywhere: description, bar, done/total, elapsed and remaining time, with a job's own
``task.fields`` in two slots. rich is imported on first use, so a run with its bar switched off
never imports it.
"""

from __future__ import annotations

from collections.abc import Sequence


def stderr_progress(
    *,
    description: str = "{task.description}",
    rate_fields: Sequence[str] = (),
    trailing_fields: Sequence[str] = (),
):
    """A ``rich.progress.Progress`` on stderr (stdout stays clean for results).

    Columns: ``description`` (a Rich format string), bar, M/N done, the ``task.fields`` named in
    ``rate_fields``, elapsed, remaining, then those in ``trailing_fields``. The caller adds the
    task (``add_task(..., **fields)``) and starts and stops the bar.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    def field_columns(names):
        return [TextColumn(f"{{task.fields[{name}]}}") for name in names]

    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        *field_columns(rate_fields),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *field_columns(trailing_fields),
        console=Console(stderr=True),
    )
