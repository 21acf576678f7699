from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from model.labels import LabelSchema
from model.lexical import jieba_words
from tests.conftest import topic_letters
from training.baseline import TfidfBaseline
from training.data import load_letters
from training.evaluate import score_all


def test_jieba_words_drop_whitespace() -> None:
    assert jieba_words("低保 名额\n") == ["低保", "名额"]


def test_baseline_learns_a_separable_task(schema: LabelSchema, write_jsonl: Callable) -> None:
    dataset, _ = load_letters([write_jsonl(topic_letters(1))], schema)
    baseline = TfidfBaseline(schema).fit(dataset)
    predicted = baseline.predict(dataset["text"])
    scores = score_all(schema, {h: dataset[h] for h in schema.heads}, predicted)
    assert scores["sector"]["accuracy"] == 1.0
    assert scores["violations"]["micro_f1"] == 1.0
    assert all(isinstance(v, bool) for v in predicted["repeat_cue"])
    assert all(isinstance(v, list) for v in predicted["violations"])


def test_single_class_head_is_refused(schema: LabelSchema, write_jsonl: Callable) -> None:
    rows = [{**row, "repeat_cue": False} for row in topic_letters(1)]
    dataset, _ = load_letters([write_jsonl(rows)], schema)
    with pytest.raises(ValueError, match=re.escape("head 'repeat_cue' needs at least 2 classes "
                                                   "in the training data, found only [False]")):
        TfidfBaseline(schema).fit(dataset)


def test_predict_before_fit_is_refused(schema: LabelSchema) -> None:
    with pytest.raises(RuntimeError, match="not trained yet"):
        TfidfBaseline(schema).predict(["来信"])
