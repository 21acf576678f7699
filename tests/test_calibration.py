from __future__ import annotations

import re

import numpy as np
import pytest

from model.calibration import (
    decisions,
    expected_calibration_error,
    fit_review_threshold,
    fit_temperature,
    fit_thresholds,
    head_confidence,
    probabilities,
)


def test_temperature_recovers_overconfidence() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 4)) * 1.5
    gold_index = np.array([rng.choice(4, p=p) for p in probabilities(true_logits, "single")])
    gold = np.eye(4)[gold_index]
    fitted = fit_temperature(true_logits * 3.0, gold, "single")  # logits 3x too sharp
    assert fitted == pytest.approx(3.0, rel=0.1)


def test_temperature_improves_ece_for_sigmoid_heads() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3000, 1)) * 2
    gold = (rng.random((3000, 1)) < probabilities(logits, "binary")).astype(float)
    sharp = logits * 4
    t = fit_temperature(sharp, gold, "binary")

    def ece(temperature: float) -> float:
        p = probabilities(sharp, "binary", temperature)[:, 0]
        return expected_calibration_error(np.maximum(p, 1 - p), ((p >= 0.5) == gold[:, 0]) * 1.0)

    assert ece(t) < ece(1.0) / 2


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_separable_logits_give_a_finite_temperature_in_range(kind: str) -> None:
    """Perfectly separated validation letters push the fit towards T = 0; it must stop at
    the range's edge, never at 0 or NaN (a NaN here once made every probability NaN)."""
    logits = np.array([[50.0, -50.0], [60.0, -30.0], [-40.0, 70.0]])
    gold = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    t = fit_temperature(logits, gold, kind)
    assert 0.05 <= t < 1.0
    assert np.isfinite(probabilities(logits, kind, t)).all()


def test_non_finite_logits_are_refused() -> None:
    with pytest.raises(ValueError, match="non-finite logits: training diverged"):
        fit_temperature(np.array([[np.nan, 1.0]]), np.array([[1.0, 0.0]]), "single")


def test_thresholds_pick_the_best_f1() -> None:
    probs = np.array([[0.9], [0.35], [0.3], [0.1]])
    gold = np.array([[1], [1], [0], [0]])
    assert fit_thresholds(probs, gold) == [pytest.approx(0.35)]  # (0.3, 0.35] all best: nearest 0.5
    assert fit_thresholds(probs, np.zeros_like(gold)) == [0.5]


def test_decisions_and_confidence() -> None:
    probs = np.array([[0.8, 0.3], [0.4, 0.6]])
    assert decisions(probs, "single", None).tolist() == [[1, 0], [0, 1]]
    decided = decisions(probs, "multi", [0.5, 0.7])
    assert decided.tolist() == [[1, 0], [0, 0]]
    assert head_confidence(probs, "multi", decided) == pytest.approx([0.8 * 0.7, 0.6 * 0.4])


def test_review_threshold_meets_the_target() -> None:
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 1, 1, 0, 1, 0], dtype=float)
    assert fit_review_threshold(confidence, correct, 1.0) == 0.9
    assert fit_review_threshold(confidence, correct, 0.8) == 0.7
    assert fit_review_threshold(confidence, np.zeros(6), 0.9) > 1.0


def test_review_threshold_keeps_ties_together() -> None:
    confidence = np.array([0.9, 0.9, 0.5])
    correct = np.array([1, 0, 1], dtype=float)
    assert fit_review_threshold(confidence, correct, 0.9) > 0.9


def test_review_target_is_checked() -> None:
    with pytest.raises(ValueError, match=re.escape("must be in (0, 1], found 1.5")):
        fit_review_threshold(np.ones(2), np.ones(2), 1.5)


def test_ece_of_a_perfectly_calibrated_set_is_small() -> None:
    rng = np.random.default_rng(2)
    conf = rng.uniform(0.5, 1.0, 20000)
    correct = (rng.random(20000) < conf).astype(float)
    assert expected_calibration_error(conf, correct) < 0.02
    assert expected_calibration_error(np.full(10, 0.9), np.zeros(10)) == pytest.approx(0.9)
