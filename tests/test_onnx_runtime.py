from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from model.inference import WEIGHTS_FILE, Classifier, ModelLoadError, Runtime, file_sha256
from model.onnx_runtime import ENCODER_FILE, INT8_FILE, OnnxEncoder, export_onnx
from tests.conftest import topic_letters
from training.cli import app

TEXTS = ["短信", "学校食堂的饭菜有问题，营养餐补助被干部截留私分了", "殡仪馆的骨灰盒" * 30,
         *[row["text"] for row in topic_letters(1)]]


def _copy(model: Path, target: Path) -> Path:
    shutil.copytree(model, target)
    return target


@pytest.fixture(scope="module")
def exported(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny model with both ONNX graphs written into it."""
    directory = _copy(tiny_model, tmp_path_factory.mktemp("onnx") / "model")
    classifier = Classifier.load(directory)
    export_onnx(classifier.model.encoder, classifier.tokenizer.max_length, directory,
                file_sha256(directory / WEIGHTS_FILE))
    return directory


def test_fp32_graph_reproduces_torch_logits(exported: Path) -> None:
    reference, onnx = Classifier.load(exported), Classifier.load(exported)
    onnx.encoder = OnnxEncoder.load(exported / ENCODER_FILE, file_sha256(exported / WEIGHTS_FILE))
    expected, expected_vectors = reference.run(TEXTS, batch_size=4)
    found, vectors = onnx.run(TEXTS, batch_size=4)
    for name in expected:
        np.testing.assert_allclose(found[name], expected[name], atol=1e-4)
    np.testing.assert_allclose(vectors, expected_vectors, atol=1e-4)


def test_sessions_use_two_threads_that_do_not_spin(exported: Path) -> None:
    session = OnnxEncoder.load(exported / INT8_FILE, file_sha256(exported / WEIGHTS_FILE)).session
    options = session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_int8_answers_follow_the_contract_and_agree_with_torch(exported: Path) -> None:
    reference = Classifier.load(exported)
    int8 = Classifier.load(exported, runtime="onnx-int8")
    assert int8.runtime is Runtime.ONNX_INT8 and reference.runtime is Runtime.TORCH
    expected, found = reference.predict(TEXTS), int8.predict(TEXTS)
    for a, b in zip(expected, found, strict=True):
        assert set(a) == set(b)
        assert set(a["sector_scores"]) == set(b["sector_scores"])
        assert sum(b["sector_scores"].values()) == pytest.approx(1.0, abs=1e-3)
        assert isinstance(b["violations"], list) and isinstance(b["repeat_cue"], bool)
        assert b["needs_review"] == (b["confidence"] < int8.calibration.review_threshold)
        assert b["model_version"] == a["model_version"]
    agree = np.mean([a["sector"] == b["sector"] for a, b in zip(expected, found, strict=True)])
    assert agree >= 0.8
    scores = [(a["sector_scores"][k], b["sector_scores"][k])
              for a, b in zip(expected, found, strict=True) for k in a["sector_scores"]]
    assert np.abs(np.subtract(*zip(*scores, strict=True))).max() < 0.05


def test_missing_graph_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    model = _copy(tiny_model, tmp_path / "model")
    message = f"model directory {model}: no encoder.int8.onnx; export it with 'triage export-onnx --model {model}'"
    with pytest.raises(ModelLoadError, match=re.escape(message)):
        Classifier.load(model, runtime=Runtime.ONNX_INT8)


def test_graph_from_other_weights_is_refused(exported: Path, tmp_path: Path) -> None:
    model = _copy(exported, tmp_path / "model")
    retrained = Classifier.load(model).model
    with torch.no_grad():
        retrained.heads["sector"].bias.add_(1.0)
    retrained.save_pretrained(str(model), safe_serialization=True)
    with pytest.raises(ModelLoadError, match=re.escape(
            "encoder.int8.onnx was exported from other weights (sha256 ")) as refused:
        Classifier.load(model, runtime=Runtime.ONNX_INT8)
    assert "the model changed since; export it with 'triage export-onnx" in str(refused.value)


def test_corrupt_graph_and_unknown_runtime_are_refused(exported: Path, tmp_path: Path) -> None:
    model = _copy(exported, tmp_path / "model")
    (model / INT8_FILE).write_bytes(b"not an onnx graph")
    with pytest.raises(ModelLoadError, match=re.escape("cannot read encoder.int8.onnx")):
        Classifier.load(model, runtime=Runtime.ONNX_INT8)
    with pytest.raises(ValueError, match=re.escape("runtime must be one of torch, onnx-int8, found 'onnx'")):
        Classifier.load(model, runtime="onnx")


def test_export_evaluate_and_predict_on_the_command_line(tiny_model: Path, tmp_path: Path) -> None:
    model = _copy(tiny_model, tmp_path / "model")
    runner = CliRunner()
    result = runner.invoke(app, ["export-onnx", "--model", str(model)])
    assert result.exit_code == 0, result.output
    assert (model / ENCODER_FILE).is_file() and (model / INT8_FILE).is_file()

    data = tmp_path / "letters.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in topic_letters(1)),
                    encoding="utf-8")
    for runtime, folder in (("torch", "letters"), ("onnx-int8", "letters-onnx-int8")):
        result = runner.invoke(app, ["evaluate", "--model", str(model), "--data", str(data),
                                     "--no-baseline", "--runtime", runtime])
        assert result.exit_code == 0, result.output
        report = model / "evaluations" / folder
        assert json.loads((report / "report.json").read_text(encoding="utf-8"))["runtime"] == runtime
        assert f"Encoder runtime: `{runtime}`." in (report / "report.md").read_text(encoding="utf-8")
    assert "runtime `onnx-int8`" in (model / "README.md").read_text(encoding="utf-8")

    answers = tmp_path / "answers.jsonl"
    result = runner.invoke(app, ["predict", "--model", str(model), "--input", str(data),
                                 "--output", str(answers), "--runtime", "onnx-int8"])
    assert result.exit_code == 0, result.output
    assert len(answers.read_text(encoding="utf-8").splitlines()) == 18


def test_export_is_refused_for_a_directory_without_a_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export-onnx", "--model", str(tmp_path)])
    assert result.exit_code == 2
    assert "has no config.json" in result.output


def test_the_service_loads_the_runtime_it_is_set_to(exported: Path, tmp_path: Path) -> None:
    from serving.engine import Engine
    from serving.settings import ServiceSettings

    settings = ServiceSettings(model_dir=exported, runtime="onnx-int8",
                               store_url=f"sqlite:///{tmp_path / 'letters.db'}")
    engine = Engine.load(settings.model_dir, settings.review_threshold, settings.runtime)
    assert engine.classifier.runtime is Runtime.ONNX_INT8
    assert len(engine.analyse(["村里的低保名额有问题"])) == 1
