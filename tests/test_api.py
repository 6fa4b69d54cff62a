"""The registry, the CLI, patch() through gin configs, and the shared validator."""

import importlib
import inspect

import numpy as np
import pytest
from conftest import dlib_module
from typer.testing import CliRunner

import fastdis.compat.disentanglement_lib as fdl
from fastdis import _validation
from fastdis.cli import app
from fastdis.demo import SyntheticFactors, representation
from fastdis.metrics import METRICS, get_metric


@pytest.mark.parametrize("name", sorted(METRICS))
def test_registry_entry_is_consistent(name):
    spec = METRICS[name]
    parameters = inspect.signature(spec.function).parameters
    for option in spec.defaults:
        assert option in parameters, f"{name}: default {option!r} is not a parameter"
        assert parameters[option].kind is inspect.Parameter.KEYWORD_ONLY
    if not spec.reference:  # beyond the reference: never part of the study's suite
        assert not spec.study, f"{name}: a study metric must name its reference function"
        return
    module_name, function_name = spec.reference.split(".")
    compat = importlib.import_module(f"fastdis.compat.disentanglement_lib.{module_name}")
    assert callable(getattr(compat, function_name))
    assert function_name in compat.DLIB_NAMES


def _importable_reference_modules():
    """Reference modules importable here: unified_scores needs TensorFlow and udr is not in
    the PyPI package (tests/test_unified.py and tests/test_udr.py cover those)."""
    names = []
    for name, path in sorted(fdl.MODULES.items()):
        try:
            importlib.import_module(f"disentanglement_lib.evaluation.{path}")
        except ImportError:
            continue
        names.append(name)
    return names


def test_most_reference_modules_import_here():
    # Other tests may stub TensorFlow's modules, which makes unified_scores importable too.
    assert len(_importable_reference_modules()) >= len(fdl.MODULES) - 2


@pytest.mark.parametrize("name", _importable_reference_modules())
def test_compat_signatures_mirror_the_reference(name):
    reference = importlib.import_module(f"disentanglement_lib.evaluation.{fdl.MODULES[name]}")
    compat = importlib.import_module(f"fastdis.compat.disentanglement_lib.{name}")
    for function_name in compat.DLIB_NAMES:
        if not hasattr(reference, function_name):
            continue
        ours = list(inspect.signature(getattr(compat, function_name)).parameters)
        theirs = list(inspect.signature(
            inspect.unwrap(getattr(reference, function_name))).parameters)
        assert ours == theirs, function_name


def test_unknown_metric_lists_the_valid_names():
    with pytest.raises(ValueError, match="choose from"):
        get_metric("nope")


def test_cli_lists_metrics():
    result = CliRunner().invoke(app, ["metrics"])
    assert result.exit_code == 0, result.output
    assert "dci" in result.output and "modularity_explicitness" in result.output


@pytest.mark.parametrize("columns", [80, 160])
def test_cli_metrics_listing_fits_the_terminal_and_keeps_descriptions_whole(columns):
    result = CliRunner().invoke(app, ["metrics"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= columns
    text = " ".join(" ".join(line.strip(" │┃").split()) for line in lines)
    for spec in METRICS.values():
        assert spec.name in text
        if columns == 80:  # a block per metric: each description reads as one phrase
            assert " ".join(spec.description.split()) in text, spec.name


def test_cli_demo_names_a_scale_too_small_instead_of_a_traceback():
    result = CliRunner().invoke(app, ["demo", "--scale", "0.05", "-m",
                                      "downstream_task_logistic_regression"])
    assert result.exit_code == 2
    assert "--scale 0.05" in result.output and "Traceback" not in result.output


def test_cli_demo_prints_scores():
    result = CliRunner().invoke(app, ["demo", "--scale", "0.05", "-m", "mig", "-m", "irs"])
    assert result.exit_code == 0, result.output
    assert "discrete_mig" in result.output and "IRS" in result.output
    bad = CliRunner().invoke(app, ["demo", "-m", "nope"])
    assert bad.exit_code == 2


def test_patch_serves_gin_configured_evaluation():
    """A study-style gin config drives the reference's function, which now runs fastdis."""
    import gin

    mig = dlib_module("mig")
    config = """
        mig.num_train = 2000
        discretizer.discretizer_fn = @histogram_discretizer
        discretizer.num_bins = 20
    """
    data, rep = SyntheticFactors(), representation("entangled")
    gin.clear_config()
    gin.parse_config(config)
    try:
        expected = mig.compute_mig(data, rep, np.random.RandomState(0))
        fdl.patch()
        try:
            assert fdl.is_patched()
            got = mig.compute_mig(data, rep, np.random.RandomState(0))
        finally:
            fdl.unpatch()
        assert not fdl.is_patched()
    finally:
        gin.clear_config()
    assert got == pytest.approx(expected, abs=1e-12)


def test_study_runner_uses_study_settings():
    from fastdis.compat.disentanglement_lib.study import evaluate_metric

    result = evaluate_metric("factor_vae_metric", SyntheticFactors(),
                             representation("disentangled"), scale=0.02)
    assert result["eval_accuracy"] > 0.9 and result["elapsed_time"] > 0


@pytest.mark.parametrize(
    "value, match",
    [
        (np.zeros((3, 2, 2)), "2-D"),
        (np.zeros((0, 2)), "0 sample"),
        (np.zeros((3, 0)), "0 columns"),
        (np.array([["a", "b"]]), "real numbers"),
        (np.array([[1 + 2j]]), "complex"),
        (np.array([[np.inf, 0.0]]), "infinity"),
    ],
)
def test_check_codes_errors(value, match):
    with pytest.raises(ValueError, match=match):
        _validation.check_codes(value)


def test_check_codes_keeps_float32_and_converts_ints():
    assert _validation.check_codes(np.ones((2, 2), np.float32)).dtype == np.float32
    assert _validation.check_codes(np.ones((2, 2), np.int32)).dtype == np.float64


def test_check_factors_accepts_integral_floats_and_bools():
    out = _validation.check_factors(np.array([[1.0, 0.0], [2.0, 1.0]]))
    assert out.dtype == np.int64
    assert _validation.check_factors(np.array([[True], [False]])).tolist() == [[1], [0]]
    with pytest.raises(ValueError, match="NaN"):
        _validation.check_factors(np.array([[np.nan]]))


def test_cli_demo_refuses_what_it_cannot_run():
    for args in (["demo", "-m", "udr"], ["demo", "-m", "unified_scores"],
                 ["demo", "--scale", "0", "-m", "mig"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (args, result.output)


def test_partial_patch_still_follows_gin_bindings():
    """patch(["mig"]) alone must still read discretizer.num_bins from gin."""
    import gin

    mig = dlib_module("mig")
    data, rep = SyntheticFactors(), representation("entangled")
    gin.clear_config()
    gin.parse_config("""
        discretizer.discretizer_fn = @histogram_discretizer
        discretizer.num_bins = 7
    """)
    try:
        expected = mig.compute_mig(data, rep, np.random.RandomState(0), None, 1000)
        fdl.patch(["mig"])
        try:
            got = mig.compute_mig(data, rep, np.random.RandomState(0), None, 1000)
        finally:
            fdl.unpatch()
    finally:
        gin.clear_config()
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("name", [spec.name for spec in METRICS.values() if spec.headline])
def test_headline_keys_name_real_result_keys(name):
    # The report's rank correlations and figures use these; a renamed key must not silently
    # drop a metric from them.
    from fastdis.batch import make_plan

    data = SyntheticFactors((3, 4, 5))
    plan = make_plan(data, [name], seed=0, scale=0.02)
    codes = representation("disentangled", data.factor_sizes, n_codes=4)(
        plan.factors.astype(np.float64))
    spec = METRICS[name]
    logvars = np.full_like(codes, -2.0) if spec.inputs == "posterior_grid" else None
    result = plan.score(name, codes, logvars)
    assert len(spec.headline_keys(result)) == len(spec.headline), sorted(result)


def test_boosted_tree_flag_covers_every_metric_that_fits_boosted_trees():
    for spec in METRICS.values():
        fits_trees = (spec.defaults.get("predictor") == "gradient_boosting"
                      or "backend" in spec.defaults or spec.name == "unified_scores")
        assert spec.boosted_trees == fits_trees, spec.name
