"""Every setting of the service, in one place (environment variables ``TRIAGE_*`` or a
``.env`` file): where the store and the model are, limits, and the review threshold."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.inference import Runtime


class ServiceSettings(BaseSettings):
    """Settings of the triage service.

    Example::

        TRIAGE_STORE_URL=postgresql+psycopg://triage@db/triage TRIAGE_MODEL_DIR=models/letters \\
            uvicorn serving.app:create_app --factory
    """

    model_config = SettingsConfigDict(env_prefix="TRIAGE_", env_file=".env", extra="ignore")

    store_url: str = Field("sqlite:///var/letters.db",
                           description="SQLite file (embedded) or PostgreSQL URL (several replicas)")
    model_dir: Path = Field(Path("models/letters"), description="model directory written by triage train")
    runtime: Runtime = Field(Runtime.TORCH, description="where the encoder runs: torch (fp32) or "
                             "onnx-int8 (needs MODEL_DIR/encoder.int8.onnx from triage export-onnx)")
    review_threshold: float | None = Field(
        None, ge=0.0, le=1.01,
        description="letters with confidence below this go to review (default: the model's own)")
    max_text_chars: int = Field(20_000, ge=100, description="longest letter text accepted")
    max_body_bytes: int = Field(1_000_000, ge=10_000, description="largest request body accepted")
    batch_limit: int = Field(64, ge=1, le=1000, description="most letters in one batch request")
    max_pending: int = Field(256, ge=1, description="letters waiting for the model before 503")
    micro_batch: int = Field(16, ge=1, le=256, description="most letters the model takes at once")
    blas_threads: int = Field(
        1, ge=1, le=64, description="threads of numpy's BLAS. 1 leaves the cores to the model: "
        "BLAS threads spin after each product and take the cores from it")
    search_threads: int = Field(
        2, ge=1, le=64, description="threads sharing linking's cosine to every stored letter once "
        "16,384 or more are stored (each over a block of rows; they wait without spinning); 2 "
        "halves the lookup at 100,000 stored letters (docs/benchmarks.md)")
    queue_page_size: int = Field(50, ge=1, le=500, description="letters per review-queue page")
    bootstrap_admin_key: SecretStr | None = Field(
        None, description="if set and the store has no admin key yet, this key becomes one")
    cookie_secure: bool = Field(False, description="send the review page's cookie over HTTPS only")
