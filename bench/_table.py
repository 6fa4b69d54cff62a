"""What every bench shares: rows recorded as dicts, printed as markdown, saved and compared as JSON.

A bench makes one :class:`Recorder` (which notes the run's setup: date, command, machine and the
versions that set the speed), opens one :class:`Table` per table it prints and adds its rows as
they are measured. Each row is printed at once as a markdown line on stdout (progress and notes go
to stderr); ``Recorder.write_json`` saves the setup and every table, and :func:`compare` prints
the ratios of two saved runs side by side, rows matched by their identifying columns.
"""

from __future__ import annotations

import datetime
import importlib
import json
import numbers
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

#: Packages whose versions set the speed of some bench; the installed ones go into the setup.
VERSIONED_PACKAGES = ("fastdis", "numpy", "numba", "scipy", "scikit-learn", "torch", "triton",
                      "disentanglement-lib")


def note(message):
    """Progress and notes go to stderr, so stdout holds only the tables."""
    print(message, file=sys.stderr, flush=True)


def _installed_versions():
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine_description():
    """The processor (or the machine type where Linux does not name it) and its core count."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            name = next(line.split(":", 1)[1].strip() for line in cpuinfo
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores"


class Table:
    """One markdown table: the header is printed with the first row, each row as it comes.

    ``name`` identifies the table across runs (what :func:`compare` matches), ``heading`` is
    printed above it (the name where not given) and may carry the run's details. ``columns``
    maps each row key to its format (``"{:.3f}"``, ``"{:.1f}x"``); a column's heading
    is its key with underscores as spaces. ``key`` names the columns that identify a row (what
    :func:`compare` matches on). A missing or ``None`` cell prints as a dash.
    """

    def __init__(self, name, columns, key, heading=None, stream=None):
        unknown = [name for name in key if name not in columns]
        if unknown:
            raise ValueError(f"key columns {unknown} are not among the columns {list(columns)}")
        self.name, self.heading = name, heading or name
        self.columns, self.key = dict(columns), tuple(key)
        self.rows = []
        self._stream = stream

    def add(self, row=None, **cells):
        """Record one row (a dict and/or keyword cells) and print it; returns the row."""
        row = {**(row or {}), **cells}
        stream = self._stream or sys.stdout
        if not self.rows:
            if self.heading:
                print(f"\n{self.heading}\n", file=stream)
            print("| " + " | ".join(name.replace("_", " ") for name in self.columns) + " |",
                  file=stream)
            print("|" + "---|" * len(self.columns), file=stream)
        self.rows.append(row)
        cells_text = [_format_cell(row.get(name), fmt) for name, fmt in self.columns.items()]
        print("| " + " | ".join(cells_text) + " |", file=stream, flush=True)
        return row

    def as_json(self):
        return {"name": self.name, "heading": self.heading, "key": list(self.key),
                "columns": list(self.columns), "rows": self.rows}


def _format_cell(value, fmt):
    if value is None:
        return "—"
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        try:
            return fmt.format(value)
        except (ValueError, TypeError):
            return str(value)
    return str(value)


class Recorder:
    """One bench run: its setup and its tables, written to JSON by :meth:`write_json`."""

    def __init__(self, bench, **setup):
        self.bench = bench
        self.setup = {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "machine": machine_description(),
            "python": platform.python_version(),
            **_installed_versions(),
            **setup,
        }
        self.tables = []

    def table(self, name, columns, key, heading=None):
        table = Table(name, columns, key, heading)
        self.tables.append(table)
        return table

    def write_json(self, path):
        """Save the setup and every table to ``path`` (nothing when ``path`` is None)."""
        if path is None:
            return
        document = {"bench": self.bench, "setup": self.setup,
                    "tables": [table.as_json() for table in self.tables]}
        Path(path).write_text(json.dumps(document, indent=1, default=str) + "\n")
        note(f"wrote {path}")


def add_json_argument(parser):
    """The ``--json FILE`` option every bench takes."""
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the setup and every table to this JSON file")


def load_reference():
    """Import disentanglement_lib (its ``gin.tf`` served by gin); None, with a note, if absent.

    The reference's metrics import ``gin.tf`` (TensorFlow) but only need gin itself.
    """
    from fastdis.compat.disentanglement_lib._patch import _ensure_gin_without_tensorflow

    try:
        _ensure_gin_without_tensorflow()
        return importlib.import_module("disentanglement_lib")
    except ImportError as error:
        note(f"disentanglement_lib is not installed ({error}): its rows are skipped; install "
             "the reference as the README's test command does to compare against it")
        return None


# -- comparing two runs --------------------------------------------------------------------------


def load_run(path):
    """A run saved by :meth:`Recorder.write_json`, with a clear error for anything else."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a JSON file ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("tables"), list):
        raise ValueError(f"{path}: not a bench run (no 'tables' list; write one with --json)")
    return document


def _is_number(value):
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _row_key(row, key):
    return tuple(row.get(name) for name in key)


def compare(path_a, path_b, stream=None):
    """Print, per table, B / A for every numeric column of the rows both runs have.

    Rows are matched by the table's identifying columns; rows and tables present in only one
    run are listed below the tables.
    """
    stream = stream or sys.stdout
    runs = {path_a: load_run(path_a), path_b: load_run(path_b)}
    for path, run in runs.items():
        setup = run.get("setup", {})
        print(f"{'A' if path == path_a else 'B'}: {path} — {run.get('bench', '?')}, "
              f"{setup.get('date', '?')}, {setup.get('machine', '?')}, fastdis "
              f"{setup.get('fastdis', '?')}", file=stream)
    tables_a = {table["name"]: table for table in runs[path_a]["tables"]}
    tables_b = {table["name"]: table for table in runs[path_b]["tables"]}
    unmatched = [f"table only in {path}: {name!r}"
                 for path, mine, other in ((path_a, tables_a, tables_b),
                                           (path_b, tables_b, tables_a))
                 for name in mine if name not in other]
    for name, table_a in tables_a.items():
        if name in tables_b:
            unmatched += _compare_table(name, table_a, tables_b[name], path_a, path_b, stream)
    if unmatched:
        print("", file=stream)
        for line in unmatched:
            print(f"- {line}", file=stream)
    return unmatched


def _compare_table(title, table_a, table_b, path_a, path_b, stream):
    """One table of ratios B / A; returns the lines naming rows present in one run only."""
    key = table_a["key"]
    rows_b = {_row_key(row, key): row for row in table_b["rows"]}
    keys_a = {_row_key(row, key) for row in table_a["rows"]}
    numeric = [name for name in table_a["columns"]
               if name not in key and name in table_b["columns"]
               and any(_is_number(row.get(name)) for row in table_a["rows"])]
    ratios = Table(title, {**{name: "{}" for name in key},
                           **{name: "{:.2f}x" for name in numeric}},
                   key, heading=f"{title}: B / A", stream=stream)
    only = []
    for row_a in table_a["rows"]:
        row_key = _row_key(row_a, key)
        if row_key not in rows_b:
            only.append(f"row only in {path_a}: {_describe(title, key, row_key)}")
            continue
        row_b = rows_b[row_key]
        ratios.add({**dict(zip(key, row_key, strict=True)),
                    **{name: _ratio(row_a.get(name), row_b.get(name)) for name in numeric}})
    only += [f"row only in {path_b}: {_describe(title, key, row_key)}"
             for row_key in rows_b if row_key not in keys_a]
    return only


def _ratio(a, b):
    if not (_is_number(a) and _is_number(b)) or a == 0:
        return None
    return b / a


def _describe(title, key, row_key):
    cells = ", ".join(f"{name}={value}" for name, value in zip(key, row_key, strict=True))
    return f"{title!r}: {cells}"
