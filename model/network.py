"""The network: a Chinese BERT encoder and one linear head per head of the label schema.

Each letter's windows are mean-pooled over tokens (as the m3e sentence encoders are
trained); a letter's vector is the mean and the max of its windows' vectors, so a fact
in any window, even the last of a long letter, reaches the heads.

The config carries the label schema and the calibration, so ``save_pretrained`` writes
a directory that describes itself (weights as safetensors).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel

from model.labels import LabelSchema
from model.tokenisation import Chunks

logger = logging.getLogger(__name__)


def token_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of each row's token vectors (rows × hidden), padding left out."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def pool_windows(windows: torch.Tensor, chunks: Chunks) -> torch.Tensor:
    """One vector per letter of ``chunks``: [mean, max] over its windows' vectors.

    Args:
        windows (Tensor): windows × hidden, in the order of ``chunks``.
        chunks (Chunks): the batch the windows come from (which letter owns each window).

    Returns:
        letters × (2 · hidden).
    """
    index = chunks.chunk_to_letter.unsqueeze(-1).expand_as(windows)
    shape = (chunks.num_letters, windows.shape[-1])
    summed = windows.new_zeros(shape).index_add_(0, chunks.chunk_to_letter, windows)
    counts = torch.bincount(chunks.chunk_to_letter, minlength=chunks.num_letters)
    mean = summed / counts.clamp(min=1).unsqueeze(-1).to(windows.dtype)
    high = windows.new_full(shape, float("-inf")).scatter_reduce(0, index, windows, "amax")
    return torch.cat([mean, high], dim=-1)


class TriageConfig(PreTrainedConfig):
    """Settings of a :class:`TriageModel`.

    Args:
        encoder (dict): the encoder's own config (``AutoConfig.to_dict()``).
        labels (dict): the label schema (``LabelSchema.to_dict()``).
        window_tokens (int, default 256): tokens per encoder window.
        window_stride (int, default 64): tokens shared by consecutive windows.
        head_dropout (float, default 0.1): dropout before the heads.
        calibration (dict): temperatures, thresholds and review rule (set after training).
    """

    model_type = "complaint-triage"

    def __init__(
        self,
        encoder: dict[str, Any] | None = None,
        labels: dict[str, Any] | None = None,
        window_tokens: int = 256,
        window_stride: int = 64,
        head_dropout: float = 0.1,
        calibration: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.encoder = encoder or {}
        self.labels = labels or {}
        self.window_tokens = window_tokens
        self.window_stride = window_stride
        self.head_dropout = head_dropout
        self.calibration = calibration or {}
        super().__init__(**kwargs)

    @property
    def schema(self) -> LabelSchema:
        return LabelSchema.from_dict(self.labels, source="model config")


class TriageModel(PreTrainedModel):
    """Encoder + pooled letter vector + one linear layer per head (logits out)."""

    config_class = TriageConfig
    base_model_prefix = "encoder"

    def __init__(self, config: TriageConfig) -> None:
        super().__init__(config)
        encoder_config = dict(config.encoder)
        encoder_config = AutoConfig.for_model(encoder_config.pop("model_type"), **encoder_config)
        self.encoder = AutoModel.from_config(encoder_config, add_pooling_layer=False)
        hidden = encoder_config.hidden_size
        self.dropout = nn.Dropout(config.head_dropout)
        self.heads = nn.ModuleDict(
            {name: nn.Linear(2 * hidden, head.num_outputs)
             for name, head in config.schema.heads.items()}
        )
        self.post_init()

    @classmethod
    def from_encoder(
        cls,
        base_model: str | Path,
        schema: LabelSchema,
        window_tokens: int = 256,
        window_stride: int = 64,
    ) -> TriageModel:
        """A new model on a pretrained encoder (local directory or hub id), heads random."""
        encoder = AutoModel.from_pretrained(str(base_model))
        config = TriageConfig(encoder=encoder.config.to_dict(), labels=schema.to_dict(),
                              window_tokens=window_tokens, window_stride=window_stride)
        model = cls(config)
        # the base model's pooler (if any) is not used: the letter vector is a token mean
        missing, _ = model.encoder.load_state_dict(encoder.state_dict(), strict=False)
        if missing:
            raise ValueError(f"base model {base_model} lacks encoder weights {missing[:5]}; "
                             "expected a BERT-style encoder (e.g. m3e-small, hfl/rbt3)")
        logger.info("encoder weights from %s", base_model)
        return model

    def window_vectors(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       token_type_ids: torch.Tensor) -> torch.Tensor:
        """The token-mean vector of each window (windows × hidden), padding left out.

        This is the part an ONNX runtime replaces (``model.onnx_runtime``): tensors in and
        out, no Python-side batch bookkeeping.
        """
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids)
        return token_mean(out.last_hidden_state, attention_mask)

    def letter_vectors(self, chunks: Chunks) -> torch.Tensor:
        """One vector per letter: [mean of windows, max of windows] of token-mean vectors."""
        windows = self.window_vectors(chunks.input_ids, chunks.attention_mask, chunks.token_type_ids)
        return pool_windows(windows, chunks)

    def head_logits(self, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per head from letter vectors: (letters × labels), or (letters × 1) for a
        binary head."""
        vectors = self.dropout(vectors)
        return {name: layer(vectors) for name, layer in self.heads.items()}

    def forward(self, chunks: Chunks) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """Logits per head for a batch of letters."""
        return self.head_logits(self.letter_vectors(chunks))


AutoConfig.register(TriageConfig.model_type, TriageConfig)
