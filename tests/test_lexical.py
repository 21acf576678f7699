from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from model.calibration import calibrated_nll
from model.labels import LabelSchema
from model.lexical import UNSEEN_LOGIT, VOCABULARY_FILE, LexicalHeads
from tests.conftest import topic_letters
from training.blend import blend_lexical
from training.evaluate import indicator
from training.finetune import gold_matrices


def _fit(schema: LabelSchema) -> tuple[LexicalHeads, list[dict]]:
    rows = topic_letters()
    gold = {name: indicator(head, [r[name] for r in rows]) for name, head in schema.heads.items()}
    return LexicalHeads.fit([r["text"] for r in rows], gold, schema), rows


def test_lexical_heads_learn_the_words_of_each_label(schema: LabelSchema) -> None:
    lexical, _ = _fit(schema)
    logits = lexical.logits(["殡仪馆的骨灰盒火化费用被干部截留私分了", "学校食堂的饭菜希望有关部门关心一下"])
    sector_ids = schema.heads["sector"].label_ids
    assert [sector_ids[i] for i in logits["sector"].argmax(axis=1)] == ["funeral_services", "campus_meals"]
    misappropriation = schema.heads["violations"].label_ids.index("misappropriation")
    assert logits["violations"][0, misappropriation] > logits["violations"][1, misappropriation]
    assert logits["repeat_cue"].shape == (2, 1)


def test_saved_lexical_heads_give_the_same_logits(schema: LabelSchema, tmp_path: Path) -> None:
    lexical, rows = _fit(schema)
    lexical.save(tmp_path)
    loaded = LexicalHeads.load(tmp_path, schema)
    assert loaded is not None
    texts = [r["text"] for r in rows[:5]]
    for name, values in lexical.logits(texts).items():
        np.testing.assert_allclose(loaded.logits(texts)[name], values, rtol=1e-5, atol=1e-5)
    assert LexicalHeads.load(tmp_path / "elsewhere", schema) is None


def test_mismatched_lexical_files_are_refused(schema: LabelSchema, tmp_path: Path) -> None:
    lexical, _ = _fit(schema)
    lexical.save(tmp_path)
    meta = json.loads((tmp_path / VOCABULARY_FILE).read_text(encoding="utf-8"))
    meta["vocabularies"]["chars"] = meta["vocabularies"]["chars"][:-1]
    (tmp_path / VOCABULARY_FILE).write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ValueError, match="do not match"):
        LexicalHeads.load(tmp_path, schema)


def test_a_label_that_never_occurs_gets_a_constant_low_logit(schema: LabelSchema) -> None:
    lexical, _ = _fit(schema)  # the topic letters allege only misappropriation
    bribery = schema.heads["violations"].label_ids.index("bribery")
    logits = lexical.logits(["殡仪馆收红包", "学校食堂"])["violations"][:, bribery]
    assert logits.tolist() == [-UNSEEN_LOGIT, -UNSEEN_LOGIT]


def test_the_classifier_blends_lexical_logits_and_refuses_a_missing_file(
        schema: LabelSchema, tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    from model.inference import Classifier, ModelLoadError

    directory = tmp_path / "model"
    shutil.copytree(tiny_model, directory)
    lexical, rows = _fit(schema)
    lexical.save(directory)
    encoder_only = Classifier.load(directory)
    encoder_only.lexical = None
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    config["calibration"]["lexical_weights"] = {"sector": 2.0, "violations": 2.0, "repeat_cue": 2.0}
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    both = Classifier.load(directory)
    texts = [r["text"] for r in rows[:4]]
    want = {n: v + 2.0 * lexical.logits(texts)[n] for n, v in encoder_only.logits(texts).items()}
    for name, values in both.logits(texts).items():
        np.testing.assert_allclose(values, want[name], rtol=1e-4, atol=1e-4)
    (directory / "lexical.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="calibrated with lexical heads but has no lexical.safetensors"):
        Classifier.load(directory)


def test_blend_weights_are_chosen_by_calibrated_log_loss(schema: LabelSchema) -> None:
    rows = topic_letters(3)
    train_set, val_set = Dataset.from_list(rows[::2]), Dataset.from_list(rows[1::2])
    train_gold, val_gold = gold_matrices(schema, train_set), gold_matrices(schema, val_set)
    knows_nothing = {name: np.zeros(gold.shape) for name, gold in val_gold.items()}

    lexical, weights, losses = blend_lexical(schema, train_set, train_gold, val_set, knows_nothing, val_gold)

    assert lexical is not None and weights["sector"] > 0 and weights["violations"] > 0
    for name, by_weight in losses.items():
        assert by_weight[weights[name]] == min(by_weight.values())
    assert losses["sector"][weights["sector"]] < losses["sector"][0.0]


def test_calibrated_log_loss_does_not_depend_on_the_scale_of_the_logits() -> None:
    rng = np.random.default_rng(0)
    gold = np.eye(3)[rng.integers(0, 3, 300)]
    logits = rng.normal(size=(300, 3)) + 2 * gold
    assert calibrated_nll(5 * logits, gold, "single") == pytest.approx(
        calibrated_nll(logits, gold, "single"), rel=1e-3)
    assert calibrated_nll(logits, gold, "single") < calibrated_nll(-logits, gold, "single")
