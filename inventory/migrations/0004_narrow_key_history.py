"""Narrow the key history, the largest table (one row per key per snapshot): 4-byte ids for
access keys and snapshots, and the observed state as a 2-byte code (choices.STATE_CODES).

The state and the active flag are re-created as the table's last columns, after the timestamp,
so that a row packs into 20 bytes of data (4 + 4 + 8 + 2 + 1, no alignment padding) and a 48-byte
tuple. Rows already stored are rewritten once by the UPDATE; VACUUM (FULL) returns the space."""

from django.db import migrations, models

import inventory.models.fields

STATE_CHOICES = [
    ("deleted", "Deleted"), ("migrated", "Migrated"), ("excepted", "Excepted"),
    ("inactive", "Inactive"), ("overdue", "Overdue"), ("unused", "Unused"),
    ("due_soon", "Due soon"), ("ok", "OK"),
]  # fmt: skip

# choices.STATE_CODES, frozen here as the migration must stay as it was written.
TO_CODES = """
UPDATE inventory_keyobservation SET active_flag = active, state_code = CASE state
    WHEN 'ok' THEN 1 WHEN 'due_soon' THEN 2 WHEN 'overdue' THEN 3 WHEN 'unused' THEN 4
    WHEN 'excepted' THEN 5 WHEN 'migrated' THEN 6 WHEN 'inactive' THEN 7 WHEN 'deleted' THEN 8
    ELSE 0 END
"""
TO_NAMES = """
UPDATE inventory_keyobservation SET active = active_flag, state = CASE state_code
    WHEN 1 THEN 'ok' WHEN 2 THEN 'due_soon' WHEN 3 THEN 'overdue' WHEN 4 THEN 'unused'
    WHEN 5 THEN 'excepted' WHEN 6 THEN 'migrated' WHEN 7 THEN 'inactive' WHEN 8 THEN 'deleted'
    ELSE '' END
"""


def _run(sql):
    def run(apps, schema_editor):
        schema_editor.execute(sql)
        if schema_editor.connection.vendor == "postgresql":
            # The UPDATE queued the deferred foreign-key checks of every row it touched; run
            # them now, as Postgres refuses to ALTER a table with pending trigger events.
            schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0003_global_policy_and_audit_trigger"),
    ]

    operations = [
        migrations.AlterField(
            model_name="accesskey",
            name="id",
            field=models.AutoField(primary_key=True, serialize=False),
        ),
        migrations.AlterField(
            model_name="snapshot",
            name="id",
            field=models.AutoField(primary_key=True, serialize=False),
        ),
        # The state and the flag: add the new columns, fill them, drop the old ones, take their
        # names.
        migrations.AddField(
            model_name="keyobservation",
            name="state_code",
            field=models.SmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="keyobservation",
            name="active_flag",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(_run(TO_CODES), _run(TO_NAMES)),
        migrations.RemoveField(model_name="keyobservation", name="state"),
        # A default, so that migrating backwards can add the old column back to existing rows.
        migrations.AlterField(
            model_name="keyobservation",
            name="active",
            field=models.BooleanField(default=False),
        ),
        migrations.RemoveField(model_name="keyobservation", name="active"),
        migrations.RenameField(
            model_name="keyobservation", old_name="state_code", new_name="state"
        ),
        migrations.RenameField(
            model_name="keyobservation", old_name="active_flag", new_name="active"
        ),
        migrations.AlterField(
            model_name="keyobservation",
            name="active",
            field=models.BooleanField(),
        ),
        migrations.AlterField(
            model_name="keyobservation",
            name="state",
            field=inventory.models.fields.KeyStateCodeField(
                blank=True, choices=STATE_CHOICES, default=""
            ),
        ),
    ]
