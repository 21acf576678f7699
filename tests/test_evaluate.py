from __future__ import annotations

import pytest

from model.labels import LabelSchema
from training.evaluate import headline, indicator, score_head


def test_indicator_rows(schema: LabelSchema) -> None:
    violations = schema.heads["violations"]
    matrix = indicator(violations, [["bribery"], [], ["misappropriation", "dereliction"]])
    assert matrix.tolist() == [[0, 0, 1, 0, 0, 0], [0] * 6, [1, 0, 0, 0, 0, 1]]
    assert indicator(schema.heads["repeat_cue"], [True, False]).tolist() == [[1], [0]]


def test_single_head_scores(schema: LabelSchema) -> None:
    head = schema.heads["sector"]
    gold = ["campus_meals", "campus_meals", "other", "education"]
    pred = ["campus_meals", "other", "other", "education"]
    scores = score_head(head, gold, pred)
    assert scores["accuracy"] == 0.75
    assert scores["per_label"]["campus_meals"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    # macro over all 12 sector labels: labels absent from gold and prediction count 0
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1.0) / 12)


def test_multi_and_binary_scores(schema: LabelSchema) -> None:
    multi = score_head(schema.heads["violations"], [["bribery"], ["bribery", "dereliction"]],
                       [["bribery"], ["bribery"]])
    assert multi["micro_f1"] == pytest.approx(0.8)
    assert multi["exact_match"] == 0.5
    binary = score_head(schema.heads["repeat_cue"], [True, False, True], [True, True, False])
    assert binary["f1"] == pytest.approx(0.5)
    assert headline({"repeat_cue": binary})["repeat_cue.f1"] == pytest.approx(0.5)


def test_length_mismatch_is_refused(schema: LabelSchema) -> None:
    with pytest.raises(ValueError, match="found 1 predictions for 2 letters"):
        score_head(schema.heads["repeat_cue"], [True, False], [True])
