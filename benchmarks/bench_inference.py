"""Inference speed of the classifier, PyTorch fp32 against ONNX Runtime int8, next to what
the machine can do at best.

Letters: the dev set (150 labelled letters, median ~140 characters) and TipDM messages
(real citizen posts, title and text, median ~225 characters; long ones are read whole in
overlapping windows, as in service). Each runtime is timed end to end (tokenisation,
encoder, pooling, heads) at batch 1 (letter by letter) and in length-sorted batches (8 and
32 letters by default: on 2 cores batches of 8 ran fastest, larger ones leave the caches).

The limit: encoder FLOPs per letter (2 × non-embedding weights × tokens, plus attention)
from the model's config, and the FLOP/s two cores reach on a large matrix product (fp32 in
PyTorch, int8 in ONNX Runtime); their ratio is the most letters per second possible.

Usage: python benchmarks/bench_inference.py [--model models/letters] [--messages 1000]
       [--batch-sizes 1 8 32]
Needs MODEL/encoder.int8.onnx (triage export-onnx --model MODEL). Writes
reports/bench_inference.json and a line per data set in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from bench_linking import load_messages

from model.inference import Classifier, Runtime, length_batches
from model.labels import LabelSchema
from training.data import load_letters
from training.evaluate import evaluate_classifier, headline

ROOT = Path(__file__).resolve().parents[1]
DEVSET = ROOT.parent / "shared" / "devset" / "letters.jsonl"
TARGETS = {"int8_speedup": 2.5, "devset_letters_per_s": 100.0, "tipdm_letters_per_s": 50.0}
WARMUP = 8


def _percentiles(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 95, 99)}


def time_runtime(classifier: Classifier, texts: list[str],
                 sizes: Sequence[int]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Letters/s and latency per batch of one runtime at each batch size (batches of letters
    of similar length), and its answers (from the last batch size, outside the timing)."""
    classifier.run(texts[:WARMUP], batch_size=WARMUP)
    result: dict[str, Any] = {}
    answers: list[dict[str, Any]] = [{} for _ in texts]
    for size in sizes:
        times = []
        groups = list(length_batches([len(t) for t in texts], size))
        for group in groups:
            began = time.perf_counter()
            logits, _ = classifier.run([texts[i] for i in group], batch_size=size)
            times.append(time.perf_counter() - began)
            if size == sizes[-1]:
                for i, answer in zip(group, classifier.answers(classifier.probabilities(logits)),
                                     strict=True):
                    answers[i] = answer
        result[f"batch_{size}"] = {"batch_size": size, "letters_per_s": len(texts) / sum(times),
                                   "batches": len(groups), **_percentiles(times)}
    return result, answers


def encoder_flops(config: dict[str, Any], tokens: int) -> float:
    """FLOPs of one pass of a BERT encoder over one window of ``tokens`` tokens: the weight
    products (2 per weight per token) and the attention scores and mixing (4 · n² · hidden
    per layer). Embedding look-ups, softmax and norms are left out (a few percent)."""
    hidden, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    weights = layers * (4 * hidden * hidden + 2 * hidden * inner)
    return 2.0 * weights * tokens + 4.0 * layers * tokens * tokens * hidden


def letter_flops(classifier: Classifier, text: str) -> float:
    """Encoder FLOPs of one letter: every window it is cut into, padding excluded."""
    chunks = classifier.tokenizer([text])
    return sum(encoder_flops(classifier.model.config.encoder, int(n))
               for n in chunks.attention_mask.sum(dim=1))


def _fastest(product: Callable[[], object], repeats: int) -> float:
    product()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        product()
        times.append(time.perf_counter() - began)
    return min(times)


def fp32_gflops(size: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a large fp32 matrix product in PyTorch on this machine's threads (the
    fastest of ``repeats``)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / _fastest(lambda: a @ b, repeats) / 1e9


def int8_gops(size: int = 2048, repeats: int = 10) -> float:
    """GOP/s of a large uint8 × int8 matrix product (MatMulInteger) in ONNX Runtime, 2 threads
    (the fastest of ``repeats``)."""
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "matmul",
        [helper.make_tensor_value_info("a", onnx.TensorProto.UINT8, [size, size]),
         helper.make_tensor_value_info("b", onnx.TensorProto.INT8, [size, size])],
        [helper.make_tensor_value_info("c", onnx.TensorProto.INT32, [size, size])])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"a": rng.integers(0, 255, (size, size), dtype=np.uint8),
            "b": rng.integers(-127, 127, (size, size), dtype=np.int8)}
    return 2 * size**3 / _fastest(lambda: session.run(None, feed), repeats) / 1e9


def accuracy(classifiers: dict[str, Classifier], schema: LabelSchema) -> dict[str, Any]:
    """Headline scores of each runtime on the dev set, and int8 minus fp32."""
    dataset, _ = load_letters([DEVSET], schema)
    scores = {name: headline(evaluate_classifier(c, dataset)["heads"]) for name, c in classifiers.items()}
    torch_scores, int8_scores = scores[Runtime.TORCH], scores[Runtime.ONNX_INT8]
    return {**scores, "delta": {k: int8_scores[k] - torch_scores[k] for k in torch_scores}}


def agreement(first: list[dict[str, Any]], second: list[dict[str, Any]],
              heads: Sequence[str]) -> dict[str, float]:
    """Share of letters given the same answer by two runtimes, per head."""
    return {head: float(np.mean([a[head] == b[head] for a, b in zip(first, second, strict=True)]))
            for head in heads}


def summary(data: dict[str, Any], target: float) -> dict[str, Any]:
    """Each runtime at its fastest batch size, against the targets and the ceiling."""
    best = {r: max(sizes.values(), key=lambda m: m["letters_per_s"]) for r, sizes in data["runtimes"].items()}
    fp32, int8 = best[Runtime.TORCH]["letters_per_s"], best[Runtime.ONNX_INT8]["letters_per_s"]
    ceiling = data["ceiling_letters_per_s"]
    return {"fastest_batch": {r: m["batch_size"] for r, m in best.items()},
            "letters_per_s": {Runtime.TORCH: fp32, Runtime.ONNX_INT8: int8},
            "int8_speedup": int8 / fp32,
            "int8_speedup_met": int8 / fp32 >= TARGETS["int8_speedup"],
            "target_letters_per_s": target, "target_met": int8 >= target,
            "share_of_ceiling": {Runtime.TORCH: fp32 / ceiling["fp32"],
                                 Runtime.ONNX_INT8: int8 / ceiling["int8"]}}


def _line(date: str, machine: str, name: str, data: dict[str, Any]) -> str:
    fp32, int8 = data["runtimes"][Runtime.TORCH], data["runtimes"][Runtime.ONNX_INT8]
    best, ceiling = data["summary"], data["ceiling_letters_per_s"]

    def rates(r: dict[str, Any]) -> str:
        return " / ".join(f"{m['letters_per_s']:.1f}" for m in r.values())

    def latency(r: dict[str, Any]) -> str:
        return "; ".join(f"batch {m['batch_size']} {m['p50_ms']:.0f} / {m['p95_ms']:.0f} / "
                         f"{m['p99_ms']:.0f}" for m in r.values())

    sizes = " / ".join(str(m["batch_size"]) for m in int8.values())
    verdict = {True: "met", False: "missed"}
    return (f"| {date} | bench_inference ({name}: {data['letters']} letters, median "
            f"{data['median_chars']} chars = {data['median_letter_gflop']:.2f} GFLOP, mean "
            f"{data['mean_letter_gflop']:.2f} GFLOP per letter) | {machine} | letters/s at batch "
            f"{sizes}: fp32 PyTorch {rates(fp32)}, onnx-int8 {rates(int8)}; latency p50 / p95 / p99 "
            f"ms (per batch): fp32 {latency(fp32)}, int8 {latency(int8)}; fastest int8 / fastest "
            f"fp32 {best['int8_speedup']:.2f}× (target {TARGETS['int8_speedup']}×: "
            f"{verdict[best['int8_speedup_met']]}); int8 {best['letters_per_s'][Runtime.ONNX_INT8]:.1f}"
            f"/s (target {best['target_letters_per_s']:.0f}/s: {verdict[best['target_met']]}); "
            f"ceiling at the measured peak {ceiling['fp32']:.0f}/s fp32, {ceiling['int8']:.0f}/s "
            f"int8 (reached {best['share_of_ceiling'][Runtime.TORCH]:.0%}, "
            f"{best['share_of_ceiling'][Runtime.ONNX_INT8]:.0%}) |\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "letters")
    parser.add_argument("--messages", type=int, default=1000, help="TipDM messages timed")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_inference.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    classifiers = {r: Classifier.load(args.model, r) for r in (Runtime.TORCH, Runtime.ONNX_INT8)}
    reference = classifiers[Runtime.TORCH]
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "model": reference.version, "torch_threads": torch.get_num_threads(),
        "onnxruntime": ort.__version__, "torch": torch.__version__,
        "peak": {"fp32_gflops": fp32_gflops(), "int8_gops": int8_gops()},
        "targets": TARGETS, "data": {},
    }
    dev, _ = load_letters([DEVSET], reference.schema)
    sets = {"dev set": (list(dev["text"]), TARGETS["devset_letters_per_s"]),
            "TipDM": (load_messages(args.messages), TARGETS["tipdm_letters_per_s"])}
    for name, (texts, target) in sets.items():
        flops = [letter_flops(reference, t) for t in texts]
        median = int(np.argsort([len(t) for t in texts])[len(texts) // 2])
        mean_gflop = float(np.mean(flops)) / 1e9
        data = results["data"][name] = {
            "letters": len(texts), "median_chars": len(texts[median]),
            "median_letter_gflop": flops[median] / 1e9, "mean_letter_gflop": mean_gflop,
            "ceiling_letters_per_s": {"fp32": results["peak"]["fp32_gflops"] / mean_gflop,
                                      "int8": results["peak"]["int8_gops"] / mean_gflop},
            "runtimes": {}}
        answers = {}
        for runtime, classifier in classifiers.items():
            data["runtimes"][runtime], answers[runtime] = time_runtime(classifier, texts,
                                                                       args.batch_sizes)
        data["int8_agrees_with_fp32"] = agreement(answers[Runtime.TORCH], answers[Runtime.ONNX_INT8],
                                                  list(reference.schema.heads))
        data["summary"] = summary(data, target)
        print(name, json.dumps(data, indent=1))  # noqa: T201  (a script's output)
    results["devset_scores"] = accuracy(classifiers, reference.schema)
    print(json.dumps(results["devset_scores"], indent=1))  # noqa: T201
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    machine = (f"{results['machine']}, fp32 {results['peak']['fp32_gflops']:.0f} GFLOP/s, "
               f"int8 {results['peak']['int8_gops']:.0f} GOP/s measured")
    delta = ", ".join(f"{k} {v:+.4f}" for k, v in results["devset_scores"]["delta"].items()
                      if k.endswith((".macro_f1", ".f1")))
    with (ROOT / "docs" / "benchmarks.md").open("a", encoding="utf-8") as f:
        for name in sets:
            f.write(_line(results["date"][:10], machine, name, results["data"][name]))
        f.write(f"| {results['date'][:10]} | bench_inference (dev-set accuracy, int8 − fp32) | "
                f"{results['machine']} | {delta}; full numbers in "
                f"reports/bench_inference.json |\n")


if __name__ == "__main__":
    main()
