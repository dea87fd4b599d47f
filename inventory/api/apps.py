from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "inventory.api"
    label = "api"
    verbose_name = "REST API"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # drf-spectacular finds the token scheme through this module's extension class.
        from inventory.api import authentication  # noqa: F401
