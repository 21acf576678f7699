from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import ROOT, topic_letters
from training.cli import app
from training.finetune import TrainingArguments, length_bucketed_batches


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "epochs must be >= 1. But it was: 0"),
        ({"validation_fraction": 1.0}, "validation_fraction must be in (0, 1). But it was: 1.0"),
        ({"window_tokens": 1024}, "window_tokens must be in [16, 512]. But it was: 1024"),
        ({"window_stride": 200}, "window_stride must be in [0, window_tokens / 2). But it was: 200"),
        ({"review_target": 0}, "review_target must be in (0, 1]. But it was: 0"),
        ({"data": []}, "data needs at least one file"),
    ],
)
def test_training_arguments_are_checked(change: dict, message: str) -> None:
    values = {"data": [Path("x.jsonl")], "out": Path("out"), **change}
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainingArguments(**values)


def test_length_buckets_cover_every_letter_once() -> None:
    lengths = [5, 500, 7, 480, 6, 510, 8, 490]
    batches = length_bucketed_batches(lengths, 2, np.random.default_rng(0))
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert all(max(lengths[i] for i in b) / min(lengths[i] for i in b) < 2 for b in batches)


def test_train_evaluate_predict_reload(tiny_base: Path, tmp_path: Path) -> None:
    """The whole command line on a tiny model: train → evaluate → predict → reload."""
    data = tmp_path / "letters.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in topic_letters()),
                    encoding="utf-8")
    out = tmp_path / "model"
    runner = CliRunner()
    result = runner.invoke(app, [
        "train", "--data", str(data), "--out", str(out), "--labels", str(ROOT / "labels.yaml"),
        "--base-model", str(tiny_base), "--epochs", "3", "--batch-size", "8",
        "--learning-rate", "0.001", "--window-tokens", "32", "--window-stride", "8",
        "--validation-fraction", "0.3"])
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert [h["epoch"] for h in run["history"]] == [1, 2, 3]
    assert run["letters"] == {"loaded": 54, "skipped": 0, "train": 37, "validation": 17}
    assert run["data"][0]["sha256"] and run["label_counts"]["sector"]["campus_meals"] > 0
    assert set(run["calibration"]["temperatures"]) == {"sector", "violations", "repeat_cue"}
    assert set(run["lexical"]["validation_log_loss"]) == {"sector", "violations", "repeat_cue"}
    assert len(run["lexical"]["validation_log_loss"]["sector"]) == 10
    assert run["calibration"]["lexical_weights"] == run["lexical"]["weights"]
    assert (out / "lexical.safetensors").is_file() == any(run["lexical"]["weights"].values())
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "research use only" in card and "a stratified 30% of the letters" in card

    result = runner.invoke(app, ["evaluate", "--model", str(out), "--data", str(data)])
    assert result.exit_code == 0, result.output
    report_dir = out / "evaluations" / "letters"
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    assert report["letters"] == 54
    assert 0 <= report["heads"]["violations"]["calibration"]["ece_after"] <= 1
    assert report["baseline"]["sector"]["accuracy"] == 1.0
    assert {p.name for p in report_dir.glob("*.png")} >= {
        "confusion-sector.png", "f1-violations.png", "reliability-repeat_cue.png"}
    assert "letters.jsonl" in (out / "README.md").read_text(encoding="utf-8")

    unlabelled = tmp_path / "in.jsonl"
    unlabelled.write_text('{"id": "n1", "title": "食堂", "text": "学校食堂的饭菜有问题"}\n'
                          '{"id": "n2", "text": "殡仪馆的骨灰盒火化费用太贵"}\n', encoding="utf-8")
    answers_path = tmp_path / "answers.jsonl"
    result = runner.invoke(app, ["predict", "--model", str(out), "--input", str(unlabelled),
                                 "--output", str(answers_path)])
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in answers_path.read_text(encoding="utf-8").splitlines()]
    assert [a["id"] for a in answers] == ["n1", "n2"]
    assert {"sector", "sector_scores", "violations", "violations_scores", "repeat_cue",
            "repeat_cue_score", "needs_review", "model_version"} <= set(answers[0])
    assert answers[0]["model_version"] == run["model_version"]


def test_train_reports_bad_data_clearly(tiny_base: Path, tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"id": "a", "text": "来信", "sector": "nowhere", "violations": [], '
                    '"repeat_cue": false}\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "m"),
                                      "--base-model", str(tiny_base)])
    assert result.exit_code == 2
    assert "bad.jsonl:1: sector: expected one of" in result.output


def test_validation_runs_without_dropout(tiny_base: Path, tmp_path: Path) -> None:
    """Validation logits decide the best epoch and the calibration: dropout must be off."""
    from model.inference import Classifier
    from model.labels import LabelSchema
    from model.network import TriageModel
    from model.tokenisation import LetterTokenizer
    from training.finetune import WeightedLoss, _validation_loss

    schema = LabelSchema.from_yaml(ROOT / "labels.yaml")
    model = TriageModel.from_encoder(tiny_base, schema, window_tokens=32, window_stride=8)
    classifier = Classifier(model, LetterTokenizer.from_pretrained(tiny_base, 32, 8), "t")
    model.config.head_dropout = 0.5
    model.dropout.p = 0.5
    model.train()
    gold = {name: np.zeros((2, head.num_outputs)) for name, head in schema.heads.items()}
    texts = ["学校食堂的饭菜有问题", "殡仪馆的骨灰盒太贵"]
    loss = WeightedLoss(schema, gold)
    first = _validation_loss(classifier, loss, texts, gold, 2)[1]["sector"]
    model.train()
    second = _validation_loss(classifier, loss, texts, gold, 2)[1]["sector"]
    assert np.allclose(first, second)


def test_train_validates_on_the_letters_the_id_pattern_picks(tiny_base: Path,
                                                              tmp_path: Path) -> None:
    data = tmp_path / "letters.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in topic_letters()),
                    encoding="utf-8")
    common = ["train", "--data", str(data), "--labels", str(ROOT / "labels.yaml"),
              "--base-model", str(tiny_base), "--epochs", "1", "--max-steps", "1",
              "--window-tokens", "32", "--window-stride", "8"]
    runner = CliRunner()
    result = runner.invoke(app, [*common, "--out", str(tmp_path / "m"),
                                 "--validation-ids", "-(1|2|11|12)$"])
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "m" / "run.json").read_text(encoding="utf-8"))
    assert run["letters"]["validation"] == 12 and run["letters"]["train"] == 42
    assert run["arguments"]["validation_ids"] == "-(1|2|11|12)$"
    card = (tmp_path / "m" / "README.md").read_text(encoding="utf-8")
    assert "the letters whose id matches `-(1|2|11|12)$`" in card

    result = runner.invoke(app, [*common, "--out", str(tmp_path / "n"), "--validation-ids", "^C7-"])
    assert result.exit_code != 0
    assert "matches no letter id" in result.output
    assert not (tmp_path / "n").exists()
