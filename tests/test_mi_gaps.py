"""MIG-sup, JEMMIG and DCIMIG: against plain-numpy twins and against hand-computed answers."""

import numpy as np
import pytest
from conftest import make_codes, make_factors

from fastdis.metrics import METRICS, dcimig, jemmig, mig, mig_sup, mutual_info_matrix
from fastdis.metrics._mi_gaps import binned_information

LOG_BINS = np.log(20)


# --- plain numpy twins ------------------------------------------------------------------------


def _twin_bins(codes, num_bins=20):
    return np.stack([np.digitize(c, np.histogram_bin_edges(c, num_bins)[:-1]) for c in codes.T],
                    axis=1)


def _twin_entropy(labels):
    _, counts = np.unique(labels, return_counts=True)
    p = counts / counts.sum()
    return float(-np.sum(p * np.log(p)))


def _twin_mutual_info(a, b):
    joint = np.unique(np.stack([a, b], axis=1), axis=0, return_counts=True)[1]
    p = joint / joint.sum()
    return _twin_entropy(a) + _twin_entropy(b) + float(np.sum(p * np.log(p)))


def _twin_tables(codes, factors):
    binned = _twin_bins(codes)
    mi = np.array([[_twin_mutual_info(binned[:, j], factors[:, k])
                    for k in range(factors.shape[1])] for j in range(codes.shape[1])])
    factor_entropy = np.array([_twin_entropy(f) for f in factors.T])
    code_entropy = np.array([_twin_entropy(b) for b in binned.T])
    return mi, factor_entropy, code_entropy


def twin_mig_sup(codes, factors):
    mi, factor_entropy, _ = _twin_tables(codes, factors)
    gaps = []
    for j in range(codes.shape[1]):
        if np.var(codes[:, j], ddof=1) <= 0.01:
            continue
        row = sorted(np.maximum(mi[j] / factor_entropy, 0), reverse=True)
        gaps.append(row[0] - row[1])
    return np.mean(gaps)


def twin_jemmig(codes, factors):
    mi, factor_entropy, code_entropy = _twin_tables(codes, factors)
    scores = []
    for k in range(factors.shape[1]):
        best = int(np.argmax(mi[:, k]))
        second = sorted(mi[:, k], reverse=True)[1]
        joint = code_entropy[best] + factor_entropy[k] - mi[best, k]
        scores.append(1 - (joint - mi[best, k] + second) / (factor_entropy[k] + LOG_BINS))
    return np.mean(scores)


def twin_dcimig(codes, factors):
    mi, factor_entropy, _ = _twin_tables(codes, factors)
    credit = np.zeros(factors.shape[1])
    for j in range(codes.shape[1]):
        best = int(np.argmax(mi[j]))
        row = sorted(mi[j], reverse=True)
        credit[best] = max(credit[best], row[0] - row[1])
    return credit.sum() / factor_entropy.sum()


# --- data with exact answers --------------------------------------------------------------------


def grid_factors(sizes, repeats=2):
    """Every combination of the factor values, ``repeats`` times: factors are exactly
    independent in the sample, so the mutual information between different factors is 0."""
    grid = np.indices(sizes).reshape(len(sizes), -1).T
    return np.tile(grid, (repeats, 1))


SIZES = (3, 4, 5)


def _scores(codes, factors):
    return {"mig_sup": mig_sup(codes, factors)["mig_sup"],
            "jemmig": jemmig(codes, factors)["jemmig_score"],
            "dcimig": dcimig(codes, factors)["dcimig"]}


@pytest.mark.parametrize("kind", ["disentangled", "entangled", "noise"])
def test_scores_match_the_numpy_twins(kind):
    factors = make_factors(700, sizes=(3, 6, 10))
    codes = make_codes(factors, kind, n_codes=5)
    got = _scores(codes, factors)
    assert got["mig_sup"] == pytest.approx(twin_mig_sup(codes, factors), abs=1e-12)
    assert got["jemmig"] == pytest.approx(twin_jemmig(codes, factors), abs=1e-12)
    assert got["dcimig"] == pytest.approx(twin_dcimig(codes, factors), abs=1e-12)


def test_perfectly_disentangled_codes_score_one_and_any_permutation_too():
    factors = grid_factors(SIZES)
    codes = factors.astype(np.float64) * 0.7 + 2.0  # each value in a bin of its own
    expected = {"mig_sup": 1.0, "jemmig": 1.0, "dcimig": 1.0}
    assert _scores(codes, factors) == pytest.approx(expected, abs=1e-12)
    rs = np.random.RandomState(0)
    permuted = _scores(codes[:, rs.permutation(3)], factors)
    assert permuted == pytest.approx(expected, abs=1e-12)
    rows = rs.permutation(len(factors))
    assert _scores(codes[rows], factors[rows]) == pytest.approx(expected, abs=1e-12)


def test_codes_independent_of_the_factors_score_zero():
    # A nuisance factor of 7 values drives the codes; the scored factors are exactly
    # independent of it, so every mutual information is 0.
    grid = grid_factors(SIZES + (7,))
    factors, nuisance = grid[:, :3], grid[:, 3:].astype(np.float64)
    codes = np.hstack([nuisance, -2.0 * nuisance])
    assert mig_sup(codes, factors)["mig_sup"] == pytest.approx(0.0, abs=1e-12)
    assert dcimig(codes, factors)["dcimig"] == pytest.approx(0.0, abs=1e-12)
    # JEMMIG(v_k) = H(z*, v_k) = log 7 + log C_k: the code's own entropy is not explained
    entropy = np.log(SIZES)
    expected = np.mean(1 - (np.log(7) + entropy) / (entropy + LOG_BINS))
    assert jemmig(codes, factors)["jemmig_score"] == pytest.approx(expected, abs=1e-12)


def test_a_duplicated_code_costs_jemmig_and_mig_but_not_mig_sup_or_dcimig():
    factors = grid_factors(SIZES)
    codes = factors[:, [0, 0, 1, 2]].astype(np.float64)
    scores = _scores(codes, factors)
    assert scores["mig_sup"] == pytest.approx(1.0, abs=1e-12)
    assert scores["dcimig"] == pytest.approx(1.0, abs=1e-12)
    # factor 0: I* = I° = H(z*) = H(v_0) = log 3, so JEMMIG(v_0) = log 3
    assert scores["jemmig"] == pytest.approx(1 - np.log(3) / (np.log(3) + LOG_BINS) / 3,
                                             abs=1e-12)
    assert mig(codes, factors)["discrete_mig"] == pytest.approx(2 / 3, abs=1e-12)


def test_a_code_of_two_factors_has_no_gap():
    factors = grid_factors((3, 4))
    codes = np.stack([factors[:, 0] + 3.0 * factors[:, 1], factors[:, 1]], axis=1)
    # code 0 determines both factors (normalised MI 1 and 1): its MIG-sup gap is 0; code 1
    # informs about factor 1 only.
    assert mig_sup(codes, factors)["mig_sup"] == pytest.approx(0.5, abs=1e-12)
    # DCIMIG: code 0 credits log 4 - log 3 to factor 1 (its best), code 1 credits log 4 to
    # factor 1 too, and factor 0 gets no credit
    expected = np.log(4) / (np.log(3) + np.log(4))
    assert dcimig(codes, factors)["dcimig"] == pytest.approx(expected, abs=1e-12)


def test_inactive_codes_are_left_out_of_mig_sup():
    factors = grid_factors(SIZES)
    codes = np.hstack([factors.astype(np.float64), np.full((len(factors), 2), 0.3)])
    result = mig_sup(codes, factors)
    assert result == {"mig_sup": pytest.approx(1.0, abs=1e-12), "num_active_codes": 3}
    # all collapsed: no code singles out a factor
    assert mig_sup(codes[:, 3:], factors) == {"mig_sup": 0.0, "num_active_codes": 0}
    assert mig_sup(codes * 0.01, factors) == {"mig_sup": 0.0, "num_active_codes": 0}


def test_a_shared_mutual_information_matrix_gives_the_same_scores():
    factors = make_factors(500, sizes=(3, 6, 10))
    codes = make_codes(factors, "entangled", n_codes=5)
    shared = mutual_info_matrix(binned_information(codes, factors)[2], factors)
    for function in (mig_sup, jemmig, dcimig):
        assert function(codes, factors, mutual_info=shared) == function(codes, factors)
        with pytest.raises(ValueError, match="mutual_info must be a non-empty 2-D array"):
            function(codes, factors, mutual_info=shared[:, :2])


@pytest.mark.parametrize("function, codes_columns, factor_columns, message", [
    (mig_sup, 3, 1, "factors has 1 column.*MIG-sup is the gap between the two factors"),
    (dcimig, 3, 1, "factors has 1 column.*DCIMIG credits the gap"),
    (jemmig, 1, 3, "codes has 1 column.*second-best code"),
])
def test_too_few_columns_are_refused_with_the_reason(function, codes_columns, factor_columns,
                                                      message):
    factors = make_factors(200, sizes=(3, 6, 10))
    codes = make_codes(factors, "entangled", n_codes=3)
    with pytest.raises(ValueError, match=message):
        function(codes[:, :codes_columns], factors[:, :factor_columns])


def test_registry_serves_them_at_the_study_discretisation():
    factors = make_factors(300, sizes=(3, 6, 10))
    codes = make_codes(factors, "entangled", n_codes=4)
    for name, key in (("mig_sup", "mig_sup"), ("jemmig", "jemmig_score"), ("dcimig", "dcimig")):
        spec = METRICS[name]
        assert spec.inputs == "codes_factors" and spec.defaults["num_bins"] == 20
        assert not spec.study and spec.reference == ""
        assert spec.headline_keys(spec(codes, factors)) == [key]
