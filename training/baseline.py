"""The TF-IDF baseline: jieba words and character n-grams, one linear SVM per head.

It is the bar every fine-tuned model must beat, and it is trained on the same data
and scored on the same evaluation file as the model, side by side.

Example::

    baseline = TfidfBaseline(schema).fit(train_dataset)
    predictions = baseline.predict(["村里的低保名单全是村干部亲戚……"])
    predictions["sector"]   # ['social_assistance']
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from datasets import Dataset
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion
from sklearn.svm import LinearSVC

from model.labels import Head, LabelSchema
from model.lexical import BLOCKS, ngram_vectorizer
from training.evaluate import indicator

logger = logging.getLogger(__name__)


def _features() -> FeatureUnion:
    return FeatureUnion([(block, ngram_vectorizer(block, min_df=2, sublinear_tf=True)) for block in BLOCKS])


def _classifier(head: Head) -> Any:
    svm = LinearSVC(C=0.5, class_weight="balanced")
    return OneVsRestClassifier(svm) if head.type == "multi" else svm


class TfidfBaseline:
    """TF-IDF features shared by all heads; a linear SVM per head.

    Args:
        schema: heads to predict.
    """

    def __init__(self, schema: LabelSchema) -> None:
        self.schema = schema
        self.features = _features()
        self.classifiers: dict[str, Any] = {}

    def fit(self, dataset: Dataset) -> TfidfBaseline:
        """Train on a dataset from :func:`training.data.load_letters`."""
        x = self.features.fit_transform(dataset["text"])
        for name, head in self.schema.heads.items():
            gold = dataset[name]
            y = indicator(head, gold) if head.type == "multi" else np.asarray(gold)
            if head.type != "multi" and len(set(y.tolist())) < 2:
                raise ValueError(f"head {name!r} needs at least 2 classes in the training "
                                 f"data, found only {sorted(set(y.tolist()))}")
            self.classifiers[name] = _classifier(head).fit(x, y)
        logger.info("baseline trained on %d letters, %d features", len(dataset), x.shape[1])
        return self

    def predict(self, texts: list[str]) -> dict[str, list[Any]]:
        """Labels per head in the loader's form (id, list of ids, or bool)."""
        if not self.classifiers:
            raise RuntimeError("the baseline is not trained yet: call fit(dataset) first")
        x = self.features.transform(texts)
        out: dict[str, list[Any]] = {}
        for name, head in self.schema.heads.items():
            y = self.classifiers[name].predict(x)
            if head.type == "multi":
                out[name] = [[i for i, on in zip(head.label_ids, row, strict=True) if on]
                             for row in y]
            elif head.type == "binary":
                out[name] = [bool(v) for v in y]
            else:
                out[name] = [str(v) for v in y]
        return out
