"""Current labels and review state of a letter; hashed API keys with roles.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("letters") as batch:
        batch.add_column(sa.Column("labels", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("tags", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("reviewed", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.create_index("ix_letters_reviewed", ["reviewed"])
        batch.create_index("ix_letters_confidence", ["needs_review", "reviewed", "confidence"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    with op.batch_alter_table("letters") as batch:
        batch.drop_index("ix_letters_confidence")
        batch.drop_index("ix_letters_reviewed")
        batch.drop_column("reviewed")
        batch.drop_column("tags")
        batch.drop_column("labels")
