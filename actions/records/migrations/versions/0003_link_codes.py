"""One person across channels: one-time link codes, and persons merged into another.

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("persons") as batch:
        batch.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_persons_merged_into", "persons", ["merged_into_id"], ["id"])
    op.create_table(
        "link_codes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("person_id", sa.Integer(), sa.ForeignKey("persons.id"), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column("used_by_person_id", sa.Integer(), sa.ForeignKey("persons.id"), nullable=True),
    )
    op.create_index("ix_link_codes_code_hash", "link_codes", ["code_hash"])


def downgrade() -> None:
    op.drop_table("link_codes")
    with op.batch_alter_table("persons") as batch:
        batch.drop_constraint("fk_persons_merged_into", type_="foreignkey")
        batch.drop_column("merged_into_id")
