"""Retraining on reviewed letters: merge them with the corpus, train a candidate like the
model in service, evaluate both on one fixed file, and promote the candidate only if it is
no worse on every head. The report says why, either way. A candidate gets what the live
model has beside its weights: a refitted linker, and ONNX graphs (so a service running
onnx-int8 can reload it at once)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.inference import WEIGHTS_FILE, Classifier, file_sha256
from model.labels import LabelSchema
from model.linking import LINKER_FILE
from model.matter import MATTER_DIR, MatterEncoder
from model.onnx_runtime import INT8_FILE, export_onnx
from training.data import load_letters
from training.evaluate import HEADLINE, evaluate_classifier
from training.finetune import TrainingArguments, train
from training.linking import entries_for, fit_linker, fit_scorer
from training.matter import MatterTraining

logger = logging.getLogger(__name__)
PROMOTION_FILE = "promotion.json"


@dataclass
class HeadComparison:
    head: str
    metric: str
    current: float
    candidate: float

    def no_worse(self, tolerance: float) -> bool:
        return self.candidate >= self.current - tolerance


def merge_training_data(base_files: Sequence[Path], reviewed: Sequence[dict[str, Any]],
                        schema: LabelSchema, out: Path) -> dict[str, int]:
    """Write the corpus plus the reviewed letters as one JSONL file; a reviewed letter
    replaces a corpus letter with the same id. Returns the counts."""
    base, _ = load_letters(list(base_files), schema)
    reviewed_ids = {r["id"] for r in reviewed}
    fields = ["id", "text", "group", *schema.heads]
    kept = [{f: row[f] for f in fields} for row in base if row["id"] not in reviewed_ids]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for record in [*kept, *reviewed]:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return {"corpus": len(kept), "reviewed": len(reviewed), "replaced": len(base) - len(kept)}


def compare(schema: LabelSchema, current: dict[str, Any], candidate: dict[str, Any]) -> list[HeadComparison]:
    """Every headline metric of every head (e.g. sector accuracy and macro-F1) for both models."""
    return [HeadComparison(name, metric, current["heads"][name][metric], candidate["heads"][name][metric])
            for name, head in schema.heads.items() for metric in HEADLINE[head.type]]


def promote(candidate: Path, live: Path) -> Path:
    """Put the candidate in the live model's place, keeping the live one beside it; returns
    where the previous model now is. The service picks it up on ``POST /v1/model:reload``."""
    staging = live.with_name(live.name + ".incoming")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(candidate, staging)
    previous = live.with_name(f"{live.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
    live.rename(previous)
    staging.rename(live)
    return previous


def retrain(reviewed: Sequence[dict[str, Any]], base_files: Sequence[Path], model_dir: Path, out: Path,
            eval_file: Path, overrides: dict[str, Any], tolerance: float = 0.0) -> dict[str, Any]:
    """Train a candidate on corpus + reviewed letters with the live model's arguments
    (``overrides`` replace some), compare both on ``eval_file``, promote if no worse.

    Returns the decision record (also written to ``out/promotion.json``).
    """
    current = Classifier.load(model_dir)
    schema = current.schema
    run = json.loads((model_dir / "run.json").read_text(encoding="utf-8"))
    data_file = out.with_name(out.name + ".data") / "training.jsonl"
    counts = merge_training_data(base_files, reviewed, schema, data_file)
    arguments = {**run["arguments"], **overrides, "data": [data_file], "out": out,
                 "labels": str(model_dir / "labels.yaml")}
    train(TrainingArguments(**arguments))
    candidate = Classifier.load(out)
    if (model_dir / LINKER_FILE).is_file():  # the linker reads the model's sectors: refit it
        grouped, _ = load_letters(list(base_files), schema, require_labels=False)
        if (model_dir / MATTER_DIR).is_dir():  # the matter encoder stays; the scorer is refitted
            fitted = fit_linker(grouped, candidate, MatterTraining(),
                                encoder=MatterEncoder.load(model_dir / MATTER_DIR))
            fitted.scorer.save(out / LINKER_FILE)
            fitted.encoder.save(out / MATTER_DIR)
        else:
            fit_scorer(entries_for(grouped, candidate), grouped["group"]).save(out / LINKER_FILE)
    if (model_dir / INT8_FILE).is_file():  # the live model runs on int8 graphs: so must this one
        export_onnx(candidate.model.encoder, candidate.tokenizer.max_length, out,
                    file_sha256(out / WEIGHTS_FILE))
        if (out / MATTER_DIR).is_dir():
            MatterEncoder.load(out / MATTER_DIR).export_onnx(out / MATTER_DIR)
    evaluation, _ = load_letters([eval_file], schema)
    rows = compare(schema, evaluate_classifier(current, evaluation),
                   evaluate_classifier(candidate, evaluation))
    worse = [r for r in rows if not r.no_worse(tolerance)]
    decision = {
        "promoted": not worse,
        "current": current.version, "candidate": candidate.version,
        "evaluation_file": str(eval_file), "letters": len(evaluation), "tolerance": tolerance,
        "training_letters": counts,
        "heads": [r.__dict__ | {"no_worse": r.no_worse(tolerance)} for r in rows],
        "reason": ("no worse on every head" if not worse else "worse on " + ", ".join(
            f"{r.head} {r.metric} {r.candidate:.4f} < {r.current:.4f}" for r in worse)),
    }
    if not worse:
        decision["previous_model"] = str(promote(out, model_dir))
    for folder in [out, model_dir] if not worse else [out]:
        (folder / PROMOTION_FILE).write_text(json.dumps(decision, ensure_ascii=False, indent=2),
                                             encoding="utf-8")
    logger.info("candidate %s %s: %s", candidate.version,
                "promoted" if not worse else "not promoted", decision["reason"])
    return decision
