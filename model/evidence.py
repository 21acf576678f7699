"""Evidence: the sentences of a letter that weigh most for each label the model chose.

Each sentence is scored on its own by the same model; for a chosen label, the sentences
with the highest probability of that label are its evidence. One batch of short inputs,
so it costs about as much as classifying the letter once per few sentences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from model.inference import Classifier

_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…\n])")
MIN_SENTENCE_CHARS = 4


@dataclass
class Evidence:
    head: str
    label: str
    sentence: str
    start: int  # character offset in the letter text
    score: float


def sentences(text: str) -> list[tuple[int, str]]:
    """(offset, sentence) pairs, split after Chinese and Western sentence ends and newlines."""
    out, offset = [], 0
    for piece in _SENTENCE_END.split(text):
        if len(piece.strip()) >= MIN_SENTENCE_CHARS:
            out.append((offset + len(piece) - len(piece.lstrip()), piece.strip()))
        offset += len(piece)
    return out


def evidence(classifier: Classifier, text: str, chosen: dict[str, Any], top: int = 2) -> list[Evidence]:
    """For every chosen label (``chosen``: {head: label(s)}, binary heads when true), the
    ``top`` sentences that score it highest."""
    parts = sentences(text)
    if not parts:
        return []
    probs = classifier.probabilities(classifier.logits([s for _, s in parts]))
    found = []
    for name, head in classifier.schema.heads.items():
        value = chosen.get(name)
        if head.type == "binary":
            labels = [name] if value is True else []
        else:
            labels = value if isinstance(value, list) else [value] if value else []
        for label in labels:
            column = 0 if head.type == "binary" else head.label_ids.index(label)
            scores = probs[name][:, column]
            for i in scores.argsort()[::-1][:top]:
                found.append(Evidence(name, label, parts[i][1], parts[i][0], round(float(scores[i]), 4)))
    return found
