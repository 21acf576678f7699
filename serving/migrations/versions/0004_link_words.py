"""The content words linking compares, stored with each letter so that the linking index
is rebuilt at start-up without tagging every letter again.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("letters") as batch:
        batch.add_column(sa.Column("link_words", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("letters") as batch:
        batch.drop_column("link_words")
