"""Old import path of the Flask integration, kept so existing apps keep working.

The integration lives in :mod:`serversession.integrations.flask`, beside every
other framework's; new code should import it from there.
"""

from .integrations.flask import (
    FlaskSession,
    ServerSessionInterface,
    config_from_flask,
    csrf_exempt,
    get_manager,
    init_app,
)

__all__ = ["FlaskSession", "ServerSessionInterface", "config_from_flask", "csrf_exempt", "get_manager", "init_app"]
