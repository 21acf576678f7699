"""The matter encoder: contrastive training, fitting the linker beside it, and using it
in the service and in retraining (tiny random base model)."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from model.inference import Runtime
from model.linking import LINKER_FILE, PairScorer
from model.matter import MATTER_DIR, MatterEncoder, MatterEncoderError
from model.onnx_runtime import INT8_FILE
from serving.engine import Engine
from training.cli import app
from training.matter import (
    MatterTraining,
    held_out_groups,
    same_matter_precision,
    train_matter_encoder,
)
from training.retrain import retrain

PLACES = ["白水村", "青山村", "高家村", "马家村", "金山村", "长安村", "西山村", "新家村", "文明村", "海子村"]
THINGS = ["鱼塘", "山林", "食堂", "骨灰盒", "低保", "农机", "药品", "土地", "红包", "罚款"]
SECTORS = ["campus_meals", "funeral_services", "social_assistance"]
VOICES = ["{p}的{t}问题反映了三次，至今无人理睬",
          "来电人说{p}{t}的钱被村主任私分了",
          "请查处{p}书记在{t}上吃拿回扣"]


def grouped_letters() -> list[dict[str, Any]]:
    """Ten matters (a village and an object each), three letters each, in three voices;
    plus letters in no group."""
    rows = []
    for g, (place, thing) in enumerate(zip(PLACES, THINGS, strict=True)):
        for v, voice in enumerate(VOICES):
            rows.append({"id": f"g{g}-{v}", "text": voice.format(p=place, t=thing), "group": f"G{g}",
                         "sector": SECTORS[g % 3], "violations": [], "repeat_cue": v == 0})
    for i, thing in enumerate(THINGS):
        rows.append({"id": f"single-{i}", "text": f"学校{thing}的事情希望领导看看", "group": None,
                     "sector": SECTORS[i % 3], "violations": [], "repeat_cue": False})
    return rows


def separation(encoder: MatterEncoder, rows: list[dict[str, Any]]) -> float:
    """Mean cosine within groups minus mean cosine between letters of different groups."""
    grouped = [r for r in rows if r["group"]]
    vectors = encoder.vectors([r["text"] for r in grouped])
    within, between = [], []
    for i, j in itertools.combinations(range(len(grouped)), 2):
        same = grouped[i]["group"] == grouped[j]["group"]
        (within if same else between).append(float(vectors[i] @ vectors[j]))
    return float(np.mean(within) - np.mean(between))


def test_training_pulls_letters_of_one_matter_together(tiny_base: Path, tmp_path: Path) -> None:
    rows = grouped_letters()
    settings = MatterTraining(steps=40, batch_groups=6, max_tokens=32, learning_rate=2e-3)
    before = separation(MatterEncoder.from_base(str(tiny_base), 32), rows)
    encoder = train_matter_encoder([r["text"] for r in rows], [r["group"] for r in rows],
                                   str(tiny_base), settings, bf16=False)
    after = separation(encoder, rows)
    assert after > before + 0.1, (before, after)

    encoder.save(tmp_path / MATTER_DIR)
    again = MatterEncoder.load(tmp_path / MATTER_DIR)
    texts = [r["text"] for r in rows[:4]]
    assert np.allclose(again.vectors(texts), encoder.vectors(texts), atol=1e-5)
    assert np.allclose(np.linalg.norm(again.vectors(texts), axis=1), 1.0, atol=1e-5)


def test_hard_negatives_train_and_the_best_held_out_check_is_kept(tiny_base: Path) -> None:
    rows = grouped_letters()
    near = [{"text": f"{place}的路灯坏了半年没人修", "group": None, "near_group": f"G{g}"}
            for g, place in enumerate(PLACES)]
    texts = [r["text"] for r in rows + near]
    groups = [r["group"] for r in rows + near]
    near_groups = [None] * len(rows) + [r["near_group"] for r in near]
    held = {"G0", "G1", "G2"}
    settings = MatterTraining(steps=6, check_every=2, batch_groups=4, max_tokens=32, learning_rate=2e-3)

    encoder = train_matter_encoder(texts, groups, str(tiny_base), settings, near_groups=near_groups,
                                   held_out=held, bf16=False)

    record = encoder.record
    assert [c["step"] for c in record["checks"]] == [0, 2, 4, 6]
    assert record["hard_negatives"] == 7  # those of the 7 training groups; the rest are checked on
    best = max(c["average_precision"] for c in record["checks"])
    assert record["best_step"] in [c["step"] for c in record["checks"] if c["average_precision"] == best]
    checked = [(t, g if g in held else None) for t, g, n in zip(texts, groups, near_groups, strict=True)
               if g in held or n in held]
    assert len(checked) == 12  # 3 groups of 3, and their 3 hard negatives
    kept = same_matter_precision(encoder, [t for t, _ in checked], [g for _, g in checked])
    assert abs(kept - best) < 1e-3  # the weights kept are the best check's


def test_held_out_groups_are_a_seeded_share_of_the_groups() -> None:
    groups = [f"G{i // 2}" for i in range(20)] + [None, "lonely"]
    held = held_out_groups(groups, 0.3, seed=1)
    assert held == held_out_groups(groups, 0.3, seed=1) and len(held) == 3
    assert held <= {f"G{i}" for i in range(10)}  # never a group of one letter
    with pytest.raises(ValueError, match="at least 3 groups"):
        held_out_groups(["a", "a", None], 0.3, seed=1)


def test_a_missing_or_broken_matter_encoder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MatterEncoderError, match="fit-linker"):
        MatterEncoder.load(tmp_path / MATTER_DIR)
    (tmp_path / MATTER_DIR).mkdir()
    (tmp_path / MATTER_DIR / "matter.json").write_text('{"max_tokens": 32}', encoding="utf-8")
    with pytest.raises(MatterEncoderError, match="cannot read"):
        MatterEncoder.load(tmp_path / MATTER_DIR)


def fitted_copy(tiny_model: Path, tiny_base: Path, tmp_path: Path, steps: int) -> tuple[Path, Path]:
    """A copy of the tiny model with a linker fitted by ``triage fit-linker`` on
    :func:`grouped_letters`; (model directory, data file)."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    data = tmp_path / "grouped.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in grouped_letters()),
                    encoding="utf-8")
    result = CliRunner().invoke(app, ["fit-linker", "--model", str(model), "--data", str(data),
                                      "--matter-steps", str(steps), "--base-model", str(tiny_base)])
    assert result.exit_code == 0, result.output
    assert "letters it was fitted on" in result.output
    return model, data


def test_fit_linker_writes_an_encoder_and_a_scorer_the_service_uses(
        tiny_model: Path, tiny_base: Path, tmp_path: Path) -> None:
    model, data = fitted_copy(tiny_model, tiny_base, tmp_path, steps=3)
    record = json.loads((model / MATTER_DIR / "matter.json").read_text(encoding="utf-8"))
    assert len(record["held_out_groups"]) == 3 and record["training"]["steps"] == 3
    assert PairScorer.load(model / LINKER_FILE).use_vectors

    engine = Engine.load(model)
    assert engine.matter is not None and engine.scorer.use_vectors
    [analysis] = engine.analyse(["白水村的鱼塘问题反映了三次"])
    expected = engine.matter.vectors(["白水村的鱼塘问题反映了三次"])[0]
    assert np.allclose(analysis.vector, expected, atol=1e-5)  # the vector linking reads

    report = tmp_path / "linking.json"
    result = CliRunner().invoke(app, ["evaluate-linking", "--model", str(model), "--data", str(data),
                                      "--out", str(report)])
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text(encoding="utf-8"))["gold_pairs"] == 30

    result = CliRunner().invoke(app, ["fit-linker", "--model", str(model), "--data", str(data),
                                      "--reuse-matter"])
    assert result.exit_code == 0, result.output
    assert json.loads((model / MATTER_DIR / "matter.json").read_text(encoding="utf-8")) == record

    result = CliRunner().invoke(app, ["fit-linker", "--model", str(model), "--data", str(data),
                                      "--no-matter"])
    assert result.exit_code == 0, result.output
    assert not (model / MATTER_DIR).exists() and not PairScorer.load(model / LINKER_FILE).use_vectors
    assert Engine.load(model).matter is None


def test_the_matter_encoder_runs_on_its_int8_graph(tiny_model: Path, tiny_base: Path,
                                                    tmp_path: Path) -> None:
    model, _ = fitted_copy(tiny_model, tiny_base, tmp_path, steps=2)
    result = CliRunner().invoke(app, ["export-onnx", "--model", str(model)])
    assert result.exit_code == 0, result.output
    assert (model / INT8_FILE).is_file() and (model / MATTER_DIR / INT8_FILE).is_file()
    texts = [r["text"] for r in grouped_letters()[::5]]
    reference = MatterEncoder.load(model / MATTER_DIR).vectors(texts)

    engine = Engine.load(model, runtime=Runtime.ONNX_INT8)
    assert engine.matter is not None and engine.matter.graph is not None
    found = engine.matter.vectors(texts)
    assert np.allclose(np.linalg.norm(found, axis=1), 1.0, atol=1e-5)
    assert (np.sum(found * reference, axis=1) > 0.98).all()  # int8 weights, the same directions

    shutil.copy(model / INT8_FILE, model / MATTER_DIR / INT8_FILE)  # the classifier's graph
    with pytest.raises(MatterEncoderError, match="exported from other weights"):
        MatterEncoder.load(model / MATTER_DIR, Runtime.ONNX_INT8)


def test_retraining_keeps_the_matter_encoder_and_refits_the_scorer(
        tiny_model: Path, tiny_base: Path, tmp_path: Path) -> None:
    live, data = fitted_copy(tiny_model, tiny_base, tmp_path, steps=2)
    before = json.loads((live / MATTER_DIR / "matter.json").read_text(encoding="utf-8"))

    decision = retrain([], [data], live, tmp_path / "candidate", data,
                       {"base_model": str(tiny_base), "max_steps": 2}, tolerance=1.0)

    assert decision["promoted"]
    after = json.loads((live / MATTER_DIR / "matter.json").read_text(encoding="utf-8"))
    assert after["held_out_groups"] == before["held_out_groups"]
    assert Engine.load(live).matter is not None and PairScorer.load(live / LINKER_FILE).use_vectors
