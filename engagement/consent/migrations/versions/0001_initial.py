"""Initial consent registry: courses, approvals, students, consent records, sessions, audit log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SQLITE_APPEND_ONLY = """
CREATE TRIGGER audit_log_no_{verb} BEFORE {verb} ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END
"""
_POSTGRES_APPEND_ONLY = [
    """CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
]


def upgrade() -> None:
    op.create_table(
        "courses",
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("title", sa.String(200)),
        sa.Column("retention_days", sa.Integer),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("course", sa.String(64), sa.ForeignKey("courses.code"), nullable=False),
        sa.Column("instructor", sa.String(200), nullable=False),
        sa.Column("approver", sa.String(200), nullable=False),
        sa.Column("approved_on", sa.Date, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "students",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "consent_records",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("student", sa.String(64), sa.ForeignKey("students.id"), nullable=False),
        sa.Column("course", sa.String(64), sa.ForeignKey("courses.code"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("recorded_on", sa.Date, nullable=False),
        sa.Column("form_version", sa.String(32)),
        sa.Column("seat", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('consented', 'opted_out', 'withdrawn')", name="consent_status"),
    )
    op.create_index("consent_records_student_course", "consent_records", ["student", "course"])
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("course", sa.String(64), sa.ForeignKey("courses.code"), nullable=False),
        sa.Column("held_on", sa.Date, nullable=False),
        sa.Column("run_dir", sa.Text, nullable=False),
        sa.Column("video_sha256", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "session_tracks",
        sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("track_id", sa.Integer, primary_key=True),
        sa.Column("student", sa.String(64), sa.ForeignKey("students.id"), nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(200)),
        sa.Column("details", sa.Text, nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(_SQLITE_APPEND_ONLY.format(verb=verb))
    elif dialect == "postgresql":
        for statement in _POSTGRES_APPEND_ONLY:
            op.execute(statement)


def downgrade() -> None:
    for table in ("audit_log", "session_tracks", "sessions", "consent_records", "students", "approvals", "courses"):
        op.drop_table(table)
