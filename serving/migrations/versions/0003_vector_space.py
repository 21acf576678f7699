"""Which encoder made each stored letter vector.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("letters") as batch:
        batch.add_column(sa.Column("vector_space", sa.String(100)))


def downgrade() -> None:
    with op.batch_alter_table("letters") as batch:
        batch.drop_column("vector_space")
