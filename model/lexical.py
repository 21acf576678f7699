"""Lexical heads: word and character n-gram TF-IDF with one logistic layer per head.

The encoder reads meaning; these read the exact words an office uses ('虚报', '截留',
'又一次反映'). Their logits are added to the encoder's with a weight chosen on the
validation split, before calibration, so the model answers as one. Saved without pickle:
the n-gram vocabularies as JSON, the IDFs and the weights as safetensors.

Example::

    lexical = LexicalHeads.fit(texts, gold, schema)   # gold: {head: letters × outputs 0/1}
    lexical.logits(["村干部截留低保金"])["sector"]       # 1 × 12 logits
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jieba
import numpy as np
from safetensors.numpy import load_file, save_file
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import normalize

from model.labels import LabelSchema
from model.tokenisation import normalise_text

logger = logging.getLogger(__name__)

VOCABULARY_FILE = "lexical.json"
WEIGHTS_FILE = "lexical.safetensors"
MIN_DF = 2
C_VALUES = (4.0, 16.0)  # inverse regularisation tried; the validation split picks one
UNSEEN_LOGIT = 6.0  # a label never (or always) seen in training: logit -6 (or +6) whatever the text
jieba.setLogLevel(logging.WARNING)


def jieba_words(text: str) -> list[str]:
    """Words of a Chinese text by jieba, whitespace dropped."""
    return [w for w in jieba.lcut(text) if w.strip()]


def ngram_vectorizer(block: str, vocabulary: dict[str, int] | None = None, **options: Any) -> Any:
    """Words (jieba 1-2-grams) or characters (1-3-grams), as the TF-IDF baseline reads them."""
    kind = TfidfVectorizer if vocabulary is None else CountVectorizer
    if block == "words":
        return kind(tokenizer=jieba_words, token_pattern=None, lowercase=False, ngram_range=(1, 2),
                    vocabulary=vocabulary, **options)
    return kind(analyzer="char", ngram_range=(1, 3), lowercase=False, vocabulary=vocabulary, **options)


BLOCKS = ("words", "chars")


@dataclass
class LexicalHeads:
    """TF-IDF over word and character n-grams and, per head, logits = X · weightsᵀ + bias.

    Args:
        vocabularies: per block ("words", "chars"), n-grams in column order.
        idf: per block, one inverse document frequency per n-gram.
        weights: per head, outputs × n-grams (the words' columns, then the characters').
        biases: per head, one per output.
    """

    vocabularies: dict[str, list[str]]
    idf: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]
    biases: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        self._counters = {
            block: ngram_vectorizer(block, {g: i for i, g in enumerate(self.vocabularies[block])})
            for block in BLOCKS}

    def features(self, texts: list[str]) -> sparse.csr_matrix:
        """Sublinear TF-IDF rows, each block L2-normalised (as sklearn's TfidfVectorizer in a
        FeatureUnion makes them)."""
        clean = [normalise_text(t) for t in texts]
        blocks = []
        for block in BLOCKS:
            counts = self._counters[block].transform(clean).astype(np.float64)
            counts.data = 1.0 + np.log(counts.data)
            blocks.append(normalize(counts @ sparse.diags(self.idf[block])))
        return sparse.hstack(blocks).tocsr()

    def logits(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Logits per head (letters × outputs), in the encoder heads' layout."""
        x = self.features(texts)
        return {name: np.asarray(x @ w.T + self.biases[name], dtype=np.float32)
                for name, w in self.weights.items()}

    @classmethod
    def fit(cls, texts: list[str], gold: dict[str, np.ndarray], schema: LabelSchema,
            c: float = C_VALUES[0]) -> LexicalHeads:
        """Fit on training letters; ``gold`` holds each head's 0/1 matrix (letters × outputs);
        ``c`` is the logistic layers' inverse regularisation.

        A label that never (or always) occurs in the training letters gets a constant
        logit of -UNSEEN_LOGIT (or +UNSEEN_LOGIT).
        """
        clean = [normalise_text(t) for t in texts]
        vectorizers = {block: ngram_vectorizer(block, min_df=MIN_DF, sublinear_tf=True) for block in BLOCKS}
        x = sparse.hstack([vectorizers[block].fit_transform(clean) for block in BLOCKS]).tocsr()
        weights, biases = {}, {}
        for name, head in schema.heads.items():
            y = gold[name]
            if head.type == "single":
                model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
                model.fit(x, y.argmax(axis=1))
                w = np.zeros((y.shape[1], x.shape[1]))
                b = np.full(y.shape[1], -UNSEEN_LOGIT)
                w[model.classes_], b[model.classes_] = model.coef_, model.intercept_
                if len(model.classes_) == 2:  # sklearn gives one row for two classes
                    w[model.classes_] = np.vstack([-model.coef_[0], model.coef_[0]]) / 2
                    b[model.classes_] = np.array([-model.intercept_[0], model.intercept_[0]]) / 2
            else:
                w = np.zeros((y.shape[1], x.shape[1]))
                b = np.zeros(y.shape[1])
                for column in range(y.shape[1]):
                    if len(set(y[:, column].tolist())) < 2:
                        b[column] = UNSEEN_LOGIT if y[0, column] else -UNSEEN_LOGIT
                        continue
                    model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
                    model.fit(x, y[:, column])
                    w[column], b[column] = model.coef_[0], model.intercept_[0]
            weights[name], biases[name] = w.astype(np.float32), b.astype(np.float32)
        vocabularies = {block: [g for g, _ in sorted(v.vocabulary_.items(), key=lambda kv: kv[1])]
                        for block, v in vectorizers.items()}
        logger.info("lexical heads fitted on %d letters, %d n-grams, C=%g", len(texts), x.shape[1], c)
        return cls(vocabularies, {b: v.idf_.astype(np.float64) for b, v in vectorizers.items()},
                   weights, biases)

    def save(self, directory: Path) -> None:
        tensors = {f"idf.{block}": self.idf[block] for block in BLOCKS}
        for name in self.weights:
            tensors[f"{name}.weight"] = self.weights[name]
            tensors[f"{name}.bias"] = self.biases[name]
        save_file(tensors, str(directory / WEIGHTS_FILE))
        (directory / VOCABULARY_FILE).write_text(
            json.dumps({"blocks": list(BLOCKS), "vocabularies": self.vocabularies}, ensure_ascii=False),
            encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, schema: LabelSchema) -> LexicalHeads | None:
        """The lexical heads saved in a model directory, or None if it has none.

        Raises:
            ValueError: the files do not match each other or the schema's heads.
        """
        if not (directory / WEIGHTS_FILE).is_file():
            return None
        meta = json.loads((directory / VOCABULARY_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(directory / WEIGHTS_FILE))
        vocabularies = meta.get("vocabularies", {})
        idf = {block: tensors.get(f"idf.{block}") for block in BLOCKS}
        if tuple(meta.get("blocks", ())) != BLOCKS or any(
                idf[b] is None or len(vocabularies.get(b, ())) != len(idf[b]) for b in BLOCKS):
            raise ValueError(f"{directory}: {VOCABULARY_FILE} and {WEIGHTS_FILE} do not match")
        width = sum(len(vocabularies[b]) for b in BLOCKS)
        weights, biases = {}, {}
        for name, head in schema.heads.items():
            w, b = tensors.get(f"{name}.weight"), tensors.get(f"{name}.bias")
            if w is None or b is None or w.shape != (head.num_outputs, width):
                raise ValueError(f"{directory}: {WEIGHTS_FILE} has no weights for head {name!r} "
                                 f"of {head.num_outputs} outputs")
            weights[name], biases[name] = w, b
        return cls(vocabularies, idf, weights, biases)  # type: ignore[arg-type]
