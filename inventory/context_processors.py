"""Template context for every page: the signed-in person's role and what the navigation shows."""

from __future__ import annotations

from django.urls import reverse

from inventory.roles import ADMIN, OWNER, VIEWER, has_role, role_of


def keygov(request) -> dict:
    user = getattr(request, "user", None)
    role = role_of(user)
    if role is None:
        return {"role": None, "nav": []}
    nav = [
        ("Overview", reverse("inventory:overview"), VIEWER),
        ("Keys", reverse("inventory:accesskey_list"), VIEWER),
        ("My keys", reverse("inventory:mine"), OWNER),
        ("Accounts", reverse("inventory:account_list"), VIEWER),
        ("Findings", reverse("inventory:finding_list"), VIEWER),
        ("Exceptions", reverse("inventory:exception_list"), VIEWER),
        ("Requests", reverse("inventory:keyrequest_list"), VIEWER),
        ("Audit", reverse("inventory:audit_list"), VIEWER),
        ("Admin", reverse("admin:index"), ADMIN),
    ]
    path = request.path
    return {
        "role": role,
        "is_owner": has_role(user, OWNER),
        "is_approver": has_role(user, "approver"),
        "is_admin": has_role(user, ADMIN),
        "nav": [
            # "/" is active only on itself; other entries on their sub-pages too.
            (label, url, path == url or (url != "/" and path.startswith(url)))
            for label, url, needed in nav
            if has_role(user, needed)
        ],
    }
