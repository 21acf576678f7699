from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from model.labels import LabelSchema, LabelSchemaError

ROOT = Path(__file__).resolve().parents[1]
TAXONOMY = ROOT.parent / "shared" / "taxonomy.md"


def test_project_schema_has_three_heads(schema: LabelSchema) -> None:
    assert list(schema.heads) == ["sector", "violations", "repeat_cue"]
    assert [h.type for h in schema.heads.values()] == ["single", "multi", "binary"]
    assert len(schema.heads["sector"].labels) == 12
    assert len(schema.heads["violations"].labels) == 6
    assert schema.heads["repeat_cue"].num_outputs == 1


def test_every_sector_names_departments(schema: LabelSchema) -> None:
    assert all(label.departments for label in schema.heads["sector"].labels)
    assert schema.heads["sector"].label("funeral_services").name == "殡葬服务"


@pytest.mark.skipif(not TAXONOMY.is_file(), reason="shared/taxonomy.md not beside the repo")
def test_label_ids_match_the_taxonomy(schema: LabelSchema) -> None:
    text = TAXONOMY.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.M))
    ours = set(schema.heads["sector"].label_ids) | set(schema.heads["violations"].label_ids)
    assert ours | set(schema.heads) == documented


def test_tipdm_schema_is_a_single_head() -> None:
    schema = LabelSchema.from_yaml(ROOT / "labels" / "tipdm2020c.yaml")
    assert list(schema.heads) == ["label"]
    assert len(schema.heads["label"].label_ids) == 7


def test_join_text_uses_text_fields_in_order(schema: LabelSchema) -> None:
    assert schema.join_text({"title": " 标题 ", "text": "正文", "other": "x"}) == "标题\n正文"
    assert schema.join_text({"title": None, "text": "正文"}) == "正文"


def test_round_trip_through_dict(schema: LabelSchema, tmp_path: Path) -> None:
    schema.to_yaml(tmp_path / "labels.yaml")
    assert LabelSchema.from_yaml(tmp_path / "labels.yaml") == schema


@pytest.mark.parametrize(
    ("heads", "message"),
    [
        ({"h": {"type": "single", "name": "x", "labels": [{"id": "a", "name": "A"}]}},
         "a single head needs at least 2 labels, found 1"),
        ({"h": {"type": "binary", "name": "x", "labels": [{"id": "a", "name": "A"}]}},
         "a binary head has no labels"),
        ({"h": {"type": "multi", "name": "x", "labels": [{"id": "a", "name": "A"},
                                                           {"id": "a", "name": "B"}]}},
         "label ids must be unique, but ['a'] repeat"),
        ({"h": {"type": "ranked", "name": "x"}}, "heads.h.type"),
        ({}, "heads needs at least one head"),
    ],
)
def test_invalid_schema_is_refused(tmp_path: Path, heads: dict, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"schema": "t", "text_fields": ["text"], "heads": heads}),
                    encoding="utf-8")
    with pytest.raises(LabelSchemaError, match=re.escape(message)):
        LabelSchema.from_yaml(path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(LabelSchemaError, match="does not exist"):
        LabelSchema.from_yaml(tmp_path / "nope.yaml")
