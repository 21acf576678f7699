from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from model.inference import Classifier, ModelLoadError, length_batches


def _copy(model: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(model, target)
    return target


def test_answers_follow_the_output_contract(tiny_model: Path) -> None:
    classifier = Classifier.load(tiny_model)
    answer = classifier.predict(["学校食堂的饭菜有问题，营养餐补助被干部截留私分了"])[0]
    assert answer["sector"] in classifier.schema.heads["sector"].label_ids
    assert set(answer["sector_scores"]) == set(classifier.schema.heads["sector"].label_ids)
    assert sum(answer["sector_scores"].values()) == pytest.approx(1.0, abs=1e-3)
    assert isinstance(answer["violations"], list)
    assert set(answer["violations_scores"]) == set(classifier.schema.heads["violations"].label_ids)
    assert isinstance(answer["repeat_cue"], bool) and 0 <= answer["repeat_cue_score"] <= 1
    assert answer["needs_review"] == (answer["confidence"] < classifier.calibration.review_threshold)
    assert answer["model_version"].startswith("model-")


def test_batching_does_not_change_answers(tiny_model: Path) -> None:
    classifier = Classifier.load(tiny_model)
    texts = ["短信", "殡仪馆的骨灰盒" * 30, "村里的低保名额有问题"]
    together = classifier.predict(texts, batch_size=2)
    alone = [classifier.predict([t])[0] for t in texts]
    for a, b in zip(together, alone, strict=True):
        assert a["sector_scores"] == pytest.approx(b["sector_scores"], abs=1e-3)


def test_length_batches_group_similar_lengths() -> None:
    assert list(length_batches([50, 3, 40, 5], 2)) == [[1, 3], [2, 0]]


def test_mismatched_labels_file_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    model = _copy(tiny_model, tmp_path)
    labels = yaml.safe_load((model / "labels.yaml").read_text(encoding="utf-8"))
    labels["heads"]["sector"]["labels"][0]["id"] = "school_food"
    (model / "labels.yaml").write_text(yaml.safe_dump(labels, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ModelLoadError, match=re.escape("labels.yaml does not match the heads")):
        Classifier.load(model)


def test_missing_and_corrupt_weights_are_refused(tiny_model: Path, tmp_path: Path) -> None:
    model = _copy(tiny_model, tmp_path)
    (model / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="cannot load weights"):
        Classifier.load(model)
    (model / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match=re.escape("has no model.safetensors")):
        Classifier.load(model)
