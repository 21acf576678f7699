"""Letters in the store: storing a classified letter, the review queue, supervisor
reviews with their audit trail, and the export of reviewed letters as training data."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from model.labels import LabelSchema
from model.linking import Decision, Entry
from serving.cases import vector_bytes
from serving.engine import Analysis
from serving.schemas import HeadOut, LabelOut, LetterIn, LetterOut, LinkOut
from serving.store import Letter, Review

EXCERPT_CHARS = 80


class LabelError(ValueError):
    """Labels that do not fit the label schema: names the head and the allowed values."""


def sector_of(schema: LabelSchema, answer: dict[str, Any]) -> str | None:
    """The answer of the schema's first ``single`` head (the letter's sector), if any."""
    single = next((n for n, h in schema.heads.items() if h.type == "single"), None)
    return answer[single] if single else None


def current_labels(schema: LabelSchema, answer: dict[str, Any]) -> dict[str, Any]:
    """The model's decisions, head by head, in the loader's form."""
    return {name: answer[name] for name in schema.heads}


def tags_for(labels: dict[str, Any]) -> str:
    """`` head:label `` for every label (``head:true``/``head:false`` for binary heads)."""
    tags = []
    for head, value in labels.items():
        values = value if isinstance(value, list) else [str(value).lower() if isinstance(value, bool)
                                                          else value]
        tags += [f"{head}:{v}" for v in values]
    return " " + " ".join(tags) + " "


def check_labels(schema: LabelSchema, given: dict[str, Any]) -> dict[str, Any]:
    """Reviewer labels checked against the schema (raises LabelError saying what is allowed)."""
    checked: dict[str, Any] = {}
    for name, value in given.items():
        head = schema.heads.get(name)
        if head is None:
            raise LabelError(f"labels.{name}: unknown head; expected one of {list(schema.heads)}")
        if head.type == "binary":
            if not isinstance(value, bool):
                raise LabelError(f"labels.{name}: expected true or false, found {value!r}")
        elif head.type == "single":
            if value not in head.label_ids:
                raise LabelError(f"labels.{name}: expected one of {head.label_ids}, found {value!r}")
        else:
            if not isinstance(value, list) or any(v not in head.label_ids for v in value):
                raise LabelError(f"labels.{name}: expected a list of {head.label_ids}, found {value!r}")
            value = [v for v in head.label_ids if v in value]  # schema order, no duplicates
        checked[name] = value
    return checked


def _head_out(schema: LabelSchema, name: str, answer: dict[str, Any]) -> HeadOut:
    head = schema.heads[name]
    if head.type == "binary":
        score = answer[f"{name}_score"]
        return HeadOut(type="binary", labels=[], scores={name: score}, value=answer[name])
    scores = answer[f"{name}_scores"]
    chosen = [answer[name]] if head.type == "single" else answer[name]
    return HeadOut(type=head.type, scores=scores, labels=[
        LabelOut(id=i, name=head.label(i).name, score=scores[i],
                 departments=list(head.label(i).departments)) for i in chosen])


def letter_out(session: Session, letter: Letter, schema: LabelSchema, with_text: bool) -> LetterOut:
    """The API view of a stored letter (text and complainant only when ``with_text``)."""
    linked = [link["external_id"] for link in letter.repeat_of]
    ids = dict(session.execute(select(Letter.external_id, Letter.id)
                               .where(Letter.external_id.in_(linked))).all()) if linked else {}
    answer = letter.predictions
    return LetterOut(
        id=letter.id, external_id=letter.external_id, received_at=letter.received_at,
        source=letter.source, title=letter.title if with_text else None,
        text=letter.text if with_text else None,
        complainant=letter.complainant if with_text else None,
        predictions={name: _head_out(schema, name, answer) for name in schema.heads},
        labels=letter.labels, reviewed=letter.reviewed, confidence=letter.confidence,
        needs_review=letter.needs_review, matter_id=letter.matter_id,
        repeat_of=[LinkOut(letter_id=ids.get(link["external_id"]), **link) for link in letter.repeat_of],
        key_fields=letter.key_fields, model_version=letter.model_version)


def linking_entry(schema: LabelSchema, given: LetterIn, analysis: Analysis,
                  vector_space: str | None) -> Entry:
    """What the matter index (reading vectors of ``vector_space``) needs of an analysed
    letter about to be stored (its vector only if of that space: a letter analysed just
    before a reload to another encoder links by wording and key fields)."""
    vector = analysis.vector if analysis.vector_space == vector_space else None
    return Entry(letter_id=given.external_id, text=given.text, key_fields=analysis.key_fields,
                 vector=vector, sector=sector_of(schema, analysis.answer),
                 received_at=given.received_at)


def new_letter(schema: LabelSchema, given: LetterIn, analysis: Analysis, entry: Entry,
               decision: Decision, submitted_by: str) -> Letter:
    """The row for a classified letter linked as ``entry`` (not yet added to a session)."""
    answer = analysis.answer
    labels = current_labels(schema, answer)
    return Letter(
        external_id=given.external_id, received_at=given.received_at or datetime.now(UTC),
        source=given.source, title=given.title, text=given.text,
        complainant=given.complainant.model_dump(exclude_none=True) if given.complainant else None,
        submitted_by=submitted_by, sector=sector_of(schema, answer), predictions=answer,
        confidence=answer["confidence"], needs_review=answer["needs_review"],
        model_version=answer["model_version"], key_fields=analysis.key_fields.to_dict(),
        matter_id=decision.matter_id,
        repeat_of=[{"external_id": link.letter_id, "score": link.score, "shared": link.shared}
                   for link in decision.repeat_of],
        vector=vector_bytes(analysis.vector), vector_space=analysis.vector_space,
        link_words=sorted(entry.words), labels=labels,
        tags=tags_for(labels), reviewed=False)


@dataclass
class QueueFilter:
    """Which letters the review queue shows and in which order."""

    labels: Sequence[str] = ()  # "head:label", e.g. "violations:false_claims", "repeat_cue:true"
    min_confidence: float | None = None
    max_confidence: float | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    include_reviewed: bool = False
    only_needing_review: bool = True
    sort: Literal["confidence", "-confidence", "received_at", "-received_at"] = "confidence"
    limit: int = 50
    offset: int = 0


def review_queue(session: Session, f: QueueFilter) -> tuple[int, list[Letter]]:
    """(number of matching letters, one page of them)."""
    query = select(Letter)
    if f.only_needing_review:
        query = query.where(Letter.needs_review.is_(True))
    if not f.include_reviewed:
        query = query.where(Letter.reviewed.is_(False))
    for tag in f.labels:
        query = query.where(Letter.tags.contains(f" {tag} ", autoescape=True))
    if f.min_confidence is not None:
        query = query.where(Letter.confidence >= f.min_confidence)
    if f.max_confidence is not None:
        query = query.where(Letter.confidence <= f.max_confidence)
    if f.received_from is not None:
        query = query.where(Letter.received_at >= f.received_from)
    if f.received_to is not None:
        query = query.where(Letter.received_at <= f.received_to)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    column = Letter.confidence if f.sort.endswith("confidence") else Letter.received_at
    order = column.desc() if f.sort.startswith("-") else column.asc()
    rows = session.scalars(query.order_by(order, Letter.id).limit(f.limit).offset(f.offset)).all()
    return total, list(rows)


def excerpt(letter: Letter) -> str:
    text = " ".join(letter.text.split())
    return text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else "")


def review_letter(session: Session, letter_id: int, reviewer: str, labels: dict[str, Any],
                  comment: str | None) -> tuple[Letter, Review] | None:
    """Apply a review (labels already checked) and append it to the audit trail; None if
    there is no such letter. The row is locked, so concurrent reviews apply one after the
    other and each records the state it changed."""
    letter = session.scalar(select(Letter).where(Letter.id == letter_id).with_for_update())
    if letter is None:
        return None
    before = dict(letter.labels)
    after = {**before, **labels}
    review = Review(letter_id=letter.id, reviewer=reviewer, before=before, after=after,
                    model_version=letter.model_version, comment=comment)
    session.add(review)
    letter.labels = after
    letter.tags = tags_for(after)
    letter.reviewed = True
    session.flush()
    return letter, review


def export_records(session: Session, schema: LabelSchema) -> Iterator[dict[str, Any]]:
    """Reviewed letters in the corpus format (``triage train`` reads them as they are).

    ``group`` is the matter id when the matter has more than one reviewed letter.
    """
    sizes = dict(session.execute(select(Letter.matter_id, func.count()).where(Letter.reviewed.is_(True))
                                 .group_by(Letter.matter_id)).all())
    for letter in session.scalars(select(Letter).where(Letter.reviewed.is_(True)).order_by(Letter.id)):
        record: dict[str, Any] = {"id": letter.external_id}
        if letter.title:
            record["title"] = letter.title
        record["text"] = letter.text
        record.update({name: letter.labels[name] for name in schema.heads if name in letter.labels})
        record["group"] = letter.matter_id if sizes.get(letter.matter_id, 0) > 1 else None
        record["source"] = f"review:{letter.source}" if letter.source else "review"
        yield record
