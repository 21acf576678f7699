from __future__ import annotations

from pathlib import Path

import torch

from model.labels import LabelSchema
from model.network import TriageModel
from model.tokenisation import LetterTokenizer


def _model(tiny_base: Path, schema: LabelSchema) -> tuple[TriageModel, LetterTokenizer]:
    torch.manual_seed(0)
    model = TriageModel.from_encoder(tiny_base, schema, window_tokens=64, window_stride=16).eval()
    return model, LetterTokenizer.from_pretrained(tiny_base, 64, 16)


def test_one_output_per_label(tiny_base: Path, schema: LabelSchema) -> None:
    model, tokenizer = _model(tiny_base, schema)
    with torch.no_grad():
        logits = model(tokenizer(["村里的低保名单有问题", "殡仪馆收费太高"]))
    assert {k: tuple(v.shape) for k, v in logits.items()} == {
        "sector": (2, 12), "violations": (2, 6), "repeat_cue": (2, 1)}


def test_fact_at_the_end_of_a_long_letter_changes_the_answer(tiny_base: Path,
                                                             schema: LabelSchema) -> None:
    """A 2,000-character letter is read to its end: no silent truncation."""
    model, tokenizer = _model(tiny_base, schema)
    body = ("我们村的情况是这样的，" * 200)[:1990]
    plain, with_fact = body + "请领导关心一下。", body + "低保金被会计截留私分！"
    chunks = tokenizer([plain, with_fact])
    assert int((chunks.chunk_to_letter == 0).sum()) > 30  # many windows, none dropped
    with torch.no_grad():
        logits = model(chunks)
    for name in logits:
        assert not torch.allclose(logits[name][0], logits[name][1], atol=1e-6), name
    # and the first window alone cannot see the difference
    with torch.no_grad():
        first = model(tokenizer([plain[:40], with_fact[:40]]))
    assert torch.allclose(first["sector"][0], first["sector"][1])


def test_pooling_does_not_mix_letters(tiny_base: Path, schema: LabelSchema) -> None:
    model, tokenizer = _model(tiny_base, schema)
    long_letter = "集体鱼塘承包合同" * 60
    with torch.no_grad():
        alone = model(tokenizer(["殡仪馆收费太高"]))["sector"][0]
        together = model(tokenizer([long_letter, "殡仪馆收费太高"]))["sector"][1]
    assert torch.allclose(alone, together, atol=1e-5)


def test_save_and_reload_give_the_same_logits(tiny_base: Path, schema: LabelSchema,
                                              tmp_path: Path) -> None:
    model, tokenizer = _model(tiny_base, schema)
    model.save_pretrained(str(tmp_path))
    assert (tmp_path / "model.safetensors").is_file()
    again = TriageModel.from_pretrained(str(tmp_path)).eval()
    chunks = tokenizer(["村里的低保名单有问题"])
    with torch.no_grad():
        assert torch.allclose(model(chunks)["violations"], again(chunks)["violations"])
    assert again.config.schema == schema
