from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from serving.store import Letter, Store, StoreError, get_letter


def _letter(external_id: str = "X-1", matter: str = "m1") -> Letter:
    return Letter(external_id=external_id, received_at=datetime(2026, 1, 5, tzinfo=UTC),
                  source="hotline", text="村里的低保名单全是村干部亲戚", predictions={"sector": "x"},
                  sector="social_assistance", confidence=0.9, needs_review=False,
                  model_version="v1", key_fields={"places": []}, matter_id=matter, repeat_of=[])


def test_letter_round_trip(store_url: str) -> None:
    store = Store(store_url)
    with store.session() as session:
        session.add(_letter())
    with store.session() as session:
        found = get_letter(session, external_id="X-1")
        assert found is not None and found.sector == "social_assistance"
        assert found.received_at.year == 2026
        assert get_letter(session, external_id="nope") is None


def test_reopening_keeps_letters(store_url: str) -> None:
    store = Store(store_url)
    with store.session() as session:
        session.add(_letter("X-2"))
    store.close()
    with Store(store_url).session() as session:
        assert get_letter(session, external_id="X-2") is not None


def test_sqlite_store_uses_wal(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'letters.db'}")
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "is not a database URL; expected e.g. sqlite:///"),
        ("mysql://root@localhost/test", "expected a sqlite or postgresql URL, found 'mysql'"),
        ("sqlite:////no/such/folder/letters.db", "folder /no/such/folder does not exist"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/test", "cannot reach the store at"),
    ],
)
def test_bad_store_urls_fail_clearly(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=re.escape(message)):
        Store(url)


def test_password_is_not_echoed() -> None:
    with pytest.raises(StoreError) as caught:
        Store("postgresql+psycopg://user:s3cret@127.0.0.1:1/test")
    assert "s3cret" not in str(caught.value)


def test_schema_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'letters.db'}"
    Store(url).close()
    store = Store(url)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match=re.escape("schema revision '9999', which this code does "
                                                   "not know")):
        Store(url)


def test_old_schema_without_upgrade_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'letters.db'}"
    with pytest.raises(StoreError, match=re.escape("has schema revision None, expected '0004'")):
        Store(url, upgrade=False)


def test_a_store_at_revision_0001_is_upgraded_and_keeps_its_letters(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import create_engine

    from serving.store import _alembic_config

    url = f"sqlite:///{tmp_path / 'letters.db'}"
    engine = create_engine(url)
    command.upgrade(_alembic_config(engine), "0001")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO letters (external_id, received_at, text, predictions, confidence, needs_review,"
            " model_version, key_fields, matter_id, repeat_of, created_at) VALUES ('old-1',"
            " '2026-01-05 00:00:00', '旧信', '{}', 0.5, 1, 'v0', '{}', 'm', '[]', '2026-01-05 00:00:00')"))
    engine.dispose()
    store = Store(url)
    with store.session() as session:
        old = get_letter(session, external_id="old-1")
        assert old is not None and old.text == "旧信"
        assert old.labels == {} and old.reviewed is False and old.tags == ""
