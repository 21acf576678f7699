"""The matter encoder: a sentence encoder tuned so that letters about one matter (same
place, people and acts, told by different complainants in different words) lie close,
and letters about different matters of the same kind do not.

The classifier's own vectors are close for any two letters of one sector (they were
trained to say the sector), so linking reads this second, smaller pass instead: the
letter's first window (``max_tokens``), token-mean pooled and normalised. It lives in
``MODEL/matter/`` (written by ``triage fit-linker``) with ``matter.json`` saying how it was
trained.

Example::

    encoder = MatterEncoder.load(Path("models/letters/matter"))
    vectors = encoder.vectors(["石桥村书记李建国把鱼塘低价租给亲戚", "来电反映石桥村鱼塘承包不公"])
    float(vectors[0] @ vectors[1])   # cosine: high for one matter
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from model.inference import WEIGHTS_FILE, Runtime, file_sha256
from model.network import token_mean
from model.onnx_runtime import INT8_FILE, OnnxEncoder, OnnxModelError, export_onnx
from model.precision import native_bf16

MATTER_DIR = "matter"
MATTER_FILE = "matter.json"


class MatterEncoderError(ValueError):
    """A matter-encoder directory that is missing or unreadable."""


class MatterEncoder:
    """Letter vectors for linking (a BERT-style encoder, token-mean pooled).

    Args:
        model: the encoder.
        tokenizer: its tokenizer.
        max_tokens: tokens read from the start of each letter.
        record: how it was trained (``matter.json``).
        graph: the encoder on ONNX Runtime with int8 weights, used by :meth:`vectors` when given.
        version: names the weights (``matter-`` and their sha256) of a saved encoder; letters'
            stored vectors record it, since vectors of other weights are not comparable.
    """

    def __init__(self, model: Any, tokenizer: Any, max_tokens: int, record: dict[str, Any],
                 graph: OnnxEncoder | None = None, version: str | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.record = record
        self.graph = graph
        self.version = version

    @classmethod
    def from_base(cls, base_model: str, max_tokens: int) -> MatterEncoder:
        """An untrained matter encoder from a local directory or hub id."""
        return cls(AutoModel.from_pretrained(base_model), AutoTokenizer.from_pretrained(base_model),
                   max_tokens, {"base_model": base_model, "max_tokens": max_tokens})

    @classmethod
    def load(cls, directory: Path, runtime: Runtime = Runtime.TORCH) -> MatterEncoder:
        """Open ``MODEL/matter`` (raises MatterEncoderError saying what is wrong); with
        ``onnx-int8``, its int8 graph too (written by :meth:`export_onnx`)."""
        record_file = directory / MATTER_FILE
        if not record_file.is_file():
            raise MatterEncoderError(f"{directory} holds no {MATTER_FILE}: fit it with "
                                     f"'triage fit-linker --model {directory.parent} --data data/'")
        try:
            record = json.loads(record_file.read_text(encoding="utf-8"))
            model = AutoModel.from_pretrained(directory)
            tokenizer = AutoTokenizer.from_pretrained(directory)
        except (OSError, ValueError) as err:
            raise MatterEncoderError(f"cannot read the matter encoder in {directory}: {err}") from None
        weights_sha256 = file_sha256(directory / WEIGHTS_FILE)
        graph = None
        if runtime is Runtime.ONNX_INT8:
            try:
                graph = OnnxEncoder.load(directory / INT8_FILE, weights_sha256)
            except OnnxModelError as err:
                raise MatterEncoderError(f"matter encoder in {directory}: {err}") from None
        return cls(model, tokenizer, int(record["max_tokens"]), record, graph,
                   version=f"matter-{weights_sha256[:12]}")

    def export_onnx(self, directory: Path) -> tuple[Path, Path]:
        """Write the fp32 and int8 graphs of an encoder saved in ``directory``."""
        return export_onnx(self.model, self.max_tokens, directory, file_sha256(directory / WEIGHTS_FILE))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        (directory / MATTER_FILE).write_text(json.dumps(self.record, ensure_ascii=False, indent=2),
                                             encoding="utf-8")

    def _tokens(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                               return_tensors="pt")
        types = batch.get("token_type_ids", torch.zeros_like(batch["input_ids"]))
        return batch["input_ids"], batch["attention_mask"], types

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit vectors of a batch from the PyTorch model, with gradients when it is training."""
        ids, mask, types = self._tokens(texts)
        hidden = self.model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        return torch.nn.functional.normalize(token_mean(hidden, mask).float(), dim=-1)

    @torch.inference_mode()
    def vectors(self, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
        """Unit vectors of letters (letters × hidden), in the order given: from the int8
        graph when loaded with one, else from PyTorch, in bfloat16 where the CPU runs it
        natively (cosines change by ~1e-3; they are stored as float16 anyway)."""
        self.model.eval()
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.graph is None and native_bf16()):
            for start in range(0, len(texts), batch_size):
                chosen = order[start : start + batch_size]
                batch = [texts[i] for i in chosen]
                if self.graph is None:
                    out[chosen] = self.encode(batch).numpy()
                else:
                    ids, mask, types = self._tokens(batch)
                    out[chosen] = torch.nn.functional.normalize(self.graph(ids, mask, types), dim=-1).numpy()
        return out
