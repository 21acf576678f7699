"""Matters across restarts and replicas: the linking index is rebuilt from the store at
start-up and catches up with letters other replicas stored before each lookup, so a
letter of a known matter gets the same matter id wherever and whenever it arrives.

Each stored letter keeps the vector linking read when it arrived. A model with a new
matter encoder reads letters into another vector space: :func:`reencode_vectors`
(``triage reencode``) rewrites the stored vectors with it before it serves."""

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


def entry_from_letter(letter: Letter) -> Entry:
    """The linking entry of a stored letter."""
    vector = None if letter.vector is None else np.frombuffer(letter.vector, dtype=VECTOR_DTYPE)
    return Entry(letter_id=letter.external_id, text=letter.text,
                 key_fields=KeyFields.from_dict(letter.key_fields),
                 vector=None if vector is None else vector.astype(np.float32),
                 sector=letter.sector, received_at=letter.received_at)


def rebuild_index(store: Store, scorer: PairScorer | None = None) -> MatterIndex:
    """A linking index holding every stored letter under its stored matter id."""
    return Matters(store, scorer).index


class Matters:
    """The linking index of one service replica, kept in step with the store.

    ``link`` and ``add`` are called under ``lock`` by whoever stores letters, so two
    letters of one matter arriving together cannot both open a new matter.
    """

    def __init__(self, store: Store, scorer: PairScorer | None) -> None:
        self.lock = threading.Lock()
        self.index = MatterIndex(scorer=scorer)
        self.last_id = 0
        with store.session() as session:
            self.catch_up(session)
        logger.info("linking index built with %d letters", len(self.index))

    def catch_up(self, session: Session) -> None:
        """Index letters stored since the last look (by this or another replica)."""
        for letter in letters_for_index(session, after=self.last_id):
            self.index.add(entry_from_letter(letter), letter.matter_id)
            self.last_id = letter.id

    def link(self, entry: Entry) -> Decision:
        return self.index.link(entry)

    def use_scorer(self, scorer: PairScorer | None) -> None:
        self.index.scorer = scorer or PairScorer()


def reencode_vectors(store: Store, vectors: Callable[[list[str]], np.ndarray], schema: LabelSchema,
                     batch_size: int = 64, progress: Callable[[int], None] | None = None) -> int:
    """Rewrite every stored letter's linking vector with ``vectors`` (e.g. ``Engine.vectors``
    of a model with a new matter encoder), in id order, each batch read, encoded and then
    committed on its own (the write lock is held only to write). Returns how many letters.

    The service must restart (or reload) afterwards to rebuild its index from them."""
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
            session.execute(update(Letter), [{"id": letter_id, "vector": vector_bytes(vector)}
                                             for (letter_id, _, _), vector in zip(rows, found, strict=True)])
        done += len(rows)
        last = rows[-1][0]
        if progress is not None:
            progress(len(rows))
