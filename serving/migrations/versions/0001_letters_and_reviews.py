"""Letters with predictions, key fields and matters; the review audit log.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "letters",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("external_id", sa.String(200), nullable=False, unique=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(100)),
        sa.Column("title", sa.Text()),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("complainant", sa.JSON()),
        sa.Column("submitted_by", sa.String(100)),
        sa.Column("sector", sa.String(100)),
        sa.Column("predictions", sa.JSON(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("needs_review", sa.Boolean(), nullable=False),
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("key_fields", sa.JSON(), nullable=False),
        sa.Column("matter_id", sa.String(64), nullable=False),
        sa.Column("repeat_of", sa.JSON(), nullable=False),
        sa.Column("vector", sa.LargeBinary()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    for column in ("received_at", "submitted_by", "sector", "needs_review", "matter_id"):
        op.create_index(f"ix_letters_{column}", "letters", [column])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("letter_id", sa.Integer(), sa.ForeignKey("letters.id"), nullable=False),
        sa.Column("reviewer", sa.String(100), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("before", sa.JSON(), nullable=False),
        sa.Column("after", sa.JSON(), nullable=False),
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("comment", sa.Text()),
    )
    op.create_index("ix_reviews_letter", "reviews", ["letter_id", "id"])


def downgrade() -> None:
    op.drop_table("reviews")
    op.drop_table("letters")
