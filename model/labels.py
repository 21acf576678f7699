"""The label schema: which record fields make the input and which heads the model has.

A schema is read from a YAML file (``labels.yaml`` for our taxonomy) and is the only
source of label ids in code. It is saved next to every trained model so that a model
directory describes itself.

Example::

    schema = LabelSchema.from_yaml("labels.yaml")
    schema.heads["sector"].label_ids[:2]   # ['campus_meals', 'rural_collective_assets']
    schema.join_text({"title": "标题", "text": "正文"})   # '标题\\n正文'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

HeadType = Literal["single", "multi", "binary"]


class LabelSchemaError(ValueError):
    """A labels file that cannot be used: names the file and what is wrong in it."""


class Label(BaseModel):
    """One label of a ``single`` or ``multi`` head."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, description="stable ASCII (or source-language) identifier")
    name: str = Field(min_length=1, description="what supervisors see")
    description: str = ""
    departments: tuple[str, ...] = ()


class Head(BaseModel):
    """One named output of the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: HeadType
    name: str = Field(min_length=1, description="Chinese display name of the head")
    description: str = ""
    labels: tuple[Label, ...] = ()

    @model_validator(mode="after")
    def _check_labels(self) -> Head:
        ids = [label.id for label in self.labels]
        if self.type == "binary" and ids:
            raise ValueError(f"a binary head has no labels, but found {ids}; remove 'labels'")
        if self.type == "single" and len(ids) < 2:
            raise ValueError(f"a single head needs at least 2 labels, found {len(ids)}")
        if self.type == "multi" and not ids:
            raise ValueError("a multi head needs at least 1 label, found none")
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"label ids must be unique, but {duplicated} repeat")
        return self

    @property
    def label_ids(self) -> list[str]:
        """Label ids in file order (the order of the model's output units)."""
        return [label.id for label in self.labels]

    @property
    def num_outputs(self) -> int:
        """Output units of this head: one per label, or one for a binary head."""
        return 1 if self.type == "binary" else len(self.labels)

    def label(self, label_id: str) -> Label:
        """The label with this id; raises ``KeyError`` naming the known ids."""
        for label in self.labels:
            if label.id == label_id:
                return label
        raise KeyError(f"unknown label {label_id!r}; expected one of {self.label_ids}")


class LabelSchema(BaseModel):
    """Input fields and output heads of a classifier."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_name: str = Field(alias="schema", min_length=1)
    version: int = 1
    text_fields: tuple[str, ...]
    heads: dict[str, Head]

    @field_validator("text_fields")
    @classmethod
    def _check_text_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("text_fields needs at least one field name, e.g. [title, text]")
        return value

    @field_validator("heads")
    @classmethod
    def _check_heads(cls, value: dict[str, Head]) -> dict[str, Head]:
        if not value:
            raise ValueError("heads needs at least one head")
        return value

    @classmethod
    def from_yaml(cls, path: str | Path) -> LabelSchema:
        """Read and check a labels file.

        Raises:
            LabelSchemaError: the file is missing, not YAML, or not a valid schema.
        """
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LabelSchemaError(f"labels file {path} does not exist") from None
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise LabelSchemaError(f"labels file {path} is not readable YAML: {err}") from None
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<dict>") -> LabelSchema:
        """Check a schema given as plain data (as stored in a model's config)."""
        if not isinstance(raw, Mapping):
            found = type(raw).__name__
            raise LabelSchemaError(f"{source}: expected a mapping with 'heads', found {found}")
        try:
            return cls.model_validate(dict(raw))
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
                for e in err.errors()
            )
            raise LabelSchemaError(f"{source}: invalid labels file: {problems}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :meth:`from_dict` reads back."""
        return self.model_dump(by_alias=True, mode="json", exclude_defaults=False)

    def to_yaml(self, path: str | Path) -> None:
        """Write the schema as YAML (used when saving a model directory)."""
        text = yaml.safe_dump(self.to_dict(), allow_unicode=True, sort_keys=False)
        Path(path).write_text(text, encoding="utf-8")

    def join_text(self, record: Mapping[str, Any]) -> str:
        """The model input of a record: its non-empty ``text_fields`` joined by newlines."""
        parts = [str(record[f]).strip() for f in self.text_fields if record.get(f)]
        return "\n".join(p for p in parts if p)
