"""Case-linking lookup latency and memory with 10k and 100k stored letters.

Stored letters: the TipDM messages (real citizen posts) plus generated ones made by
recombining their sentences under invented place and person names, so that places,
names and wording overlap as they do in a real store. Letter vectors are random unit
vectors of the encoder's width: the encoder's time is measured separately
(bench_inference.py); here only the lookup counts. numpy's BLAS runs on ``--blas-threads``
threads (the service's setting TRIAGE_BLAS_THREADS; default 1).

Usage: python benchmarks/bench_linking.py [--sizes 10000 100000] [--queries 300] [--blas-threads 1]
Writes benchmarks/results/linking.json and a line in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from model.keyfields import KeyFields, Person, extract_key_fields
from model.linking import Entry, MatterIndex, PairScorer

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = ROOT.parent / "shared" / "external" / "tipdm2020c" / "messages_unlabelled.jsonl"
WIDTH = 512
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
SYLLABLES = "安宝昌德东峰福光广和华江金康乐林龙明宁平庆山顺泰天文祥新兴阳永裕泽中"


def _name(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(length))


def load_messages(limit: int) -> list[str]:
    texts = []
    with MESSAGES.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts.append(((row.get("title") or "") + "\n" + row["text"]).strip())
            if len(texts) >= limit:
                break
    return texts


def generated_entry(i: int, sentences: list[str], fields: list[KeyFields], rng: random.Random,
                    start: datetime) -> Entry:
    """A letter recombined from real sentences, under invented places and people."""
    text = "。".join(rng.sample(sentences, k=rng.randint(2, 6)))
    base = rng.choice(fields)
    village, town = _name(rng, 2) + "村", _name(rng, 2) + "镇"
    key = KeyFields(places=[town, village, *base.places[:1]],
                    people=[Person(rng.choice(SURNAMES) + _name(rng, 2), p.role) for p in base.people[:2]],
                    amounts=base.amounts[:2], dates=base.dates[:1])
    vector = np.random.default_rng(i).normal(size=WIDTH).astype(np.float32)
    return Entry(letter_id=f"g{i}", text=text, key_fields=key, vector=vector,
                 sector=rng.choice(["land_acquisition", "other", "social_assistance"]),
                 received_at=start + timedelta(minutes=i))


def build(size: int, real: list[Entry], sentences: list[str], seed: int) -> MatterIndex:
    rng = random.Random(seed)
    index = MatterIndex(scorer=PairScorer())
    start = datetime(2025, 1, 1, tzinfo=UTC)
    fields = [e.key_fields for e in real]
    for n in range(size):
        entry = real[n] if n < len(real) else generated_entry(n, sentences, fields, rng, start)
        index.add(entry, f"m{n}")
    return index


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure(index: MatterIndex, queries: list[Entry]) -> dict[str, float]:
    times = []
    candidates = []
    for query in queries:
        began = time.perf_counter()
        decision = index.link(query)
        times.append((time.perf_counter() - began) * 1000)
        candidates.append(len(index.candidates(query)))
        del decision
    ordered = np.sort(times)
    return {"p50_ms": float(np.percentile(ordered, 50)), "p95_ms": float(np.percentile(ordered, 95)),
            "p99_ms": float(np.percentile(ordered, 99)), "mean_candidates": float(np.mean(candidates))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--blas-threads", type=int, default=1, help="as TRIAGE_BLAS_THREADS")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "linking.json")
    args = parser.parse_args()
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        run(args)


def run(args: argparse.Namespace) -> None:
    texts = load_messages(7200)
    began = time.perf_counter()
    real = [Entry(letter_id=f"t{i}", text=t, key_fields=extract_key_fields(t),
                  vector=np.random.default_rng(10**6 + i).normal(size=WIDTH).astype(np.float32),
                  sector="other", received_at=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=i))
            for i, t in enumerate(texts)]
    extraction_ms = (time.perf_counter() - began) * 1000 / len(texts)
    sentences = [s for t in texts for s in t.replace("！", "。").split("。") if 8 <= len(s) <= 80]
    query_rng = random.Random(99)
    queries = [Entry(letter_id=f"q{i}", text=e.text, key_fields=e.key_fields,
                     vector=e.vector + np.random.default_rng(i).normal(scale=0.3, size=WIDTH),
                     sector=e.sector, received_at=e.received_at)
               for i, e in enumerate(query_rng.sample(real, args.queries))]
    results = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": f"{platform.processor() or platform.machine()}, "
                          f"{__import__('os').cpu_count()} cores",
               "blas_threads": args.blas_threads,
               "key_field_extraction_ms_per_letter": extraction_ms, "sizes": {}}
    for size in args.sizes:
        before = _rss_mb()
        began = time.perf_counter()
        index = build(size, real, sentences, seed=size)
        build_s = time.perf_counter() - began
        # resident memory the index added (tracemalloc would slow the build several-fold)
        results["sizes"][str(size)] = {**measure(index, queries), "build_s": build_s,
                                       "index_mb": _rss_mb() - before,
                                       "process_max_rss_mb": resource.getrusage(
                                           resource.RUSAGE_SELF).ru_maxrss / 1024}
        print(size, json.dumps(results["sizes"][str(size)]))  # noqa: T201  (a script's output)
        del index
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    line = (f"| {results['date'][:10]} | bench_linking | {results['machine']}, BLAS threads "
            f"{args.blas_threads} | " + "; ".join(
        f"{n} letters: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, index {r['index_mb']:.0f} MB"
        for n, r in results["sizes"].items()) + " |\n")
    with (ROOT / "docs" / "benchmarks.md").open("a", encoding="utf-8") as f:
        f.write(line)


if __name__ == "__main__":
    main()
