"""Matters across restarts: the linking index is rebuilt from the store at start-up, so
a letter of a known matter gets the same matter id before and after a restart."""

from __future__ import annotations

import logging

import numpy as np

from model.keyfields import KeyFields
from model.linking import Entry, MatterIndex, PairScorer
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
    index = MatterIndex(scorer=scorer)
    with store.session() as session:
        for letter in letters_for_index(session):
            index.add(entry_from_letter(letter), letter.matter_id)
    logger.info("linking index rebuilt with %d letters", len(index))
    return index
