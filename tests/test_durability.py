"""An acknowledged letter is never lost: the service is killed with SIGKILL in the middle
of a stream of letters, restarted, and every acknowledged letter is there exactly once;
concurrent submissions and reviews stay consistent."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import func, select

from serving.live_server import LiveServer
from serving.store import Letter, Store
from tests.conftest import prepare_service


def _letter(i: int) -> dict:
    return {"external_id": f"K-{i}", "text": f"第{i}封：村里的低保金被村干部截留私分了，请查处。"}


def test_acknowledged_letters_survive_sigkill(tiny_model: Path, store_url: str, tmp_path: Path) -> None:
    _, keys = prepare_service(tiny_model, store_url)
    headers = {"Authorization": f"Bearer {keys['intake']}"}
    server = LiveServer(tiny_model, store_url, tmp_path / "service.log").start()
    acknowledged: list[str] = []
    sent: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        with httpx.Client(base_url=server.base, headers=headers, timeout=10) as client:
            for i in range(10_000):
                if stop.is_set():
                    return
                sent.append(f"K-{i}")
                try:
                    response = client.post("/v1/letters", json=_letter(i))
                except httpx.HTTPError:
                    return  # the service died under this request: not acknowledged
                if response.status_code == 201:
                    acknowledged.append(f"K-{i}")

    sender = threading.Thread(target=stream)
    sender.start()
    while len(acknowledged) < 25:
        sender.join(0.02)
    server.kill()
    stop.set()
    sender.join()
    assert len(sent) > len(acknowledged) >= 25 or len(sent) == len(acknowledged)

    store = Store(store_url)
    with store.session() as session:
        stored = list(session.scalars(select(Letter.external_id)))
        duplicates = session.scalar(select(func.count()).select_from(
            select(Letter.external_id).group_by(Letter.external_id).having(func.count() > 1).subquery()))
    store.close()
    assert set(acknowledged) <= set(stored) and duplicates == 0

    server.start()
    try:
        with httpx.Client(base_url=server.base, headers=headers, timeout=10) as client:
            statuses = {eid: client.post("/v1/letters", json=_letter(int(eid[2:]))).status_code for eid in sent}
    finally:
        server.stop()
    assert all(statuses[eid] == 200 for eid in acknowledged)
    assert all(statuses[eid] in (200, 201) for eid in sent)
    store = Store(store_url)
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Letter)) == len(sent)
    store.close()


def test_concurrent_duplicates_and_reviews(tiny_model: Path, store_url: str, tmp_path: Path) -> None:
    _, keys = prepare_service(tiny_model, store_url)
    intake = {"Authorization": f"Bearer {keys['intake']}"}
    supervisor = {"Authorization": f"Bearer {keys['supervisor']}"}
    server = LiveServer(tiny_model, store_url, tmp_path / "service.log").start()
    try:
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: httpx.post(f"{server.base}/v1/letters", json=_letter(1),
                                                         headers=intake, timeout=30), range(16)))
        assert sorted(a.status_code for a in answers) == [200] * 15 + [201]
        assert len({a.json()["id"] for a in answers}) == 1
        letter_id = answers[0].json()["id"]
        sectors = ["campus_meals", "funeral_services", "social_assistance", "elderly_care"] * 3
        with ThreadPoolExecutor(12) as pool:
            reviews = list(pool.map(lambda s: httpx.post(
                f"{server.base}/v1/letters/{letter_id}/review", json={"labels": {"sector": s}},
                headers=supervisor, timeout=30), sectors))
        assert all(r.status_code == 200 for r in reviews)
        trail = httpx.get(f"{server.base}/v1/letters/{letter_id}/reviews", headers=supervisor).json()
        final = httpx.get(f"{server.base}/v1/letters/{letter_id}", headers=supervisor).json()
    finally:
        server.stop()
    assert len(trail) == 12
    assert all(trail[i]["after"] == trail[i + 1]["before"] for i in range(11))  # a chain, nothing lost
    assert final["labels"] == trail[-1]["after"]
