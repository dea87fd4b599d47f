"""API tokens for scripts. Only a SHA-256 digest of each token is stored: a copy of the database
(a backup, a dump handed to support) holds no usable credential. The token itself is shown once,
when it is issued (``manage.py api_token create``)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

# What every token starts with, so that a leaked one is recognised (secret scanners, logs).
PREFIX = "kgt_"
# Writing ``last_used_at`` on every request would turn every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=5)


def digest(token: str) -> str:
    """The stored form of a token. A plain hash suffices: tokens carry 256 random bits, so
    there is nothing to guess from the digest (unlike a password)."""
    return hashlib.sha256(token.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token that acts as its user, with that user's role; expires, can be revoked."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. a script.")
    # The first characters of the token, to recognise it in a list (never enough to use it).
    prefix = models.CharField(max_length=12)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name}, {self.user})"

    @classmethod
    def issue(
        cls, user, name: str, *, days: int | None = 90, now: datetime | None = None
    ) -> tuple[ApiToken, str]:
        """A new token for ``user``, valid ``days`` days (None: until revoked); returns the row
        and the token, which is not kept anywhere."""
        now = now or timezone.now()
        token = PREFIX + secrets.token_urlsafe(32)
        row = cls.objects.create(
            user=user,
            name=name,
            prefix=token[:12],
            digest=digest(token),
            created_at=now,
            expires_at=now + timedelta(days=days) if days else None,
        )
        return row, token

    def is_valid(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def touch(self, now: datetime) -> None:
        """Record a use, at most once per ``LAST_USED_RESOLUTION``."""
        if self.last_used_at is None or now - self.last_used_at >= LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now
