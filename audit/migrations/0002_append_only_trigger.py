"""Append-only at the database level on PostgreSQL: a trigger rejects UPDATE, DELETE and
TRUNCATE on the entries and the checkpoints. SQLite and SQL Server rely on the model
guards and the verifier (docs/audit.md). A database superuser can still disable the
trigger; the signed checkpoints are what catch that."""

from django.db import migrations

TABLES = ["TB_AUDIT_LOG", "TB_AUDIT_CHECKPOINT"]

FUNCTION = """
CREATE OR REPLACE FUNCTION guardia_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'GUARDiA audit records are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION, params=None)  # the % in RAISE is not a placeholder
    for table in TABLES:
        schema_editor.execute(
            f'CREATE TRIGGER "{table}_no_change" BEFORE UPDATE OR DELETE ON "{table}" '
            "FOR EACH ROW EXECUTE FUNCTION guardia_audit_append_only()"
        )
        schema_editor.execute(
            f'CREATE TRIGGER "{table}_no_truncate" BEFORE TRUNCATE ON "{table}" '
            "FOR EACH STATEMENT EXECUTE FUNCTION guardia_audit_append_only()"
        )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f'DROP TRIGGER IF EXISTS "{table}_no_change" ON "{table}"')
        schema_editor.execute(f'DROP TRIGGER IF EXISTS "{table}_no_truncate" ON "{table}"')
    schema_editor.execute("DROP FUNCTION IF EXISTS guardia_audit_append_only()")


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
