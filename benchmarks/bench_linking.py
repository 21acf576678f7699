"""Case-linking lookup latency and memory with 10k and 100k stored letters.

Stored letters: the TipDM messages (real citizen posts) plus generated ones made by
recombining their sentences under invented place and person names, so that places,
names and wording overlap as they do in a real store. Letter vectors are random unit
vectors of the encoder's width: the encoder's time is measured separately
(bench_inference.py); here only the lookup counts. numpy's BLAS runs on ``--blas-threads``
threads and the cosine search is split over ``--search-threads`` (the service's settings
TRIAGE_BLAS_THREADS and TRIAGE_SEARCH_THREADS; defaults 1 and 2, as there). Also the
cost per letter of rebuilding the index from the store at start-up, with the content words
stored with each letter and without (tagging every letter again).

Usage: python benchmarks/bench_linking.py [--sizes 10000 100000] [--queries 300]
       [--blas-threads 1] [--search-threads 2]
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
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from model.keyfields import KeyFields, Person, content_words, extract_key_fields, tagged_words
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


@cache
def sentence_words(sentence: str) -> frozenset[str]:
    return content_words(sentence)


def generated_entry(i: int, sentences: list[str], fields: list[KeyFields], rng: random.Random,
                    start: datetime) -> Entry:
    """A letter recombined from real sentences, under invented places and people. Its
    content words are its sentences' (tagged once each), given as the store gives them
    to an index rebuilt at start-up."""
    chosen = rng.sample(sentences, k=rng.randint(2, 6))
    text = "。".join(chosen)
    base = rng.choice(fields)
    village, town = _name(rng, 2) + "村", _name(rng, 2) + "镇"
    key = KeyFields(places=[town, village, *base.places[:1]],
                    people=[Person(rng.choice(SURNAMES) + _name(rng, 2), p.role) for p in base.people[:2]],
                    amounts=base.amounts[:2], dates=base.dates[:1])
    vector = np.random.default_rng(i).normal(size=WIDTH).astype(np.float32)
    return Entry(letter_id=f"g{i}", text=text, key_fields=key, vector=vector,
                 sector=rng.choice(["land_acquisition", "other", "social_assistance"]),
                 received_at=start + timedelta(minutes=i),
                 known_words=frozenset().union(*map(sentence_words, chosen)))


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
    parser.add_argument("--search-threads", type=int, nargs="+", default=[2],
                        help="as TRIAGE_SEARCH_THREADS; several: each measured on the same index")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "linking.json")
    args = parser.parse_args()
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        run(args)


def rebuild_costs(stored: list[Entry]) -> dict[str, float]:
    """Per letter, what an index rebuilt from the store at start-up pays to make its
    entries: tagging every letter's words again, or reading them as stored."""
    costs = {}
    for how, words in (("tagging_again", lambda e: None), ("stored_words", lambda e: e.words)):
        tagged_words.cache_clear()
        began = time.perf_counter()
        for e in stored:
            Entry(letter_id=e.letter_id, text=e.text, key_fields=e.key_fields, vector=e.vector,
                  sector=e.sector, received_at=e.received_at, known_words=words(e))
        costs[how] = (time.perf_counter() - began) * 1000 / len(stored)
    return costs


def run(args: argparse.Namespace) -> None:
    texts = load_messages(7200)
    began = time.perf_counter()
    real = [Entry(letter_id=f"t{i}", text=t, key_fields=extract_key_fields(t),
                  vector=np.random.default_rng(10**6 + i).normal(size=WIDTH).astype(np.float32),
                  sector="other", received_at=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=i))
            for i, t in enumerate(texts)]
    extraction_ms = (time.perf_counter() - began) * 1000 / len(texts)
    rebuild_ms = rebuild_costs(real[:2000])
    sentences = [s for t in texts for s in t.replace("！", "。").split("。") if 8 <= len(s) <= 80]
    query_rng = random.Random(99)
    queries = [Entry(letter_id=f"q{i}", text=e.text, key_fields=e.key_fields,
                     vector=e.vector + np.random.default_rng(i).normal(scale=0.3, size=WIDTH),
                     sector=e.sector, received_at=e.received_at)
               for i, e in enumerate(query_rng.sample(real, args.queries))]
    results = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": f"{platform.processor() or platform.machine()}, "
                          f"{__import__('os').cpu_count()} cores",
               "blas_threads": args.blas_threads, "search_threads": args.search_threads,
               "key_field_extraction_ms_per_letter": extraction_ms,
               "rebuild_ms_per_letter": rebuild_ms, "sizes": {}}
    for size in args.sizes:
        before = _rss_mb()
        began = time.perf_counter()
        index = build(size, real, sentences, seed=size)
        build_s = time.perf_counter() - began
        # resident memory the index added (tracemalloc would slow the build several-fold)
        result: dict[str, Any] = {"build_s": build_s, "index_mb": _rss_mb() - before,
                                  "process_max_rss_mb": resource.getrusage(
                                      resource.RUSAGE_SELF).ru_maxrss / 1024, "by_search_threads": {}}
        for threads in args.search_threads:
            index.use_search_threads(threads)
            result["by_search_threads"][str(threads)] = measure(index, queries)
        results["sizes"][str(size)] = result
        print(size, json.dumps(result))  # noqa: T201  (a script's output)
        del index
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    line = (f"| {results['date'][:10]} | bench_linking | {results['machine']}, BLAS threads "
            f"{args.blas_threads} | index rebuilt from the store: "
            f"{rebuild_ms['tagging_again']:.1f} ms a letter tagging its words again, "
            f"{rebuild_ms['stored_words']:.1f} ms with its stored words; " + "; ".join(
        f"{n} letters (index {r['index_mb']:.0f} MB, built in {r['build_s']:.0f} s): " + ", ".join(
            f"search threads {t}: p50 {m['p50_ms']:.1f} ms, p99 {m['p99_ms']:.1f} ms"
            for t, m in r["by_search_threads"].items())
        for n, r in results["sizes"].items()) + " |\n")
    with (ROOT / "docs" / "benchmarks.md").open("a", encoding="utf-8") as f:
        f.write(line)


if __name__ == "__main__":
    main()
