"""The classic Flask sign-in app (apps/classic_flask.py) under waitress, end to end.

The app is written the way Flask's docs write it, with ``flask.session``; only
the ``serversession.integrations.flask.init_app`` line is added. The data now lives on the
server: the cookie carries a random ID, not the signed data Flask would send.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_apps import serve, session_cookie

from serversession.core.ids import is_well_formed, storage_key
from serversession.stores.sqlite import SQLiteStore


@pytest.fixture(scope="module")
def classic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    workdir = tmp_path_factory.mktemp("classic-flask")
    db = workdir / "sessions.sqlite3"
    with serve("classic_flask:app", workdir, env={"SS_STORE": f"sqlite:///{db}"}) as url:
        yield url, db


def test_sign_in_and_out_the_flask_docs_way(classic: tuple[str, Path]) -> None:
    url, db = classic
    with httpx.Client(base_url=url) as browser, httpx.Client(base_url=url) as replay:
        first = browser.get("/")
        assert first.text == "You are not logged in"
        assert "set-cookie" not in first.headers  # nothing stored for a visitor

        signed_in = browser.post("/login", data={"username": "alice"})
        assert signed_in.status_code == 302 and signed_in.headers["location"] == "/"
        cookie = session_cookie(signed_in, "session")
        assert cookie is not None and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        session_id = browser.cookies["session"]
        assert is_well_formed(session_id) and "alice" not in cookie  # an ID, not signed data
        assert browser.get("/").text == "Logged in as alice"

        store = SQLiteStore(db)
        try:
            stored = store.load(storage_key(session_id))
            assert stored is not None and stored.data == {"username": '"alice"'}
            assert store.load(session_id) is None  # the store knows only the ID's hash
        finally:
            store.close()

        replay.cookies.set("session", session_id, domain="127.0.0.1")
        assert replay.get("/").text == "Logged in as alice"

        signed_out = browser.get("/logout")
        assert signed_out.status_code == 302
        assert browser.get("/").text == "You are not logged in"
        assert replay.get("/").text == "You are not logged in"  # the old cookie gets nothing


def test_a_forged_cookie_is_a_visitor(classic: tuple[str, Path]) -> None:
    url, _ = classic
    with httpx.Client(base_url=url) as browser:
        browser.cookies.set("session", "eyJ1c2VybmFtZSI6ImFsaWNlIn0.forged.sig", domain="127.0.0.1")
        assert browser.get("/").text == "You are not logged in"
