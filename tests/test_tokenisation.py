from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from model.tokenisation import LetterTokenizer, normalise_text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  村里\u3000\u3000的账  ", "村里 的账"),
        ("第一段\r\n\r\n\n第二段", "第一段\n第二段"),
        ("低保\u200b名单\x00\x07", "低保名单"),
        ("e\u0301", "\u00e9"),  # NFC composes accents
        ("全角，标点！", "全角，标点！"),  # full-width punctuation is kept
        ("\ufeff标题\t正文", "标题 正文"),
    ],
)
def test_normalise_text(raw: str, clean: str) -> None:
    assert normalise_text(raw) == clean


def test_normalise_is_idempotent() -> None:
    text = " 村民\u3000反映：\r\n\r\n 村主任\x0b截留补贴 "
    assert normalise_text(normalise_text(text)) == normalise_text(text)


def test_long_letter_becomes_overlapping_windows(tiny_base: Path) -> None:
    tokenizer = LetterTokenizer.from_pretrained(tiny_base, max_length=16, stride=4)
    chunks = tokenizer(["村" * 40, "短信"])
    assert chunks.num_letters == 2
    assert chunks.chunk_to_letter.tolist() == [0, 0, 0, 0, 1]
    assert chunks.input_ids.shape[1] == 16


def test_every_character_is_read(tiny_base: Path) -> None:
    tokenizer = LetterTokenizer.from_pretrained(tiny_base, max_length=16, stride=4)
    chunks = tokenizer(["村" * 100])
    body = (chunks.attention_mask.sum(dim=1) - 2).tolist()
    covered = body[0] + sum(n - 4 for n in body[1:])
    assert covered == 100


def test_sampled_windows_keep_first_and_last(tiny_base: Path) -> None:
    tokenizer = LetterTokenizer.from_pretrained(tiny_base, max_length=16, stride=4)
    full = tokenizer(["村" * 100, "短信"])
    sampled = tokenizer(["村" * 100, "短信"], max_windows=3, rng=np.random.default_rng(0))
    assert sampled.chunk_to_letter.tolist() == [0, 0, 0, 1]
    assert sampled.input_ids[0].tolist() == full.input_ids[0].tolist()
    last_full = full.input_ids[int((full.chunk_to_letter == 0).sum()) - 1]
    assert sampled.input_ids[2].tolist() == last_full[: sampled.input_ids.shape[1]].tolist()


def test_bad_stride_is_refused(tiny_base: Path) -> None:
    with pytest.raises(ValueError, match=re.escape("found stride=20 with max_length=16")):
        LetterTokenizer.from_pretrained(tiny_base, max_length=16, stride=20)


def test_the_tiny_base_model_knows_its_characters(tiny_base: Path) -> None:
    """Tests that train on the tiny model learn from characters, not from [UNK]s."""
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(tiny_base)).tokenize("村书记截留低保金") == list("村书记截留低保金")
