"""The Flask and Django integrations moved under ``serversession.integrations``;
the old import paths keep existing apps and settings working."""

from __future__ import annotations

import importlib

import pytest


def test_serversession_flask_is_the_integration() -> None:
    pytest.importorskip("flask")
    old = importlib.import_module("serversession.flask")
    new = importlib.import_module("serversession.integrations.flask")
    for name in old.__all__:
        assert getattr(old, name) is getattr(new, name)


@pytest.mark.parametrize("module", ["", ".backend", ".middleware", ".sessions"])
def test_serversession_django_names_the_same_engine(module: str) -> None:
    pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure()
    old = importlib.import_module("serversession.django" + module)
    new = importlib.import_module("serversession.integrations.django" + module)
    for name in old.__all__:
        assert getattr(old, name) is getattr(new, name)
