"""The service end to end on the tiny model: submit, idempotency, batches, reading back,
review queue, reviews with their audit trail, export, metrics, reload."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sqlalchemy import select
from threadpoolctl import threadpool_info

from model.keyfields import content_words
from serving.store import Letter, Store
from tests.conftest import Service, start_service

LETTER = {"external_id": "A-1", "title": "反映食堂问题",
          "text": "县第二中学食堂承包人王建国虚报学生人数，营养餐补助每月多领三万元。",
          "received_at": "2026-11-02T09:30:00+08:00", "source": "来信",
          "complainant": {"name": "李秀英", "phone": "13812345678"}}


def submit(service: Service, letter: dict, role: str = "intake"):
    return service.client.post("/v1/letters", json=letter, headers=service.as_role(role))


def test_submit_returns_everything_and_stores_once(service: Service) -> None:
    first = submit(service, LETTER)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["external_id"] == "A-1" and body["id"] > 0
    sector = body["predictions"]["sector"]
    assert sector["type"] == "single" and len(sector["labels"]) == 1
    chosen = sector["labels"][0]
    assert chosen["name"] and chosen["departments"] and 0 <= chosen["score"] <= 1
    assert abs(sum(sector["scores"].values()) - 1) < 1e-3
    assert set(body["predictions"]["violations"]["scores"]) == {
        "misappropriation", "favouritism", "bribery", "false_claims", "illegal_fees", "dereliction"}
    assert isinstance(body["predictions"]["repeat_cue"]["value"], bool)
    assert body["needs_review"] is True and body["model_version"]
    assert any(a["yuan"] == 30000 for a in body["key_fields"]["amounts"])
    assert body["matter_id"] and body["repeat_of"] == []
    assert body["text"] is None and body["complainant"] is None  # not echoed by submit

    again = submit(service, {**LETTER, "text": "改过的文字也不会再存一次"})
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert again.json()["predictions"] == body["predictions"]
    other_intake = submit(service, LETTER, role="intake2")
    assert other_intake.status_code == 409 and "another submitter" in other_intake.json()["detail"]
    queue = service.client.get("/v1/review-queue", headers=service.as_role("supervisor")).json()
    assert queue["total"] == 1


def test_the_same_matter_from_another_complainant_is_linked(service: Service) -> None:
    first = submit(service, LETTER).json()
    second = submit(service, {**LETTER, "external_id": "B-7", "complainant": None,
                              "text": LETTER["text"] + "希望上级调查。"}).json()
    assert second["matter_id"] == first["matter_id"]
    assert [link["letter_id"] for link in second["repeat_of"]] == [first["id"]]
    assert second["repeat_of"][0]["external_id"] == "A-1"
    with Store(service.settings.store_url).session() as session:  # kept for the index's rebuild
        words = session.scalars(select(Letter.link_words).order_by(Letter.id)).all()
    assert words == [sorted(content_words(LETTER["text"])),
                     sorted(content_words(LETTER["text"] + "希望上级调查。"))]


def test_reading_back(service: Service) -> None:
    letter_id = submit(service, LETTER).json()["id"]
    own = service.client.get(f"/v1/letters/{letter_id}", headers=service.as_role("intake"))
    assert own.status_code == 200 and own.json()["text"] == LETTER["text"]
    assert own.json()["complainant"]["phone"] == "13812345678"
    other = service.client.get(f"/v1/letters/{letter_id}", headers=service.as_role("intake2"))
    assert other.status_code == 404 and LETTER["text"] not in other.text
    assert service.client.get(f"/v1/letters/{letter_id}", headers=service.as_role("supervisor")).status_code == 200
    assert service.client.get("/v1/letters/999999", headers=service.as_role("admin")).status_code == 404


def test_batch_reports_each_item(service: Service) -> None:
    letters = [{**LETTER, "external_id": "M-1"}, {"external_id": "M-2", "text": "   "},
               {**LETTER, "external_id": "M-3", "text": "村里的低保名额被村主任给了亲戚。"},
               {"external_id": "M-4", "text": "有字", "colour": "red"}, {**LETTER, "external_id": "M-1"}]
    response = service.client.post("/v1/letters:batch", json={"letters": letters},
                                   headers=service.as_role("intake"))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert [r["status"] for r in results] == [201, 422, 201, 422, 422]
    assert "text" in results[1]["error"] and "colour" in results[3]["error"]
    assert "twice in this batch" in results[4]["error"]
    assert results[2]["letter"]["external_id"] == "M-3"
    again = service.client.post("/v1/letters:batch", json={"letters": letters[:1]},
                                headers=service.as_role("intake")).json()["results"]
    assert again[0]["status"] == 200 and again[0]["letter"]["id"] == results[0]["letter"]["id"]


def test_batch_over_the_limit_is_refused(service: Service) -> None:
    letters = [{**LETTER, "external_id": f"N-{i}"} for i in range(65)]
    response = service.client.post("/v1/letters:batch", json={"letters": letters},
                                   headers=service.as_role("intake"))
    assert response.status_code == 413 and "limit is 64" in response.json()["detail"]


def test_review_queue_sort_and_filters(service: Service) -> None:
    ids = [submit(service, {**LETTER, "external_id": f"Q-{i}", "text": text}).json()["id"]
           for i, text in enumerate(["学校食堂饭菜营养餐补助被截留私分了", "殡仪馆骨灰盒火化费用有问题",
                                     "村里的低保名额低保金被干部截留私分了"])]
    supervisor = service.as_role("supervisor")
    queue = service.client.get("/v1/review-queue", headers=supervisor).json()
    confidences = [item["confidence"] for item in queue["items"]]
    assert queue["total"] == 3 and confidences == sorted(confidences)
    newest = service.client.get("/v1/review-queue?sort=-confidence", headers=supervisor).json()
    assert [i["confidence"] for i in newest["items"]] == sorted(confidences, reverse=True)
    sector = service.client.get(f"/v1/letters/{ids[1]}", headers=supervisor).json()["labels"]["sector"]
    filtered = service.client.get(f"/v1/review-queue?label=sector:{sector}", headers=supervisor).json()
    assert filtered["total"] >= 1 and all(i["labels"]["sector"] == sector for i in filtered["items"])
    none = service.client.get("/v1/review-queue?received_to=2020-01-01T00:00:00%2B08:00", headers=supervisor)
    assert none.json()["total"] == 0
    bad = service.client.get("/v1/review-queue?min_confidence=2", headers=supervisor)
    assert bad.status_code == 422 and "min_confidence" in bad.text


def test_review_is_audited_and_exported(service: Service) -> None:
    letter = submit(service, LETTER).json()
    before = letter["labels"]
    new_sector = "funeral_services" if before["sector"] != "funeral_services" else "campus_meals"
    supervisor = service.as_role("supervisor")
    reviewed = service.client.post(f"/v1/letters/{letter['id']}/review", headers=supervisor,
                                   json={"labels": {"sector": new_sector, "violations": ["false_claims",
                                                                                          "misappropriation"]},
                                         "comment": "领域改正"})
    assert reviewed.status_code == 200, reviewed.text
    assert reviewed.json()["labels"]["sector"] == new_sector and reviewed.json()["reviewed"] is True
    assert reviewed.json()["labels"]["violations"] == ["misappropriation", "false_claims"]  # schema order
    service.client.post(f"/v1/letters/{letter['id']}/review", headers=supervisor, json={})  # confirm
    trail = service.client.get(f"/v1/letters/{letter['id']}/reviews", headers=supervisor).json()
    assert len(trail) == 2
    assert trail[0]["before"] == before and trail[0]["after"]["sector"] == new_sector
    assert trail[0]["reviewer"].startswith("测试-supervisor") and trail[0]["comment"] == "领域改正"
    assert trail[1]["before"] == trail[1]["after"] and trail[0]["model_version"] == letter["model_version"]
    assert service.client.get("/v1/review-queue", headers=supervisor).json()["total"] == 0

    export = service.client.get("/v1/export", headers=service.as_role("admin"))
    assert export.status_code == 200
    [record] = [json.loads(line) for line in export.text.splitlines()]
    assert record["id"] == "A-1" and record["sector"] == new_sector and record["title"] == LETTER["title"]
    assert record["violations"] == ["misappropriation", "false_claims"] and "complainant" not in record


def test_review_with_unknown_labels_is_refused(service: Service) -> None:
    letter_id = submit(service, LETTER).json()["id"]
    supervisor = service.as_role("supervisor")
    for labels, message in [({"sector": "weather"}, "labels.sector: expected one of"),
                            ({"violations": "bribery"}, "labels.violations: expected a list"),
                            ({"repeat_cue": "yes"}, "labels.repeat_cue: expected true or false"),
                            ({"colour": "red"}, "labels.colour: unknown head")]:
        response = service.client.post(f"/v1/letters/{letter_id}/review", headers=supervisor,
                                       json={"labels": labels})
        assert response.status_code == 422 and message in response.json()["detail"]
    assert service.client.get(f"/v1/letters/{letter_id}/reviews", headers=supervisor).json() == []


def test_evidence_names_sentences_of_the_letter(service: Service) -> None:
    letter_id = submit(service, {**LETTER, "text": "食堂饭菜很差。营养餐补助被截留私分了！希望调查。"}).json()["id"]
    found = service.client.get(f"/v1/letters/{letter_id}/evidence", headers=service.as_role("supervisor")).json()
    assert found and {e["head"] for e in found} >= {"sector"}
    assert all(e["sentence"] in "食堂饭菜很差。营养餐补助被截留私分了！希望调查。" for e in found)


def test_labels_model_probes_and_metrics(service: Service) -> None:
    client = service.client
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["store"] == "ok" and ready["model"]
    labels = client.get("/v1/labels", headers=service.as_role("intake")).json()
    assert [h for h in labels["heads"]] == ["sector", "violations", "repeat_cue"]
    model = client.get("/v1/model", headers=service.as_role("intake")).json()
    assert model["heads"]["violations"] == "multi" and model["linker"] == "default"
    submit(service, LETTER)
    metrics = client.get("/metrics").text
    assert 'triage_requests_total{method="POST",route="/v1/letters",status="201"} 1.0' in metrics
    assert "triage_predictions_total{head=\"sector\"" in metrics
    assert "triage_review_rate 1.0" in metrics


def test_reload_switches_model_or_keeps_the_old_one(service: Service, tmp_path) -> None:
    admin = service.as_role("admin")
    version = service.client.get("/v1/model", headers=admin).json()["version"]
    reloaded = service.client.post("/v1/model:reload", headers=admin)
    assert reloaded.status_code == 200 and reloaded.json()["version"] == version
    broken = service.client.post("/v1/model:reload", headers=admin, json={"model_dir": str(tmp_path)})
    assert broken.status_code == 422 and "the old one keeps serving" in broken.json()["detail"]
    assert submit(service, LETTER).status_code == 201


def test_a_reload_to_another_encoder_leaves_the_old_vectors_out(service: Service,
                                                                  tmp_path: Path) -> None:
    admin = service.as_role("admin")
    before = service.client.get("/v1/model", headers=admin).json()
    assert before["vector_space"] and before["foreign_vectors"] == 0
    assert submit(service, LETTER).status_code == 201
    with Store(service.settings.store_url).session() as session:
        assert session.scalars(select(Letter.vector_space)).all() == [before["vector_space"]]

    other = tmp_path / "other-model"  # the same weights under another version: another space
    shutil.copytree(service.settings.model_dir, other)
    config = json.loads((other / "config.json").read_text(encoding="utf-8"))
    (other / "config.json").write_text(json.dumps({**config, "model_version": "other-version"}),
                                       encoding="utf-8")
    reloaded = service.client.post("/v1/model:reload", headers=admin, json={"model_dir": str(other)})
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["vector_space"] != before["vector_space"]
    assert reloaded.json()["foreign_vectors"] == 1
    assert submit(service, {**LETTER, "external_id": "A-2"}).status_code == 201


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_blas_runs_on_one_thread_and_the_search_on_the_set_threads(tiny_model: Path,
                                                                   tmp_path: Path) -> None:
    before = _blas_threads()
    for service in start_service(tiny_model, f"sqlite:///{tmp_path / 'letters.db'}",
                                 search_threads=3):
        assert _blas_threads() == {1}
        assert service.client.app.state.services.matters.index.search_threads == 3
    assert _blas_threads() == before
