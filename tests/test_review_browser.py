"""The review page in real headless Chromium (Debian's /usr/bin/chromium driven by
Playwright; no browser is downloaded): a supervisor logs in with a key, opens the
lowest-confidence letter, corrects its sector with the keyboard, and the export then
holds the correction."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="no Chromium: apt-get install -y chromium (make setup does)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_service(tiny_model: Path, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The service on a real port (uvicorn in a thread), with keys and three letters."""
    import httpx
    import uvicorn

    from serving.app import create_app
    from tests.conftest import prepare_service

    settings, keys = prepare_service(tiny_model, f"sqlite:///{tmp_path / 'letters.db'}", review_threshold=1.01)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    intake = {"Authorization": f"Bearer {keys['intake']}"}
    for i, text in enumerate(["学校食堂饭菜有问题，营养餐补助被干部截留私分了。",
                              "殡仪馆的骨灰盒火化费用有问题，希望有关部门关心一下。",
                              "村里的低保名额有问题，低保金被干部截留私分了。"]):
        response = httpx.post(f"{base}/v1/letters", json={"external_id": f"W-{i}", "text": text},
                              headers=intake)
        assert response.status_code == 201, response.text
    yield base, keys
    server.should_exit = True
    thread.join(timeout=10)


def test_supervisor_corrects_the_lowest_confidence_letter_with_the_keyboard(live_service) -> None:
    import httpx
    from playwright.sync_api import sync_playwright

    base, keys = live_service
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    queue = httpx.get(f"{base}/v1/review-queue",
                      headers={"Authorization": f"Bearer {keys['supervisor']}"}).json()
    lowest = queue["items"][0]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{base}/review")
        assert page.locator("h1").inner_text() == "审核员登录"
        page.fill("#key", keys["supervisor"])
        page.keyboard.press("Enter")
        page.wait_for_selector("#queue")
        first_row = page.locator("#queue tbody tr").first
        assert first_row.get_attribute("data-href") == f"/review/letters/{lowest['id']}"
        page.keyboard.press("Enter")  # the selected (lowest-confidence) row
        page.wait_for_selector("#review-form")
        assert f"/review/letters/{lowest['id']}" in page.url
        before = page.locator("#field-sector").input_value()
        page.keyboard.press("s")
        page.keyboard.press("ArrowDown")
        if page.locator("#field-sector").input_value() == before:  # it was the last sector
            page.keyboard.press("ArrowUp")
            page.keyboard.press("ArrowUp")
        after = page.locator("#field-sector").input_value()
        assert after != before
        with page.expect_navigation():
            page.keyboard.press("Enter")
        page.goto(f"{base}/review/letters/{lowest['id']}")
        trail = page.locator("#trail tbody").inner_text()
        assert "测试-supervisor" in trail and "→" in trail
        browser.close()

    exported = [json.loads(line) for line in httpx.get(f"{base}/v1/export", headers=admin).text.splitlines()]
    assert [(r["id"], r["sector"]) for r in exported] == [(lowest["external_id"], after)]
