"""Blending the encoder with the lexical heads: fit the lexical heads on the training
split, then choose on the validation split how much their logits add to the encoder's."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from datasets import Dataset

from model.labels import LabelSchema
from model.lexical import LexicalHeads

logger = logging.getLogger(__name__)

LEXICAL_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def blended(encoder: dict[str, np.ndarray], lexical: dict[str, np.ndarray],
            weight: float) -> dict[str, np.ndarray]:
    """Encoder logits plus ``weight`` × lexical logits, head by head."""
    return {name: encoder[name] + weight * lexical[name] for name in encoder}


def blend_lexical(
    schema: LabelSchema, train_set: Dataset, train_gold: dict[str, np.ndarray], val_set: Dataset,
    val_logits: dict[str, np.ndarray], score: Callable[[dict[str, np.ndarray]], float],
) -> tuple[LexicalHeads | None, float, dict[float, float]]:
    """The lexical heads and their weight, chosen by ``score`` of the blended validation
    logits (ties go to the smaller weight; weight 0 means the encoder alone).

    Returns:
        (lexical heads, or None at weight 0; weight; {weight: validation score}).
    """
    lexical = LexicalHeads.fit(list(train_set["text"]), train_gold, schema)
    lexical_val = lexical.logits(list(val_set["text"]))
    scores = {w: score(blended(val_logits, lexical_val, w)) for w in LEXICAL_WEIGHTS}
    best = max(LEXICAL_WEIGHTS, key=lambda w: (round(scores[w], 6), -w))
    logger.info("lexical weight %.2f (validation score %.4f; encoder alone %.4f)", best, scores[best],
                scores[0.0])
    return (lexical if best > 0 else None), best, scores
