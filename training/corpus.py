"""Checks of the training corpus: label counts against the minimums the product needs,
near-duplicate texts, repeated phrases, and letters leaked from an evaluation set.

The corpus format is the loader's (see :mod:`training.data`) plus optional fields:
``source`` (``written:<voice>`` or ``generated:<template>``), ``tags`` (a list from
:data:`TAGS`) and ``near_group`` (for a hard negative, the group it resembles).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasketch import MinHash, MinHashLSH

from model.labels import LabelSchema
from training.data import DataError, RowError, load_letters, read_rows

TAGS = ("recurring_act", "hard_negative", "angry_no_misconduct")
GROUP_SIZE = (2, 4)
LENGTH_RANGE = (30, 1500)
DUPLICATE_JACCARD = 0.8
LEAK_JACCARD = 0.5
PHRASE_CHARS = 12
PHRASE_SHARE = 0.02
NUM_PERM = 128

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Minimum:
    """A count the corpus must reach."""

    name: str
    found: int
    required: int

    @property
    def met(self) -> bool:
        return self.found >= self.required


@dataclass
class CorpusReport:
    """Counts, minimums and problems of a corpus."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    minimums: list[Minimum] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(m.met for m in self.minimums) and not self.problems


def shingles(text: str, size: int = 5) -> set[str]:
    """Character ``size``-grams of a text with whitespace removed."""
    text = _SPACE.sub("", text)
    return {text[i : i + size] for i in range(max(1, len(text) - size + 1))}


def jaccard(a: set[str], b: set[str]) -> float:
    """Jaccard similarity of two sets (0 for two empty sets)."""
    return len(a & b) / len(a | b) if a or b else 0.0


def _minhash(grams: Iterable[str]) -> MinHash:
    m = MinHash(num_perm=NUM_PERM)
    m.update_batch([g.encode("utf-8") for g in grams])
    return m


def similar_pairs(
    texts: Sequence[str], threshold: float, others: Sequence[str] = ()
) -> list[tuple[int, int, float]]:
    """Pairs of texts whose 5-gram Jaccard exceeds ``threshold``.

    Without ``others``: pairs within ``texts`` as ``(i, j, jaccard)`` with ``i < j``.
    With ``others``: pairs ``(i, k, jaccard)`` of ``texts[i]`` and ``others[k]``.
    MinHash LSH proposes candidates (at a lower threshold, so few are missed);
    the exact Jaccard decides.
    """
    grams = [shingles(t) for t in texts]
    other_grams = [shingles(t) for t in others]
    lsh = MinHashLSH(threshold=max(0.1, threshold - 0.2), num_perm=NUM_PERM)
    indexed = other_grams if others else grams
    for k, g in enumerate(indexed):
        lsh.insert(str(k), _minhash(g))
    pairs = []
    for i, g in enumerate(grams):
        for key in lsh.query(_minhash(g)):
            k = int(key)
            if not others and k <= i:
                continue
            score = jaccard(g, indexed[k])
            if score > threshold:
                pairs.append((i, k, score))
    return sorted(pairs)


def repeated_phrases(
    texts: Sequence[str], chars: int = PHRASE_CHARS, share: float = PHRASE_SHARE
) -> list[tuple[str, int]]:
    """Phrases of ``chars`` characters found in more than ``share`` of the texts."""
    counts: Counter[str] = Counter()
    for text in texts:
        text = _SPACE.sub("", text)
        counts.update({text[i : i + chars] for i in range(len(text) - chars + 1)})
    limit = share * len(texts)
    return [(p, n) for p, n in counts.most_common() if n > limit]


def read_corpus(paths: Sequence[Path], schema: LabelSchema) -> list[dict[str, Any]]:
    """Corpus rows as dicts, after checking every row against the schema.

    Raises:
        DataError: a row is malformed, has an unknown label, or an unknown tag.
    """
    load_letters(paths, schema)
    errors: list[RowError] = []
    rows = [row for path in paths for row in read_rows(path, errors)]
    for row in rows:
        tags = row.values.get("tags") or []
        unknown = [t for t in tags if t not in TAGS] if isinstance(tags, list) else [tags]
        if unknown:
            errors.append(RowError(row.file, row.line, "tags", f"a list from {list(TAGS)}",
                                   f"{unknown}"))
    if errors:
        raise DataError(errors)
    return [{**row.values, "text": schema.join_text(row.values)} for row in rows]


def _count_labels(rows: list[dict[str, Any]], schema: LabelSchema) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {}
    for name, head in schema.heads.items():
        counter: Counter[str] = Counter({label: 0 for label in head.label_ids})
        for row in rows:
            value = row.get(name)
            if head.type == "multi":
                counter.update(value or [])
                counter["(two or more)"] += len(value or []) >= 2
                counter["(none)"] += not value
            else:
                counter[str(value)] += 1
        counts[name] = counter
    counts["tags"] = Counter({t: 0 for t in TAGS})
    counts["tags"].update(t for row in rows for t in row.get("tags") or [])
    counts["source"] = Counter(str(row.get("source", "(none)")).split(":")[0] for row in rows)
    return counts


def _group_problems(rows: list[dict[str, Any]]) -> tuple[dict[str, list[str]], list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row.get("group"):
            groups[row["group"]].append(row["id"])
    low, high = GROUP_SIZE
    problems = [
        f"group {g} has {len(ids)} letters; a group holds {low} to {high} letters"
        for g, ids in sorted(groups.items())
        if not low <= len(ids) <= high
    ]
    for row in rows:
        near = row.get("near_group")
        if near and near not in groups:
            problems.append(f"{row['id']}: near_group {near} is not a group of this corpus")
    return groups, problems


def _duplicate_problems(rows: list[dict[str, Any]]) -> list[str]:
    texts = [row["text"] for row in rows]
    problems = []
    for i, j, score in similar_pairs(texts, DUPLICATE_JACCARD):
        same_group = rows[i].get("group") and rows[i].get("group") == rows[j].get("group")
        if not same_group:
            problems.append(f"near-duplicate texts {rows[i]['id']} and {rows[j]['id']} "
                            f"(5-gram Jaccard {score:.2f} > {DUPLICATE_JACCARD}): remove one")
    return problems


def _leak_problems(rows: list[dict[str, Any]], reference: Sequence[str]) -> list[str]:
    pairs = similar_pairs([row["text"] for row in rows], LEAK_JACCARD, others=reference)
    return [
        f"{rows[i]['id']} resembles evaluation letter #{k + 1} (5-gram Jaccard {score:.2f}): "
        "evaluation letters must never be copied or paraphrased into the corpus"
        for i, k, score in pairs
    ]


def check_corpus(
    paths: Sequence[Path], schema: LabelSchema, reference: Sequence[str] = ()
) -> CorpusReport:
    """Count a corpus against the minimums and list its problems.

    Args:
        paths: corpus JSONL files.
        schema: the label schema (our ``labels.yaml``: heads sector/violations/repeat_cue).
        reference: texts of an evaluation set that must not leak into the corpus.
    """
    rows = read_corpus(paths, schema)
    report = CorpusReport(counts=_count_labels(rows, schema))
    report.lengths = [len(row["text"]) for row in rows]
    groups, report.problems = _group_problems(rows)
    report.problems += _duplicate_problems(rows)
    report.problems += _leak_problems(rows, reference) if reference else []
    written = [r for r in rows if str(r.get("source", "")).startswith("written")]
    low, high = LENGTH_RANGE
    report.problems += [f"{r['id']}: written letter of {len(r['text'])} characters; "
                        f"expected {low} to {high}" for r in written
                        if not low <= len(r["text"]) <= high]
    generated = [r["text"] for r in rows if str(r.get("source", "")).startswith("generated")]
    report.problems += [f"generated letters repeat the phrase {p!r} in {n} of {len(generated)}"
                        for p, n in repeated_phrases(generated)] if generated else []
    report.minimums = _minimums(rows, report.counts, schema, groups, len(written))
    return report


def _minimums(
    rows: list[dict[str, Any]],
    counts: dict[str, Counter[str]],
    schema: LabelSchema,
    groups: dict[str, list[str]],
    written: int,
) -> list[Minimum]:
    tags = counts["tags"]
    mins = [Minimum("letters", len(rows), 3000), Minimum("written one by one", written, 1500)]
    mins += [Minimum(f"sector {s}", counts["sector"][s], 150)
             for s in schema.heads["sector"].label_ids]
    mins += [Minimum(f"violation {v}", counts["violations"][v], 250)
             for v in schema.heads["violations"].label_ids]
    mins += [
        Minimum("two or more violations", counts["violations"]["(two or more)"], 150),
        Minimum("repeat_cue true", counts["repeat_cue"]["True"], 300),
        Minimum("recurring act, never reported", tags["recurring_act"], 300),
        Minimum("groups of 2-4 letters", sum(2 <= len(g) <= 4 for g in groups.values()), 100),
        Minimum("hard negatives", tags["hard_negative"], 100),
        Minimum("angry letters alleging no misconduct", tags["angry_no_misconduct"], 50),
    ]
    return mins


def format_report(report: CorpusReport) -> str:
    """The report as text for the terminal."""
    lines = []
    for head, counter in report.counts.items():
        lines.append(f"{head}:")
        lines += [f"  {label:<32} {n:>6}" for label, n in counter.items()]
    lengths = sorted(report.lengths)
    if lengths:
        lines.append(f"length: min {lengths[0]}, median {lengths[len(lengths) // 2]}, "
                     f"max {lengths[-1]}")
    lines.append("minimums:")
    lines += [f"  {'ok  ' if m.met else 'MISS'} {m.name:<40} {m.found:>6} >= {m.required}"
              for m in report.minimums]
    if report.problems:
        lines.append(f"problems ({len(report.problems)}):")
        lines += [f"  {p}" for p in report.problems]
    lines.append("corpus OK" if report.ok else "corpus does NOT meet the requirements")
    return "\n".join(lines)
