"""The four roles of PRODUCT.md as Django groups, each with the model permissions it needs.

The views decide access by role (``inventory/roles.py``); the permissions here serve the Django
admin (which only the ``admin`` role may open) and anyone auditing the groups. Models added later
get their permissions from ``inventory.roles.sync_role_groups``, which runs after every migrate.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW = [
    "account", "snapshot", "iamuser", "accesskey", "keyobservation", "finding",
    "policyexception", "keymigration", "kpirollup", "auditevent", "rotationpolicy",
]  # fmt: skip
OWNER_EXTRA = ["add_keymigration", "change_keymigration", "add_policyexception"]
APPROVER_EXTRA = ["change_policyexception"]


def _codenames(role: str, Permission) -> list:
    viewer = [f"view_{m}" for m in VIEW]
    if role == "viewer":
        return Permission.objects.filter(content_type__app_label="inventory", codename__in=viewer)
    if role == "owner":
        names = viewer + OWNER_EXTRA
    elif role == "approver":
        names = viewer + OWNER_EXTRA + APPROVER_EXTRA
    else:  # admin: everything of keygov's and of the user accounts
        return Permission.objects.filter(content_type__app_label__in=["inventory", "auth"])
    return Permission.objects.filter(content_type__app_label="inventory", codename__in=names)


def create_roles(apps, schema_editor):
    # Permissions are normally created after the last migration; the groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role in ("viewer", "owner", "approver", "admin"):
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(_codenames(role, Permission))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(
        name__in=["viewer", "owner", "approver", "admin"]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("inventory", "0005_evaluation_order_and_whole_day_ages"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
