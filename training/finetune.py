"""Fine-tuning: train the multi-head network on labelled letters, calibrate it on the
validation split, and save a self-describing model directory.

Example::

    args = TrainingArguments(data=[Path("data/letters.jsonl")], out=Path("models/letters"))
    train(args)   # writes models/letters/{config.json, model.safetensors, labels.yaml, run.json, ...}
"""

from __future__ import annotations

import copy
import json
import logging
import math
import platform
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from model.calibration import (
    Calibration,
    decisions,
    fit_review_threshold,
    fit_temperature,
    fit_thresholds,
    head_confidence,
    probabilities,
)
from model.inference import LABELS_FILE, WEIGHTS_FILE, Classifier, decided_labels, file_sha256
from model.labels import LabelSchema
from model.lexical import LexicalHeads
from model.network import TriageModel
from model.precision import mixed_precision
from model.tokenisation import LetterTokenizer
from training.blend import blend_lexical, blended
from training.data import load_letters, split_by_id, split_dataset
from training.evaluate import headline, indicator, score_all
from training.report import write_model_card

logger = logging.getLogger(__name__)


@dataclass
class TrainingArguments:
    """Everything a training run depends on (saved in ``run.json``).

    Args:
        data (list[Path]): labelled JSONL/CSV files.
        out (Path): the model directory to write.
        labels (Path, default labels.yaml): the label schema.
        base_model (str): a local directory or a hub id of a BERT-style encoder.
        epochs (int, default 2): passes over the training split (early stopping may end sooner;
            2 rather than 3 since session 6: a third epoch took the run past 30 min on fp32-only
            cores and cost the kept letters accuracy on the dev set, docs/model.md).
        max_steps (int | None): stop after this many optimiser steps (for smoke runs).
        batch_size (int, default 16), learning_rate (float, default 2e-4),
        head_learning_rate (float, default 1e-3): the heads start from scratch and learn faster.
        weight_decay (float, default 0.01), warmup_ratio (float, default 0.06).
        window_tokens (int, default 256), window_stride (int, default 64): encoder windows.
        validation_fraction (float, default 0.15): stratified share for early stopping and
            calibration.
        validation_ids (str | None): a regular expression over letter ids; when set, the
            letters it matches are the validation split instead (e.g. whole writers, so that
            early stopping, the lexical blend and calibration are chosen on letters from
            writers the model never saw, as in use).
        patience (int, default 2): epochs without a better validation score before stopping.
        train_windows (int, default 3): windows of a long letter used per training step (its
            first, its last and random middle ones, redrawn each epoch); prediction always
            reads every window.
        review_target (float, default 0.95): letters not sent to review must be right at
            least this often (on the validation split).
        seed (int, default 42), skip_invalid (bool, default False).
        lexical (bool, default True): blend in character n-gram heads (``model.lexical``),
            with a weight chosen on the validation split (0 when they do not help).
        bf16 (bool, default True): run the training forward pass under bfloat16 autocast
            (weights and optimiser state stay fp32), on CPUs with native bfloat16
            instructions; elsewhere training stays fp32 (emulated bfloat16 is slower).
    """

    data: list[Path]
    out: Path
    labels: Path = Path("labels.yaml")
    base_model: str = ".cache/base-models/m3e-small"
    epochs: int = 2
    max_steps: int | None = None
    batch_size: int = 16
    learning_rate: float = 2e-4
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    window_tokens: int = 256
    window_stride: int = 64
    validation_fraction: float = 0.15
    validation_ids: str | None = None
    patience: int = 2
    review_target: float = 0.95
    train_windows: int = 3
    seed: int = 42
    skip_invalid: bool = False
    lexical: bool = True
    bf16: bool = True

    def __post_init__(self) -> None:
        self.data = [Path(p) for p in self.data]
        self.out, self.labels = Path(self.out), Path(self.labels)
        checks = [
            (bool(self.data), "data needs at least one file"),
            (self.epochs >= 1, f"epochs must be >= 1. But it was: {self.epochs}"),
            (self.max_steps is None or self.max_steps >= 1,
             f"max_steps must be >= 1 or None. But it was: {self.max_steps}"),
            (self.batch_size >= 1, f"batch_size must be >= 1. But it was: {self.batch_size}"),
            (self.learning_rate > 0, f"learning_rate must be > 0. But it was: {self.learning_rate}"),
            (0 < self.validation_fraction < 1,
             f"validation_fraction must be in (0, 1). But it was: {self.validation_fraction}"),
            (0 < self.review_target <= 1,
             f"review_target must be in (0, 1]. But it was: {self.review_target}"),
            (16 <= self.window_tokens <= 512,
             f"window_tokens must be in [16, 512]. But it was: {self.window_tokens}"),
            (self.train_windows >= 2,
             f"train_windows must be >= 2. But it was: {self.train_windows}"),
            (0 <= self.window_stride < self.window_tokens // 2,
             f"window_stride must be in [0, window_tokens / 2). But it was: {self.window_stride}"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError("; ".join(problems))


def length_bucketed_batches(
    lengths: list[int], batch_size: int, rng: np.random.Generator
) -> list[list[int]]:
    """Batches of letters of similar length, in random order (less padding per step).

    Lengths get multiplicative noise so that the batches differ from epoch to epoch.
    """
    noisy = np.asarray(lengths) * rng.uniform(0.8, 1.25, size=len(lengths))
    order = np.argsort(noisy).tolist()
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def gold_matrices(schema: LabelSchema, dataset: Dataset) -> dict[str, np.ndarray]:
    """Gold labels per head as 0/1 matrices (letters × outputs)."""
    return {name: indicator(head, dataset[name]) for name, head in schema.heads.items()}


class WeightedLoss:
    """Sum over heads of cross-entropy (single) or binary cross-entropy (multi, binary),
    weighted by the square root of the inverse label frequency, so rare labels count more
    without swamping the rest."""

    def __init__(self, schema: LabelSchema, gold: dict[str, np.ndarray]) -> None:
        self.schema = schema
        self.weights: dict[str, torch.Tensor] = {}
        for name, head in schema.heads.items():
            positives = gold[name].sum(axis=0).astype(float)
            n = len(gold[name])
            if head.type == "single":
                share = np.maximum(positives, 1.0) / n
                weight = np.sqrt(1.0 / (share * len(positives)))
            else:
                weight = np.clip(np.sqrt((n - positives) / np.maximum(positives, 1.0)), 1.0, 10.0)
            self.weights[name] = torch.as_tensor(weight, dtype=torch.float32)

    def __call__(self, logits: dict[str, torch.Tensor], gold: dict[str, torch.Tensor]) -> torch.Tensor:
        total = torch.zeros(())
        for name, head in self.schema.heads.items():
            if head.type == "single":
                total = total + torch.nn.functional.cross_entropy(
                    logits[name], gold[name].argmax(dim=-1), weight=self.weights[name])
            else:
                total = total + torch.nn.functional.binary_cross_entropy_with_logits(
                    logits[name], gold[name], pos_weight=self.weights[name])
        return total


def calibrate(
    schema: LabelSchema, logits: dict[str, np.ndarray], gold: dict[str, np.ndarray], target: float
) -> Calibration:
    """Fit temperatures, thresholds and the review threshold on validation outputs."""
    calibration = Calibration(review_target=target)
    confidence = np.ones(len(next(iter(gold.values()))))
    all_right = np.ones_like(confidence, dtype=bool)
    for name, head in schema.heads.items():
        temperature = fit_temperature(logits[name], gold[name], head.type)
        probs = probabilities(logits[name], head.type, temperature)
        calibration.temperatures[name] = temperature
        if head.type != "single":
            calibration.thresholds[name] = fit_thresholds(probs, gold[name])
        decided = decisions(probs, head.type, calibration.thresholds.get(name))
        confidence *= head_confidence(probs, head.type, decided)
        all_right &= (decided == gold[name]).all(axis=1)
    calibration.review_threshold = fit_review_threshold(confidence, all_right.astype(float), target)
    kept = confidence >= calibration.review_threshold
    calibration.validation_review_share = float(1.0 - kept.mean())
    calibration.validation_kept_accuracy = float(all_right[kept].mean()) if kept.any() else 1.0
    return calibration


def uncalibrated_headline(
    schema: LabelSchema, logits: dict[str, np.ndarray], dataset: Dataset
) -> dict[str, float]:
    """Headline scores of raw outputs (arg-max, or probability >= 0.5), for progress reports."""
    predicted = {
        name: decided_labels(head, decisions(probabilities(logits[name], head.type), head.type, None))
        for name, head in schema.heads.items()
    }
    return headline(score_all(schema, {n: dataset[n] for n in schema.heads}, predicted))


def selection_score(headline_scores: dict[str, float]) -> float:
    """The figure that picks the best epoch: the mean of each head's macro-F1 (``single``,
    ``multi``) or F1 (``binary``). Loss is not used: it rises as outputs grow confident
    while the answers still improve, and calibration corrects confidence afterwards."""
    chosen = [v for k, v in headline_scores.items() if k.endswith((".macro_f1", ".f1"))]
    return float(np.mean(chosen)) if chosen else 0.0


def _validation_loss(classifier: Classifier, loss: WeightedLoss, texts: list[str],
                     gold: dict[str, np.ndarray], batch_size: int) -> tuple[float, dict[str, np.ndarray]]:
    classifier.model.eval()  # no dropout: training puts the model back in train mode each epoch
    logits = classifier.logits(texts, batch_size=batch_size)
    value = loss({k: torch.as_tensor(v) for k, v in logits.items()},
                 {k: torch.as_tensor(v, dtype=torch.float32) for k, v in gold.items()})
    return float(value), logits


def _optimiser(model: TriageModel, args: TrainingArguments) -> torch.optim.Optimizer:
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups: list[dict[str, Any]] = []
    for part, lr in ((model.encoder, args.learning_rate), (model.heads, args.head_learning_rate)):
        named = list(part.named_parameters())
        groups.append({"params": [p for n, p in named if not n.endswith(no_decay)],
                       "lr": lr, "weight_decay": args.weight_decay})
        groups.append({"params": [p for n, p in named if n.endswith(no_decay)],
                       "lr": lr, "weight_decay": 0.0})
    return torch.optim.AdamW(groups)


def train(args: TrainingArguments) -> dict[str, Any]:
    """Train, calibrate and save a model; returns the run record (also in ``run.json``)."""
    started = time.time()
    set_seed(args.seed)
    schema = LabelSchema.from_yaml(args.labels)
    dataset, load_report = load_letters(args.data, schema, skip_invalid=args.skip_invalid)
    train_set, val_set = (split_by_id(dataset, args.validation_ids) if args.validation_ids
                          else split_dataset(dataset, schema, args.validation_fraction, args.seed))
    logger.info("training on %d letters, validating on %d", len(train_set), len(val_set))
    model = TriageModel.from_encoder(args.base_model, schema, args.window_tokens, args.window_stride)
    tokenizer = LetterTokenizer.from_pretrained(args.base_model, args.window_tokens,
                                                args.window_stride)
    classifier = Classifier(model, tokenizer, version="candidate")
    train_gold, val_gold = gold_matrices(schema, train_set), gold_matrices(schema, val_set)
    loss_fn = WeightedLoss(schema, train_gold)
    steps_per_epoch = math.ceil(len(train_set) / args.batch_size)
    total_steps = min(args.max_steps or 10**9, steps_per_epoch * args.epochs)
    optimiser = _optimiser(model, args)
    schedule = get_linear_schedule_with_warmup(optimiser, int(args.warmup_ratio * total_steps),
                                               total_steps)
    texts = list(train_set["text"])
    lengths = [len(t) for t in texts]
    rng = np.random.default_rng(args.seed)
    bf16 = mixed_precision(args.bf16)
    history: list[dict[str, Any]] = []
    # (score, -loss), epoch, weights and validation logits of the best epoch so far
    best: tuple[tuple[float, float], int, dict[str, torch.Tensor], dict[str, np.ndarray]] | None = None
    step, stale = 0, 0
    progress = tqdm(total=total_steps, desc="training", unit="step")
    for epoch in range(1, args.epochs + 1):
        model.train()
        epoch_loss = []
        for batch in length_bucketed_batches(lengths, args.batch_size, rng):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(tokenizer([texts[i] for i in batch], args.train_windows, rng))
            gold = {k: torch.as_tensor(v[batch], dtype=torch.float32) for k, v in train_gold.items()}
            loss = loss_fn({k: v.float() for k, v in logits.items()}, gold)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad()
            epoch_loss.append(loss.item())
            step += 1
            progress.update(1)
            progress.set_postfix(epoch=epoch, loss=f"{np.mean(epoch_loss[-20:]):.3f}")
            if step >= total_steps:
                break
        val_loss, val_logits = _validation_loss(classifier, loss_fn, list(val_set["text"]), val_gold,
                                                args.batch_size * 2)
        scores = uncalibrated_headline(schema, val_logits, val_set)
        quality = selection_score(scores)
        history.append({"epoch": epoch, "step": step, "train_loss": float(np.mean(epoch_loss)),
                        "validation_loss": val_loss, "validation": scores,
                        "validation_score": quality, "seconds": round(time.time() - started, 1)})
        logger.info("epoch %d: train loss %.4f, validation loss %.4f, validation score %.4f", epoch,
                    history[-1]["train_loss"], val_loss, quality)
        if best is None or (quality, -val_loss) > best[0]:
            best = ((quality, -val_loss), epoch, copy.deepcopy(model.state_dict()), val_logits)
            stale = 0
        else:
            stale += 1
        if stale >= args.patience or step >= total_steps:
            break
    progress.close()
    if best is None:
        raise RuntimeError("no epoch ran: check epochs and max_steps")
    _, best_epoch, best_weights, val_logits = best
    model.load_state_dict(best_weights)  # its validation logits are reused for calibration
    lexical, lexical_weights, lexical_scores = None, {}, {}
    if args.lexical:
        lexical, lexical_weights, lexical_scores = blend_lexical(
            schema, train_set, train_gold, val_set, val_logits, val_gold)
        if lexical is not None:
            val_logits = blended(val_logits, lexical.logits(list(val_set["text"])), lexical_weights)
    calibration = calibrate(schema, val_logits, val_gold, args.review_target)
    calibration.lexical_weights = lexical_weights
    record = {
        "arguments": json.loads(json.dumps(asdict(args), default=str)),
        "data": [{"path": str(p), "sha256": file_sha256(p)} for p in args.data],
        "mixed_precision": "bf16" if bf16 else "fp32",
        "letters": {"loaded": load_report.rows_loaded, "skipped": len(load_report.skipped),
                    "train": len(train_set), "validation": len(val_set)},
        "label_counts": {name: dict(zip(head.label_ids or ["true"],
                                        train_gold[name].sum(axis=0).tolist(), strict=True))
                         for name, head in schema.heads.items()},
        "history": history,
        "best_epoch": best_epoch,
        "lexical": {"weights": lexical_weights, "validation_log_loss": {
            head: {str(w): round(v, 4) for w, v in by_weight.items()}
            for head, by_weight in lexical_scores.items()}},
        "calibration": calibration.to_dict(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
    }
    record["wall_seconds"] = round(time.time() - started, 1)
    save_model(model, tokenizer, schema, calibration, args.out, record, lexical)
    write_model_card(args.out)
    return record


def save_model(
    model: TriageModel,
    tokenizer: LetterTokenizer,
    schema: LabelSchema,
    calibration: Calibration,
    out: Path,
    record: dict[str, Any],
    lexical: LexicalHeads | None = None,
) -> str:
    """Write weights, config (with calibration and version), tokenizer, labels and run.json.

    Returns:
        The model version: the directory name and the first 12 hex digits of the weights' hash.
    """
    out.mkdir(parents=True, exist_ok=True)
    model.config.calibration = calibration.to_dict()
    model.save_pretrained(str(out), safe_serialization=True)
    version = f"{out.name}-{file_sha256(out / WEIGHTS_FILE)[:12]}"
    model.config.model_version = version
    model.config.save_pretrained(str(out))
    tokenizer.tokenizer.save_pretrained(str(out))
    schema.to_yaml(out / LABELS_FILE)
    if lexical is not None:
        lexical.save(out)
    record["model_version"] = version
    (out / "run.json").write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
    logger.info("saved model %s to %s", version, out)
    return version
