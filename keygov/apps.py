from django.apps import AppConfig


class KeygovConfig(AppConfig):
    """keygov's project-wide pieces that need Django's start-up: the security log and the
    login rate limit listen to the sign-in signals (keygov/auth_logging.py, keygov/security.py)."""

    name = "keygov"
    verbose_name = "keygov"

    def ready(self) -> None:
        from keygov import auth_logging, security  # noqa: F401 - connects their receivers
