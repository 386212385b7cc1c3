"""Staff console: accounts, sessions, and the hand-off columns staff work with.

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff_accounts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "staff_sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("account_id", sa.Integer(), sa.ForeignKey("staff_accounts.id"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_staff_sessions_account_id", "staff_sessions", ["account_id"])
    # batch mode: SQLite cannot ALTER TABLE ADD COLUMN with every constraint otherwise
    with op.batch_alter_table("handoffs") as batch:
        batch.add_column(sa.Column("taken_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("taken_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("closed_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("replies", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("handoffs") as batch:
        batch.drop_column("replies")
        batch.drop_column("closed_at")
        batch.drop_column("taken_at")
        batch.drop_column("taken_by")
    op.drop_index("ix_staff_sessions_account_id", "staff_sessions")
    op.drop_table("staff_sessions")
    op.drop_table("staff_accounts")
