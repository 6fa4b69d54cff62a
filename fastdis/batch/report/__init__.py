"""A report of a scores table (``fastdis report``): figures, their data, one page.

Written into the folder ``out``, each figure as ``<name>.png`` with the numbers it draws in
``<name>.csv`` beside it:

* ``rank_correlation``: Spearman rank correlation between the metrics' headline scores across
  models (checkpoint x representation), Locatello et al. (2019), figure 2;
* ``total_correlation``: the Gaussian total correlation of the sampled and the mean
  representation against regularisation strength, per method (figure 1);
* ``strength_<metric>``: each headline score against regularisation strength per method,
  seeds as points;
* ``violins_<metric>``: each summary score's distribution per setting (one violin per setting,
  points are models);
* ``variance_explained``: the share of each headline score's variance across models that the
  method, the strength and the seed explain (a nested analysis of variance; see
  :func:`~._analysis.variance_explained`);
* ``downstream``: rank correlation of the downstream accuracies (per predictor and training
  size, plus efficiency) with each disentanglement score, per data set (section 6);
* ``model_selection``: how often a setting chosen on one seed matches or beats a random model
  on another seed, by the same or another metric, on the same or another data set (section
  5.4; see :func:`~._analysis.selection_transfer`);
* ``seed_spread.csv`` and ``failed.csv``: the spread over seeds per setting and the failed
  evaluations with their reasons;
* ``index.md`` (links the PNGs) and ``index.html`` (self-contained: the figures embedded).

A *summary score* is a result key that is not a per-factor or per-code detail, a training-set
score, a minimum or a count (:func:`summary_keys`); a *headline score* is one the registry
names (:meth:`fastdis.metrics.MetricSpec.headline_keys`); the report shows both. A *setting* is
the method (``train_config.method``) plus its *strength*: every numeric config value that
varies within that method and is not a seed, step or path (beta, gamma, lambda, ...), or where
none varies the value the study sweeps for that method (so one setting per method still names
its strength). Models are grouped by data set with ``train_config.dataset`` and told apart as
seeds by ``train_config.seed``.
A section whose data is missing says why on the page instead of failing.
"""

from __future__ import annotations

from pathlib import Path

from ._page import Section, write_page
from ._sections import SECTIONS
from ._table import check_report_folder, load_scores, prepare, settings, summary_keys

__all__ = ["write_report", "summary_keys", "settings"]


def write_report(scores, out, *, representation: str | None = None) -> Path:
    """Write the figures, their CSVs, ``index.md`` and ``index.html`` for ``scores`` into ``out``.

    Every argument is checked before anything is written, and the figures are drawn in
    memory first, so a refused call leaves no partial report.

    Parameters
    ----------
    scores : pandas.DataFrame, str or PathLike
        A scores table: ``fastdis score``'s output folder, a Parquet file, or the table
        (:func:`fastdis.batch.read_scores`).
    out : str or PathLike
        Folder for the report (created; an existing report there is overwritten).
    representation : str, default=None
        Representation of the per-setting sections (``None``: "mean" if present, else the
        first one). The rank correlation uses every representation, the total correlation
        the sampled and the mean one.

    Returns
    -------
    Path
        The markdown page; ``index.html`` is beside it.

    Raises
    ------
    FileNotFoundError
        If ``scores`` is a path that holds no scores.
    ValueError
        If ``out`` is or lies under a file or is not writable, the scores cannot be read or
        lack a required column, no evaluation succeeded, or ``representation`` is unknown.
    """
    out = check_report_folder(out)
    data = prepare(load_scores(scores), representation)
    ok = data.ok
    overview = [f"{ok['checkpoint'].nunique()} checkpoints, representations "
                f"{', '.join(sorted(ok['representation'].unique()))}, "
                f"{ok['metric'].nunique()} metrics, {ok['dataset'].nunique()} data set(s), "
                f"{len(data.failed)} failed evaluations."]
    if data.non_finite:
        overview.append(f"{data.non_finite} score(s) without an error but with a non-finite "
                        "value are left out.")

    sections = [Section("Overview", overview), *(section(data) for section in SECTIONS)]
    return write_page(out, "fastdis score report", sections)
