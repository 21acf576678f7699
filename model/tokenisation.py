"""Text normalisation and tokenisation into overlapping chunks.

A letter longer than the encoder's window is never cut: it is split into windows of
``max_length`` tokens that overlap by ``stride`` tokens, and the network pools the
chunks back into one vector per letter.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_SPACES = re.compile(r"[ \t\u3000\xa0]+")
_NEWLINES = re.compile(r"\s*\n\s*")


def normalise_text(text: str) -> str:
    """Clean a letter for the model without changing its meaning.

    Control and zero-width characters are dropped, runs of spaces (including the
    full-width space) become one space, blank lines collapse, and the text is put in
    Unicode NFC form. Full-width punctuation is kept (the vocabulary has it).
    """
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = unicodedata.normalize("NFC", text)  # after the drop: 'e\u200b\u0301' composes too
    text = _SPACES.sub(" ", text)
    return _NEWLINES.sub("\n", text).strip()


@dataclass
class Chunks:
    """A batch of letters as encoder windows.

    ``chunk_to_letter[i]`` is the index (in the batch) of the letter window ``i`` comes from.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    chunk_to_letter: torch.Tensor
    num_letters: int


def _sample_windows(chunks: Chunks, max_windows: int, rng: np.random.Generator) -> Chunks:
    owner = chunks.chunk_to_letter.numpy()
    keep: list[int] = []
    for letter in range(chunks.num_letters):
        windows = np.nonzero(owner == letter)[0]
        if len(windows) > max_windows:
            middle = rng.choice(windows[1:-1], size=max(0, max_windows - 2), replace=False)
            windows = np.sort(np.concatenate([windows[:1], middle, windows[-1:]]))
        keep.extend(windows.tolist())
    index = torch.as_tensor(keep)
    used = int(chunks.attention_mask[index].sum(dim=1).max())  # drop padding columns no longer needed
    return Chunks(
        input_ids=chunks.input_ids[index, :used],
        attention_mask=chunks.attention_mask[index, :used],
        token_type_ids=chunks.token_type_ids[index, :used],
        chunk_to_letter=chunks.chunk_to_letter[index],
        num_letters=chunks.num_letters,
    )


class LetterTokenizer:
    """Tokenises letters into overlapping windows with the encoder's fast tokenizer.

    Args:
        tokenizer: a Hugging Face tokenizer (the fast, Rust one where available).
        max_length (int): tokens per window, special tokens included.
        stride (int): tokens shared by consecutive windows of one letter.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int, stride: int) -> None:
        if not 0 <= stride < max_length - 2:
            raise ValueError(f"stride must be in [0, max_length - 2), found stride={stride} "
                             f"with max_length={max_length}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.stride = stride

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, max_length: int, stride: int) -> LetterTokenizer:
        """Load the tokenizer saved with a model or base model (local path or hub id)."""
        return cls(AutoTokenizer.from_pretrained(str(path_or_id)), max_length, stride)

    def __call__(self, texts: list[str], max_windows: int | None = None,
                 rng: np.random.Generator | None = None) -> Chunks:
        """Windows of every letter; ``max_windows`` (training only) keeps, for a longer
        letter, its first and last windows and a random sample of the middle ones."""
        encoded = self.tokenizer(
            [normalise_text(t) for t in texts],
            max_length=self.max_length,
            stride=self.stride,
            truncation=True,
            padding=True,
            return_overflowing_tokens=True,
            return_tensors="pt",
        )
        ids = encoded["input_ids"]
        chunks = Chunks(
            input_ids=ids,
            attention_mask=encoded["attention_mask"],
            token_type_ids=encoded.get("token_type_ids", torch.zeros_like(ids)),
            chunk_to_letter=encoded["overflow_to_sample_mapping"].long(),
            num_letters=len(texts),
        )
        if max_windows is None:
            return chunks
        return _sample_windows(chunks, max_windows, rng or np.random.default_rng())

    def count_tokens(self, text: str) -> int:
        """Tokens of one letter without special tokens (for batching by length)."""
        return len(self.tokenizer(normalise_text(text), add_special_tokens=False)["input_ids"])
