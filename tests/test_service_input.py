"""Bad input gets a clear 4xx (what, where, how to fix), never a 5xx, and never echoes
letter text; odd but valid input is accepted."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import Service
from tests.test_service import LETTER, submit


@pytest.mark.parametrize(("change", "where", "message"), [
    ({"text": ""}, ["body", "text"], "at least 1 character"),
    ({"text": " \n\t　"}, ["body", "text"], "no letters or digits"),
    ({"text": "。。。！！"}, ["body", "text"], "no letters or digits"),
    ({"external_id": ""}, ["body", "external_id"], "pattern"),
    ({"external_id": "有空格 的id"}, ["body", "external_id"], "pattern"),
    ({"received_at": "2026-11-02T09:30:00"}, ["body", "received_at"], "timezone"),
    ({"colour": "red"}, ["body", "colour"], "Extra inputs"),
    ({"complainant": {"name": "张三", "shoe_size": 42}}, ["body", "complainant", "shoe_size"], "Extra inputs"),
    ({"text": 42}, ["body", "text"], "valid string"),
])
def test_invalid_letters_are_refused_with_the_field(sqlite_service: Service, change: dict,
                                                    where: list, message: str) -> None:
    response = submit(sqlite_service, {**LETTER, **change})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == where and message in error["msg"]
    assert "input" not in error and LETTER["text"] not in response.text


def test_missing_text_is_named(sqlite_service: Service) -> None:
    response = submit(sqlite_service, {"external_id": "X-1"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "text"]


def test_over_long_text_is_refused_with_the_limit(sqlite_service: Service) -> None:
    response = submit(sqlite_service, {**LETTER, "text": "举报" * 15_000})
    assert response.status_code == 413 and "limit is 20000" in response.json()["detail"]
    huge = submit(sqlite_service, {**LETTER, "text": "举" * 1_000_000})
    assert huge.status_code == 413 and "TRIAGE_MAX_BODY_BYTES" in huge.json()["detail"]


def test_body_must_be_utf8_json(sqlite_service: Service) -> None:
    client, headers = sqlite_service.client, sqlite_service.as_role("intake")
    gbk = '{"external_id": "G-1", "text": "食堂问题"}'.encode("gbk")
    response = client.post("/v1/letters", content=gbk, headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 400 and "not UTF-8" in response.json()["detail"]
    form = client.post("/v1/letters", data={"text": "x"}, headers=headers)
    assert form.status_code == 415 and "application/json" in form.json()["detail"]
    broken = client.post("/v1/letters", content=b'{"text": ', headers={**headers, "Content-Type": "application/json"})
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"
    listing = client.post("/v1/letters", json=[LETTER], headers=headers)
    assert listing.status_code == 422


@pytest.mark.parametrize("text", [
    "食堂\x00问题\x07严重，营养餐补助被截留。",
    "Village head 王某 took the 低保 money: ¥30,000 😡 ＡＢＣ１２３",
    "العربية 和 русский 混排的来信：学校食堂收费。",
    "短",
])
def test_odd_but_valid_text_is_accepted(sqlite_service: Service, text: str) -> None:
    response = submit(sqlite_service, {**LETTER, "external_id": f"odd-{abs(hash(text))}", "text": text})
    assert response.status_code == 201, response.text


def test_logs_never_hold_letter_text_or_complainant(sqlite_service: Service,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A whole run (submit, batch, errors, read, queue, page, evidence, review, export): no
    log line holds a fragment of a letter, a name, a phone number or an ID number."""
    secret_name, phone, id_number = "欧阳秀英", "13987654321", "110105198001011234"
    letter = {**LETTER, "external_id": "S-1",
              "text": f"我是{secret_name}，电话{phone}，身份证{id_number}。村支书赵德胜把低保金八千五截留了。",
              "complainant": {"name": secret_name, "phone": phone, "id_number": id_number}}
    client, supervisor = sqlite_service.client, sqlite_service.as_role("supervisor")
    with caplog.at_level(logging.DEBUG):
        letter_id = submit(sqlite_service, letter).json()["id"]
        submit(sqlite_service, letter)
        submit(sqlite_service, {**letter, "received_at": "yesterday"})
        submit(sqlite_service, {**letter, "external_id": "S-2", "text": letter["text"] * 2000})
        client.post("/v1/letters:batch", json={"letters": [letter, {**letter, "external_id": "S-3", "x": 1}]},
                    headers=sqlite_service.as_role("intake"))
        client.get(f"/v1/letters/{letter_id}", headers=supervisor)
        client.get("/v1/review-queue", headers=supervisor)
        client.get(f"/v1/letters/{letter_id}/evidence", headers=supervisor)
        client.post(f"/v1/letters/{letter_id}/review", json={"labels": {"sector": "nope"}}, headers=supervisor)
        client.post(f"/v1/letters/{letter_id}/review", json={"labels": {"repeat_cue": True}}, headers=supervisor)
        client.post("/review/login", data={"key": sqlite_service.keys["supervisor"]})
        client.get(f"/review/letters/{letter_id}")
        client.get("/v1/export", headers=sqlite_service.as_role("admin"))
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "letter" in logged and len(caplog.records) >= 10  # the run was logged at all
    text = letter["text"]
    fragments = {text[i:i + 6] for i in range(len(text) - 6)}
    assert not [f for f in fragments if f in logged]
    for secret in (secret_name, phone, id_number, "赵德胜", sqlite_service.keys["supervisor"]):
        assert secret not in logged
