"""The corrections-to-retraining loop: review in the service, retrain from the store,
promote only a candidate that is no worse on every head, reload without a restart."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model.inference import WEIGHTS_FILE, Classifier, Runtime, file_sha256
from model.onnx_runtime import export_onnx
from tests.conftest import start_service, topic_letters
from training.cli import app
from training.retrain import HeadComparison, retrain


def test_no_worse_allows_the_tolerance() -> None:
    row = HeadComparison("sector", "macro_f1", current=0.90, candidate=0.89)
    assert not row.no_worse(0.0) and row.no_worse(0.02)
    assert HeadComparison("sector", "macro_f1", 0.9, 0.9).no_worse(0.0)


@pytest.mark.parametrize(("tolerance", "promoted"), [(1.0, True), (-1.0, False)])
def test_review_export_retrain_promote_reload(tiny_model: Path, tiny_base: Path, tmp_path: Path,
                                              tolerance: float, promoted: bool,
                                              caplog: pytest.LogCaptureFixture) -> None:
    live = tmp_path / "live"
    shutil.copytree(tiny_model, live)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in topic_letters()),
                      encoding="utf-8")
    store_url = f"sqlite:///{tmp_path / 'letters.db'}"
    service = start_service(live, store_url, review_threshold=1.01)
    s = next(service)
    letter = s.client.post("/v1/letters", headers=s.as_role("intake"), json={
        "external_id": "R-1", "text": "殡仪馆的骨灰盒太贵，火化费用被加收了。"}).json()
    s.client.post(f"/v1/letters/{letter['id']}/review", headers=s.as_role("supervisor"),
                  json={"labels": {"sector": "funeral_services", "violations": ["illegal_fees"]}})
    old_version = s.client.get("/v1/model", headers=s.as_role("admin")).json()["version"]

    caplog.set_level(logging.DEBUG)
    result = CliRunner().invoke(app, [
        "retrain", "--store", store_url, "--model", str(live), "--out", str(tmp_path / "candidate"),
        "--base-data", str(corpus), "--eval", str(corpus), "--base-model", str(tiny_base),
        "--max-steps", "3", "--tolerance", str(tolerance)])
    assert result.exit_code == 0, result.output

    merged = [json.loads(line) for line in
              (tmp_path / "candidate.data" / "training.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(merged) == len(topic_letters()) + 1
    assert merged[-1]["id"] == "R-1" and merged[-1]["sector"] == "funeral_services"
    assert merged[-1]["violations"] == ["illegal_fees"]
    decision = json.loads((tmp_path / "candidate" / "promotion.json").read_text(encoding="utf-8"))
    assert decision["promoted"] is promoted
    assert {(h["head"], h["metric"]) for h in decision["heads"]} >= {("sector", "macro_f1"),
                                                                     ("violations", "micro_f1")}
    assert ("promoted: " if promoted else "not promoted: worse on") in result.output

    reloaded = s.client.post("/v1/model:reload", headers=s.as_role("admin")).json()
    if promoted:
        assert reloaded["version"] == decision["candidate"] != old_version
        assert Path(decision["previous_model"]).is_dir()
        assert (live / "promotion.json").is_file()
    else:
        assert reloaded["version"] == old_version
    after = s.client.post("/v1/letters", headers=s.as_role("intake"),
                          json={"external_id": "R-2", "text": "学校食堂饭菜有问题。"})
    assert after.status_code == 201 and after.json()["model_version"] == reloaded["version"]
    service.close()
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "candidate" in logged and "殡仪馆的骨灰盒" not in logged and "火化费用" not in logged


def test_a_candidate_of_an_int8_model_gets_its_own_graphs(tiny_model: Path, tiny_base: Path,
                                                          tmp_path: Path) -> None:
    live = tmp_path / "live"
    shutil.copytree(tiny_model, live)
    classifier = Classifier.load(live)
    export_onnx(classifier.model.encoder, classifier.tokenizer.max_length, live,
                file_sha256(live / WEIGHTS_FILE))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in topic_letters()),
                      encoding="utf-8")

    decision = retrain([], [corpus], live, tmp_path / "candidate", corpus,
                       {"base_model": str(tiny_base), "max_steps": 2}, tolerance=1.0)

    assert decision["promoted"]
    promoted = Classifier.load(live, Runtime.ONNX_INT8)  # refuses graphs of other weights
    assert promoted.version == decision["candidate"] != classifier.version
    assert promoted.run(["殡仪馆的骨灰盒太贵"])[0]["sector"].shape == (1, 12)
