"""InfoMEC (InfoM, InfoC, InfoE): against plain twins and hand-computed answers."""

import warnings

import numpy as np
import pytest
from conftest import make_codes, make_factors
from test_mi_gaps import _twin_tables, grid_factors

from fastdis.metrics import METRICS, infom_infoc, infomec


def twin_infom_infoc(codes, factors):
    """The authors' formulas, written out, on the 20-bin histogram information."""
    mi, factor_entropy, _ = _twin_tables(codes, factors)
    nmi = (mi / factor_entropy).T  # (factors, codes), as the authors lay it out
    ranges = codes.max(axis=0) - codes.min(axis=0)
    pruned = nmi[:, ranges > ranges.max() / 20]
    n_sources, n_active = pruned.shape
    infom = (np.mean(pruned.max(axis=0) / pruned.sum(axis=0)) - 1 / n_sources) / (
        1 - 1 / n_sources)
    infoc = (np.mean(pruned.max(axis=1) / pruned.sum(axis=1)) - 1 / n_active) / (
        1 - 1 / n_active)
    return infom, infoc


def twin_infoe(codes, factors):
    """The authors' InfoE: the probe and the featureless null probe both fitted, on the
    training set (StandardScaler; C=inf for their penalty=None)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler

    def loss(x, y):
        model = LogisticRegression(C=np.inf, class_weight="balanced", max_iter=100)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x, y)
        return log_loss(y, model.predict_proba(x))

    x = StandardScaler().fit_transform(codes)
    values = []
    for y in factors.T:
        null = loss(np.zeros_like(codes), y)
        values.append((null - loss(x, y)) / null)
    return np.mean(values)


def _split(kind, n=900, sizes=(3, 6, 10), n_codes=5):
    factors = make_factors(n, sizes=sizes)
    codes = make_codes(factors, kind, n_codes=n_codes)
    return codes[:600], factors[:600], codes[600:], factors[600:]


@pytest.mark.parametrize("kind", ["entangled", "collapsed"])
def test_infomec_matches_the_twins(kind):
    codes, factors, test_codes, test_factors = _split(kind)
    result = infomec(codes, factors, test_codes, test_factors)
    infom, infoc = twin_infom_infoc(codes, factors)
    assert result["infom"] == pytest.approx(infom, abs=1e-12)
    assert result["infoc"] == pytest.approx(infoc, abs=1e-12)
    assert result["infoe_train"] == pytest.approx(twin_infoe(codes, factors), abs=1e-9)
    assert result["infoe_test"] <= 1.0


def test_perfectly_disentangled_codes_score_one_in_any_order():
    factors = grid_factors((3, 4, 5), repeats=4)
    codes = factors * 1.5 - 2.0
    result = infomec(codes, factors, codes, factors)
    assert result["infom"] == pytest.approx(1.0, abs=1e-12)
    assert result["infoc"] == pytest.approx(1.0, abs=1e-12)
    assert result["infoe_train"] > 0.97 and result["infoe_test"] > 0.97
    order = [2, 0, 1]
    assert infomec(codes[:, order], factors, codes[:, order], factors) == pytest.approx(result)


def test_a_duplicated_code_halves_its_factors_compactness():
    factors = grid_factors((3, 4, 5))
    codes = factors[:, [0, 0, 1, 2]].astype(np.float64)
    result = infomec(codes, factors, codes, factors)
    assert result["infom"] == pytest.approx(1.0, abs=1e-12)  # each code informs about one
    # factor 0 is split over two codes (max/sum = 1/2), the others are not; J = 4 active codes
    assert result["infoc"] == pytest.approx((np.mean([0.5, 1, 1]) - 1 / 4) / (1 - 1 / 4),
                                            abs=1e-12)


def test_evenly_spread_information_scores_zero():
    # two codes, each determining both factors: every ratio is at chance (1/2)
    factors = grid_factors((4, 4))
    codes = np.stack([factors[:, 0] + 4.0 * factors[:, 1], factors[:, 1] + 4.0 * factors[:, 0]],
                     axis=1)
    result = infomec(codes, factors, codes, factors)
    assert result["infom"] == pytest.approx(0.0, abs=1e-12)
    assert result["infoc"] == pytest.approx(0.0, abs=1e-12)


def test_pure_noise_has_no_predictive_information_and_uninformative_codes_are_left_out():
    grid = grid_factors((3, 4, 7), repeats=3)
    factors, nuisance = grid[:, :2], grid[:, 2:].astype(np.float64)
    noise = np.hstack([nuisance, nuisance ** 2])  # exactly independent of the factors
    with pytest.raises(ValueError, match="no code carries information"):
        infomec(noise, factors, noise, factors)
    rs = np.random.RandomState(1)
    pure = rs.normal(size=(3000, 4))
    scored = make_factors(3000, sizes=(3, 4), seed=2)
    assert abs(infomec(pure, scored, pure, scored)["infoe_train"]) < 0.01
    # a noise code beside disentangled ones carries no information: it is not in InfoM's mean
    codes = np.hstack([factors.astype(np.float64), nuisance])
    result = infomec(codes, factors, codes, factors)
    assert result["infom"] == pytest.approx(1.0, abs=1e-12)
    assert result["infoc"] == pytest.approx(1.0, abs=1e-12)  # J = 3 active, each factor in one


def test_inactive_codes_are_pruned_by_range():
    factors = grid_factors((3, 4, 5))
    codes = np.hstack([factors * 10.0, factors[:, :1] * 0.4])  # range 0.8 < 40 / 20
    result = infomec(codes, factors, codes, factors)
    assert result["num_active_codes"] == 3 and result["infoc"] == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="the active codes of codes has 1 column"):
        infomec(codes[:, :1], factors, codes[:, :1], factors)


def test_unseen_test_values_and_single_factors_are_refused():
    codes, factors, test_codes, test_factors = _split("entangled")
    unseen = test_factors.copy()
    unseen[0, 2] = 99
    with pytest.raises(ValueError, match=r"test_factors\[:, 2\] holds value\(s\) \[99\]"):
        infomec(codes, factors, test_codes, unseen)
    with pytest.raises(ValueError, match="factors has 1 column"):
        infomec(codes, factors[:, :1], test_codes, test_factors[:, :1])
    with pytest.raises(ValueError, match="active_range_fraction must be in"):
        infomec(codes, factors, test_codes, test_factors, active_range_fraction=2)


def test_infom_infoc_building_block_and_registry():
    assert infom_infoc(np.eye(3)) == pytest.approx((1.0, 1.0))
    assert infom_infoc(np.ones((3, 2))) == pytest.approx((0.0, 0.0))
    with pytest.raises(ValueError, match=r"normalized_mi has 1 factors \(columns\)"):
        infom_infoc(np.ones((3, 1)))
    with pytest.raises(ValueError, match="normalized_mi must hold finite values >= 0"):
        infom_infoc(-np.eye(2))
    spec = METRICS["infomec"]
    assert spec.inputs == "train_test" and not spec.study and spec.reference == ""
    codes, factors, test_codes, test_factors = _split("entangled")
    result = spec(codes, factors, test_codes, test_factors)
    assert spec.headline_keys(result) == ["infom", "infoc", "infoe_train"]
