from django.apps import AppConfig
from django.db.models.signals import post_migrate


class InventoryConfig(AppConfig):
    name = "inventory"
    verbose_name = "Key inventory"

    def ready(self) -> None:
        from inventory.roles import sync_role_groups

        # After auth's own post_migrate handler has created the permissions of new models.
        post_migrate.connect(sync_role_groups, sender=self, dispatch_uid="keygov-role-groups")
