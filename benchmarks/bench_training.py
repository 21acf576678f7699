"""Training speed: wall time, seconds per epoch and optimiser steps per second of the
fine-tune recorded in MODEL/run.json, and optionally a short timed run.

run.json counts each epoch's ``seconds`` from the start of the run, so an epoch's share
includes its validation pass (and the first one the loading of data and model).

With --steps N, two short runs with the full run's arguments (N/2 and N optimiser steps,
into a temporary directory) are timed; the difference of their wall times is the time of
N/2 training steps alone: loading, validation, calibration and saving are the same in both,
and with the same seed both take the same first batches.

Usage: python benchmarks/bench_training.py [--model models/letters] [--steps 20]
Writes reports/bench_training.json and a line in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.finetune import TrainingArguments, train

ROOT = Path(__file__).resolve().parents[1]


def epochs(run: dict[str, Any]) -> list[dict[str, float]]:
    """Seconds, steps and steps/s of each epoch of a recorded run."""
    rows, seconds, step = [], 0.0, 0
    for h in run["history"]:
        took, steps = h["seconds"] - seconds, h["step"] - step
        rows.append({"epoch": h["epoch"], "seconds": took, "steps": steps, "steps_per_s": steps / took})
        seconds, step = h["seconds"], h["step"]
    return rows


def recorded_arguments(run: dict[str, Any]) -> TrainingArguments:
    """The arguments of a recorded run, relative paths taken from the project root."""
    given = dict(run["arguments"])
    local = ROOT / given["base_model"]
    given["base_model"] = str(local) if local.exists() else given["base_model"]
    given["data"] = [ROOT / p for p in given["data"]]
    given["labels"] = ROOT / given["labels"]
    return TrainingArguments(**given)


def timed_steps(arguments: TrainingArguments, steps: int) -> dict[str, float]:
    """Seconds of ``steps // 2`` optimiser steps, from runs of ``steps // 2`` and ``steps``."""
    walls = {}
    with tempfile.TemporaryDirectory() as scratch:
        for n in (steps // 2, steps):
            began = time.perf_counter()
            train(replace(arguments, out=Path(scratch) / f"steps-{n}", max_steps=n, epochs=1))
            walls[n] = time.perf_counter() - began
    took = walls[steps] - walls[steps // 2]
    return {"short_run_seconds": walls[steps // 2], "long_run_seconds": walls[steps],
            "steps": steps - steps // 2, "seconds": took, "steps_per_s": (steps - steps // 2) / took,
            "letters_per_s": (steps - steps // 2) * arguments.batch_size / took}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "letters")
    parser.add_argument("--steps", type=int, default=0, help="also time this many steps (even, >= 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_training.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.steps and (args.steps < 2 or args.steps % 2):
        parser.error(f"--steps must be even and >= 2, found {args.steps}")
    if args.steps and subprocess.run(["pgrep", "-f", "triage train"], capture_output=True).returncode == 0:
        parser.error("a 'triage train' process is running: a timed run now would share the CPU "
                     "with it; wait for it to finish")
    run = json.loads((args.model / "run.json").read_text(encoding="utf-8"))
    arguments = recorded_arguments(run)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "model": run["model_version"], "letters": run["letters"],
        "batch_size": arguments.batch_size, "wall_seconds": run["wall_seconds"], "epochs": epochs(run)}
    if args.steps:
        results["timed"] = timed_steps(arguments, args.steps)
    print(json.dumps(results, indent=1))  # noqa: T201  (a script's output)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    figures = (f"{run['model_version']}: {run['letters']['train']} training letters, batch "
               f"{arguments.batch_size}, windows of {arguments.window_tokens} tokens; wall "
               f"{run['wall_seconds'] / 60:.1f} min; " + "; ".join(
                   f"epoch {e['epoch']} {e['seconds']:.0f} s, {e['steps']} steps, "
                   f"{e['steps_per_s']:.2f} steps/s (validation included)" for e in results["epochs"]))
    if args.steps:
        timed = results["timed"]
        figures += (f"; timed on {Path(arguments.base_model).name}: {timed['steps']} steps alone in "
                    f"{timed['seconds']:.1f} s, {timed['steps_per_s']:.2f} steps/s "
                    f"({timed['letters_per_s']:.1f} letters/s)")
    with (ROOT / "docs" / "benchmarks.md").open("a", encoding="utf-8") as f:
        f.write(f"| {results['date'][:10]} | bench_training | {results['machine']} | {figures} |\n")


if __name__ == "__main__":
    main()
