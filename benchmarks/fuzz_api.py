"""Fuzzing the service against its own OpenAPI schema with schemathesis, in-process.

The app runs on a tiny model and an SQLite store holding a few letters. For every
operation of the schema, schemathesis generates requests (valid ones, and invalid ones in
its negative mode) sent with an admin key, so that every route is reached, and some with
an intake key. Every answer is checked: no 5xx, and for the statuses the schema documents,
a body and content type that conform to it. Statuses the schema does not document
(401, 403, 404, 409, 413, 415: FastAPI lists only 200/201/422) are counted, not failed.

Usage: python -m benchmarks.fuzz_api [--examples 100] [--intake-examples 25] [--seed 0]
Writes reports/fuzz_api.json and appends a section to docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.errors import FailureGroup
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from serving.app import create_app
from serving.keys import find_key
from tests.conftest import prepare_service, topic_letters
from tests.tiny_model import write_tiny_base_model
from training.finetune import TrainingArguments, train

ROOT = Path(__file__).resolve().parents[1]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
SEED_LETTERS = [  # stored before fuzzing, so generated letter ids find letters to read and review
    "县第二中学食堂承包人王建国虚报学生人数，营养餐补助每月多领三万元。",
    "我们村的低保名单里全是村主任的亲戚，已经第三次反映了。",
    "殡仪馆强制家属购买八千元的骨灰盒，不买就不给火化，还要红包。",
    "村会计挪用集体资金十几万，鱼塘承包合同从不公示。",
    "小区门口的路灯坏了半年了，建议尽快修好。",
]


@dataclass
class FuzzReport:
    """What a fuzzing run sent and found; operations are labelled 'METHOD /path'."""

    requests: Counter[str] = field(default_factory=Counter)
    requests_by_role: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)  # 'METHOD /path STATUS'
    undocumented_statuses: Counter[str] = field(default_factory=Counter)
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    schema_violations: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # negative mode of operations without parameters

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def to_dict(self) -> dict[str, Any]:
        counters = {"requests": self.requests, "requests_by_role": self.requests_by_role,
                    "statuses": self.statuses, "undocumented_statuses": self.undocumented_statuses}
        return {"total_requests": self.total, "server_errors_5xx": len(self.server_errors),
                "schema_violations": len(self.schema_violations),
                **{name: dict(sorted(counter.items())) for name, counter in counters.items()},
                "server_error_cases": self.server_errors, "schema_violation_cases": self.schema_violations,
                "skipped": self.skipped}


def _failures(case: schemathesis.Case, response: schemathesis.Response,
              check: Callable[..., Any]) -> list[Any]:
    try:
        case.validate_response(response, checks=[check])
    except FailureGroup as group:
        return list(group.exceptions)
    return []


class _Recorder:
    """Sends cases with a role's key and records what came back."""

    def __init__(self, report: FuzzReport, protected_key_ids: set[int], admin_key: str) -> None:
        self.report = report
        self.protected = protected_key_ids
        self.admin_key = admin_key

    def _spare_key_id(self, case: schemathesis.Case) -> int:
        """A fresh key to revoke instead of one the run itself uses."""
        make = case.operation.schema["/v1/keys"]["POST"].Case(body={"name": "fuzz-spare", "role": "intake"},
                                                               media_type="application/json")
        return int(make.call(headers={"Authorization": f"Bearer {self.admin_key}"}).json()["id"])

    def send(self, case: schemathesis.Case, role: str, key: str) -> None:
        label = case.operation.label
        if label == "DELETE /v1/keys/{key_id}" and case.path_parameters.get("key_id") in self.protected:
            case.path_parameters["key_id"] = self._spare_key_id(case)
        self.report.requests[label] += 1
        self.report.requests_by_role[role] += 1
        try:
            response = case.call(headers={"Authorization": f"Bearer {key}"})
        except Exception as err:  # noqa: BLE001 - the app raised: a real client gets a 500
            self.report.statuses[f"{label} 500"] += 1
            self.report.server_errors.append({"operation": label, "role": role, "status": 500,
                                              "request": case.as_curl_command()[:1000],
                                              "error": f"{type(err).__name__}: {str(err)[:300]}"})
            return
        status = response.status_code
        self.report.statuses[f"{label} {status}"] += 1
        where = {"operation": label, "role": role, "status": status}
        if status >= 500:
            self.report.server_errors.append({**where, "request": case.as_curl_command()[:1000],
                                              "response": response.text[:500]})
        for failure in _failures(case, response, response_schema_conformance) + \
                _failures(case, response, content_type_conformance):
            self.report.schema_violations.append({**where, "title": failure.title,
                                                  "message": failure.message[:500]})
        if _failures(case, response, status_code_conformance):
            self.report.undocumented_statuses[f"{label} {status}"] += 1


def _protected_key_ids(app: FastAPI, keys: Mapping[str, str]) -> set[int]:
    with app.state.services.store.session() as session:
        return {row.id for key in keys.values() if (row := find_key(session, key)) is not None}


def _seed_letters(schema: schemathesis.BaseSchema, admin_key: str) -> None:
    operation = schema["/v1/letters"]["POST"]
    for i, text in enumerate(SEED_LETTERS):
        case = operation.Case(body={"external_id": f"seed-{i}", "text": text}, media_type="application/json")
        response = case.call(headers={"Authorization": f"Bearer {admin_key}"})
        if response.status_code not in (200, 201):
            raise RuntimeError(f"seeding letter {i} failed: {response.status_code} {response.text[:200]}")


def fuzz(app: FastAPI, keys: Mapping[str, str], examples: Mapping[str, int], run_seed: int = 0) -> FuzzReport:
    """Fuzz every operation of ``app``'s schema in both generation modes.

    Args:
        app: the service (its lifespan is started here and stopped at the end).
        keys: API keys by role; needs 'admin' (to seed letters and spare keys).
        examples (Mapping[str, int]): most generated requests per operation and mode, by role,
            e.g. ``{"admin": 100, "intake": 25}``; operations without parameters get one.
        run_seed (int, default 0): hypothesis seed (the same seed sends the same requests).

    Returns:
        The report: requests per operation and role, statuses, 5xx and schema violations.
    """
    if "admin" not in keys:
        raise ValueError(f"fuzz needs an 'admin' key to seed letters, found keys for {sorted(keys)}")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan
    report = FuzzReport()
    try:
        recorder = _Recorder(report, _protected_key_ids(app, keys), keys["admin"])
        _seed_letters(schema, keys["admin"])
        for result in schema.get_all_operations():
            if not isinstance(result, Ok):
                raise RuntimeError(f"schemathesis cannot read an operation of the schema: {result.err()}")
            operation = result.ok()
            for mode in MODES:
                for role, count in examples.items():
                    _fuzz_operation(operation, mode, role, keys[role], count, recorder, run_seed)
    finally:
        shutdown_lifespans()
    return report


def _fuzz_operation(operation: schemathesis.APIOperation, mode: GenerationMode, role: str, key: str,
                    count: int, recorder: _Recorder, run_seed: int) -> None:
    @seed(run_seed)
    @settings(max_examples=count, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(operation.as_strategy(generation_mode=mode))
    def send(case: schemathesis.Case) -> None:
        recorder.send(case, role, key)

    try:
        send()
    except Unsatisfiable:  # nothing to negate: the operation has no parameters and no body
        recorder.report.skipped.append(f"{operation.label} {mode.value} ({role})")


def _tiny_service(folder: Path) -> tuple[FastAPI, dict[str, str]]:
    """The app on a tiny model trained for a few steps (as the tiny_model test fixture)."""
    data = folder / "train.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in topic_letters()),
                    encoding="utf-8")
    base = write_tiny_base_model(folder / "tiny-base")
    train(TrainingArguments(data=[data], out=folder / "model", labels=ROOT / "labels.yaml",
                            base_model=str(base), epochs=2, batch_size=8, window_tokens=32,
                            window_stride=8, validation_fraction=0.3, learning_rate=1e-3))
    config, keys = prepare_service(folder / "model", f"sqlite:///{folder / 'letters.db'}")
    return create_app(config), keys


def _section(result: dict[str, Any]) -> str:
    per_operation = "\n".join(f"| `{op}` | {n} |" for op, n in sorted(result["requests"].items()))
    undocumented = ", ".join(f"`{s}` × {n}" for s, n in sorted(result["undocumented_statuses"].items()))
    return (
        f"\n## API fuzzing (schemathesis {result['schemathesis']}), {result['date']}\n\n"
        f"`python -m benchmarks.fuzz_api --examples {result['examples']['admin']} "
        f"--intake-examples {result['examples']['intake']} --seed {result['seed']}` on {result['machine']}: "
        f"{result['total_requests']} generated requests ({result['requests_by_role'].get('admin', 0)} with "
        f"the admin key, {result['requests_by_role'].get('intake', 0)} with an intake key) in "
        f"{result['seconds']:.0f} s, in positive and negative mode, against the tiny model on SQLite.\n\n"
        f"- **5xx answers: {result['server_errors_5xx']}**\n"
        f"- **schema violations (body or content type of a documented status): "
        f"{result['schema_violations']}**\n"
        f"- statuses the schema does not document (counted, not failed): {undocumented or 'none'}\n\n"
        f"| operation | requests |\n|---|---|\n{per_operation}\n\n"
        "Full numbers: `reports/fuzz_api.json`.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=100,
                        help="most requests per operation and mode with the admin key")
    parser.add_argument("--intake-examples", type=int, default=25,
                        help="most requests per operation and mode with an intake key")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "fuzz_api.json")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "reliability.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)  # the service logs every request at INFO
    examples = {"admin": args.examples, "intake": args.intake_examples}
    with tempfile.TemporaryDirectory() as tmp:
        app, keys = _tiny_service(Path(tmp))
        start = time.perf_counter()
        report = fuzz(app, keys, examples, args.seed)
        seconds = time.perf_counter() - start
    result = {"date": datetime.now(UTC).date().isoformat(), "schemathesis": schemathesis.__version__,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "seed": args.seed,
              "examples": examples, "seconds": round(seconds, 1), **report.to_dict()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if not args.doc.exists():
        args.doc.write_text("# Reliability\n", encoding="utf-8")
    with args.doc.open("a", encoding="utf-8") as doc:
        doc.write(_section(result))
    print(f"{report.total} requests, {len(report.server_errors)} 5xx, "  # noqa: T201  (a script's output)
          f"{len(report.schema_violations)} schema violations; written to {args.out} and {args.doc}")


if __name__ == "__main__":
    main()
