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


def test_an_overloaded_model_gives_503_with_retry_after(sqlite_service: Service) -> None:
    from serving.engine import Overloaded

    async def refuse(texts: list[str]) -> list:
        raise Overloaded("256 letters are waiting for the model")

    sqlite_service.client.app.state.services.worker.analyse = refuse
    response = submit(sqlite_service, {**LETTER, "external_id": "busy-1"})
    assert response.status_code == 503 and response.headers["retry-after"] == "2"
    assert "overloaded" in response.json()["detail"]
    stored = sqlite_service.client.get("/v1/review-queue", headers=sqlite_service.as_role("supervisor"))
    assert stored.json()["total"] == 0  # nothing half-stored


# Regressions: each input below got a 500 (found by benchmarks/fuzz_api.py and property tests).

@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/letters/100000000000000000000"),
    ("GET", "/v1/letters/-100000000000000000000/reviews"),
    ("GET", "/v1/letters/2147483648/evidence"),
    ("POST", "/v1/letters/100000000000000000000/review"),
    ("DELETE", "/v1/keys/100000000000000000000"),
    ("GET", "/v1/review-queue?offset=9223372036854775808"),
])
def test_ids_beyond_the_store_are_refused(sqlite_service: Service, method: str, path: str) -> None:
    """The SQLite driver raised OverflowError on ids over 2**63 (PostgreSQL: over 2**31)."""
    response = sqlite_service.client.request(method, path, json={"labels": {}} if method == "POST" else None,
                                             headers=sqlite_service.as_role("admin"))
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] in {"less_than_equal", "greater_than_equal"}


def test_times_without_a_utc_time_are_refused(sqlite_service: Service) -> None:
    """0001-01-01 east of Greenwich has no UTC time: astimezone raised OverflowError."""
    early = "0001-01-01T00:00:00+05:00"
    letter = submit(sqlite_service, {**LETTER, "received_at": early})
    assert letter.status_code == 422 and letter.json()["detail"][0]["loc"] == ["body", "received_at"]
    queue = sqlite_service.client.get("/v1/review-queue", params={"received_from": early},
                                      headers=sqlite_service.as_role("supervisor"))
    assert queue.status_code == 422 and "outside the years 1-9999" in queue.json()["detail"][0]["msg"]


@pytest.mark.parametrize(("path", "body", "message"), [
    ("/v1/letters/1/review", b'{"labels": {"\\ud800": "x"}}', "lone UTF-16 surrogate"),
    ("/v1/model:reload", b'{"model_dir": "\\ud800"}', "lone UTF-16 surrogate"),
    ("/v1/model:reload", ('{"model_dir": "%s"}' % ("a" * 300)).encode(), "File name too long"),
])
def test_error_messages_survive_odd_input(sqlite_service: Service, path: str, body: bytes, message: str) -> None:
    """A lone surrogate echoed in an error could not be encoded; a name over 255 bytes raised OSError."""
    submit(sqlite_service, LETTER)
    response = sqlite_service.client.post(path, content=body, headers={
        **sqlite_service.as_role("admin"), "Content-Type": "application/json"})
    assert response.status_code == 422 and message in response.text


def test_amount_like_text_does_not_break_a_batch(sqlite_service: Service) -> None:
    """'1亿万几' was no number, ten thousand '万' recursed too deep, 400 digits were yuan=inf
    (refused by PostgreSQL's JSON): the key-field extractor failed its whole micro-batch."""
    texts = ["村干部截留了补贴1亿万几块", "补贴" + "一万" * 1_000 + "元", "补贴" + "9" * 400 + "元", "食堂饭菜有问题"]
    batch = {"letters": [{"external_id": f"AM-{i}", "text": t} for i, t in enumerate(texts)]}
    response = sqlite_service.client.post("/v1/letters:batch", json=batch, headers=sqlite_service.as_role("intake"))
    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == [201] * 4
