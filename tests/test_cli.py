from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import topic_letters
from training.cli import app

runner = CliRunner()


def test_data_check_fails_on_a_small_corpus(letters: list, write_jsonl: Callable,
                                             tmp_path: Path) -> None:
    path = write_jsonl(letters)
    result = runner.invoke(app, ["data", "check", str(path.parent), "--against", str(path)])
    assert result.exit_code == 1
    assert "MISS letters" in result.output
    assert "campus_meals" in result.output
    assert "resembles evaluation letter" in result.output


def test_data_check_writes_a_length_histogram(letters: list, write_jsonl: Callable, tmp_path: Path) -> None:
    png = tmp_path / "lengths.png"
    runner.invoke(app, ["data", "check", str(write_jsonl(letters)), "--histogram", str(png)])
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_data_check_reports_bad_rows_with_exit_2(letters: list, write_jsonl: Callable) -> None:
    letters[0]["sector"] = "schools"
    result = runner.invoke(app, ["data", "check", str(write_jsonl(letters))])
    assert result.exit_code == 2
    assert "letters.jsonl:1: sector: expected one of" in result.output


def test_data_check_bad_labels_file(letters: list, write_jsonl: Callable, tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "check", str(write_jsonl(letters)),
                                 "--labels", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_baseline_writes_scores(write_jsonl: Callable, tmp_path: Path) -> None:
    out = tmp_path / "baseline.json"
    path = write_jsonl(topic_letters(1))
    result = runner.invoke(app, ["baseline", "--train", str(path), "--eval", str(path),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text(encoding="utf-8"))["summary"]
    assert summary["sector.accuracy"] == 1.0
    assert summary["eval_letters"] == 18


def test_data_split_keeps_rows_and_stratifies(tmp_path: Path) -> None:
    rows = topic_letters(2)
    source = tmp_path / "all.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    result = runner.invoke(app, ["data", "split", str(source), "--train-out", str(tmp_path / "a.jsonl"),
                                 "--test-out", str(tmp_path / "b.jsonl"), "--fraction", "0.25"])
    assert result.exit_code == 0, result.output
    held = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text(encoding="utf-8").splitlines()]
    rest = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(held) == 9 and len(rest) == 27
    assert sorted(r["sector"] for r in held).count("campus_meals") == 3
    assert {r["id"] for r in held + rest} == {r["id"] for r in rows}


def test_data_split_refuses_csv(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("id,text\n", encoding="utf-8")
    result = runner.invoke(app, ["data", "split", str(tmp_path / "x.csv"), "--train-out", "a",
                                 "--test-out", "b"])
    assert result.exit_code == 2
    assert "is not .jsonl: convert it first" in result.output
