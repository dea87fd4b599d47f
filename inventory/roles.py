"""The four roles of PRODUCT.md as Django groups; each role includes the ones below it."""

from __future__ import annotations

VIEWER, OWNER, APPROVER, ADMIN = "viewer", "owner", "approver", "admin"
_RANK = {VIEWER: 0, OWNER: 1, APPROVER: 2, ADMIN: 3}


def role_of(user) -> str | None:
    """The highest role of ``user`` (superusers are admins); None for no role at all."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return ADMIN
    # Cached per request object: views ask several times.
    cached = getattr(user, "_keygov_role", False)
    if cached is not False:
        return cached
    names = set(user.groups.values_list("name", flat=True)) & set(_RANK)
    role = max(names, key=_RANK.__getitem__) if names else None
    user._keygov_role = role
    return role


def has_role(user, role: str) -> bool:
    mine = role_of(user)
    return mine is not None and _RANK[mine] >= _RANK[role]


def owns_key(user, key) -> bool:
    """A user owns a key when the key's owner tag equals the user's e-mail, ignoring case."""
    email = (getattr(user, "email", "") or "").strip().lower()
    return bool(email) and key.user.owner == email


def can_manage_key(user, key) -> bool:
    """Mark a migration or request an exception: the key's owner, or any approver/admin."""
    return has_role(user, APPROVER) or (has_role(user, OWNER) and owns_key(user, key))


# The Django permissions of each role's group, for the admin (which only admins open) and for
# anyone auditing the groups; the pages decide by role. Each role holds the ones below it.
ROLE_EXTRA_PERMISSIONS = {
    VIEWER: (),  # plus view_<model> of every inventory model
    OWNER: (
        "add_keymigration", "change_keymigration", "add_policyexception", "add_keyrequest",
        "add_keyrequestcomment",
    ),
    APPROVER: ("change_policyexception", "change_keyrequest"),
}  # fmt: skip


def sync_role_groups(**kwargs) -> None:
    """Create the four role groups and give each its permissions, after every ``migrate``
    (a new model's permissions reach the roles without a data migration of their own)."""
    from django.contrib.auth.models import Group, Permission

    inventory = Permission.objects.filter(content_type__app_label="inventory")
    granted = set(inventory.filter(codename__startswith="view_").values_list("pk", flat=True))
    for role in (VIEWER, OWNER, APPROVER):
        extra = ROLE_EXTRA_PERMISSIONS[role]
        granted |= set(inventory.filter(codename__in=extra).values_list("pk", flat=True))
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(granted)
    group, _ = Group.objects.get_or_create(name=ADMIN)
    group.permissions.set(
        Permission.objects.filter(content_type__app_label__in=["inventory", "auth"])
    )
