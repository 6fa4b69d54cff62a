"""`fastdis bench`: the installed bench suite run from the command line, and two runs compared."""

import json
import sys

import pytest
from fastdis.bench import _table
from fastdis.bench._table import Recorder
from typer.testing import CliRunner

from fastdis.cli import app

BENCHES = ("metrics", "arrays", "kernels", "training", "batch", "data")


def _saved_run(path, rows, extra_table=None):
    """A run of one 'regularizers' table (keyed by method and B), saved as the benches save."""
    recorder = Recorder("kernels")
    table = recorder.table("regularizers", {"method": "{}", "batch_size": "{}", "ms": "{:.3f}",
                                            "peak_mb": "{:.1f}", "note": "{}"},
                           ["method", "batch_size"])
    for row in rows:
        table.add(row)
    if extra_table:
        recorder.table(extra_table, {"stage": "{}", "seconds": "{:.1f}"}, ["stage"]).add(
            stage="write", seconds=1.0)
    recorder.write_json(path)
    return path


def test_bench_help_lists_every_subcommand():
    result = CliRunner().invoke(app, ["bench", "--help"])
    assert result.exit_code == 0, result.output
    for name in (*BENCHES, "compare"):
        assert name in result.stdout


def test_compare_divides_matched_rows_and_names_rows_in_one_run_only(tmp_path):
    first = _saved_run(tmp_path / "a.json", [
        {"method": "triton", "batch_size": 64, "ms": 2.0, "peak_mb": 4.0, "note": "x"},
        {"method": "eager", "batch_size": 64, "ms": 1.0, "peak_mb": 0.0},
        {"method": "eager", "batch_size": 256, "ms": 3.0, "peak_mb": 1.0},
    ], extra_table="store")
    second = _saved_run(tmp_path / "b.json", [
        {"method": "eager", "batch_size": 64, "ms": 4.0, "peak_mb": 2.0},
        {"method": "triton", "batch_size": 64, "ms": 1.0, "peak_mb": 1.0, "note": "y"},
        {"method": "compiled", "batch_size": 64, "ms": 1.0, "peak_mb": 1.0},
    ])
    result = CliRunner().invoke(app, ["bench", "compare", str(first), str(second)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # Rows are matched by (method, batch_size) whatever their order; ratios are B / A; a zero
    # in A has no ratio; text columns are not divided.
    assert "| method | batch size | ms | peak mb |" in lines
    assert "| triton | 64 | 0.50x | 0.25x |" in lines
    assert "| eager | 64 | 4.00x | — |" in lines
    assert f"- row only in {first}: 'regularizers': method=eager, batch_size=256" in lines
    assert f"- row only in {second}: 'regularizers': method=compiled, batch_size=64" in lines
    assert f"- table only in {first}: 'store'" in lines


def test_compare_refuses_a_file_that_is_not_a_saved_run(tmp_path):
    saved = _saved_run(tmp_path / "a.json", [{"method": "eager", "batch_size": 64, "ms": 1.0}])
    (tmp_path / "other.json").write_text(json.dumps({"rows": []}))
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "compare", str(saved), str(tmp_path / "other.json")])
    assert result.exit_code == 2
    assert "other.json: not a bench run" in result.stderr
    result = runner.invoke(app, ["bench", "compare", str(saved), str(tmp_path / "missing.json")])
    assert result.exit_code == 2
    assert "missing.json: no such file" in result.stderr


def test_device_is_refused_by_the_benches_that_have_no_device_choice():
    result = CliRunner().invoke(app, ["bench", "metrics", "--device", "cuda"])
    assert result.exit_code == 2
    message = " ".join(result.output.replace("│", " ").split())  # rich's error box wraps
    assert "the metrics bench has no device choice; --device is for kernels and training" in (
        message)


def test_reference_absent_is_a_note_not_a_failure(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "disentanglement_lib", None)  # import raises ImportError
    assert _table.load_reference() is None
    assert "disentanglement_lib is not installed" in capsys.readouterr().err


def test_metrics_bench_through_the_cli_writes_its_table_as_json(tmp_path):
    saved = tmp_path / "run.json"
    result = CliRunner().invoke(
        app, ["bench", "metrics", "--json", str(saved), "--", "-m", "mig", "--scale", "0.01"]
    )
    assert result.exit_code == 0, result.output
    assert "| mig |" in result.stdout  # the table on stdout, progress on stderr
    assert "  mig" in result.stderr and "  mig" not in result.stdout
    run = json.loads(saved.read_text())
    assert run["bench"] == "metrics"
    assert {"date", "command", "machine", "fastdis", "numpy"} <= set(run["setup"])
    (table,) = run["tables"]
    assert table["key"] == ["metric"]
    mig, total = table["rows"]
    assert mig["metric"] == "mig" and total["metric"] == "**total**"
    pytest.importorskip("disentanglement_lib")
    assert mig["max_abs_delta"] < 1e-12  # the reference ran on the same points
    assert mig["ratio"] == pytest.approx(mig["dlib_s"] / mig["fastdis_s"])
