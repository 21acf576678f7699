"""The letter store: SQLAlchemy 2 tables, schema migrations (Alembic) and plain functions
to add and read letters.

SQLite (a file, in WAL mode) is the embedded default; PostgreSQL (by URL) lets several
service replicas share one store. Opening a store checks that its schema is the one this
code expects, and upgrades an empty or older store, so a wrong URL or a store written by
another version fails at start-up with a clear message instead of at the first request.

Letters name whistle-blowers: nothing here logs letter text or complainant fields.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class StoreError(RuntimeError):
    """A store that cannot be used: names the store (without password) and the fix."""


class Base(DeclarativeBase):
    pass


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and read back time-zone aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"timestamps must carry a time zone, found naive {value.isoformat()}")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Letter(Base):
    """A letter as received, with the model's answer and the matter it belongs to."""

    __tablename__ = "letters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    source: Mapped[str | None] = mapped_column(String(100))
    title: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    complainant: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    submitted_by: Mapped[str | None] = mapped_column(String(100), index=True)
    sector: Mapped[str | None] = mapped_column(String(100), index=True)
    predictions: Mapped[dict[str, Any]] = mapped_column(JSON)
    confidence: Mapped[float] = mapped_column(Float)
    needs_review: Mapped[bool] = mapped_column(Boolean, index=True)
    model_version: Mapped[str] = mapped_column(String(200))
    key_fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    matter_id: Mapped[str] = mapped_column(String(64), index=True)
    repeat_of: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    vector: Mapped[bytes | None] = mapped_column(LargeBinary)
    # the encoder that made ``vector`` (Engine.vector_space; NULL: stored before it was kept)
    vector_space: Mapped[str | None] = mapped_column(String(100))
    # the content words linking compares (model.keyfields.content_words), kept so that the
    # index is rebuilt at start-up without tagging every letter again (NULL: recomputed)
    link_words: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # the letter's current labels ({head: label(s)}, the loader's form): the model's
    # decisions until a supervisor reviews it, then the last review's
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # " head:label " for every current label, so the queue filters with LIKE on any backend
    tags: Mapped[str] = mapped_column(Text, default="")
    reviewed: Mapped[bool] = mapped_column(Boolean, default=False, index=True)


class Review(Base):
    """One supervisor decision on a letter: an audit entry that is never rewritten."""

    __tablename__ = "reviews"
    __table_args__ = (Index("ix_reviews_letter", "letter_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    letter_id: Mapped[int] = mapped_column(ForeignKey("letters.id"))
    reviewer: Mapped[str] = mapped_column(String(100))
    reviewed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    before: Mapped[dict[str, Any]] = mapped_column(JSON)
    after: Mapped[dict[str, Any]] = mapped_column(JSON)
    model_version: Mapped[str] = mapped_column(String(200))
    comment: Mapped[str | None] = mapped_column(Text)


class ApiKey(Base):
    """An API key: only its SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy, not the driver, begins transactions
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged letter survives a crash
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    """Writers take the write lock when they begin (BEGIN IMMEDIATE), so a read-then-write
    transaction cannot lose an update made between its read and its write."""
    immediate = connection.get_execution_options().get("immediate", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Store:
    """An open store: an engine, a session factory, and a checked schema.

    Args:
        url (str): ``sqlite:///path/to/letters.db`` or ``postgresql+psycopg://user@host/db``.
        upgrade (bool, default True): create or upgrade the schema to this code's version;
            with False a store at another version is refused.
    """

    def __init__(self, url: str, upgrade: bool = True) -> None:
        self.url = _safe_url(url)
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise StoreError(f"store URL {url!r} is not a database URL; expected e.g. "
                             "sqlite:///data/letters.db or postgresql+psycopg://user@host/db") from None
        if parsed.get_backend_name() not in {"sqlite", "postgresql"}:
            raise StoreError(f"store URL {self.url}: expected a sqlite or postgresql URL, "
                             f"found {parsed.get_backend_name()!r}")
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            folder = Path(parsed.database).parent
            if not folder.is_dir():
                raise StoreError(f"store URL {self.url}: folder {folder} does not exist; create it "
                                 "or point TRIAGE_STORE_URL elsewhere")
        try:
            self.engine = create_engine(url, pool_pre_ping=True)
        except (ArgumentError, ImportError) as err:
            raise StoreError(f"store URL {self.url}: {err}") from None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.write_sessions = sessionmaker(self.engine.execution_options(immediate=True),
                                           expire_on_commit=False)
        self._check_schema(upgrade)

    def _check_schema(self, upgrade: bool) -> None:
        config = _alembic_config(self.engine)
        head = ScriptDirectory.from_config(config).get_current_head()
        try:
            with self.engine.connect() as connection:
                current = MigrationContext.configure(connection).get_current_revision()
        except OperationalError as err:
            raise StoreError(f"cannot reach the store at {self.url}: {err.orig}; check that the "
                             "database server runs and the URL is right") from None
        if current == head:
            return
        known = {s.revision for s in ScriptDirectory.from_config(config).walk_revisions()}
        if current is not None and current not in known:
            raise StoreError(f"store {self.url} has schema revision {current!r}, which this code "
                             f"does not know (it knows up to {head!r}): it was written by a newer "
                             "version; upgrade this service or use another store")
        if not upgrade:
            raise StoreError(f"store {self.url} has schema revision {current!r}, expected {head!r}; "
                             "run 'triage store upgrade' or start with upgrades allowed")
        command.upgrade(config, "head")
        logger.info("store %s upgraded from %s to %s", self.url, current, head)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self.sessions.begin() as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A session for read-then-write work (reviews, inserts, keys): on SQLite it holds
        the write lock from its first statement; on PostgreSQL rows are locked with
        ``SELECT ... FOR UPDATE`` where it matters."""
        with self.write_sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def get_letter(session: Session, *, external_id: str) -> Letter | None:
    """The letter with this external id, or None."""
    return session.scalar(select(Letter).where(Letter.external_id == external_id))


def get_letter_by_id(session: Session, *, letter_id: int) -> Letter | None:
    """The letter with this internal id, or None."""
    return session.get(Letter, letter_id)


def letters_for_index(session: Session, *, after: int = 0, batch_size: int = 2000) -> Iterator[Letter]:
    """Stored letters with ids above ``after``, in arrival order, read in batches (to build
    the linking index at start-up and keep it in step)."""
    last = after
    while True:
        rows: Sequence[Letter] = session.scalars(
            select(Letter).where(Letter.id > last).order_by(Letter.id).limit(batch_size)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].id


def reviews_of(session: Session, *, letter_id: int) -> list[Review]:
    """The audit trail of a letter, oldest first."""
    return list(session.scalars(select(Review).where(Review.letter_id == letter_id)
                                .order_by(Review.id)))


__all__ = ["ApiKey", "Letter", "Review", "Store", "StoreError", "get_letter",
           "get_letter_by_id", "letters_for_index", "reviews_of"]
