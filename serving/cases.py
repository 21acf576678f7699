"""Matters across restarts and replicas: the linking index is rebuilt from the store at
start-up and catches up with letters other replicas stored before each lookup, so a
letter of a known matter gets the same matter id wherever and whenever it arrives.

Each stored letter keeps the vector linking read when it arrived, and which encoder made it
(its vector space). A model with a new matter encoder reads letters into another space:
vectors of another space are left out of the index (those letters still link by wording and
key fields), and :func:`reencode_vectors` (``triage reencode``) rewrites the stored vectors
with the new encoder."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from model.keyfields import KeyFields
from model.labels import LabelSchema
from model.linking import Decision, Entry, MatterIndex, PairScorer
from serving.store import Letter, Store, letters_for_index

logger = logging.getLogger(__name__)

VECTOR_DTYPE = np.float16  # half the memory of float32; cosine changes by < 1e-3


def vector_bytes(vector: np.ndarray | None) -> bytes | None:
    """A letter vector as stored."""
    return None if vector is None else np.asarray(vector, dtype=VECTOR_DTYPE).tobytes()


def comparable(letter: Letter, vector_space: str | None) -> bool:
    """Whether a stored letter's vector may be compared with vectors of ``vector_space``
    (None: any; a letter stored before spaces were recorded is taken as comparable)."""
    return vector_space is None or letter.vector_space in (None, vector_space)


def entry_from_letter(letter: Letter, vector_space: str | None = None) -> Entry:
    """The linking entry of a stored letter; without its vector when that comes from
    another vector space than ``vector_space``."""
    vector = (None if letter.vector is None or not comparable(letter, vector_space)
              else np.frombuffer(letter.vector, dtype=VECTOR_DTYPE))
    return Entry(letter_id=letter.external_id, text=letter.text,
                 key_fields=KeyFields.from_dict(letter.key_fields),
                 vector=None if vector is None else vector.astype(np.float32),
                 sector=letter.sector, received_at=letter.received_at, known_words=letter.link_words)


def rebuild_index(store: Store, scorer: PairScorer | None = None,
                  vector_space: str | None = None) -> MatterIndex:
    """A linking index holding every stored letter under its stored matter id."""
    return Matters(store, scorer, vector_space).index


class Matters:
    """The linking index of one service replica, kept in step with the store.

    ``link`` and ``add`` are called under ``lock`` by whoever stores letters, so two
    letters of one matter arriving together cannot both open a new matter.

    ``vector_space`` names the encoder of the vectors new letters come with; stored
    vectors of another space are left out (``foreign_vectors`` counts them).
    ``search_threads`` share the cosine search of a large store (``MatterIndex``).
    """

    def __init__(self, store: Store, scorer: PairScorer | None, vector_space: str | None,
                 search_threads: int = 1) -> None:
        self.lock = threading.Lock()
        self.index = MatterIndex(scorer=scorer, search_threads=search_threads)
        self.vector_space = vector_space
        self.foreign_vectors = 0
        self.last_id = 0
        self._untagged: list[tuple[int, str]] = []  # (row id, external id) stored without words
        with store.session() as session:
            self.catch_up(session)
        logger.info("linking index built with %d letters", len(self.index))
        self._warn_foreign()
        self._store_words(store)

    def _warn_foreign(self) -> None:
        if self.foreign_vectors:
            logger.warning("%d stored letters have vectors from another encoder than %s: they link "
                           "by wording and key fields only until 'triage reencode --model MODEL "
                           "--store URL' rewrites them (then restart)", self.foreign_vectors,
                           self.vector_space)

    def catch_up(self, session: Session) -> None:
        """Index letters stored since the last look (by this or another replica)."""
        for letter in letters_for_index(session, after=self.last_id):
            self.foreign_vectors += letter.vector is not None and not comparable(letter, self.vector_space)
            if letter.link_words is None:
                self._untagged.append((letter.id, letter.external_id))
            self.index.add(entry_from_letter(letter, self.vector_space), letter.matter_id)
            self.last_id = letter.id

    def _store_words(self, store: Store, batch_size: int = 1000) -> None:
        """Write the words of letters stored before they were kept (migration 0004), so the
        next start reads them instead of tagging again: short transactions, one UPDATE by
        primary key per batch, so reviews and other replicas barely wait."""
        untagged, self._untagged = self._untagged, []
        for start in range(0, len(untagged), batch_size):
            with store.writing() as session:
                session.execute(update(Letter), [
                    {"id": row_id, "link_words": sorted(self.index.entries[external_id].words)}
                    for row_id, external_id in untagged[start : start + batch_size]])
        if untagged:
            logger.info("stored the content words of %d letters kept without them", len(untagged))

    def link(self, entry: Entry) -> Decision:
        return self.index.link(entry)

    def use_model(self, session: Session, scorer: PairScorer | None, vector_space: str) -> None:
        """Link with a reloaded model's scorer; if it reads letters into another vector
        space, the vectors of every letter stored so far are left out from now on."""
        self.catch_up(session)
        self.index.scorer = scorer or PairScorer()
        if vector_space != self.vector_space:
            self.foreign_vectors += self.index.drop_vectors()
            self.vector_space = vector_space
            self._warn_foreign()


def reencode_vectors(store: Store, vectors: Callable[[list[str]], np.ndarray], vector_space: str,
                     schema: LabelSchema, batch_size: int = 64,
                     progress: Callable[[int], None] | None = None) -> int:
    """Rewrite every stored letter's linking vector with ``vectors`` (e.g. ``Engine.vectors``
    of a model with a new matter encoder, whose ``vector_space`` is recorded with them), in
    id order, each batch read, encoded and then committed on its own (the write lock is held
    only to write). Returns how many letters.

    The service must restart afterwards to rebuild its index from them."""
    done, last = 0, 0
    while True:
        with store.session() as session:
            rows: Sequence[tuple[int, str | None, str]] = session.execute(
                select(Letter.id, Letter.title, Letter.text).where(Letter.id > last)
                .order_by(Letter.id).limit(batch_size)).tuples().all()
        if not rows:
            return done
        found = vectors([schema.join_text({"title": title, "text": text}) for _, title, text in rows])
        with store.writing() as session:  # one UPDATE by primary key for the whole batch
            session.execute(update(Letter), [
                {"id": letter_id, "vector": vector_bytes(vector), "vector_space": vector_space}
                for (letter_id, _, _), vector in zip(rows, found, strict=True)])
        done += len(rows)
        last = rows[-1][0]
        if progress is not None:
            progress(len(rows))
