"""API tokens for scripts: ``create`` prints a new token once (keygov keeps only its hash),
``list`` shows who has which, ``revoke`` ends one. Issuing and revoking are in the audit log."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from inventory.api.models import ApiToken
from inventory.roles import role_of
from inventory.services.audit import record

MAX_DAYS = 365


class Command(BaseCommand):
    help = "Create, list or revoke API tokens (the token acts with its user's role)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Issue a token for a user; printed once.")
        create.add_argument("username")
        create.add_argument("--name", default="script", help="What the token is for.")
        create.add_argument(
            "--days",
            type=int,
            default=90,
            help=f"Valid for this many days (1 to {MAX_DAYS}; default 90).",
        )
        listing = sub.add_parser("list", help="Tokens (all, or one user's).")
        listing.add_argument("username", nargs="?")
        revoke = sub.add_parser("revoke", help="Revoke a token by its id (see list).")
        revoke.add_argument("id", type=int)

    def handle(self, *args, action, **options):
        return getattr(self, f"_{action}")(**options)

    def _create(self, username, name, days, **_):
        if not 1 <= days <= MAX_DAYS:
            raise CommandError(f"--days must be from 1 to {MAX_DAYS}.")
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        if role_of(user) is None:
            self.stderr.write(
                f"Warning: {username} has no role in keygov: the token will be refused (403) "
                "until an admin gives them one."
            )
        with transaction.atomic():
            token, secret = ApiToken.issue(user, name, days=days)
            record("apitoken.issue", token, actor=None, after=_fields(token))
        self.stdout.write(
            f"Token {token.pk} for {username} ({name}), valid until "
            f"{token.expires_at:%Y-%m-%d %H:%M} UTC. Shown only now; keygov keeps only its hash:\n"
        )
        self.stdout.write(secret)

    def _list(self, username=None, **_):
        tokens = ApiToken.objects.select_related("user").order_by("user__username", "-created_at")
        if username:
            tokens = tokens.filter(user__username=username)
        now = timezone.now()
        for t in tokens:
            state = "valid" if t.is_valid(now) else ("revoked" if t.revoked_at else "expired")
            used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
            expires = f"{t.expires_at:%Y-%m-%d}" if t.expires_at else "never"
            self.stdout.write(
                f"{t.pk:>5}  {t.user.username:<20} {t.prefix}…  {t.name:<20} {state:<8} "
                f"expires {expires}  last used {used}"
            )

    def _revoke(self, id, **_):
        with transaction.atomic():
            token = ApiToken.objects.select_for_update().filter(pk=id).first()
            if token is None:
                raise CommandError(f"No token {id}.")
            if token.revoked_at is None:
                before = _fields(token)
                token.revoked_at = timezone.now()
                token.save(update_fields=["revoked_at"])
                record("apitoken.revoke", token, actor=None, before=before, after=_fields(token))
        self.stdout.write(f"Token {id} ({token.prefix}…, {token.user.username}) revoked.")


def _fields(token: ApiToken) -> dict:
    return {
        "user": token.user.get_username(),
        "name": token.name,
        "prefix": token.prefix,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }
