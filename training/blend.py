"""Blending the encoder with the lexical heads: fit the lexical heads on the training
split, then choose per head, on the validation split, how much their logits add to the
encoder's (a head whose words say more than its meaning gets a larger weight)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from datasets import Dataset

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
    val_logits: dict[str, np.ndarray], score: Callable[[dict[str, np.ndarray]], dict[str, float]],
) -> tuple[LexicalHeads | None, dict[str, float], dict[str, dict[float, float]]]:
    """The lexical heads and a weight per head, each chosen by ``score`` (validation scores
    per head) of the blended logits; ties go to the smaller weight, 0 is the encoder alone.
    The lexical heads are fitted once per regularisation in ``C_VALUES``; the one whose best
    weights score highest on average is kept.

    Returns:
        (lexical heads, or None when every weight is 0; {head: weight};
        {head: {weight: validation score}}).
    """
    best: tuple[float, LexicalHeads, dict[str, float], dict[str, dict[float, float]]] | None = None
    for c in C_VALUES:
        lexical = LexicalHeads.fit(list(train_set["text"]), train_gold, schema, c)
        lexical_val = lexical.logits(list(val_set["text"]))
        tried = {w: score(blended(val_logits, lexical_val, dict.fromkeys(schema.heads, w)))
                 for w in LEXICAL_WEIGHTS}
        scores = {head: {w: tried[w][head] for w in LEXICAL_WEIGHTS} for head in schema.heads}
        weights = {head: max(LEXICAL_WEIGHTS, key=lambda w, h=head: (round(scores[h][w], 6), -w))
                   for head in schema.heads}
        mean = float(np.mean([scores[h][w] for h, w in weights.items()]))
        logger.info("lexical C=%g: weights %s, validation scores %s (encoder alone %s)", c, weights,
                    {h: round(scores[h][w], 4) for h, w in weights.items()},
                    {h: round(scores[h][0.0], 4) for h in weights})
        if best is None or mean > best[0]:
            best = (mean, lexical, weights, scores)
    assert best is not None
    _, lexical, weights, scores = best
    return (lexical if any(weights.values()) else None), weights, scores
