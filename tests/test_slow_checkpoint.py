"""Checks on the real base checkpoint (m3e-small); run with RUN_SLOW=1 after `make weights`."""

from __future__ import annotations

import pytest
import torch

from model.labels import LabelSchema
from model.network import TriageModel
from model.tokenisation import LetterTokenizer
from tests.conftest import ROOT

M3E = ROOT / ".cache" / "base-models" / "m3e-small"


@pytest.mark.slow
def test_m3e_small_reads_a_long_letter_to_its_end(schema: LabelSchema) -> None:
    if not (M3E / "config.json").is_file():
        pytest.skip("run `make weights` first")
    model = TriageModel.from_encoder(M3E, schema).eval()
    tokenizer = LetterTokenizer.from_pretrained(M3E, 256, 64)
    body = "我们村的情况是这样的，" * 190
    with torch.no_grad():
        logits = model(tokenizer([body + "请领导关心。", body + "低保金被村会计截留私分了！"]))
    assert logits["violations"].shape == (2, 6)
    assert not torch.allclose(logits["violations"][0], logits["violations"][1], atol=1e-5)
