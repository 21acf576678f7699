"""The service under load: throughput and latency over HTTP at 1, 8 and 32 concurrent
clients, against the model's offline batched throughput, and the review page's load time
with 10,000 stored letters.

Steps, all on 127.0.0.1:
1. Offline: the model alone (``Engine.analyse``: classifier and key fields) on the dev-set
   letters in batches of ``--micro-batch``, with nothing else running: the throughput the
   service can at best reach. numpy's BLAS runs on one thread here, as in the service.
2. A fresh SQLite store is filled with ``--stored`` letters (TipDM messages, as many as there
   are, then recombined ones) through the service's own linking and storing code. To keep
   this step short, the model's answers for ``--analysed`` messages are reused cyclically:
   rows, key fields, texts and matters are each letter's own; scores repeat.
3. ``triage serve`` starts on that store as a child process (its own 2 threads of model work
   compete with this client for the same 2 cores, as an intake system's would not).
4. For each number of clients: that many asyncio loops share ``--requests`` POST /v1/letters
   of dev-set letters (each with a new external_id). Throughput, latency percentiles, and
   the status of every answer (a 503 is the service refusing work it cannot take in time;
   anything else that is not 201 is an error), and the share of the cores the service and
   this client each used meanwhile (the client's share is time the service could not have).
5. The review page (GET /review, lowest confidence first, 50 rows) and the queue API
   (GET /v1/review-queue) loaded ``--page-loads`` times each as a supervisor.

Usage: python benchmarks/bench_service.py [--model models/letters] [--runtime onnx-int8]
Writes reports/bench_service.json and a line in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import secrets
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from bench_linking import MESSAGES
from threadpoolctl import threadpool_limits

from model.inference import Runtime, length_batches
from model.keyfields import extract_key_fields
from serving.auth import COOKIE
from serving.cases import Matters
from serving.engine import Analysis, Engine
from serving.letters import linking_entry, new_letter
from serving.live_server import LiveServer
from serving.schemas import LetterIn
from serving.store import Store
from training.data import load_letters

ROOT = Path(__file__).resolve().parents[1]
DEVSET = ROOT.parent / "shared" / "devset" / "letters.jsonl"
TARGETS = {"one_client_p50_ms": 20.0, "eight_clients_share_of_offline": 0.9,
           "eight_clients_p99_over_p50": 3.0}


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 95, 99)} if len(ms) else {}


def offline_throughput(engine: Engine, texts: list[str], batch: int) -> dict[str, float]:
    """Letters/s of the model alone on ``texts`` in length-sorted batches (after a warm-up)."""
    engine.analyse(texts[:batch])
    began = time.perf_counter()
    for group in length_batches([len(t) for t in texts], batch):
        engine.analyse([texts[i] for i in group])
    took = time.perf_counter() - began
    return {"letters": len(texts), "batch_size": batch, "seconds": took, "letters_per_s": len(texts) / took}


def stored_texts(count: int, seed: int = 0) -> list[str]:
    """``count`` letter texts: TipDM messages, then sentences of them recombined."""
    texts = []
    with MESSAGES.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts.append(((row.get("title") or "") + "\n" + row["text"]).strip())
    sentences = [s for t in texts for s in t.split("。") if len(s) > 8]
    rng = random.Random(seed)
    while len(texts) < count:
        texts.append("。".join(rng.sample(sentences, k=rng.randint(2, 6))) + "。")
    return texts[:count]


def fill_store(store: Store, engine: Engine, texts: list[str], analysed: int) -> dict[str, float]:
    """Store ``texts`` as the service would (link, then insert), reusing the model's answers
    for the first ``analysed`` texts cyclically; returns timings."""
    began = time.perf_counter()
    analyses = engine.analyse(texts[:analysed])
    model_seconds = time.perf_counter() - began
    matters = Matters(store, engine.scorer, engine.vector_space)
    schema, start = engine.classifier.schema, datetime(2024, 1, 1, tzinfo=UTC)
    with matters.lock, store.writing() as session:
        for i, text in enumerate(texts):
            reused = analyses[i % analysed]
            analysis = Analysis(reused.answer, extract_key_fields(text), reused.vector, reused.vector_space)
            given = LetterIn(external_id=f"stored-{i}", text=text, source="bench",
                             received_at=start + timedelta(minutes=10 * i))
            entry = linking_entry(schema, given, analysis, matters.vector_space)
            session.add(new_letter(schema, given, analysis, entry, matters.link(entry), "bench"))
    return {"letters": len(texts), "analysed": analysed, "model_seconds": model_seconds,
            "seconds": time.perf_counter() - began}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(base: str, key: str, texts: list[str], clients: int, requests: int,
               tag: str, server_pid: int) -> dict[str, Any]:
    """``clients`` concurrent loops sharing ``requests`` submissions; statuses, latencies,
    and the CPU time the service and this client (which shares the cores with it) used."""
    order = iter(range(requests))
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient) -> None:
        for i in order:
            body = {"external_id": f"{tag}-{i}", "text": texts[i % len(texts)], "source": "bench"}
            began = time.perf_counter()
            try:
                answer = await http.post("/v1/letters", json=body)
                statuses[str(answer.status_code)] += 1
                if answer.status_code == 201:
                    latencies.append(time.perf_counter() - began)
            except httpx.HTTPError as err:
                statuses[type(err).__name__] += 1

    async with httpx.AsyncClient(base_url=base, headers={"x-api-key": key}, limits=limits,
                                 timeout=120) as http:
        began, client_cpu, server_cpu = time.perf_counter(), time.process_time(), cpu_seconds(server_pid)
        await asyncio.gather(*(client(http) for _ in range(clients)))
        took = time.perf_counter() - began
        client_cpu, server_cpu = time.process_time() - client_cpu, cpu_seconds(server_pid) - server_cpu
    errors = sum(n for s, n in statuses.items() if s not in ("201", "503"))
    cores = os.cpu_count() or 1
    return {"clients": clients, "requests": requests, "seconds": took,
            "letters_per_s": statuses["201"] / took, "statuses": dict(statuses), "errors": errors,
            "refused_503": statuses["503"], **percentiles(latencies),
            "client_cpu_s": client_cpu, "server_cpu_s": server_cpu,
            "client_share_of_cores": client_cpu / (took * cores),
            "server_share_of_cores": server_cpu / (took * cores)}


def page_loads(base: str, key: str, loads: int) -> dict[str, Any]:
    """Seconds to load the review page and the queue API, ``loads`` times each."""
    timings: dict[str, list[float]] = {"/review": [], "/v1/review-queue": []}
    with httpx.Client(base_url=base, cookies={COOKIE: key}, timeout=60) as http:
        for path, times in timings.items():
            http.get(path).raise_for_status()  # warm-up
            for _ in range(loads):
                began = time.perf_counter()
                http.get(path).raise_for_status()
                times.append(time.perf_counter() - began)
    return {path: percentiles(times) for path, times in timings.items()}


def make_key(base: str, admin: str, role: str) -> str:
    answer = httpx.post(f"{base}/v1/keys", json={"name": f"bench {role}", "role": role},
                        headers={"x-api-key": admin}, timeout=30)
    answer.raise_for_status()
    return str(answer.json()["key"])


def verdicts(result: dict[str, Any]) -> dict[str, bool]:
    by_clients = {run["clients"]: run for run in result["load"]}
    one, eight = by_clients.get(1), by_clients.get(8)
    checks = {}
    if one:
        checks["one_client_p50"] = one["p50_ms"] <= TARGETS["one_client_p50_ms"]
    if eight:
        share = eight["letters_per_s"] / result["offline"]["letters_per_s"]
        checks["eight_clients_throughput"] = share >= TARGETS["eight_clients_share_of_offline"]
        checks["eight_clients_tail"] = (eight["p99_ms"] / eight["p50_ms"]
                                        <= TARGETS["eight_clients_p99_over_p50"])
        checks["eight_clients_no_errors"] = eight["errors"] == 0 and eight["refused_503"] == 0
    if 32 in by_clients:
        checks["thirty_two_clients_only_503"] = by_clients[32]["errors"] == 0
    return checks


def line(result: dict[str, Any]) -> str:
    runs = "; ".join(
        f"{r['clients']} client{'s' if r['clients'] > 1 else ''}: {r['letters_per_s']:.1f} letters/s, "
        f"p50 / p95 / p99 {r.get('p50_ms', 0):.0f} / {r.get('p95_ms', 0):.0f} / {r.get('p99_ms', 0):.0f} ms, "
        f"{r['errors']} errors, {r['refused_503']} × 503, cores used by the service "
        f"{r['server_share_of_cores']:.0%} and by this client {r['client_share_of_cores']:.0%}"
        for r in result["load"])
    pages = "; ".join(f"{path} p50 {t['p50_ms']:.0f} ms, p95 {t['p95_ms']:.0f} ms"
                      for path, t in result["pages"].items())
    met = ", ".join(f"{k} {'met' if v else 'missed'}" for k, v in result["verdicts"].items())
    return (f"| {result['date'][:10]} | bench_service ({result['model']}, {result['runtime']}, "
            f"micro-batch {result['micro_batch']}, {result['stored']['letters']} letters stored "
            f"first, dev-set letters submitted) | {result['machine']} | offline "
            f"{result['offline']['letters_per_s']:.1f} letters/s; {runs}; review page with "
            f"{result['stored']['letters']} letters: {pages}; targets: {met} |\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "letters")
    parser.add_argument("--runtime", type=Runtime, default=Runtime.ONNX_INT8)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=300, help="submissions per client count")
    parser.add_argument("--stored", type=int, default=10_000, help="letters stored before the load")
    parser.add_argument("--analysed", type=int, default=300, help="distinct model answers when filling")
    parser.add_argument("--page-loads", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_service.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    engine = Engine.load(args.model, runtime=args.runtime)
    dev, _ = load_letters([DEVSET], engine.classifier.schema)
    texts = list(dev["text"])
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "model": engine.version, "runtime": str(args.runtime), "micro_batch": args.micro_batch,
        "targets": TARGETS, "offline": offline_throughput(engine, texts, args.micro_batch)}
    print("offline", result["offline"])  # noqa: T201  (a script's output)
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/letters.db"
        store = Store(url)
        result["stored"] = fill_store(store, engine, stored_texts(args.stored), args.analysed)
        store.close()
        del engine
        print("stored", result["stored"])  # noqa: T201
        admin = secrets.token_urlsafe(24)
        server = LiveServer(args.model, url, Path(scratch) / "service.log", runtime=str(args.runtime),
                            micro_batch=str(args.micro_batch), bootstrap_admin_key=admin)
        server.start(timeout=600)
        try:
            intake, supervisor = (make_key(server.base, admin, role) for role in ("intake", "supervisor"))
            result["load"] = []
            for clients in args.clients:
                run = asyncio.run(load(server.base, intake, texts, clients, args.requests,
                                       f"load{clients}", server.pid))
                print(run)  # noqa: T201
                result["load"].append(run)
            result["pages"] = page_loads(server.base, supervisor, args.page_loads)
        finally:
            server.stop()
    result["verdicts"] = verdicts(result)
    print(json.dumps(result, indent=1))  # noqa: T201
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    with (ROOT / "docs" / "benchmarks.md").open("a", encoding="utf-8") as f:
        f.write(line(result))


if __name__ == "__main__":
    with threadpool_limits(limits=1, user_api="blas"):  # as in the service (serving/app.py)
        main()
