"""An admin action that signs the selected users out of every session.

Add it to your user admin::

    from django.contrib.auth.admin import UserAdmin
    from serversession.integrations.django.admin import revoke_sessions

    UserAdmin.actions = [*UserAdmin.actions, revoke_sessions]

The admin's own session is kept when you select yourself.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from .sessions import revoke_user_sessions


@admin.action(description="Sign out of all sessions", permissions=["change"])  # type: ignore[untyped-decorator]
def revoke_sessions(modeladmin: Any, request: Any, queryset: Any) -> None:
    """Revoke every session of each selected user (but the acting admin's current one)."""
    ended = 0
    for user in queryset:
        keep = request if user.pk == getattr(request.user, "pk", None) else None
        ended += revoke_user_sessions(user, keep=keep)
    modeladmin.message_user(request, f"{ended} session(s) revoked.")
