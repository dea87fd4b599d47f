"""The global rotation policy with PRODUCT.md's defaults, and, in Postgres, a trigger that keeps
the audit log append-only whatever the application does."""

from django.db import migrations

TRIGGER_SQL = """
CREATE FUNCTION keygov_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'inventory_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER keygov_audit_append_only
    BEFORE UPDATE OR DELETE ON inventory_auditevent
    FOR EACH ROW EXECUTE FUNCTION keygov_audit_append_only();
"""
DROP_TRIGGER_SQL = """
DROP TRIGGER IF EXISTS keygov_audit_append_only ON inventory_auditevent;
DROP FUNCTION IF EXISTS keygov_audit_append_only();
"""


def create_global_policy(apps, schema_editor):
    RotationPolicy = apps.get_model("inventory", "RotationPolicy")
    if not RotationPolicy.objects.filter(account__isnull=True).exists():
        RotationPolicy.objects.create(
            account=None, max_age_days=90, warn_days=14, unused_days=45, new_key_grace_days=7
        )


def add_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGER_SQL, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_TRIGGER_SQL, params=None)


class Migration(migrations.Migration):
    dependencies = [("inventory", "0002_governance")]

    operations = [
        migrations.RunPython(create_global_policy, migrations.RunPython.noop),
        migrations.RunPython(add_trigger, drop_trigger),
    ]
