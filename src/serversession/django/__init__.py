"""Django integration: server-side sessions behind Django's own ``request.session``.

In ``settings.py``::

    SESSION_ENGINE = "serversession.django"
    SERVERSESSION_STORE = "redis://127.0.0.1:6379/0"   # default: sqlite:///serversession.sqlite3

``login()``, ``logout()``, ``request.session`` in views and templates, the
admin, the ``SESSION_COOKIE_*`` settings, ``SESSION_EXPIRE_AT_BROWSER_CLOSE``,
``set_expiry()`` (enforced on the server too) and ``manage.py clearsessions``
work unchanged (see :mod:`.backend` for how each maps onto the lifecycle).
Django's own session test suite runs against this engine in
``tests/integrations/test_django_upstream.py``. Listing and revoking a
user's sessions: :mod:`.sessions` (and the admin action in :mod:`.admin`).
Optionally, :class:`serversession.django.middleware.SessionMiddleware` replaces
Django's to answer a store outage with ``503`` instead of ``500``.
"""

from .backend import SessionStore, get_manager
from .sessions import list_user_sessions, revoke_session, revoke_user_sessions

__all__ = ["SessionStore", "get_manager", "list_user_sessions", "revoke_session", "revoke_user_sessions"]
