"""Django integration: server-side sessions behind Django's own ``request.session``.

In ``settings.py``::

    SESSION_ENGINE = "serversession.integrations.django"
    SERVERSESSION_STORE = "redis://127.0.0.1:6379/0"   # default: sqlite:///serversession.sqlite3

``login()``, ``logout()``, ``request.session`` in views and templates, the
admin, the ``SESSION_COOKIE_*`` settings, ``SESSION_EXPIRE_AT_BROWSER_CLOSE``,
``set_expiry()`` (enforced on the server too) and ``manage.py clearsessions``
work unchanged (see :mod:`.backend` for how each maps onto the lifecycle).
Django's own session test suite runs against this engine in
``tests/integrations/test_django_upstream.py``. Listing and revoking a
user's sessions: :mod:`.sessions` (and the admin action in :mod:`.admin`).
After a password change, :func:`credential_changed` ``(request, user)`` (in
place of ``update_session_auth_hash``) also ends the user's other sessions;
``request.session.require_recent_auth(300)`` guards a sensitive view.
Optionally, :class:`serversession.integrations.django.middleware.SessionMiddleware` replaces
Django's to answer a store outage with ``503`` instead of ``500`` (and a
failed ``require_recent_auth`` with ``401``).
"""

from .backend import SessionStore, credential_changed, get_manager
from .sessions import list_user_sessions, revoke_session, revoke_user_sessions

__all__ = [
    "SessionStore",
    "credential_changed",
    "get_manager",
    "list_user_sessions",
    "revoke_session",
    "revoke_user_sessions",
]
