"""Calibration: temperature scaling per head, decision thresholds per label, and the
review rule that decides which letters a person must check.

All functions take plain arrays: ``logits`` (letters × outputs) and gold labels as a
0/1 indicator matrix (letters × labels; one column for a binary head).

The review rule: a letter's *confidence* is the calibrated probability that every head
is right (the product of the heads' confidences); letters under ``review_threshold``
go to a person. The threshold is the lowest one for which, on the validation letters,
those above it are all right at least ``target`` of the time.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from model.labels import HeadType

logger = logging.getLogger(__name__)

TEMPERATURE_RANGE = (0.05, 20.0)
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)


def probabilities(logits: np.ndarray, kind: HeadType, temperature: float = 1.0) -> np.ndarray:
    """Softmax (``single``) or sigmoid (``multi``/``binary``) of ``logits / temperature``."""
    scaled = torch.as_tensor(logits, dtype=torch.float64) / temperature
    probs = torch.softmax(scaled, dim=-1) if kind == "single" else torch.sigmoid(scaled)
    return probs.numpy()


def _nll(logits: torch.Tensor, gold: torch.Tensor, kind: HeadType) -> torch.Tensor:
    if kind == "single":
        return torch.nn.functional.cross_entropy(logits, gold.argmax(dim=-1))
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, gold)


def fit_temperature(logits: np.ndarray, gold: np.ndarray, kind: HeadType) -> float:
    """The temperature in ``TEMPERATURE_RANGE`` that minimises the validation negative
    log-likelihood (a bounded search over log T, so separable logits cannot drive it to
    0 or to NaN)."""
    if len(logits) == 0:
        raise ValueError("temperature scaling needs at least one validation letter, found none")
    if not np.isfinite(logits).all():
        raise ValueError("temperature scaling found non-finite logits: training diverged; "
                         "lower the learning rate")
    x = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(gold, dtype=torch.float64)

    def nll(log_t: float) -> float:
        return float(_nll(x / np.exp(log_t), y, kind))

    low, high = np.log(TEMPERATURE_RANGE)
    best = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(best.x))


def calibrated_nll(logits: np.ndarray, gold: np.ndarray, kind: HeadType) -> float:
    """The negative log-likelihood of ``gold`` after temperature scaling: how well the
    outputs rank and separate the answers, whatever their scale."""
    temperature = fit_temperature(logits, gold, kind)
    x = torch.as_tensor(logits, dtype=torch.float64) / temperature
    return float(_nll(x, torch.as_tensor(gold, dtype=torch.float64), kind))


def _f1(gold: np.ndarray, predicted: np.ndarray) -> float:
    tp = float(np.sum(gold & predicted))
    denominator = float(np.sum(gold) + np.sum(predicted))
    return 2 * tp / denominator if denominator else 0.0


def fit_thresholds(probs: np.ndarray, gold: np.ndarray) -> list[float]:
    """Per label, the probability threshold with the best validation F1.

    Ties go to the threshold nearest 0.5; a label without validation positives keeps 0.5.
    """
    thresholds = []
    for column in range(probs.shape[1]):
        g = gold[:, column].astype(bool)
        if not g.any():
            thresholds.append(0.5)
            continue
        scores = [(_f1(g, probs[:, column] >= t), -abs(t - 0.5), t) for t in THRESHOLD_GRID]
        thresholds.append(float(max(scores)[2]))
    return thresholds


def decisions(probs: np.ndarray, kind: HeadType, thresholds: list[float] | None) -> np.ndarray:
    """0/1 decisions (letters × labels): the arg-max for ``single``, thresholds otherwise."""
    if kind == "single":
        out = np.zeros_like(probs, dtype=int)
        out[np.arange(len(probs)), probs.argmax(axis=1)] = 1
        return out
    limits = np.asarray(thresholds if thresholds is not None else [0.5] * probs.shape[1])
    return (probs >= limits).astype(int)


def head_confidence(probs: np.ndarray, kind: HeadType, decided: np.ndarray) -> np.ndarray:
    """Per letter, the probability that the head's decision is right.

    ``single``: the probability of the chosen label. ``multi``/``binary``: the product
    over labels of the probability of each label's decision (p when on, 1 - p when off).
    """
    if kind == "single":
        return probs.max(axis=1)
    return np.prod(np.where(decided == 1, probs, 1.0 - probs), axis=1)


def fit_review_threshold(confidence: np.ndarray, correct: np.ndarray, target: float) -> float:
    """The lowest confidence threshold whose kept letters are right ``>= target`` of the time.

    Letters with ``confidence >= threshold`` are kept (no review). Returns a value above 1
    (everything reviewed) when no threshold reaches the target.
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"the review target must be in (0, 1], found {target}")
    order = np.argsort(-confidence, kind="stable")
    ranked = confidence[order]
    kept_accuracy = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    # a threshold keeps every letter tied with it: look only at the ends of tie groups
    ends = np.append(np.nonzero(np.diff(ranked))[0], len(ranked) - 1)
    good = ends[kept_accuracy[ends] >= target]
    return float(ranked[good[-1]]) if len(good) else 1.01


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 10
) -> list[dict[str, float]]:
    """Equal-width confidence bins: mean confidence, accuracy and count of each non-empty bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return [
        {"low": float(edges[b]), "high": float(edges[b + 1]),
         "confidence": float(confidence[which == b].mean()),
         "accuracy": float(correct[which == b].mean()), "count": int((which == b).sum())}
        for b in range(bins) if (which == b).any()
    ]


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: the count-weighted gap between confidence and accuracy."""
    if len(confidence) == 0:
        return 0.0
    return float(sum(b["count"] * abs(b["confidence"] - b["accuracy"])
                     for b in reliability_bins(confidence, correct, bins)) / len(confidence))


def label_confidences(
    probs: np.ndarray, kind: HeadType, gold: np.ndarray, thresholds: list[float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) pairs for calibration measures of one head.

    ``single``: one pair per letter (top label). ``multi``/``binary``: one pair per
    letter and label (the probability of the decision taken, and whether it was right).
    """
    decided = decisions(probs, kind, thresholds)
    if kind == "single":
        return probs.max(axis=1), (decided == gold).all(axis=1).astype(float)
    conf = np.where(decided == 1, probs, 1.0 - probs).ravel()
    return conf, (decided == gold).ravel().astype(float)


@dataclass
class Calibration:
    """What calibration fitted: stored in the model config."""

    temperatures: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, list[float]] = field(default_factory=dict)
    review_threshold: float = 0.0
    review_target: float = 0.95
    validation_review_share: float = 0.0
    validation_kept_accuracy: float = 0.0
    # per head, how much the lexical heads' logits add to the encoder's (model.lexical)
    lexical_weights: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Calibration:
        return cls(**data)  # type: ignore[arg-type]
