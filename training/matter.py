"""Training the matter encoder (``model.matter``) on letters with ``group`` fields.

Contrastive: each step takes one pair of letters from each of ``batch_groups`` different
groups; a letter's partner must be the closest of all the partners in the batch (the
others, other matters, often of the same kind, are the negatives), and of the hard
negatives: for each group that has them, one letter whose ``near_group`` names it (same
place or official, another matter).

A share of the groups (``fit_fraction``) is held out. Every ``check_every`` steps the
encoder is scored on them: the average precision of the cosine at telling same-matter
pairs from all other pairs of the held-out letters (their hard negatives included). The
best check is kept (step 0 is the base model), so a run that starts to learn its training
groups by heart stops paying for it. The pair scorer is then fitted on the same held-out
groups, with vectors of letters the encoder never trained on.
"""

from __future__ import annotations

import copy
import itertools
import logging
import random
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass

import torch
from sklearn.metrics import average_precision_score
from tqdm import tqdm

from model.matter import MatterEncoder
from model.precision import mixed_precision

logger = logging.getLogger(__name__)


@dataclass
class MatterTraining:
    """Settings of a matter-encoder run.

    Args:
        steps (int, default 60): most optimiser steps.
        check_every (int, default 10): steps between checks on the held-out groups.
        batch_groups (int, default 16): groups (one pair each) per step.
        max_tokens (int, default 192): tokens read from the start of each letter.
        learning_rate (float, default 3e-5).
        scale (float, default 20): cosine multiplier in the softmax over partners.
        fit_fraction (float, default 0.3): share of the groups held out for the pair scorer.
        seed (int, default 42).
    """

    steps: int = 60
    check_every: int = 10
    batch_groups: int = 16
    max_tokens: int = 192
    learning_rate: float = 3e-5
    scale: float = 20.0
    fit_fraction: float = 0.3
    seed: int = 42

    def __post_init__(self) -> None:
        if (self.steps < 1 or self.check_every < 1 or self.batch_groups < 2
                or not 0.0 < self.fit_fraction < 1.0):
            raise ValueError(f"matter training needs steps >= 1, check_every >= 1, batch_groups >= 2 "
                             f"and fit_fraction in (0, 1); found {self.steps}, {self.check_every}, "
                             f"{self.batch_groups}, {self.fit_fraction}")


def held_out_groups(groups: Sequence[str | None], fraction: float, seed: int) -> set[str]:
    """A random ``fraction`` of the groups with two letters or more (at least one)."""
    sizes: dict[str, int] = defaultdict(int)
    for group in groups:
        if group:
            sizes[group] += 1
    several = sorted(g for g, n in sizes.items() if n > 1)
    if len(several) < 3:
        raise ValueError(f"the matter encoder needs at least 3 groups of two letters or more; "
                         f"found {len(several)}")
    random.Random(seed).shuffle(several)
    return set(several[: max(1, round(fraction * len(several)))])


def same_matter_precision(encoder: MatterEncoder, texts: Sequence[str],
                          groups: Sequence[str | None]) -> float:
    """Average precision of the cosine at ranking same-group pairs above all other pairs
    of ``texts`` (a letter in no group is a negative for every other)."""
    vectors = encoder.vectors(texts)
    pairs = list(itertools.combinations(range(len(texts)), 2))
    same = [groups[i] is not None and groups[i] == groups[j] for i, j in pairs]
    cosines = [float(vectors[i] @ vectors[j]) for i, j in pairs]
    return float(average_precision_score(same, cosines))


def _members(texts: Sequence[str], keys: Sequence[str | None],
             wanted: Collection[str] | None = None) -> dict[str, list[str]]:
    """Texts by key (group or near_group), keeping only the ``wanted`` keys if given."""
    members: dict[str, list[str]] = defaultdict(list)
    for text, key in zip(texts, keys, strict=True):
        if key and (wanted is None or key in wanted):
            members[key].append(text)
    return members


def train_matter_encoder(
    texts: Sequence[str], groups: Sequence[str | None], base_model: str, settings: MatterTraining,
    *, near_groups: Sequence[str | None] | None = None, held_out: Collection[str] = (),
    bf16: bool = True,
) -> MatterEncoder:
    """Fine-tune ``base_model`` so that letters of one group lie close (see the module).

    Args:
        texts, groups: the letters and their groups (None: in no group).
        near_groups: per letter, the group it is a hard negative of, if any.
        held_out: groups kept out of training and used to choose the step.
    """
    near = list(near_groups) if near_groups is not None else [None] * len(texts)
    members = {g: m for g, m in _members(texts, groups).items() if g not in held_out}
    pairs_of = sorted(g for g, m in members.items() if len(m) > 1)
    if len(pairs_of) < 2:
        raise ValueError(f"the matter encoder needs at least 2 groups to train on; found {len(pairs_of)}")
    negatives = _members(texts, near, set(pairs_of))
    check = [(t, g if g in held_out else None) for t, g, n in zip(texts, groups, near, strict=True)
             if g in held_out or n in held_out]
    rng = random.Random(settings.seed)
    torch.manual_seed(settings.seed)
    encoder = MatterEncoder.from_base(base_model, settings.max_tokens)
    optimiser = torch.optim.AdamW(encoder.model.parameters(), lr=settings.learning_rate)
    use_bf16 = mixed_precision(bf16)
    checks: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None

    def score(step: int) -> None:
        nonlocal best
        if not check:
            return
        value = same_matter_precision(encoder, [t for t, _ in check], [g for _, g in check])
        checks.append({"step": step, "average_precision": round(value, 4)})
        logger.info("matter encoder step %d: held-out average precision %.4f", step, value)
        if best is None or value > best[0]:
            best = (value, step, copy.deepcopy(encoder.model.state_dict()))

    score(0)
    size = min(settings.batch_groups, len(pairs_of))
    for step in tqdm(range(1, settings.steps + 1), desc="matter encoder", unit="step"):
        encoder.model.train()
        chosen = rng.sample(pairs_of, size)
        pairs = [rng.sample(members[g], 2) for g in chosen]
        hard = [rng.choice(negatives[g]) for g in chosen if negatives.get(g)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            anchors = encoder.encode([a for a, _ in pairs])
            partners = encoder.encode([b for _, b in pairs] + hard)
        similarity = anchors.float() @ partners.float().T * settings.scale
        loss = torch.nn.functional.cross_entropy(similarity, torch.arange(size))
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        if step % settings.check_every == 0 or step == settings.steps:
            score(step)
    encoder.model.eval()
    best_step = settings.steps
    if best is not None:
        _, best_step, state = best
        encoder.model.load_state_dict(state)
    encoder.record.update({"training": asdict(settings), "groups": len(pairs_of),
                           "hard_negatives": sum(map(len, negatives.values())),
                           "checks": checks, "best_step": best_step})
    logger.info("matter encoder trained on %d groups; kept step %d (last loss %.3f)", len(pairs_of),
                best_step, loss.item())
    return encoder
