"""fastdis report: each section on a synthetic scores table with a known structure, the CSVs,
the HTML page, degraded inputs, and bad arguments refused before anything is written."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from report_helpers import DOWNSTREAM_SIZES, synthetic_scores
from typer.testing import CliRunner

from fastdis.batch import write_report
from fastdis.batch.report._analysis import selection_transfer, variance_explained
from fastdis.cli import app
from fastdis.metrics import get_metric


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report of the full synthetic table (two data sets, three seeds), written once."""
    out = tmp_path_factory.mktemp("report")
    write_report(synthetic_scores(), out)
    return out


# -- the estimators ---------------------------------------------------------------------------


def test_variance_shares_match_a_hand_computed_nested_anova():
    # Settings a1 = [1, 3], a2 = [5, 7] (method a), b1 = [10, 12] (method b); grand mean 19/3.
    values = [1, 3, 5, 7, 10, 12]
    methods = ["a", "a", "a", "a", "b", "b"]
    settings = ["a1", "a1", "a2", "a2", "b1", "b1"]
    method_ss = 4 * (4 - 19 / 3) ** 2 + 2 * (11 - 19 / 3) ** 2
    strength_ss = 2 * (2 - 4) ** 2 + 2 * (6 - 4) ** 2
    seed_ss = 6 * 1.0
    total = np.sum((np.array(values) - np.mean(values)) ** 2)
    assert method_ss + strength_ss + seed_ss == pytest.approx(total)
    shares = variance_explained(values, methods, settings)
    assert shares["method"] == pytest.approx(method_ss / total)
    assert shares["strength"] == pytest.approx(strength_ss / total)
    assert shares["seed"] == pytest.approx(seed_ss / total)
    assert shares["setting"] == pytest.approx(1 - seed_ss / total)
    assert shares["n_models"] == 6 and shares["n_settings"] == 3 and shares["note"] == ""


def test_variance_of_a_score_set_by_the_setting_is_all_setting_and_of_noise_mostly_seed():
    settings = np.repeat([f"s{i}" for i in range(5)], 4)
    methods = np.repeat(["a", "a", "b", "b", "b"], 4)
    by_setting = np.repeat(np.arange(5.0), 4)
    assert variance_explained(by_setting, methods, settings)["setting"] == pytest.approx(1.0)
    # Seeds only: every setting holds the same four values.
    by_seed = np.tile([0.1, 0.5, 0.2, 0.9], 5)
    shares = variance_explained(by_seed, methods, settings)
    assert shares["seed"] == pytest.approx(1.0) and shares["setting"] == pytest.approx(0.0)


@pytest.mark.parametrize(("values", "methods", "settings", "note"), [
    ([1.0, 2.0], ["a", "a"], ["a1", "a1"], "one setting"),
    ([1.0, 2.0], ["a", "a"], ["a1", "a2"], "one model per setting"),
    ([3.0, 3.0, 3.0, 3.0], ["a"] * 4, ["a1", "a1", "a2", "a2"], "the same value"),
])
def test_variance_shares_say_why_they_are_undefined(values, methods, settings, note):
    shares = variance_explained(values, methods, settings)
    assert shares["note"].startswith(note) and np.isnan(shares["seed"])


def _selection_table(*, n_settings=4, seeds=(0, 1, 2), datasets=("d1", "d2")):
    """Score A ranks the settings 0 < 1 < ...; score B ranks them the other way round."""
    rows = [{"dataset": d, "score": score, "setting": f"s{g}", "seed": s,
             "value": sign * g}
            for d in datasets for score, sign in (("A", 1.0), ("B", -1.0))
            for g in range(n_settings) for s in seeds]
    return pd.DataFrame(rows)


def test_model_selection_transfer_has_the_known_answer():
    n_settings, seeds = 4, (0, 1, 2)
    table = selection_transfer(_selection_table(n_settings=n_settings, seeds=seeds))
    cells = table.set_index(["metric", "data_set"])
    n_models = n_settings * len(seeds)
    # The chosen setting is the best by the same score on every seed and data set: it ties
    # with its own seeds and beats everything else.
    for data_set in ("same", "different"):
        same = cells.loc[("same", data_set)]
        assert same["p_beats_or_matches"] == 1.0
        assert same["p_beats"] == pytest.approx(1 - len(seeds) / n_models)
        # By the opposite score it is the worst: it only ties with its own seeds.
        other = cells.loc[("different", data_set)]
        assert other["p_beats_or_matches"] == pytest.approx(len(seeds) / n_models)
        assert other["p_beats"] == 0.0
    # Sources: 2 data sets x 2 scores x 3 seeds; each compares on the 2 other seeds.
    assert (cells["n_sources"] == 12).all()
    assert cells.loc[("same", "same"), "n_comparisons"] == 12 * 2


def test_model_selection_cells_need_another_data_set_and_a_random_score_gives_about_half():
    table = selection_transfer(_selection_table(datasets=("d1",)))
    assert list(zip(table["metric"], table["data_set"], strict=True)) == [
        ("same", "same"), ("different", "same")]
    rng = np.random.default_rng(0)
    noise = pd.DataFrame({"dataset": "d", "score": "A", "setting": np.repeat(
        [f"s{g}" for g in range(20)], 10), "seed": np.tile(np.arange(10), 20),
        "value": rng.uniform(size=200)})
    assert selection_transfer(noise)["p_beats_or_matches"].iloc[0] == pytest.approx(0.5,
                                                                                     abs=0.1)


def _selection_by_enumeration(frame):
    """The transfer table by plain loops over every source, target and seed (the twin)."""
    models = frame.groupby(["dataset", "score", "setting", "seed"])["value"].mean()
    pools = {key: models.loc[key] for key in dict.fromkeys(
        (d, m) for d, m, _, _ in models.index)}
    cells = {}
    for (dataset, metric), pool in pools.items():
        for seed in sorted({s for _, s in pool.index}):
            at_seed = {g: v for (g, s), v in pool.items() if s == seed}
            if len(at_seed) < 2:
                continue
            best = max(at_seed.values())
            chosen = min(g for g, v in at_seed.items() if v == best)
            per_cell = {}
            for (target_dataset, target_metric), target in pools.items():
                everyone = list(target.values)
                for (g, s), v in target.items():
                    if g == chosen and s != seed:
                        cell = (target_metric == metric, target_dataset == dataset)
                        per_cell.setdefault(cell, {}).setdefault(
                            (target_dataset, target_metric), []).append(
                            (np.mean([v >= r for r in everyone]),
                             np.mean([v > r for r in everyone])))
            for cell, targets in per_cell.items():
                cells.setdefault(cell, []).append(np.mean(
                    [np.mean(outcomes, axis=0) for outcomes in targets.values()], axis=0))
    return {cell: np.mean(outcomes, axis=0) for cell, outcomes in cells.items()}


def test_model_selection_transfer_equals_its_enumeration_with_ties_and_missing_models():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame([{"dataset": d, "score": m, "setting": f"g{g}", "seed": s,
                           "value": float(rng.integers(0, 4))}
                          for d in ("d1", "d2") for m in ("A", "B", "C") for g in range(5)
                          for s in range(4) if rng.uniform() > 0.2])
    expected = _selection_by_enumeration(frame)
    table = selection_transfer(frame).set_index(["metric", "data_set"])
    assert len(table) == len(expected) == 4
    for (same_metric, same_data), (at_most, below) in expected.items():
        row = table.loc[("same" if same_metric else "different",
                         "same" if same_data else "different")]
        assert row["p_beats_or_matches"] == pytest.approx(at_most, abs=1e-12)
        assert row["p_beats"] == pytest.approx(below, abs=1e-12)


def test_the_total_correlation_score_is_a_headline_of_the_registry():
    from fastdis.batch.report._sections import TOTAL_CORRELATION

    metric, key = TOTAL_CORRELATION
    assert key in get_metric(metric).headline_keys([key])


# -- the report's sections and CSVs -----------------------------------------------------------


def test_every_figure_has_its_csv_and_the_page_links_them(report):
    page = (report / "index.md").read_text()
    for name in ("rank_correlation", "total_correlation", "strength_mig", "violins_mig",
                 "variance_explained", "downstream", "model_selection"):
        assert (report / f"{name}.png").stat().st_size > 1000, name
        assert f"]({name}.png)" in page and f"]({name}.csv)" in page
        assert len(pd.read_csv(report / f"{name}.csv")) > 0, name
    assert (report / "seed_spread.csv").is_file() and "Not drawn" not in page


def test_total_correlation_csv_holds_both_representations_per_strength(report):
    frame = pd.read_csv(report / "total_correlation.csv")
    assert set(frame["representation"]) == {"mean", "sampled"}
    assert set(frame["dataset"]) == {"d1", "d2"} and len(frame) == 2 * 2 * 6 * 3
    medians = frame.groupby(["representation", "strength"])["value"].median()
    assert medians[("sampled", "beta=1")] > medians[("sampled", "beta=16")]
    assert medians[("mean", "beta=1")] < medians[("mean", "beta=16")]


def test_strength_csv_orders_nothing_away(report):
    frame = pd.read_csv(report / "strength_mig.csv")
    assert len(frame) == 2 * 6 * 3 and set(frame["seed"]) == {0, 1, 2}
    assert set(frame["strength"]) == {"beta=1", "beta=4", "beta=16", "gamma=10", "gamma=20",
                                      "gamma=40"}


def test_variance_csv_gives_the_setting_all_of_a_setting_only_score(report):
    frame = pd.read_csv(report / "variance_explained.csv").set_index(["dataset", "score"])
    for dataset in ("d1", "d2"):
        mig = frame.loc[(dataset, "mig:discrete_mig")]
        assert mig["setting"] == pytest.approx(1.0) and mig["seed"] == pytest.approx(0.0)
        assert mig["n_models"] == 18 and mig["n_settings"] == 6
        assert frame.loc[(dataset, "sap_score:SAP_score"), "seed"] > 0.3  # noise


def test_downstream_csv_correlates_each_training_size_with_each_score(report):
    frame = pd.read_csv(report / "downstream.csv")
    accuracies = {f"logistic_regression {size}" for size in DOWNSTREAM_SIZES}
    assert accuracies | {"logistic_regression efficiency"} == set(frame["downstream"])
    assert set(frame["score"]) == {"mig:discrete_mig", "sap_score:SAP_score",
                                   "dci:disentanglement"}  # not the unsupervised scores
    ranked = frame[frame["downstream"].isin(accuracies)].set_index(["dataset", "downstream",
                                                                    "score"])["spearman"]
    assert (ranked.xs("mig:discrete_mig", level="score") == 1.0).all()
    assert (ranked.xs("dci:disentanglement", level="score") == -1.0).all()
    assert (frame["n_models"] == 18).all()


def test_model_selection_csv_matches_the_transfer_of_the_synthetic_scores(report):
    frame = pd.read_csv(report / "model_selection.csv")
    assert len(frame) == 4 and (frame["n_sources"] == 2 * 3 * 3).all()  # data sets x scores x seeds
    expected = selection_transfer(pd.read_csv(report / "strength_mig.csv").assign(
        score="mig:discrete_mig", setting=lambda f: f["method"] + f["strength"]))
    same = frame[(frame["metric"] == "same") & (frame["data_set"] == "same")]
    assert same["p_beats_or_matches"].iloc[0] < 1.0  # the noise score drags it down
    assert expected["p_beats_or_matches"].iloc[0] == 1.0


def test_html_page_embeds_every_figure_and_needs_no_other_file(report):
    import base64
    import re

    text = (report / "index.html").read_text()
    images = re.findall(r"<img alt='([^']*)' src='data:image/png;base64,([^']+)'>", text)
    pngs = sorted(report.glob("*.png"))
    assert len(images) == len(pngs) >= 15
    embedded = {base64.b64decode(data) for _, data in images}
    assert embedded == {p.read_bytes() for p in pngs}
    assert ".png'" not in text and "<table>" in text


def test_the_report_leaves_matplotlib_global_state_alone(tmp_path):
    code = ("import sys; sys.path.insert(0, 'tests')\n"
            "import matplotlib; before = matplotlib.rcParams._get('backend')\n"
            "from report_helpers import synthetic_scores\n"
            "from fastdis.batch import write_report\n"
            "table = synthetic_scores(datasets=('d1',), seeds=(0, 1))\n"
            f"write_report(table[table['metric'] == 'mig'], {str(tmp_path)!r})\n"
            "print('matplotlib.pyplot' in sys.modules, "
            "matplotlib.rcParams._get('backend') == before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert out.stdout.split() == ["False", "True"]


def _chromium():
    import shutil

    return next((shutil.which(name) for name in ("chromium", "chromium-browser",
                                                 "google-chrome") if shutil.which(name)), None)


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="needs headless Chromium (Debian: apt-get "
                    "install chromium)")
def test_html_page_shows_every_figure_in_headless_chromium(report, tmp_path):
    import json
    import re

    import matplotlib.image

    # The page plus a script that records, once loaded, each image's natural size.
    probe = ("<script>window.addEventListener('load', () => document.body.setAttribute("
             "'data-images', JSON.stringify([...document.images].map(i => [i.complete, "
             "i.naturalWidth, i.naturalHeight]))));</script>")
    page = (report / "index.html").read_text()
    (tmp_path / "probe.html").write_text(page.replace("</body>", probe + "</body>"))
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*command, "--virtual-time-budget=10000", "--dump-dom",
                          (tmp_path / "probe.html").as_uri()], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    found = re.search(r'data-images="([^"]*)"', dom)
    assert found, dom[-2000:]
    images = json.loads(found.group(1).replace("&quot;", '"'))
    expected = [matplotlib.image.imread(report / f"{name}.png").shape[1::-1]
                for name in re.findall(r"\]\(([^)]+)\.png\)", (report / "index.md").read_text())]
    assert [(w, h) for _, w, h in images] == [tuple(size) for size in expected]
    assert all(complete for complete, _, _ in images) and len(images) >= 15
    # And a screenshot of the top of the page is not blank.
    subprocess.run([*command, "--window-size=1400,2000", f"--screenshot={tmp_path / 'shot.png'}",
                    (report / "index.html").as_uri()], capture_output=True, timeout=120,
                   check=True)
    shot = matplotlib.image.imread(tmp_path / "shot.png")
    assert shot.shape[:2] == (2000, 1400) and shot[..., :3].std() > 0.05


# -- degraded inputs --------------------------------------------------------------------------


def test_one_data_set_one_seed_a_missing_metric_and_nans_are_explained(tmp_path):
    table = synthetic_scores(datasets=("d1",), seeds=(0,), representations=("mean",))
    table = table[table["metric"] != "unsupervised"].copy()
    table.loc[table["metric"] == "sap_score", "value"] = np.nan
    page = write_report(table, tmp_path).read_text()
    assert "Not drawn: the table has no unsupervised:gaussian_total_correlation" in page
    assert "Not drawn: one model per setting" in page  # the variance decomposition
    assert "Not drawn: one seed per setting" in page  # model selection
    assert "6 score(s) without an error but with a non-finite value are left out" in page
    assert (tmp_path / "downstream.png").is_file()  # 6 models: still correlated
    assert not (tmp_path / "model_selection.png").exists()
    html = (tmp_path / "index.html").read_text()
    assert "Not drawn: one seed per setting" in html


def test_one_data_set_leaves_out_the_transfer_across_data_sets(tmp_path):
    page = write_report(synthetic_scores(datasets=("d1",), seeds=(0, 1),
                                         representations=("mean",)), tmp_path).read_text()
    assert "The different-data-set column is absent: one data set." in page
    frame = pd.read_csv(tmp_path / "model_selection.csv")
    assert set(frame["data_set"]) == {"same"}
    assert "No sampled representation was scored" in page


def test_a_table_without_seeds_datasets_or_downstream_still_reports(tmp_path):
    table = synthetic_scores(datasets=("d1",), seeds=(0, 1), representations=("mean",))
    table = table[~table["metric"].str.startswith("downstream")].drop(
        columns=["train_config.seed", "train_config.dataset"])
    page = write_report(table, tmp_path).read_text()
    assert "Not drawn: no downstream accuracy per training size in the table." in page
    assert "Not drawn: the table has no train_config.seed column" in page
    assert (tmp_path / "variance_explained.png").is_file()


# -- bad arguments (nothing written, a clear message, no traceback) ---------------------------


def _invoke(*args):
    result = CliRunner().invoke(app, ["report", *map(str, args)])
    assert "Traceback" not in result.output and not isinstance(result.exception, (
        OSError, KeyError, TypeError, AttributeError))
    return result


def test_report_refuses_an_existing_file_as_out_and_writes_nothing(tmp_path):
    synthetic_scores(datasets=("d1",), seeds=(0, 1)).to_parquet(tmp_path / "scores.parquet")
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    result = _invoke(tmp_path / "scores.parquet", "--out", target)
    assert result.exit_code == 1 and "is a file" in " ".join(result.output.split())
    assert str(target) in "".join(result.output.split())  # the message names it
    assert target.read_text() == "keep me"
    result = _invoke(tmp_path / "scores.parquet", "--out", target / "sub")
    assert result.exit_code == 1 and "lies under the file" in " ".join(result.output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.parquet", "taken.txt"]


@pytest.mark.parametrize("damage", ["missing", "garbage", "columns", "representation",
                                    "all_failed", "all_nan"])
def test_report_refuses_bad_scores_with_a_message_and_writes_nothing(tmp_path, damage):
    scores = tmp_path / "scores.parquet"
    table = synthetic_scores(datasets=("d1",), seeds=(0, 1))
    expected = {"missing": "no such scores file", "garbage": "cannot read the scores table",
                "columns": "lacks the column(s) ['metric']",
                "representation": "representation 'logvar' is not in the scores",
                "all_failed": "no successful evaluation",
                "all_nan": "the mean representation has no finite score"}[damage]
    options = []
    if damage == "garbage":
        scores.write_bytes(b"not a parquet file")
    elif damage == "columns":
        table.drop(columns="metric").to_parquet(scores)
    elif damage == "all_failed":
        table.assign(error="ValueError: diverged").to_parquet(scores)
    elif damage == "all_nan":
        table.assign(value=np.nan).to_parquet(scores)
    elif damage == "representation":
        table.to_parquet(scores)
        options = ["--representation", "logvar"]
    result = _invoke(scores, "--out", tmp_path / "report", *options)
    assert result.exit_code == 1 and expected in " ".join(result.output.split())
    assert not (tmp_path / "report").exists()


def test_report_command_prints_both_pages(tmp_path):
    table = synthetic_scores(datasets=("d1",), seeds=(0, 1), representations=("mean",))
    table[table["metric"] == "mig"].to_parquet(tmp_path / "scores.parquet")
    result = _invoke(tmp_path / "scores.parquet", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    assert result.output.split() == [str(tmp_path / "report" / "index.md"),
                                     str(tmp_path / "report" / "index.html")]


def test_strengths_are_the_numeric_config_values_varying_within_a_method_in_numeric_order():
    from fastdis.batch.report._table import setting_columns

    table = pd.DataFrame({"train_config.method": ["a", "a", "a", "b", "b"],
                          "train_config.beta": [16.0, 2.0, 2.0, 1.0, 1.0],
                          "train_config.compile": [True, False, True, False, True],
                          "train_config.seed": [0, 1, 2, 0, 1],
                          "train_config.steps": [10, 20, 30, 10, 20]})
    frame = setting_columns(table)
    assert list(frame["strength"]) == ["beta=16", "beta=2", "beta=2", "", ""]
    assert list(frame["strength_rank"]) == [1, 0, 0, 0, 0]  # 2 before 16, not as text


def test_the_disentanglement_scores_of_the_study_suite_are_the_papers_six():
    from fastdis.batch.report._table import disentanglement_key
    from fastdis.metrics import study_metrics

    keys = {spec.name: disentanglement_key(spec.name) for spec in study_metrics()}
    assert {name: key for name, key in keys.items() if key} == {
        "beta_vae_sklearn": "eval_accuracy", "factor_vae_metric": "eval_accuracy",
        "mig": "discrete_mig", "modularity_explicitness": "modularity_score",
        "dci": "disentanglement", "sap_score": "SAP_score"}


def test_a_single_strength_per_method_is_still_named_by_the_studys_swept_field():
    from fastdis.batch.report import settings

    table = pd.DataFrame({"train_config.method": ["beta_vae", "beta_vae", "factor_vae",
                                                  "entangled"],
                          "train_config.beta": [4.0, 4.0, np.nan, 1.0],
                          "train_config.gamma": [np.nan, np.nan, 30.0, np.nan],
                          "train_config.seed": [0, 1, 0, 0]})
    assert list(settings(table)) == ["beta_vae (beta=4)", "beta_vae (beta=4)",
                                     "factor_vae (gamma=30)", "entangled"]
