"""The ``triage`` command line: corpus checks, baseline, training, evaluation, prediction,
ONNX export and case linking."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Annotated

import datasets
import typer

from model.inference import WEIGHTS_FILE, Classifier, ModelLoadError, Runtime, file_sha256
from model.labels import LabelSchema, LabelSchemaError
from model.linking import LINK_PRECISION, LINKER_FILE, PairScorer
from model.matter import MATTER_DIR, MatterEncoder, MatterEncoderError
from model.onnx_runtime import INT8_FILE, OnnxModelError, export_onnx
from serving import cli as serving_cli
from training.baseline import TfidfBaseline
from training.corpus import check_corpus, format_report
from training.data import JSON_SUFFIXES, DataError, load_letters, split_dataset
from training.evaluate import evaluate_classifier, headline, score_all
from training.finetune import TrainingArguments, train
from training.linking import (
    entries_for,
    evaluate_linking,
    fit_linker,
    fit_scorer,
    link_all,
    score_matters,
)
from training.matter import MatterTraining
from training.report import EVALUATIONS, length_histogram_png, write_evaluation, write_model_card

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LABELS = ROOT / "labels.yaml"
DEFAULT_DEVSET = ROOT.parent / "shared" / "devset" / "letters.jsonl"
DEFAULT_BASE_MODEL = ROOT / ".cache" / "base-models" / "m3e-small"

app = typer.Typer(help="Triage of Chinese complaint letters (信访举报件).", no_args_is_help=True)
data_app = typer.Typer(help="Check corpus files.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(serving_cli.keys_app, name="keys")
app.command("serve")(serving_cli.serve)
app.command("reencode")(serving_cli.reencode)
app.command("export")(serving_cli.export)

LabelsOption = Annotated[Path, typer.Option("--labels", help="labels file (heads and text fields)")]
RuntimeOption = Annotated[Runtime, typer.Option(
    help="where the encoder runs: torch (fp32) or onnx-int8 (after 'triage export-onnx')")]


def _data_files(paths: list[Path]) -> list[Path]:
    """Files named, and the .jsonl/.csv files inside folders named."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted([*path.glob("*.jsonl"), *path.glob("*.csv")])
            if not found:
                raise typer.BadParameter(f"folder {path} holds no .jsonl or .csv file")
            files += found
        else:
            files.append(path)
    return files


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    datasets.disable_progress_bars()


@data_app.command("check")
def data_check(
    paths: Annotated[list[Path], typer.Argument(help="corpus files or folders")],
    labels: LabelsOption = DEFAULT_LABELS,
    against: Annotated[
        Path | None, typer.Option(help="evaluation letters that must not leak into the corpus")
    ] = None,
    histogram: Annotated[Path | None, typer.Option(help="write a length histogram PNG here")] = None,
) -> None:
    """Count the corpus against its minimums; exit 1 if one is missed or a problem is found."""
    try:
        schema = LabelSchema.from_yaml(labels)
        reference_path = against or (DEFAULT_DEVSET if DEFAULT_DEVSET.is_file() else None)
        reference = []
        if reference_path is not None:
            reference_set, _ = load_letters([reference_path], schema, require_labels=False)
            reference = list(reference_set["text"])
        report = check_corpus(_data_files(paths), schema, reference)
    except (LabelSchemaError, DataError) as err:
        raise _fail(str(err)) from None
    typer.echo(format_report(report))
    if histogram is not None:
        length_histogram_png(report.lengths, histogram)
    if reference_path is None:
        typer.echo("note: no evaluation set found to check for leaks (use --against FILE)")
    if not report.ok:
        raise typer.Exit(code=1)


@app.command()
def baseline(
    train: Annotated[list[Path], typer.Option(help="training files or folders")],
    evaluation: Annotated[
        Path | None, typer.Option("--eval", help="evaluation file; default: hold out a share")
    ] = None,
    holdout: Annotated[float, typer.Option(help="share held out when --eval is absent")] = 0.2,
    labels: LabelsOption = DEFAULT_LABELS,
    out: Annotated[Path | None, typer.Option(help="write the scores here as JSON")] = None,
    seed: int = 42,
) -> None:
    """Train the TF-IDF baseline and score it on an evaluation file or a held-out share."""
    try:
        schema = LabelSchema.from_yaml(labels)
        train_set, _ = load_letters(_data_files(train), schema)
        if evaluation is None:
            train_set, eval_set = split_dataset(train_set, schema, holdout, seed)
        else:
            eval_set, _ = load_letters([evaluation], schema)
    except (LabelSchemaError, DataError, ValueError) as err:
        raise _fail(str(err)) from None
    model = TfidfBaseline(schema).fit(train_set)
    scores = score_all(schema, {h: eval_set[h] for h in schema.heads},
                       model.predict(eval_set["text"]))
    summary = {"train_letters": len(train_set), "eval_letters": len(eval_set),
               "eval": str(evaluation) if evaluation else f"held-out {holdout:.0%}",
               **headline(scores)}
    for key, value in summary.items():
        typer.echo(f"{key:<28} {value:.4f}" if isinstance(value, float) else f"{key:<28} {value}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"summary": summary, "scores": scores}, ensure_ascii=False,
                                  indent=2), encoding="utf-8")


@data_app.command("split")
def data_split(
    path: Annotated[Path, typer.Argument(help="labelled JSONL file")],
    train_out: Annotated[Path, typer.Option("--train-out", help="where the rest goes")],
    test_out: Annotated[Path, typer.Option("--test-out", help="where the held-out share goes")],
    fraction: Annotated[float, typer.Option(help="held-out share")] = 0.2,
    labels: LabelsOption = DEFAULT_LABELS,
    seed: int = 42,
) -> None:
    """Split a labelled JSONL file into a stratified held-out share and the rest (rows unchanged)."""
    if path.suffix.lower() not in JSON_SUFFIXES:
        raise _fail(f"data split copies JSONL rows unchanged; {path} is not .jsonl: convert it first")
    try:
        schema = LabelSchema.from_yaml(labels)
        dataset, _ = load_letters([path], schema)
        rest, held_out = split_dataset(dataset, schema, fraction, seed)
    except (LabelSchemaError, DataError, ValueError) as err:
        raise _fail(str(err)) from None
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_id = {json.loads(line)["id"]: line for line in lines}
    for ids, target in ((rest["id"], train_out), (held_out["id"], test_out)):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(by_id[i] + "\n" for i in ids), encoding="utf-8")
    typer.echo(f"{len(rest)} letters to {train_out}, {len(held_out)} to {test_out}")


@app.command("train")
def train_command(
    data: Annotated[list[Path], typer.Option(help="labelled files or folders")],
    out: Annotated[Path, typer.Option(help="model directory to write")],
    labels: LabelsOption = DEFAULT_LABELS,
    base_model: Annotated[str, typer.Option(help="local directory or hub id of the encoder")] = str(
        DEFAULT_BASE_MODEL),
    epochs: int = 2,
    max_steps: Annotated[int | None, typer.Option(help="stop after this many steps")] = None,
    batch_size: int = 16,
    learning_rate: float = 2e-4,
    window_tokens: int = 256,
    window_stride: int = 64,
    validation_fraction: float = 0.15,
    validation_ids: Annotated[str | None, typer.Option(
        help="regular expression over letter ids: those letters (e.g. whole writers, "
             "'^(C7|RB)-') are the validation split instead of a stratified fraction")] = None,
    patience: int = 2,
    train_windows: Annotated[int, typer.Option(help="windows of a long letter per step")] = 3,
    review_target: float = 0.95,
    seed: int = 42,
    skip_invalid: Annotated[bool, typer.Option(help="skip bad rows and report them")] = False,
    lexical: Annotated[bool, typer.Option(
        help="blend in character n-gram heads, weighted on the validation split")] = True,
    bf16: Annotated[bool, typer.Option(
        help="bfloat16 autocast for training steps where the CPU has native bfloat16")] = True,
) -> None:
    """Fine-tune the encoder with one head per labels-file head, calibrate, and save."""
    try:
        args = TrainingArguments(
            data=_data_files(data), out=out, labels=labels, base_model=base_model, epochs=epochs,
            max_steps=max_steps, batch_size=batch_size, learning_rate=learning_rate,
            window_tokens=window_tokens, window_stride=window_stride,
            validation_fraction=validation_fraction, validation_ids=validation_ids,
            patience=patience, train_windows=train_windows,
            review_target=review_target, seed=seed, skip_invalid=skip_invalid, lexical=lexical,
            bf16=bf16)
        record = train(args)
    except (LabelSchemaError, DataError, ValueError, OSError) as err:
        raise _fail(str(err)) from None
    calibration = record["calibration"]
    typer.echo(f"model {record['model_version']} in {out} after {record['wall_seconds']:.0f} s; "
               f"validation: {calibration['validation_review_share']:.1%} to review, "
               f"{calibration['validation_kept_accuracy']:.1%} right among the rest")


@app.command()
def predict(
    model: Annotated[Path, typer.Option(help="model directory")],
    input_path: Annotated[Path, typer.Option("--input", help="JSONL/CSV letters (id, text)")],
    output: Annotated[Path, typer.Option(help="JSONL answers, one line per input letter")],
    batch_size: int = 32,
    skip_invalid: Annotated[bool, typer.Option(help="skip bad rows and report them")] = False,
    runtime: RuntimeOption = Runtime.TORCH,
) -> None:
    """Predict every head for each letter of a file."""
    try:
        classifier = Classifier.load(model, runtime)
        dataset, report = load_letters([input_path], classifier.schema, require_labels=False,
                                       skip_invalid=skip_invalid)
    except (ModelLoadError, DataError) as err:
        raise _fail(str(err)) from None
    answers = classifier.predict(list(dataset["text"]), batch_size=batch_size, progress=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as f:
        for letter_id, answer in zip(dataset["id"], answers, strict=True):
            f.write(json.dumps({"id": letter_id, **answer}, ensure_ascii=False) + "\n")
    review = sum(a["needs_review"] for a in answers)
    typer.echo(f"{len(answers)} letters to {output} ({review} need review, "
               f"{len(report.skipped)} rows skipped)")


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option(help="model directory")],
    data: Annotated[Path, typer.Option(help="labelled evaluation file (never trained on)")],
    out: Annotated[Path | None, typer.Option(
        help="report folder; default MODEL/evaluations/<data file name>, with -<runtime> "
             "appended for a runtime other than torch")] = None,
    baseline_train: Annotated[list[Path] | None, typer.Option(
        help="train the TF-IDF baseline on these files; default: the model's training data")] = None,
    baseline: Annotated[bool, typer.Option(help="score the TF-IDF baseline side by side")] = True,
    runtime: RuntimeOption = Runtime.TORCH,
) -> None:
    """Score a model on a labelled file: report.json, report.md, charts; update the model card."""
    try:
        classifier = Classifier.load(model, runtime)
        dataset, _ = load_letters([data], classifier.schema)
        baseline_predictions = None
        if baseline:
            run = json.loads((model / "run.json").read_text(encoding="utf-8"))
            files = _data_files(baseline_train or [Path(d["path"]) for d in run["data"]])
            train_set, _ = load_letters(files, classifier.schema, skip_invalid=True)
            fitted = TfidfBaseline(classifier.schema).fit(train_set)
            baseline_predictions = fitted.predict(list(dataset["text"]))
    except (ModelLoadError, DataError, LabelSchemaError, OSError, ValueError) as err:
        raise _fail(str(err)) from None
    evaluation = evaluate_classifier(classifier, dataset, baseline_predictions)
    name = data.stem if runtime is Runtime.TORCH else f"{data.stem}-{runtime}"
    target = out or model / EVALUATIONS / name
    report = write_evaluation(evaluation, classifier.schema, target, str(data))
    write_model_card(model)
    for key, value in headline(evaluation["heads"]).items():
        base = (evaluation["baseline"] or {}).get(key.split(".")[0], {}).get(key.split(".")[1])
        typer.echo(f"{key:<28} {value:.4f}" + (f"   (baseline {base:.4f})" if base is not None else ""))
    review = evaluation["review"]
    typer.echo(f"review: {review['review_share']:.1%} of letters; "
               f"kept letters right {(review['kept_accuracy'] or 0):.1%}; report {report}")


@app.command("export-onnx")
def export_onnx_command(
    model: Annotated[Path, typer.Option(help="model directory (the graphs are written into it)")],
) -> None:
    """Export the encoder to MODEL/encoder.onnx and its int8 quantisation to
    MODEL/encoder.int8.onnx (for --runtime onnx-int8); the matter encoder's likewise into
    MODEL/matter/ when there is one."""
    try:
        classifier = Classifier.load(model)
        paths = list(export_onnx(classifier.model.encoder, classifier.tokenizer.max_length, model,
                                 file_sha256(model / WEIGHTS_FILE)))
        if (model / MATTER_DIR).is_dir():
            paths += MatterEncoder.load(model / MATTER_DIR).export_onnx(model / MATTER_DIR)
    except (ModelLoadError, MatterEncoderError, OnnxModelError) as err:
        raise _fail(str(err)) from None
    for path in paths:
        typer.echo(f"{path} ({path.stat().st_size / 2**20:.1f} MB)")


@app.command("fit-linker")
def fit_linker_command(
    model: Annotated[Path, typer.Option(help="model directory (linking.json and matter/ go in it)")],
    data: Annotated[list[Path], typer.Option(help="letters with 'group' fields, e.g. data/")],
    precision: Annotated[float, typer.Option(
        help="links must be right this often on the scorer's pairs")] = LINK_PRECISION,
    matter: Annotated[bool, typer.Option(
        help="train a matter encoder for the letter vectors (else: key fields and wording only)")] = True,
    matter_steps: Annotated[int, typer.Option(help="matter-encoder training steps")] = 60,
    reuse_matter: Annotated[bool, typer.Option(
        help="keep MODEL/matter as it is and refit only the scorer (on its held-out groups)")] = False,
    base_model: Annotated[str | None, typer.Option(
        help="encoder to tune for matters (default: the model's own base)")] = None,
) -> None:
    """Fit case linking on grouped letters: a matter encoder (MODEL/matter) trained on 70% of
    the groups and the pair scorer (MODEL/linking.json) fitted on the other 30%."""
    try:
        classifier = Classifier.load(model)
        dataset, _ = load_letters(_data_files(data), classifier.schema, require_labels=False)
        if matter:
            kept = MatterEncoder.load(model / MATTER_DIR) if reuse_matter else None
            base = None if kept else base_model or _recorded_base_model(model)
            fitted = fit_linker(dataset, classifier, MatterTraining(steps=matter_steps), precision,
                                base_model=base, encoder=kept)
            scorer, entries, groups = fitted.scorer, fitted.entries, fitted.groups
        else:
            entries, groups = entries_for(dataset, classifier), list(dataset["group"])
            scorer = fit_scorer(entries, groups, precision)
    except (ModelLoadError, MatterEncoderError, DataError, ValueError, OSError) as err:
        raise _fail(str(err)) from None
    scorer.save(model / LINKER_FILE)
    shutil.rmtree(model / MATTER_DIR, ignore_errors=True)
    if matter:
        fitted.encoder.save(model / MATTER_DIR)
        if (model / INT8_FILE).is_file():  # the model runs on int8 graphs: the matter encoder too
            fitted.encoder.export_onnx(model / MATTER_DIR)
    scores = evaluate_linking(entries, groups, scorer)
    typer.echo(f"linker in {model / LINKER_FILE}{' and ' + str(model / MATTER_DIR) if matter else ''}; "
               f"on the {len(entries)} letters it was fitted on: pair precision "
               f"{scores['pair_precision']:.3f}, recall {scores['pair_recall']:.3f}")


def _recorded_base_model(model: Path) -> str:
    run = json.loads((model / "run.json").read_text(encoding="utf-8"))
    return str(run["arguments"]["base_model"])


@app.command("evaluate-linking")
def evaluate_linking_command(
    data: Annotated[Path, typer.Option(help="letters; with 'group' fields they are scored")],
    model: Annotated[Path, typer.Option(help="model directory with linking.json")],
    out: Annotated[Path, typer.Option(help="report JSON")] = Path("reports/linking.json"),
    sample: Annotated[int, typer.Option(help="linked pairs to show for reading")] = 20,
) -> None:
    """Link letters in file order and score the matters against 'group' (or describe them)."""
    try:
        classifier = Classifier.load(model)
        scorer = PairScorer.load(model / LINKER_FILE) if (model / LINKER_FILE).is_file() else None
        dataset, _ = load_letters([data], classifier.schema, require_labels=False, skip_invalid=True)
    except (ModelLoadError, DataError, ValueError) as err:
        raise _fail(str(err)) from None
    if scorer is None:
        raise _fail(f"{model / LINKER_FILE} is missing: run 'triage fit-linker' first")
    try:
        matter = MatterEncoder.load(model / MATTER_DIR) if (model / MATTER_DIR).is_dir() else None
    except MatterEncoderError as err:
        raise _fail(str(err)) from None
    entries = entries_for(dataset, classifier, matter)
    report: dict[str, object] = {"data": str(data), "model": str(model)}
    matters, links = link_all(entries, scorer)
    if any(dataset["group"]):
        report.update(score_matters(entries, dataset["group"], matters))
    sizes = Counter(matters.values())
    texts = dict(zip(dataset["id"], dataset["text"], strict=True))
    report["matters"] = len(sizes)
    report["matters_with_several_letters"] = sum(n > 1 for n in sizes.values())
    report["largest_matters"] = [
        {"letters": n, "first": [texts[i][:60] for i, m in matters.items() if m == matter][:3]}
        for matter, n in sizes.most_common(5)]
    report["sample_links"] = [{"score": s, "shared": shared, "new": texts[a][:120],
                               "earlier": texts[b][:120]} for a, b, s, shared in links[:sample]]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    for key in ("letters", "gold_pairs", "predicted_pairs", "pair_precision", "pair_recall",
                "pair_f1", "bcubed_f1", "matters", "matters_with_several_letters"):
        if key in report:
            value = report[key]
            typer.echo(f"{key:<30} {value:.4f}" if isinstance(value, float) else f"{key:<30} {value}")


@app.command("retrain")
def retrain_command(
    store: Annotated[str, typer.Option(help="store URL holding the reviewed letters")],
    model: Annotated[Path, typer.Option(help="the model in service (replaced if the candidate wins)")],
    out: Annotated[Path, typer.Option(help="where to write the candidate")],
    base_data: Annotated[list[Path], typer.Option(help="the corpus, e.g. data/")] = [Path("data")],  # noqa: B006
    eval_file: Annotated[Path, typer.Option("--eval", help="fixed evaluation file for both models")] = (
        DEFAULT_DEVSET),
    base_model: Annotated[str | None, typer.Option(help="override the encoder")] = None,
    epochs: Annotated[int | None, typer.Option(help="override the epochs")] = None,
    max_steps: Annotated[int | None, typer.Option(help="override: stop after this many steps")] = None,
    tolerance: Annotated[float, typer.Option(
        help="a head may lose this much and still count as no worse")] = 0.0,
) -> None:
    """Merge reviewed letters with the corpus, train a candidate, compare it with the model in
    service on one evaluation file, and promote it only if it is no worse on every head."""
    from serving.letters import export_records
    from serving.store import Store, StoreError
    from training.retrain import retrain

    overrides = {k: v for k, v in {"base_model": base_model, "epochs": epochs,
                                   "max_steps": max_steps}.items() if v is not None}
    try:
        schema = Classifier.load(model).schema
        opened = Store(store, upgrade=False)
        with opened.session() as session:
            reviewed = list(export_records(session, schema))
        opened.close()
        decision = retrain(reviewed, _data_files(base_data), model, out, eval_file, overrides, tolerance)
    except (ModelLoadError, StoreError, DataError, LabelSchemaError, OSError, ValueError) as err:
        raise _fail(str(err)) from None
    for row in decision["heads"]:
        typer.echo(f"{row['head']}.{row['metric']:<10} current {row['current']:.4f}  candidate "
                   f"{row['candidate']:.4f}  {'ok' if row['no_worse'] else 'WORSE'}")
    typer.echo(("promoted: " if decision["promoted"] else "not promoted: ") + decision["reason"]
               + (f"; previous model kept in {decision['previous_model']}" if decision["promoted"] else ""))


if __name__ == "__main__":
    app()
