from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from model.labels import LabelSchema
from training.data import DataError, load_letters, split_by_id, split_dataset


def test_loads_valid_letters(schema: LabelSchema, letters: list, write_jsonl: Callable) -> None:
    dataset, report = load_letters([write_jsonl(letters)], schema)
    assert len(dataset) == report.rows_loaded == 4
    assert dataset[2]["violations"] == ["bribery", "illegal_fees"]
    assert dataset[1]["repeat_cue"] is True
    assert report.skipped == []


def test_title_is_joined_before_text(schema: LabelSchema, letters: list,
                                     write_jsonl: Callable) -> None:
    letters[0]["title"] = "食堂问题"
    dataset, _ = load_letters([write_jsonl(letters)], schema)
    assert dataset[0]["text"].startswith("食堂问题\n村小学食堂")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"sector": "schools"}, "letters.jsonl:1: sector: expected one of ['campus_meals'"),
        ({"violations": ["theft"]}, "letters.jsonl:1: violations: expected ids from"),
        ({"violations": "bribery"}, "letters.jsonl:1: violations: expected a list of label ids"),
        ({"repeat_cue": "true"}, "letters.jsonl:1: repeat_cue: expected true or false, found str"),
        ({"repeat_cue": 3}, "letters.jsonl:1: repeat_cue: expected true or false, found int 3"),
        ({"text": "   \n "}, "letters.jsonl:1: title/text: expected non-empty text, found empty"),
        ({"text": ""}, "letters.jsonl:1: title/text: expected non-empty text"),
        ({"text": 42}, "letters.jsonl:1: text: expected a string or null, found int 42"),
        ({"id": 7}, "letters.jsonl:1: id: expected a non-empty string, found 7"),
        ({"sector": None}, "letters.jsonl:1: sector: expected a label id (string), found NoneType"),
    ],
)
def test_bad_field_is_reported_precisely(
    schema: LabelSchema, letters: list, write_jsonl: Callable, change: dict, expected: str
) -> None:
    letters[0].update(change)
    with pytest.raises(DataError, match=re.escape(expected)):
        load_letters([write_jsonl(letters)], schema)


def test_missing_label_field(schema: LabelSchema, letters: list, write_jsonl: Callable) -> None:
    del letters[3]["sector"]
    with pytest.raises(DataError, match=re.escape(":4: sector: expected a single label field, "
                                                  "found no such field")):
        load_letters([write_jsonl(letters)], schema)


def test_unlabelled_input_loads_without_labels(schema: LabelSchema, write_jsonl: Callable) -> None:
    dataset, _ = load_letters([write_jsonl([{"id": "x", "text": "只有正文的来信内容"}])], schema,
                              require_labels=False)
    assert dataset.column_names == ["id", "text", "group", "near_group"]


def test_groups_and_near_groups_are_carried(schema: LabelSchema, letters: list,
                                            write_jsonl: Callable) -> None:
    letters[0].update(group="G1")
    letters[1].update(near_group="G1")
    dataset, _ = load_letters([write_jsonl(letters)], schema)
    assert dataset["group"][:3] == ["G1", None, None]
    assert dataset["near_group"][:3] == [None, "G1", None]
    letters[1]["near_group"] = 5
    with pytest.raises(DataError, match=re.escape(":2: near_group: expected a string or null, found 5")):
        load_letters([write_jsonl(letters)], schema)


def test_duplicate_id_names_the_first_line(schema: LabelSchema, letters: list,
                                           write_jsonl: Callable) -> None:
    letters[3]["id"] = "L1"
    with pytest.raises(DataError, match=r"letters.jsonl:4: id: expected a unique id, "
                                        r"found 'L1' already used at .*letters.jsonl:1"):
        load_letters([write_jsonl(letters)], schema)


def test_duplicate_id_across_files(schema: LabelSchema, letters: list,
                                   write_jsonl: Callable) -> None:
    first = write_jsonl(letters, "a.jsonl")
    second = write_jsonl(letters[:1], "b.jsonl")
    with pytest.raises(DataError, match=r"b.jsonl:1: id: expected a unique id"):
        load_letters([first, second], schema)


def test_non_utf8_line_is_reported(schema: LabelSchema, letters: list,
                                   write_jsonl: Callable) -> None:
    rows: list[Any] = [*letters[:2], b'{"id": "g", "text": "' + "村里".encode("gbk") + b'"}']
    with pytest.raises(DataError, match=re.escape("letters.jsonl:3: (encoding): expected UTF-8 "
                                                  "text, found byte 0x")):
        load_letters([write_jsonl(rows)], schema)


def test_invalid_json_and_non_object(schema: LabelSchema, letters: list,
                                     write_jsonl: Callable) -> None:
    with pytest.raises(DataError) as caught:
        load_letters([write_jsonl([letters[0], "{not json", "[1, 2]"])], schema)
    messages = [str(e) for e in caught.value.errors]
    assert messages[0].startswith(str(caught.value.errors[0].file) + ":2: (row): expected one "
                                  "JSON object per line, found invalid JSON")
    assert messages[1].endswith(":3: (row): expected a JSON object, found a JSON list")


def test_all_errors_are_listed_at_once(schema: LabelSchema, letters: list,
                                       write_jsonl: Callable) -> None:
    letters[0]["sector"] = "nope"
    letters[2]["text"] = ""
    with pytest.raises(DataError, match=r"^2 bad row\(s\)") as caught:
        load_letters([write_jsonl(letters)], schema)
    assert [e.line for e in caught.value.errors] == [1, 3]


def test_skip_invalid_loads_the_rest_and_reports(schema: LabelSchema, letters: list,
                                                 write_jsonl: Callable) -> None:
    letters[1]["sector"] = "nope"
    dataset, report = load_letters([write_jsonl([*letters, b"\xff\xfe"])], schema,
                                   skip_invalid=True)
    assert dataset["id"] == ["L1", "L3", "L4"]
    assert report.rows_read == 4
    assert [(e.line, e.field) for e in report.skipped] == [(5, "(encoding)"), (2, "sector")]


def test_nothing_usable_fails_even_when_skipping(schema: LabelSchema,
                                                 write_jsonl: Callable) -> None:
    with pytest.raises(DataError, match="no usable letters"):
        load_letters([write_jsonl([{"id": "a", "text": ""}])], schema, skip_invalid=True)


def test_missing_file_and_unknown_suffix(schema: LabelSchema, tmp_path: Path) -> None:
    (tmp_path / "letters.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_letters([tmp_path / "none.jsonl", tmp_path / "letters.txt"], schema)
    found = [e.found for e in caught.value.errors]
    assert found[0] == "no such file"
    assert found[1].startswith(".txt; rename it or convert it to JSONL")


def test_csv_with_lists_and_booleans(schema: LabelSchema, tmp_path: Path) -> None:
    path = tmp_path / "letters.csv"
    path.write_text(
        "id,title,text,sector,violations,repeat_cue\n"
        'c1,,"多行的\n来信正文",campus_meals,misappropriation;bribery,true\n'
        "c2,标题,正文内容,other,,0\n"
        "c3,,正文,elderly_care,theft,no\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError) as caught:
        load_letters([path], schema)
    assert [(e.line, e.field) for e in caught.value.errors] == [(5, "violations")]
    dataset, _ = load_letters([path], schema, skip_invalid=True)
    assert dataset["violations"] == [["misappropriation", "bribery"], []]
    assert dataset["repeat_cue"] == [True, False]
    assert dataset["text"][0] == "多行的\n来信正文"


def test_stratified_split_keeps_every_class(schema: LabelSchema, write_jsonl: Callable) -> None:
    rows = [{"id": f"{s}{i}", "text": f"第{i}封关于{s}的来信", "sector": s, "violations": [],
             "repeat_cue": False} for s in ("campus_meals", "other") for i in range(10)]
    train, held_out = split_dataset(load_letters([write_jsonl(rows)], schema)[0], schema, 0.2)
    assert sorted(held_out["sector"]) == ["campus_meals"] * 2 + ["other"] * 2
    assert not set(train["id"]) & set(held_out["id"])


def test_split_refuses_a_bad_fraction(schema: LabelSchema, letters: list,
                                      write_jsonl: Callable) -> None:
    dataset, _ = load_letters([write_jsonl(letters)], schema)
    with pytest.raises(ValueError, match=re.escape("must be in (0, 1), found 1.5")):
        split_dataset(dataset, schema, 1.5)


def test_split_by_id_holds_out_the_matching_letters(schema: LabelSchema,
                                                    write_jsonl: Callable) -> None:
    rows = [{"id": f"{writer}-{i}", "text": f"{writer}写的第{i}封来信", "sector": "other",
             "violations": [], "repeat_cue": False} for writer in ("C1", "C7", "RB") for i in range(4)]
    dataset, _ = load_letters([write_jsonl(rows)], schema)
    rest, held_out = split_by_id(dataset, "^(C7|RB)-")
    assert held_out["id"] == [f"{w}-{i}" for w in ("C7", "RB") for i in range(4)]
    assert rest["id"] == [f"C1-{i}" for i in range(4)]


@pytest.mark.parametrize(("pattern", "message"), [
    ("^X-", "matches no letter id"), ("-", "matches every letter id"),
    ("(C7", "is not a regular expression")])
def test_split_by_id_refuses_a_useless_pattern(schema: LabelSchema, letters: list,
                                               write_jsonl: Callable, pattern: str,
                                               message: str) -> None:
    dataset, _ = load_letters([write_jsonl([dict(r, id=f"C7-{i}") for i, r in enumerate(letters)])],
                              schema)
    with pytest.raises(ValueError, match=re.escape(message)):
        split_by_id(dataset, pattern)
