"""Case linking: finding earlier letters about the same matter (same place, people, acts),
even rephrased and from another complainant.

For a new letter, candidates come from three places: MinHash LSH over character
shingles (near-verbatim reposts), the most similar letter vectors (the encoder's pooled
vector, cosine), and letters sharing a specific place or a named person within a time
window. Each candidate pair is then scored by a logistic model over pair features
(vector cosine, and its margin over the new letter's nearest stored letters; shingle
Jaccard, shared villages/institutions, shared names, shared amounts, same sector); pairs
above ``threshold`` are links, and the new letter joins the matter of its best link (or
starts a new one).

The margin: a letter written the way many are (a common kind of complaint in common
words) lies close to many stored letters, so its cosine to any one of them says little;
the cosine minus the mean of its ``NEIGHBOURS`` highest cosines to stored letters says
how much closer this candidate is than the crowd (hubness correction, as in CSLS). On the
corpus's held-out groups it raised the pair scorer's average precision from 0.56 to 0.70
(docs/linking.md).

Example::

    index = MatterIndex(scorer=PairScorer.load("models/letters/linking.json"))
    decision = index.link(entry)          # repeat_of and matter_id for a new letter
    index.add(entry, decision.matter_id)
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import InitVar, dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
from datasketch import MinHash, MinHashLSH

from model.keyfields import GROUP_NUMBER, KeyFields, content_words

logger = logging.getLogger(__name__)

# the corpus's same-matter pairs include hard negatives (same village or official, other
# matter); at 0.95 on them the threshold rejected most true links on the dev set (recall 0.17)
LINK_PRECISION = 0.9
LINKER_FILE = "linking.json"  # the fitted scorer, saved in the model directory it was fitted with
SHINGLE = 3
NUM_PERM = 64
BROAD_SUFFIXES = ("省", "市", "县", "区")  # too coarse to tell matters apart
# a place or name in more than this share of the stored letters (and in more than
# COMMON_MIN of them) tells matters apart no better than chance: a city every message of
# a regional board names ('A市'), or the official all letters are addressed to ('胡书记')
COMMON_SHARE = 0.01
COMMON_MIN = 20
NEIGHBOURS = 10
# below this many stored vectors one product takes a few ms on one core: not worth splitting
SPLIT_ROWS = 16_384
FEATURES = ("cosine", "cosine_margin", "jaccard", "idf_overlap", "shared_local_places", "shared_broad_places",
            "shared_names", "shared_amounts", "same_sector", "bias")
_SPACE = re.compile(r"\s+")


def _shingles(text: str) -> list[bytes]:
    text = _SPACE.sub("", text)
    return list({text[i : i + SHINGLE].encode("utf-8") for i in range(max(1, len(text) - SHINGLE + 1))})


def minhash(text: str) -> MinHash:
    """MinHash of a text's character 3-grams."""
    m = MinHash(num_perm=NUM_PERM, seed=7)
    m.update_batch(_shingles(text))
    return m


@dataclass
class Entry:
    """What linking needs of a letter. ``known_words`` are its content words as stored
    with it (``Letter.link_words``): jieba's tagging is most of an entry's cost (~23 ms a
    letter), so an index rebuilt from the store at start-up takes them from there."""

    letter_id: str
    text: str
    key_fields: KeyFields
    vector: np.ndarray | None = None
    sector: str | None = None
    received_at: datetime | None = None
    signature: MinHash = field(init=False)
    words: frozenset[str] = field(init=False)
    known_words: InitVar[Iterable[str] | None] = None

    def __post_init__(self, known_words: Iterable[str] | None) -> None:
        self.signature = minhash(self.text)
        self.words = frozenset(known_words) if known_words is not None else content_words(self.text)
        if self.vector is not None:
            norm = float(np.linalg.norm(self.vector))
            self.vector = (self.vector / norm if norm else self.vector).astype(np.float32)

    @cached_property
    def local_places(self) -> set[str]:
        """Villages, towns and institutions (a bare '五组' is too common to mean anything)."""
        return {p for p in self.key_fields.places
                if not p.endswith(BROAD_SUFFIXES) and not GROUP_NUMBER.match(p)}

    @cached_property
    def broad_places(self) -> set[str]:
        return {p for p in self.key_fields.places if p.endswith(BROAD_SUFFIXES)}

    @cached_property
    def names(self) -> set[str]:
        return {p.name for p in self.key_fields.people if p.name and "某" not in p.name}


def _shared_amounts(a: Entry, b: Entry) -> list[float]:
    shared = []
    for x in a.key_fields.amounts:
        if any(abs(x.yuan - y.yuan) <= 0.02 * max(x.yuan, y.yuan) for y in b.key_fields.amounts):
            shared.append(x.yuan)
    return shared


class WordFrequencies:
    """Document frequencies of content words, places and names over the letters seen so far."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.keys: Counter[str] = Counter()
        self.documents = 0
        # log(count + 1) of every word seen, updated as letters are added: an IDF sum over a
        # set is then one C-level pass (it had been 70% of linking's time, a log per word)
        self._log_counts: dict[str, float] = {}

    def add(self, words: frozenset[str], keys: Iterable[str] = ()) -> None:
        self.counts.update(words)
        self.keys.update(keys)
        self.documents += 1
        for word in words:
            self._log_counts[word] = math.log(self.counts[word] + 1)

    def rare(self, keys: set[str]) -> set[str]:
        """The places or names among ``keys`` that are not common in the letters seen."""
        limit = max(COMMON_MIN, COMMON_SHARE * self.documents)
        return {k for k in keys if self.keys[k] <= limit}

    def idf_sum(self, words: frozenset[str]) -> float:
        """The sum over ``words`` of idf(w) = log((documents + 1) / (count(w) + 1)) + 1."""
        constant = math.log(self.documents + 1) + 1.0
        return len(words) * constant - sum(map(self._log_counts.get, words, repeat(0.0)))

    def overlap(self, a: frozenset[str], b: frozenset[str]) -> float:
        """IDF-weighted Jaccard of two word sets: rare shared words weigh most."""
        if not a and not b:
            return 0.0
        return self.idf_sum(a & b) / (self.idf_sum(a) + self.idf_sum(b - a))


def pair_features(a: Entry, b: Entry, frequencies: WordFrequencies | None = None,
                  use_vectors: bool = True, neighbourhood: float = 0.0) -> np.ndarray:
    """Features of a new letter ``a`` and a stored one ``b``, in the order of
    :data:`FEATURES`. ``neighbourhood`` is the mean of ``a``'s highest cosines to stored
    letters (``MatterIndex.neighbourhood``). Both cosine features are 0 without both
    vectors, or when ``use_vectors`` is False."""
    vectors = use_vectors and a.vector is not None and b.vector is not None
    cosine = float(a.vector @ b.vector) if vectors else 0.0  # type: ignore[operator]
    frequencies = frequencies or WordFrequencies()
    rare = frequencies.rare
    return np.array([
        cosine,
        cosine - neighbourhood if vectors else 0.0,
        a.signature.jaccard(b.signature),
        frequencies.overlap(a.words, b.words),
        min(len(rare(a.local_places & b.local_places)), 3),
        min(len(rare(a.broad_places & b.broad_places)), 2),
        min(len(rare(a.names & b.names)), 2),
        min(len(_shared_amounts(a, b)), 2),
        float(a.sector is not None and a.sector == b.sector),
        1.0,
    ])


def shared_fields(a: Entry, b: Entry) -> dict[str, list[Any]]:
    """What two letters share, for a person to see why they were linked."""
    return {"places": sorted(a.local_places & b.local_places | a.broad_places & b.broad_places),
            "people": sorted(a.names & b.names), "amounts": sorted(set(_shared_amounts(a, b)))}


@dataclass
class PairScorer:
    """A logistic model over :func:`pair_features` deciding whether two letters are one matter.

    Args:
        weights: one weight per feature of :data:`FEATURES` (the last is the bias).
        threshold (float, default 0.5): probability at or above which a pair is a link.
        use_vectors (bool, default True): letter vectors propose candidates and give the
            cosine feature; False links on key fields and wording alone.
    """

    weights: list[float] = field(
        default_factory=lambda: [6.0, 0.0, 4.0, 6.0, 2.0, 0.5, 2.0, 1.0, 1.0, -10.0])
    threshold: float = 0.5
    use_vectors: bool = True

    def __post_init__(self) -> None:
        if len(self.weights) != len(FEATURES):
            raise ValueError(f"expected {len(FEATURES)} weights ({', '.join(FEATURES)}), "
                             f"found {len(self.weights)}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0.0, 1.0], found {self.threshold}")

    def probability(self, features: np.ndarray) -> np.ndarray:
        """Probability that each row of features is a pair about the same matter."""
        return 1.0 / (1.0 + np.exp(-(np.atleast_2d(features) @ np.asarray(self.weights))))

    @classmethod
    def fit(cls, features: np.ndarray, same: np.ndarray, precision: float = LINK_PRECISION,
            use_vectors: bool = True) -> PairScorer:
        """Fit the weights on labelled pairs (``same``: 1 for one matter, 0 otherwise), then
        take the lowest threshold whose links are right at least ``precision`` of the time
        on those pairs (linking the wrong letters costs more than missing a link)."""
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=1.0, fit_intercept=False, max_iter=5000).fit(features, same)
        scorer = cls(weights=[float(w) for w in model.coef_[0]], use_vectors=use_vectors)
        scores = scorer.probability(features)
        order = np.argsort(-scores, kind="stable")
        kept_precision = np.cumsum(same[order]) / np.arange(1, len(order) + 1)
        good = np.nonzero(kept_precision >= precision)[0]
        scorer.threshold = float(scores[order][good[-1]]) if len(good) else 1.0
        return scorer

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"features": list(FEATURES), "weights": self.weights,
                                    "threshold": self.threshold, "use_vectors": self.use_vectors},
                                   indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> PairScorer:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("features") != list(FEATURES):
            raise ValueError(f"{path}: scorer features {data.get('features')} differ from this "
                             f"code's {list(FEATURES)}; refit it with 'triage fit-linker'")
        return cls(weights=data["weights"], threshold=data["threshold"],
                   use_vectors=data.get("use_vectors", True))


@dataclass
class Link:
    letter_id: str
    score: float
    shared: dict[str, list[Any]]


@dataclass
class Decision:
    repeat_of: list[Link]
    matter_id: str


class MatterIndex:
    """Letters already stored, indexed for finding the same matter.

    Args:
        scorer: decides whether a candidate pair is one matter.
        window_days (int, default 1095): only letters received within this many days count.
        top_k (int, default 20): candidates taken from vector similarity.
        lsh_threshold (float, default 0.3): Jaccard above which LSH proposes a candidate.
        search_threads (int, default 1): threads that share the cosine to every stored
            vector, each over a block of rows, once more than ``SPLIT_ROWS`` are stored.
            Unlike a multi-threaded BLAS, idle threads wait without spinning, so the cores
            go back to the model between lookups.
    """

    def __init__(self, scorer: PairScorer | None = None, window_days: int = 1095, top_k: int = 20,
                 lsh_threshold: float = 0.3, search_threads: int = 1) -> None:
        if not 0.0 <= lsh_threshold <= 1.0:
            raise ValueError(f"lsh_threshold must be in [0.0, 1.0], found {lsh_threshold}")
        if top_k < 1 or window_days < 1:
            raise ValueError(f"top_k and window_days must be >= 1, found {top_k} and {window_days}")
        self.scorer = scorer or PairScorer()
        self.window = timedelta(days=window_days)
        self.top_k = top_k
        self.lsh = MinHashLSH(threshold=lsh_threshold, num_perm=NUM_PERM)
        self.entries: dict[str, Entry] = {}
        self.matters: dict[str, str] = {}
        self.postings: dict[str, set[str]] = defaultdict(set)
        self.frequencies = WordFrequencies()
        self._ids: list[str] = []
        # vectors in rows 0.._ids-1 of a buffer that doubles when full: adding a letter
        # copies one row, not the whole matrix (the copy took 12% of the service's time)
        self._buffer = np.zeros((0, 0), dtype=np.float32)
        self._search: ThreadPoolExecutor | None = None
        self.use_search_threads(search_threads)

    def __len__(self) -> int:
        return len(self.entries)

    def use_search_threads(self, threads: int) -> None:
        """Share the cosine search over ``threads`` threads from now on."""
        if threads < 1:
            raise ValueError(f"search_threads must be >= 1, found {threads}")
        if self._search is not None:
            self._search.shutdown()
        self.search_threads = threads
        self._search = (ThreadPoolExecutor(threads, thread_name_prefix="vector-search")
                        if threads > 1 else None)

    def add(self, entry: Entry, matter_id: str) -> None:
        """Index a stored letter under its matter."""
        if entry.letter_id in self.entries:
            return
        self.entries[entry.letter_id] = entry
        self.matters[entry.letter_id] = matter_id
        self.lsh.insert(entry.letter_id, entry.signature)
        for key in entry.local_places | entry.names:
            self.postings[key].add(entry.letter_id)
        self.frequencies.add(entry.words, entry.local_places | entry.broad_places | entry.names)
        if entry.vector is not None and self.scorer.use_vectors:
            count = len(self._ids)
            if count == len(self._buffer):
                grown = np.zeros((max(1024, 2 * count), len(entry.vector)), dtype=np.float32)
                if count:
                    grown[:count] = self._buffer
                self._buffer = grown
            self._buffer[count] = entry.vector
            self._ids.append(entry.letter_id)

    def drop_vectors(self) -> int:
        """Forget every indexed vector (they came from an encoder no longer used); returns
        how many. Those letters stay candidates by wording, places and names."""
        dropped = len(self._ids)
        for entry in self.entries.values():
            entry.vector = None
        self._ids, self._buffer = [], np.zeros((0, 0), dtype=np.float32)
        return dropped

    def _matrix(self) -> np.ndarray:
        return self._buffer[: len(self._ids)]

    def _similarity(self, entry: Entry) -> np.ndarray | None:
        """Cosines of ``entry`` to every stored letter with a vector (in ``_ids`` order)."""
        matrix = self._matrix()
        if entry.vector is None or not self.scorer.use_vectors or not len(matrix):
            return None
        vector = entry.vector.astype(np.float32, copy=False)
        if self._search is None or len(matrix) < SPLIT_ROWS:
            return matrix @ vector  # type: ignore[no-any-return]
        out = np.empty(len(matrix), dtype=np.float32)
        bounds = np.linspace(0, len(matrix), self.search_threads + 1, dtype=int)
        blocks = [self._search.submit(np.dot, matrix[a:b], vector, out[a:b])
                  for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        for block in blocks:
            block.result()
        return out

    def _candidates(self, entry: Entry, similarity: np.ndarray | None) -> set[str]:
        found = set(self.lsh.query(entry.signature))
        for key in entry.local_places | entry.names:
            if len(self.postings[key]) <= 200:  # a very common key says little
                found |= self.postings[key]
        if similarity is not None:
            k = min(self.top_k, len(similarity))
            for i in np.argpartition(-similarity, k - 1)[:k]:
                found.add(self._ids[i])
        found.discard(entry.letter_id)
        if entry.received_at is not None:
            found = {i for i in found if self.entries[i].received_at is None
                     or abs(self.entries[i].received_at - entry.received_at) <= self.window}
        return found

    def candidates(self, entry: Entry) -> set[str]:
        """Stored letters worth scoring against a new one."""
        return self._candidates(entry, self._similarity(entry))

    @staticmethod
    def neighbourhood(similarity: np.ndarray | None) -> float:
        """The mean of the ``NEIGHBOURS`` highest cosines (0 with no stored vectors)."""
        if similarity is None or not len(similarity):
            return 0.0
        k = min(NEIGHBOURS, len(similarity))
        return float(np.partition(similarity, len(similarity) - k)[-k:].mean())

    def features(self, entry: Entry) -> tuple[list[str], np.ndarray]:
        """The candidates of a new letter (sorted ids) and the features of each pair."""
        similarity = self._similarity(entry)
        ids = sorted(self._candidates(entry, similarity))
        around = self.neighbourhood(similarity)
        rows = [pair_features(entry, self.entries[i], self.frequencies, self.scorer.use_vectors, around)
                for i in ids]
        return ids, np.vstack(rows) if rows else np.zeros((0, len(FEATURES)))

    def link(self, entry: Entry) -> Decision:
        """Earlier letters about the same matter as ``entry``, best first, and its matter id."""
        ids, features = self.features(entry)
        if not ids:
            return Decision([], uuid.uuid4().hex)
        scores = self.scorer.probability(features)
        links = [Link(i, round(float(s), 4), shared_fields(entry, self.entries[i]))
                 for i, s in zip(ids, scores, strict=True) if s >= self.scorer.threshold]
        links.sort(key=lambda link: -link.score)
        matter = self.matters[links[0].letter_id] if links else uuid.uuid4().hex
        return Decision(links, matter)
