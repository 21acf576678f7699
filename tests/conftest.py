"""Shared fixtures: the project's label schema and small inline letter files."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from model.labels import LabelSchema

ROOT = Path(__file__).resolve().parents[1]
DEVSET = ROOT.parent / "shared" / "devset" / "letters.jsonl"

LETTERS: list[dict[str, Any]] = [
    {"id": "L1", "text": "村小学食堂每天的饭菜只有一个素菜，营养餐补助被校长截留了。",
     "sector": "campus_meals", "violations": ["misappropriation"], "repeat_cue": False},
    {"id": "L2", "text": "我们村的低保名单里全是村主任的亲戚，真正困难的人吃不上低保，已经第三次反映了。",
     "sector": "social_assistance", "violations": ["favouritism"], "repeat_cue": True},
    {"id": "L3", "text": "殡仪馆强制家属购买八千元的骨灰盒，不买就不给火化，还要红包。",
     "sector": "funeral_services", "violations": ["illegal_fees", "bribery"], "repeat_cue": False},
    {"id": "L4", "text": "小区门口的路灯坏了半年了，晚上出门很不方便，建议尽快修好。",
     "sector": "other", "violations": [], "repeat_cue": False},
]


@pytest.fixture(scope="session")
def schema() -> LabelSchema:
    return LabelSchema.from_yaml(ROOT / "labels.yaml")


@pytest.fixture
def letters() -> list[dict[str, Any]]:
    return [dict(row) for row in LETTERS]


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[..., Path]:
    """Write rows (dicts, or raw strings/bytes for bad lines) to a JSONL file."""

    def write(rows: list[Any], name: str = "letters.jsonl") -> Path:
        path = tmp_path / name
        with path.open("wb") as f:
            for row in rows:
                if isinstance(row, bytes):
                    f.write(row + b"\n")
                elif isinstance(row, str):
                    f.write(row.encode("utf-8") + b"\n")
                else:
                    f.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
        return path

    return write


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT base model with a small Chinese vocabulary."""
    from tests.tiny_model import write_tiny_base_model

    return write_tiny_base_model(tmp_path_factory.mktemp("tiny-base"))


def topic_letters(copies: int = 3) -> list[dict[str, Any]]:
    """Letters whose sector and violations follow from their words (learnable in a few steps)."""
    topics = {"campus_meals": ("学校食堂的饭菜", "营养餐补助"),
              "funeral_services": ("殡仪馆的骨灰盒", "火化费用"),
              "social_assistance": ("村里的低保名额", "低保金")}
    rows = []
    for sector, (thing, money) in topics.items():
        for i in range(6 * copies):
            cheat = i % 2 == 0
            rows.append({
                "id": f"{sector}-{i}",
                "text": f"第{i}封信：{thing}有问题，" + (f"{money}被干部截留私分了" if cheat
                                                     else "希望有关部门关心一下"),
                "sector": sector,
                "violations": ["misappropriation"] if cheat else [],
                "repeat_cue": i % 3 == 0,
            })
    return rows


@pytest.fixture(scope="session")
def tiny_model(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory trained for a few steps on the tiny base model."""
    from training.finetune import TrainingArguments, train

    folder = tmp_path_factory.mktemp("tiny-model")
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in topic_letters()),
                    encoding="utf-8")
    out = folder / "model"
    train(TrainingArguments(data=[data], out=out, labels=ROOT / "labels.yaml",
                            base_model=str(tiny_base), epochs=2, batch_size=8, window_tokens=32,
                            window_stride=8, validation_fraction=0.3, learning_rate=1e-3))
    return out


PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_url() -> str | None:
    """A URL to a fresh schema of the local PostgreSQL, or None where none runs."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    schema = f"triage_test_{uuid.uuid4().hex[:8]}"
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 2})
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
    except (OperationalError, ImportError):
        return None
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same tests on an SQLite file and on PostgreSQL (skipped where none is reachable)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'letters.db'}"
    url = _postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432 (database test)")
    return url


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked slow (real checkpoints, long runs) run only with RUN_SLOW=1."""
    import os

    if os.environ.get("RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set RUN_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@dataclass
class Service:
    """A running app (TestClient) on the tiny model, with one key per role."""

    client: Any
    keys: dict[str, str]
    settings: Any

    def as_role(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}


def prepare_service(model_dir: Path, store_url: str, **settings: Any) -> tuple[Any, dict[str, str]]:
    """Settings for the tiny model on a store holding one key per role (and a second intake key)."""
    from serving.app import open_store
    from serving.keys import create_key
    from serving.settings import ServiceSettings

    config = ServiceSettings(store_url=store_url, model_dir=model_dir, **settings)
    store = open_store(config)
    keys = {}
    with store.session() as session:
        for role in ("intake", "supervisor", "admin"):
            keys[role] = create_key(session, f"测试-{role}", role)[1]
        keys["intake2"] = create_key(session, "测试-intake-2", "intake")[1]
    store.close()
    return config, keys


def start_service(model_dir: Path, store_url: str, **settings: Any) -> Iterator[Service]:
    from fastapi.testclient import TestClient

    from serving.app import create_app

    config, keys = prepare_service(model_dir, store_url, **settings)
    with TestClient(create_app(config)) as client:
        yield Service(client, keys, config)


@pytest.fixture
def service(tiny_model: Path, store_url: str) -> Iterator[Service]:
    """The service on SQLite and PostgreSQL; every letter goes to review (threshold 1.01)."""
    yield from start_service(tiny_model, store_url, review_threshold=1.01)


@pytest.fixture
def sqlite_service(tiny_model: Path, tmp_path: Path) -> Iterator[Service]:
    yield from start_service(tiny_model, f"sqlite:///{tmp_path / 'letters.db'}", review_threshold=1.01)
