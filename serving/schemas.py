"""What the API accepts and returns (pydantic models; they make the OpenAPI schema)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from serving.keys import Role

EXTERNAL_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/\-]{0,199}$"
MAX_ROW_ID = 2_147_483_647  # the store's INTEGER ids (PostgreSQL int4); larger ones overflow the driver


def _has_utc_time(value: datetime) -> datetime:
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time falls outside the years 1-9999 in UTC") from None
    return value


# times are stored in UTC: 0001-01-01T00:00+05:00 has no UTC time and is refused (422)
StoredTime = Annotated[AwareDatetime, AfterValidator(_has_utc_time)]
# letter and key ids in paths: out of range is a 422, not a driver overflow (500)
RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]


def _refuse_lone_surrogates(text: str, what: str) -> None:
    """JSON may escape half a UTF-16 pair (\\ud800) where pydantic does not check it (dict
    keys, some optional bodies): echoed in an error message it would break the answer."""
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        raise ValueError(f"{what} holds a lone UTF-16 surrogate (\\ud800-\\udfff); send valid Unicode")


class Complainant(BaseModel):
    """Who wrote (confidential: never logged, only shown to supervisors and the submitter)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=100)
    phone: str | None = Field(None, max_length=50)
    id_number: str | None = Field(None, max_length=50)
    address: str | None = Field(None, max_length=300)
    anonymous: bool = False


class LetterIn(BaseModel):
    """A letter to classify and store. ``external_id`` is the intake system's own id: the
    same id sent again returns the stored answer instead of a second record."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    external_id: str = Field(pattern=EXTERNAL_ID, description="1-200 of A-Z a-z 0-9 . _ : / -")
    text: str = Field(min_length=1, description="the letter's text (limit: settings.max_text_chars)")
    title: str | None = Field(None, max_length=500)
    received_at: StoredTime | None = Field(
        None, description="when the office received it, with a time zone (default: now)")
    source: str | None = Field(None, max_length=100, description="e.g. 来信, 网络留言, 12345热线")
    complainant: Complainant | None = None

    @field_validator("text")
    @classmethod
    def _text_has_words(cls, value: str) -> str:
        if not any(ch.isalnum() for ch in value):
            raise ValueError("text has no letters or digits (empty, whitespace or punctuation only)")
        return value


class BatchIn(BaseModel):
    """Several letters; each is checked on its own, so good ones succeed beside bad ones."""

    model_config = ConfigDict(extra="forbid")

    letters: list[dict[str, Any]] = Field(min_length=1)


class LabelOut(BaseModel):
    id: str
    name: str
    score: float
    departments: list[str] = []


class HeadOut(BaseModel):
    """One head's answer: the chosen labels (one for ``single``) with their scores, every
    label's score, and for ``binary`` heads the yes/no ``value``."""

    type: Literal["single", "multi", "binary"]
    labels: list[LabelOut]
    scores: dict[str, float]
    value: bool | None = None


class LinkOut(BaseModel):
    letter_id: int | None
    external_id: str
    score: float
    shared: dict[str, list[Any]]


class ReviewOut(BaseModel):
    id: int
    reviewer: str
    reviewed_at: datetime
    before: dict[str, Any]
    after: dict[str, Any]
    model_version: str
    comment: str | None


class LetterOut(BaseModel):
    """A stored letter with everything the model and the reviewers said about it."""

    id: int
    external_id: str
    received_at: datetime
    source: str | None
    title: str | None = None
    text: str | None = None
    complainant: dict[str, Any] | None = None
    predictions: dict[str, HeadOut]
    labels: dict[str, Any] = Field(description="current labels: the model's until reviewed")
    reviewed: bool
    confidence: float
    needs_review: bool
    matter_id: str
    repeat_of: list[LinkOut]
    key_fields: dict[str, Any]
    model_version: str


class BatchItemOut(BaseModel):
    index: int
    status: int
    letter: LetterOut | None = None
    error: str | None = None


class BatchOut(BaseModel):
    results: list[BatchItemOut]


class QueueItem(BaseModel):
    id: int
    external_id: str
    received_at: datetime
    confidence: float
    labels: dict[str, Any]
    needs_review: bool
    reviewed: bool
    excerpt: str


class QueueOut(BaseModel):
    total: int
    items: list[QueueItem]


class ReviewIn(BaseModel):
    """A supervisor's labels: every head given replaces the current labels of that head
    (heads left out stay as they are; the same labels again confirms them)."""

    model_config = ConfigDict(extra="forbid")

    labels: dict[str, Any] = Field(default_factory=dict)
    comment: str | None = Field(None, max_length=2000)

    @field_validator("labels")
    @classmethod
    def _heads_are_text(cls, value: dict[str, Any]) -> dict[str, Any]:
        for head in value:
            _refuse_lone_surrogates(head, "a head name")
        return value


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    role: Role


class KeyOut(BaseModel):
    id: int
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None = None
    key: str | None = Field(None, description="the key itself: shown once, at creation")


class ModelOut(BaseModel):
    version: str
    directory: str
    heads: dict[str, Any]
    calibration: dict[str, Any]
    linker: Literal["fitted", "default"]
    vector_space: str = Field(description="the encoder whose letter vectors linking reads")
    foreign_vectors: int = Field(description="stored letters whose vectors come from another "
                                 "encoder: they link by wording and key fields only until "
                                 "'triage reencode' rewrites them")


class ReloadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_dir: str | None = Field(None, description="default: the configured model directory")

    @field_validator("model_dir")
    @classmethod
    def _is_text(cls, value: str | None) -> str | None:
        if value is not None:
            _refuse_lone_surrogates(value, "model_dir")
        return value


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """An error answer: why, as a sentence, or for a request that fails validation, per field."""

    detail: str | list[FieldError]


ERROR_REASONS = {
    400: "the body is not UTF-8",
    401: "no key, or an unknown or revoked key",
    403: "this key's role may not use this route",
    404: "no such record (intake keys see only their own letters)",
    409: "external_id already used by another submitter",
    413: "body, text or batch over its limit (the answer names the setting)",
    415: "the body is not JSON",
    422: "invalid request: the answer lists each field and what is wrong",
    503: "overloaded, or the store is unreachable: nothing was stored; retry after Retry-After seconds",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error answers (all shaped as :class:`ErrorOut`)."""
    return {code: {"model": ErrorOut, "description": ERROR_REASONS[code]} for code in codes}


API_ERRORS = error_responses(401, 403, 503)  # every route that needs a key
POST_ERRORS = error_responses(400, 413, 415, 422)  # every POST on /v1 (request limits, validation)
