"""Who may do what: every route × (no key, unknown key, revoked key, each role)."""

from __future__ import annotations

import pytest

from tests.conftest import Service
from tests.test_service import LETTER, submit

ALL = {"intake", "supervisor", "admin"}
# (method, path template, body, roles admitted); None: open to everyone
MATRIX: list[tuple[str, str, dict | None, set[str] | None]] = [
    ("POST", "/v1/letters", {**LETTER, "external_id": "M-{role}"}, {"intake", "admin"}),
    ("POST", "/v1/letters:batch", {"letters": [{**LETTER, "external_id": "B-{role}"}]}, {"intake", "admin"}),
    ("GET", "/v1/letters/{letter_id}", None, ALL),
    ("GET", "/v1/labels", None, ALL),
    ("GET", "/v1/model", None, ALL),
    ("GET", "/v1/review-queue", None, {"supervisor", "admin"}),
    ("POST", "/v1/letters/{letter_id}/review", {"labels": {}}, {"supervisor", "admin"}),
    ("GET", "/v1/letters/{letter_id}/reviews", None, {"supervisor", "admin"}),
    ("GET", "/v1/letters/{letter_id}/evidence", None, {"supervisor", "admin"}),
    ("GET", "/v1/export", None, {"admin"}),
    ("GET", "/v1/keys", None, {"admin"}),
    ("POST", "/v1/keys", {"name": "新密钥", "role": "intake"}, {"admin"}),
    ("DELETE", "/v1/keys/{key_id}", None, {"admin"}),
    ("POST", "/v1/model:reload", None, {"admin"}),
    ("GET", "/healthz", None, None),
    ("GET", "/readyz", None, None),
    ("GET", "/metrics", None, None),
    ("GET", "/docs", None, None),
    ("GET", "/openapi.json", None, None),
]
CALLERS = ["none", "unknown", "revoked", "intake", "supervisor", "admin"]


def test_the_matrix_covers_every_route(sqlite_service: Service) -> None:
    """Every route in the OpenAPI schema is in the matrix (a new route cannot slip by)."""
    schema = sqlite_service.client.get("/openapi.json").json()
    routes = {(m.upper(), path) for path, item in schema["paths"].items() for m in item}
    assert routes | {("GET", "/docs"), ("GET", "/openapi.json")} == {(m, p) for m, p, _, _ in MATRIX}


def test_the_schema_declares_the_refusals(sqlite_service: Service) -> None:
    """Each keyed route documents 401 and 403, each POST on /v1 the request limits, and each
    route with a path id its 404, all shaped as ErrorOut."""
    schema = sqlite_service.client.get("/openapi.json").json()
    for method, template, _, roles in MATRIX:
        if template not in schema["paths"]:
            continue
        responses = schema["paths"][template][method.lower()]["responses"]
        expected = ({"401", "403", "503"} if roles else set()) | (
            {"400", "413", "415", "422"} if method == "POST" else set()) | (
            {"404"} if "{" in template else set())
        assert expected <= set(responses), f"{method} {template} lacks {expected - set(responses)}"
        for code in expected:
            assert responses[code]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorOut"}, f"{method} {template} {code}"


@pytest.mark.parametrize("caller", CALLERS)
def test_every_route_for_every_caller(sqlite_service: Service, caller: str) -> None:
    service = sqlite_service
    client = service.client
    letter_id = submit(service, LETTER).json()["id"]
    admin = service.as_role("admin")
    revoked = client.post("/v1/keys", json={"name": "离职人员", "role": "admin"}, headers=admin).json()
    assert client.delete(f"/v1/keys/{revoked['id']}", headers=admin).status_code == 200
    special = {"none": {}, "unknown": {"Authorization": "Bearer tk_not-a-key"},
               "revoked": {"Authorization": f"Bearer {revoked['key']}"}}
    headers = special[caller] if caller in special else service.as_role(caller)
    for method, template, body, roles in MATRIX:
        spare = client.post("/v1/keys", json={"name": "待删", "role": "intake"}, headers=admin).json()
        path = template.format(letter_id=letter_id, key_id=spare["id"])
        payload = None if body is None else {
            k: (v.format(role=caller) if isinstance(v, str) else v) for k, v in body.items()}
        response = client.request(method, path, json=payload, headers=headers)
        where = f"{method} {path} as {caller}"
        if roles is None or caller in roles:
            assert response.status_code < 400, f"{where}: {response.status_code} {response.text[:200]}"
        elif caller in {"none", "unknown", "revoked"}:
            assert response.status_code == 401, where
            assert response.headers["www-authenticate"] == "Bearer"
        else:
            assert response.status_code == 403, where
            assert f"yours is {caller}" in response.json()["detail"]
        assert LETTER["text"] not in response.text or (caller in ALL and roles and caller in roles)


def test_keys_are_stored_hashed(sqlite_service: Service) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(sqlite_service.settings.store_url)
    with engine.connect() as connection:
        stored = [row[0] for row in connection.execute(text("SELECT key_hash FROM api_keys"))]
    engine.dispose()
    assert len(stored) == 4 and all(len(h) == 64 for h in stored)
    assert not set(stored) & set(sqlite_service.keys.values())


def test_the_review_page_needs_a_supervisor_key(sqlite_service: Service) -> None:
    client = sqlite_service.client
    assert "审核员登录" in client.get("/review").text
    letter_id = submit(sqlite_service, LETTER).json()["id"]
    assert "审核员登录" in client.get(f"/review/letters/{letter_id}").text
    intake = client.post("/review/login", data={"key": sqlite_service.keys["intake"]}, follow_redirects=False)
    assert intake.status_code == 401 and "没有审核权限" in intake.text
    assert LETTER["text"] not in client.get(f"/review/letters/{letter_id}").text
    ok = client.post("/review/login", data={"key": sqlite_service.keys["supervisor"]}, follow_redirects=False)
    assert ok.status_code == 303 and "httponly" in ok.headers["set-cookie"].lower()
    page = client.get(f"/review/letters/{letter_id}")
    assert page.status_code == 200 and '<mark class="amount">三万元</mark>' in page.text
    assert "营养餐补助" in page.text and "审核记录" in page.text
    queue = client.get("/review")
    assert f"/review/letters/{letter_id}" in queue.text
    client.post("/review/logout")
    assert "审核员登录" in client.get("/review").text
