"""Evaluation: scores of predictions against gold labels, one head at a time, and the
full evaluation of a trained classifier (calibration, review rule, baseline).

Labels are given the way the loader yields them: a label id per letter for a
``single`` head, a list of ids for a ``multi`` head, a bool for a ``binary`` head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from datasets import Dataset
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from model.calibration import (
    expected_calibration_error,
    label_confidences,
    probabilities,
    reliability_bins,
)
from model.inference import Classifier
from model.labels import Head, LabelSchema


def indicator(head: Head, values: Sequence[Any]) -> np.ndarray:
    """Labels as a 0/1 matrix (letters × labels); one column for a binary head."""
    if head.type == "binary":
        return np.array([[bool(v)] for v in values], dtype=int)
    ids = head.label_ids
    rows = [[v] if head.type == "single" else list(v) for v in values]
    return np.array([[label in row for label in ids] for row in rows], dtype=int)


def _per_label(head: Head, gold: np.ndarray, pred: np.ndarray) -> dict[str, dict[str, float]]:
    if head.type == "binary":  # one column: score the positive class only
        gold, pred = gold[:, 0], pred[:, 0]
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, pred, average=None, zero_division=0, labels=[1] if head.type == "binary" else None
    )
    ids = head.label_ids or ["true"]
    return {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(ids, precision, recall, f1, support, strict=True)
    }


def score_head(head: Head, gold: Sequence[Any], pred: Sequence[Any]) -> dict[str, Any]:
    """Accuracy, F1 (macro/micro or binary) and per-label precision/recall/F1 of one head."""
    if len(gold) != len(pred):
        raise ValueError(f"expected as many predictions as gold labels, "
                         f"found {len(pred)} predictions for {len(gold)} letters")
    g, p = indicator(head, gold), indicator(head, pred)
    scores: dict[str, Any] = {"type": head.type, "n": len(gold)}
    if head.type == "single":
        scores["accuracy"] = float(accuracy_score(list(gold), list(pred)))
        scores["macro_f1"] = float(f1_score(g, p, average="macro", zero_division=0))
    elif head.type == "multi":
        scores["exact_match"] = float(np.mean(np.all(g == p, axis=1))) if len(g) else 0.0
        scores["micro_f1"] = float(f1_score(g, p, average="micro", zero_division=0))
        scores["macro_f1"] = float(f1_score(g, p, average="macro", zero_division=0))
    else:
        scores["accuracy"] = float(np.mean(g == p)) if len(g) else 0.0
        scores["f1"] = float(f1_score(g[:, 0], p[:, 0], zero_division=0))
    scores["per_label"] = _per_label(head, g, p)
    return scores


def score_all(
    schema: LabelSchema, gold: dict[str, Sequence[Any]], pred: dict[str, Sequence[Any]]
) -> dict[str, dict[str, Any]]:
    """:func:`score_head` for every head of the schema."""
    return {name: score_head(head, gold[name], pred[name]) for name, head in schema.heads.items()}


HEADLINE = {"single": ("accuracy", "macro_f1"), "multi": ("micro_f1", "macro_f1"),
            "binary": ("f1", "accuracy")}


def headline(scores: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The figures quoted for each head, e.g. ``{'sector.macro_f1': 0.91, ...}``."""
    return {f"{name}.{metric}": s[metric]
            for name, s in scores.items() for metric in HEADLINE[s["type"]]}


def calibration_scores(
    head: Head, logits: np.ndarray, gold: np.ndarray, temperature: float,
    thresholds: list[float] | None,
) -> dict[str, Any]:
    """ECE and reliability bins of one head before (T=1, 0.5) and after calibration."""
    out: dict[str, Any] = {"temperature": temperature}
    for when, t, limits in (("before", 1.0, None), ("after", temperature, thresholds)):
        conf, correct = label_confidences(probabilities(logits, head.type, t), head.type, gold,
                                          limits)
        out[f"ece_{when}"] = expected_calibration_error(conf, correct)
        out[f"reliability_{when}"] = reliability_bins(conf, correct)
    return out


def review_scores(
    answers: Sequence[dict[str, Any]], all_right: np.ndarray, review_threshold: float
) -> dict[str, Any]:
    """How the review rule splits the letters, and coverage vs accuracy for other thresholds."""
    confidence = np.array([a["confidence"] for a in answers])
    kept = confidence >= review_threshold
    curve = []
    for coverage in (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3):
        count = max(1, int(round(coverage * len(confidence))))
        top = np.argsort(-confidence, kind="stable")[:count]
        curve.append({"coverage": coverage, "accuracy": float(all_right[top].mean()),
                      "threshold": float(confidence[top].min())})
    return {
        "review_threshold": review_threshold,
        "review_share": float(1.0 - kept.mean()),
        "kept_accuracy": float(all_right[kept].mean()) if kept.any() else None,
        "reviewed_accuracy": float(all_right[~kept].mean()) if (~kept).any() else None,
        "all_accuracy": float(all_right.mean()),
        "coverage_curve": curve,
    }


def evaluate_classifier(
    classifier: Classifier, dataset: Dataset, baseline: dict[str, list[Any]] | None = None
) -> dict[str, Any]:
    """Score a trained classifier (and optionally the baseline's predictions) on a dataset.

    Returns:
        ``{"letters", "model_version", "runtime", "heads": {name: scores + calibration},
        "review": ..., "baseline": {name: scores} | None, "predictions": [...]}``.
    """
    schema = classifier.schema
    texts = list(dataset["text"])
    logits = classifier.logits(texts, progress=True)
    answers = classifier.answers(classifier.probabilities(logits))
    predicted = {name: [a[name] for a in answers] for name in schema.heads}
    gold = {name: list(dataset[name]) for name in schema.heads}
    heads = score_all(schema, gold, predicted)
    all_right = np.ones(len(texts), dtype=bool)
    for name, head in schema.heads.items():
        g = indicator(head, gold[name])
        all_right &= (g == indicator(head, predicted[name])).all(axis=1)
        heads[name]["calibration"] = calibration_scores(
            head, logits[name], g, classifier.calibration.temperatures.get(name, 1.0),
            classifier.calibration.thresholds.get(name))
        if head.type == "single":
            heads[name]["confusion"] = confusion_matrix(
                gold[name], predicted[name], labels=head.label_ids).tolist()
    return {
        "letters": len(texts),
        "model_version": classifier.version,
        "runtime": str(classifier.runtime),
        "heads": heads,
        "review": review_scores(answers, all_right, classifier.calibration.review_threshold),
        "review_target": classifier.calibration.review_target,
        "baseline": score_all(schema, gold, baseline) if baseline is not None else None,
        "predictions": [{"id": i, **a} for i, a in zip(dataset["id"], answers, strict=True)],
    }
