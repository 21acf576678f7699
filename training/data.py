"""Loading labelled (or unlabelled) letters from JSONL and CSV files.

Every bad row is reported precisely (file, line, field, what was expected, what was
found). By default loading fails with all errors listed; with ``skip_invalid=True``
the good rows load and the bad ones come back in the :class:`LoadReport`.

Example::

    schema = LabelSchema.from_yaml("labels.yaml")
    dataset, report = load_letters(["data/letters.jsonl"], schema)
    dataset[0]["sector"]   # 'campus_meals'
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset
from sklearn.model_selection import train_test_split

from model.labels import Head, LabelSchema

logger = logging.getLogger(__name__)

JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
CSV_SUFFIXES = (".csv",)
CSV_BOOLEANS = {"true": True, "1": True, "yes": True, "是": True,
                "false": False, "0": False, "no": False, "否": False, "": False}
MAX_ERRORS_SHOWN = 50
# Optional fields for linking: ``group`` names a matter shared by several letters;
# ``near_group`` names a matter this letter is a hard negative of (same place or
# official, another matter).
GROUP_FIELDS = ("group", "near_group")


@dataclass(frozen=True)
class RowError:
    """One problem in one row of an input file."""

    file: str
    line: int
    field: str
    expected: str
    found: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: {self.field}"
        return f"{where}: expected {self.expected}, found {self.found}"


class DataError(ValueError):
    """Input rows that cannot be used; ``errors`` lists every one of them."""

    def __init__(self, errors: Sequence[RowError], hint: str = "") -> None:
        self.errors = list(errors)
        shown = "\n  ".join(str(e) for e in self.errors[:MAX_ERRORS_SHOWN])
        more = len(self.errors) - MAX_ERRORS_SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        hint = hint or "fix these rows, or pass --skip-invalid to load the rest and report them"
        super().__init__(f"{len(self.errors)} bad row(s):\n  {shown}{tail}\n{hint}")


@dataclass
class LoadReport:
    """What a load read, kept and skipped."""

    rows_read: int = 0
    rows_loaded: int = 0
    skipped: list[RowError] = field(default_factory=list)


@dataclass(frozen=True)
class RawRow:
    """A row as read from a file, before checking against a schema."""

    file: str
    line: int
    values: dict[str, Any]
    from_csv: bool = False  # cells are strings: lists and booleans are spelled out


def _short(value: Any, limit: int = 40) -> str:
    """A value for an error message; long texts are cut (letters are confidential)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _decode_lines(path: Path, errors: list[RowError]) -> list[tuple[int, str]]:
    """Physical lines of a file as text; a non-UTF-8 line becomes an error."""
    lines = []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            lines.append((number, raw.decode("utf-8").removesuffix("\r")))
        except UnicodeDecodeError as err:
            bad = raw[err.start : err.start + 1].hex()
            errors.append(
                RowError(str(path), number, "(encoding)", "UTF-8 text",
                         f"byte 0x{bad} at column {err.start + 1}; re-save the file as UTF-8")
            )
            lines.append((number, ""))
    if lines and lines[0][1].startswith("\ufeff"):
        lines[0] = (lines[0][0], lines[0][1][1:])
    return lines


def _read_jsonl(path: Path, errors: list[RowError]) -> Iterator[RawRow]:
    for number, text in _decode_lines(path, errors):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            errors.append(RowError(str(path), number, "(row)", "one JSON object per line",
                                   f"invalid JSON ({err.msg} at column {err.colno})"))
            continue
        except RecursionError:
            errors.append(RowError(str(path), number, "(row)", "one JSON object per line",
                                   "JSON nested too deeply to read"))
            continue
        if not isinstance(value, dict):
            errors.append(RowError(str(path), number, "(row)", "a JSON object",
                                   f"a JSON {type(value).__name__}"))
            continue
        yield RawRow(str(path), number, value)


def _read_csv(path: Path, errors: list[RowError]) -> Iterator[RawRow]:
    decoded = _decode_lines(path, errors)
    bad_lines = {e.line for e in errors if e.file == str(path)}
    reader = csv.DictReader(io.StringIO("\n".join(text for _, text in decoded)))
    start = 1
    try:
        width = len(reader.fieldnames or [])
        start = 2
        for row in reader:
            end = reader.line_num
            if bad_lines.intersection(range(start, end + 1)):
                start = end + 1
                continue
            if None in row:
                errors.append(RowError(str(path), start, "(row)", f"{width} columns as in the header",
                                       f"{width + len(row[None])}"))
            else:
                yield RawRow(str(path), start, {k: (v if v != "" else None) for k, v in row.items()},
                             from_csv=True)
            start = end + 1
    except csv.Error as err:  # e.g. a quote never closed: the rest of the file is one huge cell
        errors.append(RowError(str(path), start, "(row)", "a CSV row",
                               f"{err}; the rest of the file was not read"))


def read_rows(path: str | Path, errors: list[RowError]) -> Iterator[RawRow]:
    """Rows of one JSONL or CSV file; unreadable rows are appended to ``errors``."""
    path = Path(path)
    if not path.is_file():
        errors.append(RowError(str(path), 0, "(file)", "an existing file", "no such file"))
        return iter(())
    suffix = path.suffix.lower()
    if suffix in JSON_SUFFIXES:
        return _read_jsonl(path, errors)
    if suffix in CSV_SUFFIXES:
        return _read_csv(path, errors)
    errors.append(RowError(str(path), 0, "(file)",
                           f"a file ending in {JSON_SUFFIXES + CSV_SUFFIXES}",
                           f"{suffix or 'no suffix'}; rename it or convert it to JSONL"))
    return iter(())


Problem = tuple[str, str] | None  # (expected, found)


def _check_single(head: Head, value: Any) -> tuple[Any, Problem]:
    if not isinstance(value, str):
        return None, ("a label id (string)", f"{type(value).__name__} {_short(value)}")
    if value not in head.label_ids:
        return None, (f"one of {head.label_ids}", _short(value))
    return value, None


def _csv_list(value: str | None) -> Any:
    """CSV cells carry lists as 'a;b', 'a|b' or a JSON list."""
    if value is None:
        return []
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return value
    return [part.strip() for part in text.replace("|", ";").split(";") if part.strip()]


def _check_multi(head: Head, value: Any) -> tuple[Any, Problem]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None, ("a list of label ids", _short(value))
    unknown = [v for v in value if v not in head.label_ids]
    if unknown:
        return None, (f"ids from {head.label_ids}", f"unknown {unknown}")
    return sorted(set(value), key=head.label_ids.index), None


def _check_binary(head: Head, value: Any) -> tuple[Any, Problem]:
    if isinstance(value, bool):
        return value, None
    return None, ("true or false", f"{type(value).__name__} {_short(value)}")


CHECKS = {"single": _check_single, "multi": _check_multi, "binary": _check_binary}


def _has_lone_surrogate(text: str) -> bool:
    """JSON may escape half of a UTF-16 pair (\\ud800), which no UTF-8 text (nor Arrow) can hold."""
    return any("\ud800" <= char <= "\udfff" for char in text)


def check_row(
    row: RawRow, schema: LabelSchema, *, require_labels: bool
) -> tuple[dict[str, Any] | None, list[RowError]]:
    """A row checked against the schema: the clean record, or its errors."""
    problems: list[RowError] = []

    def problem(field_name: str, expected: str, found: str) -> None:
        problems.append(RowError(row.file, row.line, field_name, expected, found))

    values = row.values
    record_id = values.get("id")
    if not isinstance(record_id, str) or not record_id.strip():
        problem("id", "a non-empty string", _short(record_id))
    for name in schema.text_fields:
        if values.get(name) is not None and not isinstance(values[name], str):
            found = f"{type(values[name]).__name__} {_short(values[name])}"
            problem(name, "a string or null", found)
    for name in ("id", *schema.text_fields, *GROUP_FIELDS):
        if isinstance(values.get(name), str) and _has_lone_surrogate(values[name]):
            problem(name, "Unicode text", "a lone UTF-16 surrogate (\\ud800-\\udfff); re-export the file")
    text = schema.join_text({k: v for k, v in values.items() if isinstance(v, str)})
    if not text.strip():
        problem("/".join(schema.text_fields), "non-empty text", "empty or whitespace-only text")
    clean: dict[str, Any] = {"id": record_id, "text": text}
    for name in GROUP_FIELDS:
        clean[name] = values.get(name)
        if clean[name] is not None and not isinstance(clean[name], str):
            problem(name, "a string or null", _short(clean[name]))
    for name, head in schema.heads.items():
        if name not in values:
            if require_labels:
                problem(name, f"a {head.type} label field", "no such field")
            continue
        value = values[name]
        if row.from_csv and head.type == "multi":
            value = _csv_list(value)
        elif row.from_csv and head.type == "binary" and (value or "").lower() in CSV_BOOLEANS:
            value = CSV_BOOLEANS[(value or "").lower()]
        checked, found_problem = CHECKS[head.type](head, value)
        if found_problem:
            problem(name, *found_problem)
        clean[name] = checked
    return (None if problems else clean), problems


def load_letters(
    paths: Sequence[str | Path],
    schema: LabelSchema,
    *,
    require_labels: bool = True,
    skip_invalid: bool = False,
) -> tuple[Dataset, LoadReport]:
    """Load and check letters from JSONL/CSV files into one ``datasets.Dataset``.

    Args:
        paths: input files (``.jsonl``/``.json`` with one object per line, or ``.csv``).
        schema: the label schema; ``text_fields`` are joined into the ``text`` column.
        require_labels (bool, default True): every head's field must be present
            (training and evaluation); False for prediction input.
        skip_invalid (bool, default False): load the good rows and report the bad ones
            instead of failing.

    Returns:
        The dataset (columns ``id``, ``text``, ``group``, ``near_group`` and one per head
        present) and a
        report of rows read, loaded and skipped.

    Raises:
        DataError: some rows are bad (and ``skip_invalid`` is False), or no row is usable.
    """
    errors: list[RowError] = []
    records: list[dict[str, Any]] = []
    first_line: dict[str, str] = {}
    report = LoadReport()
    for path in paths:
        for row in read_rows(path, errors):
            report.rows_read += 1
            clean, problems = check_row(row, schema, require_labels=require_labels)
            if clean is not None:
                where = first_line.get(clean["id"])
                if where is not None:
                    problems = [RowError(row.file, row.line, "id", "a unique id",
                                         f"{_short(clean['id'])} already used at {where}")]
                    clean = None
                else:
                    first_line[clean["id"]] = f"{row.file}:{row.line}"
            errors.extend(problems)
            if clean is not None:
                records.append(clean)
    if errors and not skip_invalid:
        raise DataError(errors)
    if not records:
        raise DataError(errors or [RowError(", ".join(map(str, paths)), 0, "(file)",
                                            "at least one letter", "no rows")],
                        hint="no usable letters: check the paths and the file format")
    report.rows_loaded = len(records)
    report.skipped = errors
    if errors:
        bad_rows = len({(e.file, e.line) for e in errors})
        logger.warning("skipped %d bad row(s) of %d read", bad_rows, report.rows_read)
    return Dataset.from_list(records), report


def split_dataset(
    dataset: Dataset, schema: LabelSchema, fraction: float, seed: int = 42
) -> tuple[Dataset, Dataset]:
    """A stratified split into (rest, held-out ``fraction``).

    Stratified on the first ``single`` head (so every class keeps its share); a plain
    shuffled split when the schema has none or a class is too small to stratify.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in (0, 1), found {fraction}")
    single = next((n for n, h in schema.heads.items() if h.type == "single"), None)
    strata = dataset[single] if single in dataset.column_names else None
    if strata is not None and min(Counter(strata).values()) < 2:
        logger.warning("a %s class has fewer than 2 letters: split without stratifying", single)
        strata = None
    rest, held_out = train_test_split(
        list(range(len(dataset))), test_size=fraction, random_state=seed, stratify=strata
    )
    return dataset.select(sorted(rest)), dataset.select(sorted(held_out))


def split_by_id(dataset: Dataset, pattern: str) -> tuple[Dataset, Dataset]:
    """Split into (rest, held-out): the held-out letters are those whose ``id`` matches
    ``pattern`` (a regular expression searched in the id), e.g. one writer's letters.
    """
    try:
        matcher = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"the validation id pattern {pattern!r} is not a regular expression: "
                         f"{err}. Fix: e.g. '^(C7|RB)-'") from None
    chosen = [bool(matcher.search(str(i))) for i in dataset["id"]]
    if not any(chosen) or all(chosen):
        share = "no" if not any(chosen) else "every"
        raise ValueError(f"the validation id pattern {pattern!r} matches {share} letter id "
                         f"({len(chosen)} letters, e.g. {dataset['id'][0]!r}). Fix: a pattern "
                         "that picks some letters (e.g. one writer's id prefix) but not all")
    held_out = [i for i, c in enumerate(chosen) if c]
    rest = [i for i, c in enumerate(chosen) if not c]
    return dataset.select(rest), dataset.select(held_out)
