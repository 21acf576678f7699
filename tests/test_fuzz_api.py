"""The API fuzzing of benchmarks/fuzz_api.py, small enough for every test run: a few hundred
schemathesis requests on the tiny model and SQLite get no 5xx and conform to the schema."""

from __future__ import annotations

from pathlib import Path

from benchmarks.fuzz_api import fuzz
from serving.app import create_app
from tests.conftest import prepare_service


def test_generated_requests_get_no_5xx_and_conform_to_the_schema(tiny_model: Path, tmp_path: Path) -> None:
    config, keys = prepare_service(tiny_model, f"sqlite:///{tmp_path / 'letters.db'}")
    app = create_app(config)
    operations = {f"{method.upper()} {path}" for path, item in app.openapi()["paths"].items() for method in item}
    report = fuzz(app, keys, {"admin": 15, "intake": 4})
    assert set(report.requests) == operations
    assert report.total >= 300
    assert report.server_errors == []
    assert report.schema_violations == []
