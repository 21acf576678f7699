"""Training the matter encoder (``model.matter``) on letters with ``group`` fields.

Contrastive: each step takes one pair of letters from each of ``batch_groups`` different
groups; a letter's partner must be the closest of all the partners in the batch (the
others, other matters, often of the same kind, are the negatives). A share of the groups
(``fit_fraction``) is held out: the pair scorer is fitted on them, with vectors of letters
the encoder never saw, so its weights trust the cosine as much as it deserves on new
letters.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from tqdm import tqdm

from model.matter import MatterEncoder
from model.precision import mixed_precision

logger = logging.getLogger(__name__)


@dataclass
class MatterTraining:
    """Settings of a matter-encoder run.

    Args:
        steps (int, default 60): optimiser steps.
        batch_groups (int, default 16): groups (one pair each) per step.
        max_tokens (int, default 192): tokens read from the start of each letter.
        learning_rate (float, default 3e-5).
        scale (float, default 20): cosine multiplier in the softmax over partners.
        fit_fraction (float, default 0.3): share of the groups held out for the pair scorer.
        seed (int, default 42).
    """

    steps: int = 60
    batch_groups: int = 16
    max_tokens: int = 192
    learning_rate: float = 3e-5
    scale: float = 20.0
    fit_fraction: float = 0.3
    seed: int = 42

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_groups < 2 or not 0.0 < self.fit_fraction < 1.0:
            raise ValueError(f"matter training needs steps >= 1, batch_groups >= 2 and "
                             f"fit_fraction in (0, 1); found {self.steps}, {self.batch_groups}, "
                             f"{self.fit_fraction}")


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


def train_matter_encoder(texts: Sequence[str], groups: Sequence[str | None], base_model: str,
                         settings: MatterTraining, bf16: bool = True) -> MatterEncoder:
    """Fine-tune ``base_model`` so that letters of one group lie close (see the module)."""
    members: dict[str, list[str]] = defaultdict(list)
    for text, group in zip(texts, groups, strict=True):
        if group:
            members[group].append(text)
    pairs_of = sorted(g for g, m in members.items() if len(m) > 1)
    if len(pairs_of) < 2:
        raise ValueError(f"the matter encoder needs at least 2 groups to train on; found {len(pairs_of)}")
    rng = random.Random(settings.seed)
    torch.manual_seed(settings.seed)
    encoder = MatterEncoder.from_base(base_model, settings.max_tokens)
    encoder.record.update({"training": asdict(settings), "groups": len(pairs_of)})
    optimiser = torch.optim.AdamW(encoder.model.parameters(), lr=settings.learning_rate)
    use_bf16 = mixed_precision(bf16)
    encoder.model.train()
    size = min(settings.batch_groups, len(pairs_of))
    for _ in tqdm(range(settings.steps), desc="matter encoder", unit="step"):
        chosen = [rng.sample(members[g], 2) for g in rng.sample(pairs_of, size)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            anchors = encoder.encode([a for a, _ in chosen])
            partners = encoder.encode([b for _, b in chosen])
        similarity = anchors.float() @ partners.float().T * settings.scale
        loss = torch.nn.functional.cross_entropy(similarity, torch.arange(size))
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    encoder.model.eval()
    logger.info("matter encoder trained on %d groups, last loss %.3f", len(pairs_of), loss.item())
    return encoder
