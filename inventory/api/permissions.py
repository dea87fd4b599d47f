"""The pages' role rules for the API (inventory/roles.py; deny by default).

Each view names the lowest role that may use it (``required_role``, viewer unless said
otherwise) and, per action, a higher one (``action_roles``: filing a request or marking a
migration needs the owner role). Without credentials: 401; signed in below the role: 403.
Rules about one object (an owner acts on their own keys only) are the services' and the
views' (``can_manage_key``)."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from inventory.roles import VIEWER, has_role


def required_role(view) -> str:
    roles = getattr(view, "action_roles", {})
    return roles.get(getattr(view, "action", None), getattr(view, "required_role", VIEWER))


class HasRole(BasePermission):
    """The view's (or the action's) role or a higher one."""

    message = "You have no role in keygov: ask an admin for one."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if user is None or not user.is_authenticated:
            return False  # DRF answers 401 (no credentials) from the authenticators
        role = required_role(view)
        if has_role(user, role):
            return True
        self.message = f"This needs the {role} role."
        return False
