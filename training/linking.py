"""Fitting and evaluating case linking on letters with ``group`` fields.

Letters arrive in file order; each is linked against the letters before it, exactly as
the service does. Every pair within a group is a positive, every other pair a negative
(including hard negatives that share a place or an official).
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Dataset

from model.inference import Classifier
from model.keyfields import extract_key_fields
from model.linking import LINK_PRECISION, Entry, MatterIndex, PairScorer
from model.matter import MatterEncoder
from training.matter import MatterTraining, held_out_groups, train_matter_encoder

logger = logging.getLogger(__name__)


def entries_for(dataset: Dataset, classifier: Classifier | None,
                matter: MatterEncoder | None = None) -> list[Entry]:
    """Linking entries of a dataset: key fields, sectors from the classifier, and vectors
    from the matter encoder (or, without one, the classifier's)."""
    texts = list(dataset["text"])
    vectors: Any = [None] * len(texts)
    sectors: list[str | None] = [None] * len(texts)
    if classifier is not None:
        logits, vectors = classifier.run(texts, progress=True)
        single = next((n for n, h in classifier.schema.heads.items() if h.type == "single"), None)
        if single is not None:
            answers = classifier.answers(classifier.probabilities(logits))
            sectors = [a[single] for a in answers]
    if matter is not None:
        vectors = matter.vectors(texts)
    return [Entry(letter_id=str(i), text=t, key_fields=extract_key_fields(t), vector=v, sector=s)
            for i, t, v, s in zip(dataset["id"], texts, vectors, sectors, strict=True)]


def candidate_pairs(
    entries: Sequence[Entry], groups: Sequence[str | None], use_vectors: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of every (letter, earlier candidate) pair the index proposes."""
    group_of = {e.letter_id: g for e, g in zip(entries, groups, strict=True)}
    index = MatterIndex(scorer=PairScorer(use_vectors=use_vectors))
    rows, labels = [], []
    for entry in entries:
        ids, features = index.features(entry)
        rows.append(features)
        labels += [int(group_of[entry.letter_id] is not None and group_of[entry.letter_id] == group_of[i])
                   for i in ids]
        index.add(entry, entry.letter_id)
    return np.vstack(rows), np.asarray(labels)


def fit_scorer(entries: Sequence[Entry], groups: Sequence[str | None],
               precision: float = LINK_PRECISION, use_vectors: bool = False) -> PairScorer:
    """A pair scorer fitted on the candidate pairs of letters with known groups; its threshold
    keeps links right ``precision`` of the time on those pairs. Vectors are off by default:
    the classifier's vectors are close for any two letters of one sector, and with them the
    dev-set recall fell (docs/linking.md)."""
    features, labels = candidate_pairs(entries, groups, use_vectors)
    if labels.sum() == 0:
        raise ValueError("fitting the linker needs letters that share a group; found no such pair")
    logger.info("fitting the linker on %d candidate pairs (%d positive)", len(labels), labels.sum())
    return PairScorer.fit(features, labels, precision, use_vectors)


def scorer_letters(dataset: Dataset, held_out: set[str], fraction: float, seed: int) -> Dataset:
    """The letters a scorer is fitted on beside a matter encoder: those of the held-out
    groups, and a ``fraction`` of the letters in no group (the encoder saw none of them)."""
    rng = np.random.default_rng(seed)
    keep = [i for i, group in enumerate(dataset["group"])
            if group in held_out or (not group and rng.random() < fraction)]
    return dataset.select(keep)


@dataclass
class FittedLinker:
    """A pair scorer, the matter encoder whose vectors it reads, and the letters (entries
    and groups) it was fitted on."""

    scorer: PairScorer
    encoder: MatterEncoder
    entries: list[Entry]
    groups: list[str | None]


def fit_linker(dataset: Dataset, classifier: Classifier, settings: MatterTraining,
               precision: float = LINK_PRECISION, *, base_model: str | None = None,
               encoder: MatterEncoder | None = None) -> FittedLinker:
    """Train a matter encoder from ``base_model`` on most of the groups (choosing its step
    on the rest), then fit the pair scorer on the rest. With ``encoder`` given (e.g. when a
    retrained classifier keeps the live model's), only the scorer is refitted, on the groups
    that encoder held out."""
    if encoder is None:
        if base_model is None:
            raise ValueError("fit_linker needs a base_model to train a matter encoder from")
        held_out = held_out_groups(dataset["group"], settings.fit_fraction, settings.seed)
        near = dataset["near_group"] if "near_group" in dataset.column_names else None
        encoder = train_matter_encoder(dataset["text"], dataset["group"], base_model, settings,
                                       near_groups=near, held_out=held_out)
        encoder.record["held_out_groups"] = sorted(held_out)
    else:
        settings = MatterTraining(**encoder.record["training"])
    fitting = scorer_letters(dataset, set(encoder.record["held_out_groups"]), settings.fit_fraction,
                             settings.seed)
    entries = entries_for(fitting, classifier, encoder)
    groups = list(fitting["group"])
    return FittedLinker(fit_scorer(entries, groups, precision, use_vectors=True), encoder, entries, groups)


def _pairs(clusters: dict[str, str]) -> set[tuple[str, str]]:
    members: dict[str, list[str]] = defaultdict(list)
    for letter, cluster in clusters.items():
        members[cluster].append(letter)
    return {tuple(sorted(p)) for m in members.values() for p in itertools.combinations(m, 2)}


def _bcubed(gold: dict[str, str], predicted: dict[str, str]) -> tuple[float, float]:
    gold_members, pred_members = defaultdict(set), defaultdict(set)
    for letter in gold:
        gold_members[gold[letter]].add(letter)
        pred_members[predicted[letter]].add(letter)
    precision = np.mean([len(pred_members[predicted[x]] & gold_members[gold[x]])
                         / len(pred_members[predicted[x]]) for x in gold])
    recall = np.mean([len(pred_members[predicted[x]] & gold_members[gold[x]])
                      / len(gold_members[gold[x]]) for x in gold])
    return float(precision), float(recall)


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def link_all(entries: Sequence[Entry], scorer: PairScorer) -> tuple[dict[str, str], list[tuple]]:
    """Link letters in order; their matter ids and every link found (new, earlier, score)."""
    index = MatterIndex(scorer=scorer)
    matters, links = {}, []
    for entry in entries:
        decision = index.link(entry)
        matters[entry.letter_id] = decision.matter_id
        links += [(entry.letter_id, link.letter_id, link.score, link.shared)
                  for link in decision.repeat_of]
        index.add(entry, decision.matter_id)
    return matters, links


def evaluate_linking(
    entries: Sequence[Entry], groups: Sequence[str | None], scorer: PairScorer,
    hard_negatives: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Link the letters in order, then score the matters against the groups."""
    matters, links = link_all(entries, scorer)
    return {**score_matters(entries, groups, matters, hard_negatives), "links": len(links)}


def score_matters(
    entries: Sequence[Entry], groups: Sequence[str | None], matters: dict[str, str],
    hard_negatives: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Pair precision/recall/F1 (pairs in one predicted matter vs one group) and B-cubed."""
    gold = {e.letter_id: (g or f"single-{e.letter_id}") for e, g in zip(entries, groups, strict=True)}
    gold_pairs, predicted_pairs = _pairs(gold), _pairs(matters)
    true = len(gold_pairs & predicted_pairs)
    precision = true / len(predicted_pairs) if predicted_pairs else 1.0
    recall = true / len(gold_pairs) if gold_pairs else 1.0
    b_precision, b_recall = _bcubed(gold, matters)
    wrongly_linked = [p for p in hard_negatives if tuple(sorted(p)) in predicted_pairs]
    return {
        "letters": len(entries),
        "gold_groups": sum(1 for n in Counter(g for g in groups if g).values() if n > 1),
        "gold_pairs": len(gold_pairs),
        "predicted_pairs": len(predicted_pairs),
        "pair_precision": precision, "pair_recall": recall, "pair_f1": _f1(precision, recall),
        "bcubed_precision": b_precision, "bcubed_recall": b_recall,
        "bcubed_f1": _f1(b_precision, b_recall),
        "hard_negative_pairs": len(hard_negatives),
        "hard_negatives_linked": len(wrongly_linked),
    }
