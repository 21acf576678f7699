"""Blending the encoder with the lexical heads: fit the lexical heads on the training
split, then choose per head, on the validation split, how much their logits add to the
encoder's (a head whose words say more than its meaning gets a larger weight).

The weight is chosen by the validation log-loss after temperature scaling, not by F1:
on a few hundred validation letters F1 moves in steps of one letter and is flat across
most weights, so the F1-best weight is noise; the log-loss sees every letter's margin."""

from __future__ import annotations

import logging

import numpy as np
from datasets import Dataset

from model.calibration import calibrated_nll
from model.labels import LabelSchema
from model.lexical import C_VALUES, LexicalHeads

logger = logging.getLogger(__name__)

LEXICAL_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)


def blended(encoder: dict[str, np.ndarray], lexical: dict[str, np.ndarray],
            weights: dict[str, float]) -> dict[str, np.ndarray]:
    """Encoder logits plus, head by head, that head's weight × the lexical logits."""
    return {name: encoder[name] + weights.get(name, 0.0) * lexical[name] for name in encoder}


def blend_lexical(
    schema: LabelSchema, train_set: Dataset, train_gold: dict[str, np.ndarray], val_set: Dataset,
    val_logits: dict[str, np.ndarray], val_gold: dict[str, np.ndarray],
) -> tuple[LexicalHeads | None, dict[str, float], dict[str, dict[float, float]]]:
    """The lexical heads and a weight per head, each the one with the lowest calibrated
    validation log-loss of the blended logits (0 is the encoder alone). The lexical heads
    are fitted once per regularisation in ``C_VALUES``; the one whose best weights give
    the lowest mean log-loss is kept.

    Returns:
        (lexical heads, or None when every weight is 0; {head: weight};
        {head: {weight: validation log-loss}}).
    """
    best: tuple[float, LexicalHeads, dict[str, float], dict[str, dict[float, float]]] | None = None
    for c in C_VALUES:
        lexical = LexicalHeads.fit(list(train_set["text"]), train_gold, schema, c)
        lexical_val = lexical.logits(list(val_set["text"]))
        losses = {name: {w: calibrated_nll(val_logits[name] + w * lexical_val[name], val_gold[name],
                                           head.type)
                         for w in LEXICAL_WEIGHTS}
                  for name, head in schema.heads.items()}
        weights = {name: min(LEXICAL_WEIGHTS, key=lambda w, n=name: losses[n][w]) for name in losses}
        mean = float(np.mean([losses[n][w] for n, w in weights.items()]))
        logger.info("lexical C=%g: weights %s, validation log-loss %s (encoder alone %s)", c, weights,
                    {n: round(losses[n][w], 4) for n, w in weights.items()},
                    {n: round(losses[n][0.0], 4) for n in weights})
        if best is None or mean < best[0]:
            best = (mean, lexical, weights, losses)
    assert best is not None
    _, lexical, weights, losses = best
    return (lexical if any(weights.values()) else None), weights, losses
