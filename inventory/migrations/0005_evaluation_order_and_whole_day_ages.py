import datetime

import django.db.models.expressions
from django.db import migrations, models


def seconds_to_days(apps, schema_editor):
    # The exact per-key ages are gone; dividing the sum is close (at most a day per key high).
    # `manage.py rebuild_kpis` recomputes every row exactly from the key history.
    KpiRollup = apps.get_model("inventory", "KpiRollup")
    KpiRollup.objects.update(active_key_age_days_sum=models.F("active_key_age_days_sum") / 86400)


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0004_narrow_key_history"),
    ]

    operations = [
        migrations.AddField(
            model_name="account",
            name="evaluated_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RenameField(
            model_name="kpirollup",
            old_name="active_key_age_seconds_sum",
            new_name="active_key_age_days_sum",
        ),
        migrations.RunPython(seconds_to_days, migrations.RunPython.noop, elidable=True),
        migrations.AddConstraint(
            model_name="finding",
            constraint=models.CheckConstraint(
                condition=models.Q(("closed_at__isnull", True))
                | models.Q(("closed_at__gte", models.F("opened_at"))),
                name="finding_closed_after_opened",
            ),
        ),
        migrations.AddConstraint(
            model_name="policyexception",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "expires_at__lte",
                        django.db.models.expressions.CombinedExpression(
                            models.F("requested_at"), "+", models.Value(datetime.timedelta(days=180))
                        ),
                    )
                ),
                name="exception_at_most_180_days",
            ),
        ),
    ]
