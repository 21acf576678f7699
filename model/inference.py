"""Inference: load a trained model directory and turn letters into answers.

Output contract, per letter and for every head H of the labels file:
``single`` → ``H`` (id) and ``H_scores`` ({id: p}); ``multi`` → ``H`` ([ids]) and
``H_scores``; ``binary`` → ``H`` (bool) and ``H_score`` (p); plus ``confidence``,
``needs_review`` and ``model_version``. Probabilities are calibrated.

The encoder runs in PyTorch (``torch``, the default and the reference) or on ONNX Runtime
with int8 weights (``onnx-int8``, after ``triage export-onnx``); tokenisation, window pooling,
heads and calibration are the same code for both.

Example::

    classifier = Classifier.load("models/letters")
    classifier.predict(["村里的低保名单全是村干部的亲戚……"])[0]["sector"]   # 'social_assistance'
    fast = Classifier.load("models/letters", runtime=Runtime.ONNX_INT8)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from tqdm.auto import tqdm

from model.calibration import Calibration, decisions, head_confidence, probabilities
from model.labels import Head, LabelSchema, LabelSchemaError
from model.lexical import LexicalHeads
from model.network import TriageModel, pool_windows
from model.onnx_runtime import INT8_FILE, OnnxEncoder, OnnxModelError
from model.tokenisation import LetterTokenizer

logger = logging.getLogger(__name__)

LABELS_FILE = "labels.yaml"
WEIGHTS_FILE = "model.safetensors"


WindowEncoder = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(input_ids, attention_mask, token_type_ids) of windows → their token-mean vectors."""


class Runtime(StrEnum):
    """Where the encoder runs: PyTorch in fp32 (the reference) or ONNX Runtime with int8
    weights (``encoder.int8.onnx``, written by ``triage export-onnx``)."""

    TORCH = "torch"
    ONNX_INT8 = "onnx-int8"


class ModelLoadError(ValueError):
    """A model directory that cannot be served: names the directory and the problem."""


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file (the model version and the ONNX graphs name the weights by it)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_directory(directory: Path) -> LabelSchema:
    for name in ("config.json", WEIGHTS_FILE, LABELS_FILE):
        if not (directory / name).is_file():
            raise ModelLoadError(f"model directory {directory} has no {name}; "
                                 "train one with 'triage train' or check the path")
    try:
        return LabelSchema.from_yaml(directory / LABELS_FILE)
    except LabelSchemaError as err:
        raise ModelLoadError(f"model directory {directory}: {err}") from None


def length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices in batches of similar length (short letters do not pay for long ones)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def decided_labels(head: Head, decided: np.ndarray) -> list[Any]:
    """0/1 decisions (letters × outputs) as labels in the loader's form: an id per letter
    (``single``), a list of ids (``multi``) or a bool (``binary``)."""
    if head.type == "binary":
        return [bool(row[0]) for row in decided]
    chosen = [[label for label, on in zip(head.label_ids, row, strict=True) if on] for row in decided]
    return [c[0] for c in chosen] if head.type == "single" else chosen


class Classifier:
    """A trained model, its tokenizer and its calibration, ready to predict.

    Args:
        model: the network (put in eval mode here).
        tokenizer: the letter tokenizer saved with it.
        version (str): the model version written into every answer.
        schema: the label schema (default: the one in the model's config).
        encoder: runs the encoder over windows (default: ``model.window_vectors``, PyTorch).
        runtime (Runtime, default torch): the name of ``encoder``, shown in reports.
        lexical: character n-gram heads whose logits are added with the calibration's
            ``lexical_weights`` (None: the encoder alone).
    """

    def __init__(self, model: TriageModel, tokenizer: LetterTokenizer, version: str,
                 schema: LabelSchema | None = None, encoder: WindowEncoder | None = None,
                 runtime: Runtime = Runtime.TORCH, lexical: LexicalHeads | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.version = version
        self.encoder = encoder or self.model.window_vectors
        self.runtime = runtime
        # the labels file keeps the heads in their written order (config.json sorts keys)
        self.schema = schema or model.config.schema
        self.calibration = Calibration.from_dict(model.config.calibration or {})
        self.lexical = lexical if any(self.calibration.lexical_weights.values()) else None

    @classmethod
    def load(cls, directory: str | Path, runtime: Runtime | str = Runtime.TORCH) -> Classifier:
        """Load a directory written by ``triage train``.

        Args:
            directory: the model directory.
            runtime (Runtime | str, default torch): ``onnx-int8`` runs the encoder from the
                directory's ``encoder.int8.onnx``.

        Raises:
            ModelLoadError: files are missing or corrupt, the labels file does not match
                the model's heads (serving it would give wrong labels), or the ONNX graph the
                runtime needs is missing or was exported from other weights.
        """
        directory = Path(directory)
        if runtime not in set(Runtime):
            raise ValueError(f"runtime must be one of {', '.join(Runtime)}, found {runtime!r}")
        runtime = Runtime(runtime)
        schema = _check_directory(directory)
        try:
            model = TriageModel.from_pretrained(str(directory), use_safetensors=True)
        except (OSError, ValueError, RuntimeError, SafetensorError) as err:
            raise ModelLoadError(f"model directory {directory}: cannot load weights: {err}") from None
        if model.config.schema != schema:
            raise ModelLoadError(
                f"model directory {directory}: {LABELS_FILE} does not match the heads the model "
                "was trained with; restore the labels file saved with the model or retrain")
        tokenizer = LetterTokenizer.from_pretrained(directory, model.config.window_tokens,
                                                    model.config.window_stride)
        version = getattr(model.config, "model_version", None) or directory.name
        encoder = None
        if runtime is Runtime.ONNX_INT8:
            try:
                encoder = OnnxEncoder.load(directory / INT8_FILE,
                                           file_sha256(directory / WEIGHTS_FILE))
            except OnnxModelError as err:
                raise ModelLoadError(f"model directory {directory}: {err}") from None
        try:
            lexical = LexicalHeads.load(directory, schema)
        except (ValueError, KeyError, OSError, SafetensorError) as err:
            raise ModelLoadError(f"model directory {directory}: lexical heads: {err}") from None
        if lexical is None and any((model.config.calibration or {}).get("lexical_weights", {}).values()):
            raise ModelLoadError(f"model directory {directory} was calibrated with lexical heads "
                                 "but has no lexical.safetensors; restore it or retrain")
        return cls(model, tokenizer, version, schema, encoder, runtime, lexical)

    @torch.inference_mode()
    def run(
        self, texts: Sequence[str], batch_size: int = 32, progress: bool = False
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Raw logits per head (letters × outputs) and each letter's pooled vector (the mean
        of its windows' token-mean vectors, used to link letters about one matter)."""
        out = {name: np.zeros((len(texts), head.num_outputs), dtype=np.float32)
               for name, head in self.schema.heads.items()}
        hidden = self.model.heads[next(iter(self.schema.heads))].in_features // 2
        vectors = np.zeros((len(texts), hidden), dtype=np.float32)
        batches = list(length_batches([len(t) for t in texts], batch_size))
        for batch in tqdm(batches, desc="letters", unit="batch", disable=not progress):
            chunks = self.tokenizer([texts[i] for i in batch])
            windows = self.encoder(chunks.input_ids, chunks.attention_mask, chunks.token_type_ids)
            pooled = pool_windows(windows, chunks)
            for name, values in self.model.head_logits(pooled).items():
                out[name][batch] = values.float().numpy()
            vectors[batch] = pooled[:, :hidden].float().numpy()
        if self.lexical is not None:
            weights = self.calibration.lexical_weights
            for name, values in self.lexical.logits(list(texts)).items():
                out[name] += weights.get(name, 0.0) * values
        return out, vectors

    def logits(
        self, texts: Sequence[str], batch_size: int = 32, progress: bool = False
    ) -> dict[str, np.ndarray]:
        """Raw logits per head (letters × outputs), in the order of ``texts``."""
        return self.run(texts, batch_size, progress)[0]

    def probabilities(self, logits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calibrated probabilities per head."""
        temps = self.calibration.temperatures
        return {name: probabilities(logits[name], head.type, temps.get(name, 1.0))
                for name, head in self.schema.heads.items()}

    def answers(self, probs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        """Answers in the output contract from calibrated probabilities."""
        n = len(next(iter(probs.values())))
        answers: list[dict[str, Any]] = [{} for _ in range(n)]
        confidence = np.ones(n)
        for name, head in self.schema.heads.items():
            p = probs[name]
            decided = decisions(p, head.type, self.calibration.thresholds.get(name))
            confidence *= head_confidence(p, head.type, decided)
            for i, (answer, labels) in enumerate(zip(answers, decided_labels(head, decided),
                                                     strict=True)):
                answer[name] = labels
                if head.type == "binary":
                    answer[f"{name}_score"] = round(float(p[i, 0]), 4)
                else:
                    answer[f"{name}_scores"] = {label: round(float(v), 4)
                                                for label, v in zip(head.label_ids, p[i], strict=True)}
        for answer, conf in zip(answers, confidence, strict=True):
            answer["confidence"] = round(float(conf), 4)
            # decided on the confidence as reported, so that an answer never contradicts itself
            answer["needs_review"] = bool(answer["confidence"] < self.calibration.review_threshold)
            answer["model_version"] = self.version
        return answers

    def predict(self, texts: Sequence[str], batch_size: int = 32,
                progress: bool = False) -> list[dict[str, Any]]:
        """Answers for letters given as texts (already joined from their text fields)."""
        if not texts:
            return []
        return self.answers(self.probabilities(self.logits(texts, batch_size, progress)))
