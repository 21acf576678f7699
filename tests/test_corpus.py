from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model.labels import LabelSchema
from training.cli import app
from training.corpus import (
    check_corpus,
    format_report,
    jaccard,
    read_corpus,
    repeated_phrases,
    shingles,
    similar_pairs,
)
from training.data import DataError

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "letters.jsonl"


def test_shingles_ignore_whitespace() -> None:
    assert shingles("村 里\n的账") == {"村里的账"}
    assert shingles("abcdef") == {"abcde", "bcdef"}
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)


def test_similar_pairs_finds_near_duplicates_only() -> None:
    base = "我们村的村主任把集体鱼塘以每年两千元的价格承包给了他的小舅子，合同一签就是三十年"
    texts = [base, base + "。", "县医院的药品采购价格比市场价高出一倍，院长收了供应商的回扣"]
    assert [(i, j) for i, j, _ in similar_pairs(texts, 0.8)] == [(0, 1)]
    assert [(i, k) for i, k, _ in similar_pairs(texts[2:], 0.5, others=texts[:1])] == []
    assert [(i, k) for i, k, _ in similar_pairs(texts[1:2], 0.5, others=texts)] == [(0, 0), (0, 1)]


def test_repeated_phrases_counts_letters_not_occurrences() -> None:
    texts = ["请上级领导调查处理此事为盼谢谢" * 3, "请上级领导调查处理此事为盼谢谢", "别的内容完全不同的一封来信啊"]
    found = dict(repeated_phrases(texts, chars=12, share=0.5))
    assert found["请上级领导调查处理此事为"] == 2
    assert all(len(p) == 12 for p in found)


def _corpus_rows(n_groups: int = 1) -> list[dict]:
    rows = [
        {"id": "a1", "text": "柳湾村书记把集体鱼塘低价包给亲戚，每年租金只有两千元", "sector":
         "rural_collective_assets", "violations": ["favouritism"], "repeat_cue": False,
         "group": "G1", "source": "written:villager", "tags": []},
        {"id": "a2", "text": "来电人反映：柳湾村的鱼塘被村支书以很低的价格承包给了他表弟", "sector":
         "rural_collective_assets", "violations": ["favouritism"], "repeat_cue": False,
         "group": "G1", "source": "written:hotline", "tags": []},
        {"id": "a3", "text": "柳湾村书记家的狗天天半夜叫，吵得人睡不着，说了几次也不管", "sector":
         "other", "violations": [], "repeat_cue": False, "group": None,
         "source": "written:villager", "tags": ["hard_negative", "angry_no_misconduct"],
         "near_group": "G1"},
    ]
    return rows


def test_small_corpus_misses_minimums(schema: LabelSchema, write_jsonl: Callable) -> None:
    report = check_corpus([write_jsonl(_corpus_rows())], schema)
    assert not report.ok
    letters = next(m for m in report.minimums if m.name == "letters")
    assert (letters.found, letters.required, letters.met) == (3, 3000, False)
    assert report.counts["tags"]["hard_negative"] == 1
    assert report.counts["sector"]["rural_collective_assets"] == 2
    text = format_report(report)
    assert "MISS letters" in text and "corpus does NOT meet the requirements" in text


def test_group_size_and_unknown_near_group(schema: LabelSchema, write_jsonl: Callable) -> None:
    rows = _corpus_rows()
    rows[1]["group"] = "G2"
    report = check_corpus([write_jsonl(rows)], schema)
    assert "group G1 has 1 letters; a group holds 2 to 4 letters" in report.problems
    assert "group G2 has 1 letters; a group holds 2 to 4 letters" in report.problems


def test_near_duplicates_outside_groups_are_problems(schema: LabelSchema,
                                                     write_jsonl: Callable) -> None:
    rows = _corpus_rows()
    rows.append({**rows[2], "id": "a4", "text": rows[2]["text"] + "！", "tags": []})
    report = check_corpus([write_jsonl(rows)], schema)
    assert any(re.match(r"near-duplicate texts a3 and a4 \(5-gram Jaccard 0\.9\d > 0\.8\)", p)
               for p in report.problems)


def test_leaked_evaluation_letter_is_a_problem(schema: LabelSchema,
                                               write_jsonl: Callable) -> None:
    rows = _corpus_rows()
    report = check_corpus([write_jsonl(rows)], schema, reference=[rows[0]["text"] + "，请查处"])
    assert any(p.startswith("a1 resembles evaluation letter #1") for p in report.problems)


def test_written_letter_length_is_checked(schema: LabelSchema, write_jsonl: Callable) -> None:
    rows = _corpus_rows()
    rows[2]["text"] = "太吵了"
    report = check_corpus([write_jsonl(rows)], schema)
    assert "a3: written letter of 3 characters; expected 30 to 1500" in report.problems


def test_unknown_tag_is_a_row_error(schema: LabelSchema, write_jsonl: Callable) -> None:
    rows = _corpus_rows()
    rows[0]["tags"] = ["funny"]
    with pytest.raises(DataError, match=r":1: tags: expected a list from \['recurring_act'"):
        read_corpus([write_jsonl(rows)], schema)


def test_project_corpus_meets_every_minimum() -> None:
    """`triage data check data/` passes on the committed corpus (and compares it with the
    dev set when ../shared is beside the repository)."""
    result = CliRunner().invoke(app, ["data", "check", str(CORPUS.parent)])
    assert result.exit_code == 0, result.output[-3000:]
    assert "MISS" not in result.output
    assert result.output.rstrip().endswith("corpus OK")
