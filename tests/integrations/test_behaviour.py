"""ONE behaviour suite, run against every integration's app (live_apps.KINDS) under real servers.

Every test talks HTTP to ``live_app`` (see conftest.py), which exposes the same
endpoints in each framework's own idiom: ``GET /get/<key>``, ``GET /csrf``,
``POST /set/<key>`` (JSON value), ``POST /incr/<key>`` (atomic modify),
``POST /rotate``, ``POST /login/<user>``, ``POST /logout``, ``GET /sessions``,
``POST /revoke-others``, and the authentication controls ``POST /sensitive``
(``require_recent_auth(SS_REAUTH or 1)``), ``POST /reauth`` (``reauthenticated()``)
and ``POST /password`` (``credential_changed()``). Django keeps its own CSRF middleware, so for Django the
CSRF tests check that *Django's* protection answers 403.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from live_apps import LiveApp, serve, session_cookie

from servers import RedisServer
from serversession.core.ids import is_well_formed


def test_cookie_attributes(live_app: LiveApp) -> None:
    browser = live_app.browser()
    response = browser.post("/set/a", 1)
    cookie = session_cookie(response, live_app.cookie_name)
    assert cookie is not None
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "path=/"} <= attributes
    assert "secure" not in attributes  # the apps run with cookie_secure=False (plain HTTP)
    assert not any(a.startswith(("max-age", "expires", "domain")) for a in attributes)  # gone at browser close
    assert is_well_formed(cookie.split(";")[0].split("=", 1)[1])
    assert "no-store" in response.headers.get("cache-control", "") or live_app.kind == "django"


def test_reading_creates_no_session(live_app: LiveApp) -> None:
    browser = live_app.browser()
    response = browser.get("/get/a")
    assert response.status_code == 200 and response.json() == {"value": None}
    assert "set-cookie" not in response.headers
    assert browser.get("/sessions").json() == {"sessions": []}


def test_a_made_up_id_is_never_adopted(live_app: LiveApp) -> None:
    browser = live_app.browser()
    browser.fetch_csrf()
    made_up = secrets.token_urlsafe(32)
    browser.set_session_cookie(made_up)
    assert browser.post("/set/a", "mine").status_code == 200
    assert browser.session_id not in (None, made_up)
    assert browser.value("a") == "mine"
    assert live_app.browser(made_up).value("a") is None


def test_rotation_keeps_data_and_kills_the_old_id(live_app: LiveApp) -> None:
    browser = live_app.browser()
    browser.post("/set/a", {"deep": [1, 2]})
    old = browser.session_id
    assert browser.post("/rotate").status_code == 200
    assert browser.session_id not in (None, old)
    assert browser.value("a") == {"deep": [1, 2]}
    assert live_app.browser(old).value("a") is None


def test_a_request_that_loses_a_race_with_a_rotation_sends_back_no_dead_cookie(live_app: LiveApp) -> None:
    """Another tab signs in (rotates) while a slow request of the old session runs:
    the slow one's change lands in the rotated session, and its response must not
    send the rotated-away ID, which would sign that browser out."""
    browser = live_app.browser()
    browser.post("/set/a", 1)
    old = browser.session_id
    assert old is not None
    slow = live_app.browser(old)
    slow.fetch_csrf()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(slow.post, "/set/b?sleep=0.6", 2)  # loads, writes, sleeps, then saves
        time.sleep(0.2)
        assert browser.post("/rotate").status_code == 200
        response = pending.result()
    assert response.status_code == 200, response.text
    cookie = session_cookie(response, live_app.cookie_name)
    assert cookie is None or old not in cookie
    assert browser.value("a") == 1 and browser.value("b") == 2


def test_django_session_key_after_cycle_key_is_the_key_that_lives(live_app: LiveApp) -> None:
    """Django's engines rotate at once in cycle_key() (login()); code that records
    session_key right after login, to revoke it later, must get the live key."""
    if live_app.kind != "django":
        return
    browser = live_app.browser()
    browser.post("/set/a", 1)
    response = browser.post("/rotate")
    assert response.json()["key"] == browser.session_id


def test_a_response_that_read_the_session_varies_on_the_cookie(live_app: LiveApp) -> None:
    """Two users get different bodies from one URL: shared caches must key on the cookie."""
    browser = live_app.browser()
    browser.post("/set/a", 1)
    response = browser.get("/get/a")
    assert response.status_code == 200
    vary = ",".join(response.headers.get_list("vary")).lower()
    assert "cookie" in vary


def test_logout_invalidates_the_old_cookie(live_app: LiveApp) -> None:
    browser = live_app.browser()
    browser.post("/login/" + uuid.uuid4().hex)
    browser.post("/set/a", "secret")
    old = browser.session_id
    assert old is not None
    response = browser.post("/logout")
    assert response.status_code == 200 and browser.session_id is None  # cookie cleared
    assert browser.value("a") is None
    assert live_app.browser(old).value("a") is None  # a replayed cookie gets nothing


def test_idle_timeout_ends_unused_sessions_and_use_renews(live_app: LiveApp) -> None:
    # The timings are checked, not assumed: on a loaded machine a request can take
    # long enough to void the scenario, which is then run again (at most 3 times).
    for _ in range(3):
        idle, busy = live_app.browser(), live_app.browser()
        idle.post("/set/a", 1)
        idle_used = time.monotonic()
        busy.post("/set/a", 2)
        idle_id, busy_id = idle.session_id, busy.session_id
        time.sleep(1.2)
        assert busy.value("a") == 2  # a read renews the idle deadline
        busy_used = time.monotonic()
        time.sleep(max(0.0, idle_used + 2.5 - time.monotonic()))
        assert live_app.browser(idle_id).value("a") is None  # >= 2.5 s unused > 2 s idle timeout
        if time.monotonic() - busy_used > 1.7:
            continue  # too slow to tell a renewed session from an expired one: try again
        assert live_app.browser(busy_id).value("a") == 2  # < 2 s since its last use
        return
    pytest.skip("the machine was too slow for a 2 s idle timeout three times in a row")


def test_concurrent_increments_lose_nothing(live_app: LiveApp) -> None:
    browser = live_app.browser()
    browser.post("/set/seed", 0)
    with ThreadPoolExecutor(30) as pool:
        responses = list(pool.map(lambda _: browser.post("/incr/n"), range(30)))
    assert [r.status_code for r in responses] == [200] * 30
    assert sorted(r.json()["value"] for r in responses) == list(range(1, 31))
    assert browser.value("n") == 30


def test_concurrent_writes_to_different_keys_both_win(live_app: LiveApp) -> None:
    browser = live_app.browser()
    browser.post("/set/seed", 0)
    with ThreadPoolExecutor(2) as pool:  # each request sleeps after its write: they overlap
        responses = list(pool.map(lambda kv: browser.post(f"/set/{kv[0]}?sleep=0.3", kv[1]), [("x", 1), ("y", 2)]))
    assert [r.status_code for r in responses] == [200, 200]
    assert (browser.value("x"), browser.value("y"), browser.value("seed")) == (1, 2, 0)


def test_unsafe_requests_need_the_csrf_token(live_app: LiveApp) -> None:
    browser = live_app.browser()
    browser.post("/set/a", 1)
    missing = browser.post("/set/a", 2, csrf=False)
    wrong = browser.post("/set/a", 3, csrf="not-the-token")
    assert (missing.status_code, wrong.status_code) == (403, 403)
    if live_app.kind != "django":  # Django's CsrfViewMiddleware answers with its own page
        assert missing.json()["error"].startswith("CSRF token missing: send it in the X-CSRF-Token header")
        assert wrong.json()["error"].startswith("CSRF token invalid:")
    assert browser.value("a") == 1


def test_a_user_lists_sessions_and_signs_out_the_others(live_app: LiveApp) -> None:
    user = "u" + uuid.uuid4().hex[:12]
    laptop, phone = live_app.browser(), live_app.browser()
    laptop.post(f"/login/{user}")
    phone.post(f"/login/{user}")
    phone.post("/set/a", "phone data")
    listed = laptop.get("/sessions").json()["sessions"]
    assert len(listed) == 2 and [s["current"] for s in listed].count(True) == 1
    assert laptop.post("/revoke-others").json()["revoked"] == 1
    assert phone.value("a") is None and phone.get("/sessions").json() == {"sessions": []}
    assert len(laptop.get("/sessions").json()["sessions"]) == 1


def test_store_outage_is_503_then_recovers(outage_app: tuple[LiveApp, RedisServer]) -> None:
    app, redis = outage_app
    browser = app.browser()
    assert browser.post("/set/a", 1).status_code == 200
    redis.kill()
    for response in (browser.get("/get/a"), browser.post("/set/a", 2)):
        assert response.status_code == 503
        assert response.json() == {"error": "session store unavailable, please retry"}
        assert response.headers["retry-after"] == "1"
        assert session_cookie(response, app.cookie_name) is None
    redis.restart()  # a restarted Redis without persistence has forgotten the session
    assert browser.value("a") is None
    browser.fetch_csrf()  # the old token belonged to the forgotten session
    assert browser.post("/set/a", 3).status_code == 200 and browser.value("a") == 3


@pytest.mark.parametrize("server", ["uvicorn", "waitress"])
def test_django_records_the_device_under_asgi_and_wsgi(server: str, tmp_path: Path) -> None:
    """The sessions list shows each session's device and address: under ASGI too,
    where Django's request_started receivers run in a copied context."""
    target = "behaviour_django:asgi_app" if server == "uvicorn" else "behaviour_django:app"
    env = {"SS_STORE": f"sqlite:///{tmp_path / 's.sqlite3'}", "SS_IDLE": "60", "SS_DB": str(tmp_path / "d.sqlite3")}
    with serve(target, tmp_path, server=server, env=env) as url:
        browser = LiveApp("django", url).browser()
        browser.http.headers["User-Agent"] = "DeviceCheck/1.0"
        assert browser.post("/set/a", 1).status_code == 200
        assert browser.get("/meta").json() == {"user_agent": "DeviceCheck/1.0", "ip": "127.0.0.1"}


# -- the request boundary (serversession.core.guard), once over all four ---------------------


def test_cross_site_unsafe_requests_are_refused_even_with_a_valid_token(live_app: LiveApp) -> None:
    browser = live_app.browser()
    browser.post("/set/a", 1)
    evil = browser.post("/set/a", 2, headers={"Origin": "https://evil.example"})
    fetch = browser.post("/set/a", 3, headers={"Sec-Fetch-Site": "cross-site"})
    null = browser.post("/set/a", 4, headers={"Origin": "null"})
    for response in (evil, fetch, null):
        assert response.status_code == 403, response.text
        assert response.json()["error"].startswith("cross-site request refused")
        assert "trusted_origins" in response.json()["error"]
        assert response.headers["cache-control"] == "no-store"
    assert browser.value("a") == 1
    own = browser.post("/set/a", 5, headers={"Origin": live_app.url, "Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 200, own.text
    assert browser.value("a") == 5  # and no Origin at all (API clients) relies on the token, as above


def test_a_request_with_the_session_in_the_authorization_header_is_not_cross_site(live_app: LiveApp) -> None:
    if live_app.kind == "django":
        return  # Django reads the session cookie only
    browser = live_app.browser()
    browser.post("/set/a", 1)
    session_id, token = browser.session_id, browser.csrf
    api = httpx.Client(base_url=live_app.url, timeout=15)
    try:
        response = api.post("/set/a", content=b"2", headers={
            "Authorization": f"Session {session_id}", "X-CSRF-Token": token or "", "Origin": "https://elsewhere.example",
            "Content-Type": "application/json"})  # fmt: skip
    finally:
        api.close()
    assert response.status_code == 200, response.text  # no ambient credential: nothing to forge
    assert browser.value("a") == 2


def test_a_session_cookie_sent_twice_is_served_as_no_session_and_cleared(live_app: LiveApp) -> None:
    browser = live_app.browser()
    browser.post("/set/a", "mine")
    session_id = browser.session_id
    assert session_id is not None
    other = live_app.browser()
    other.post("/set/a", "theirs")
    name = live_app.cookie_name
    for header in (f"{name}={session_id}; {name}={other.session_id}", f"{name}={session_id}; {name}={session_id}"):
        with httpx.Client(base_url=live_app.url, timeout=15) as raw:
            response = raw.get("/get/a", headers={"Cookie": header})
        assert response.status_code == 200 and response.json() == {"value": None}
        cleared = session_cookie(response, name)
        assert cleared is not None and "max-age=0" in cleared.lower()
    assert browser.value("a") == "mine"  # neither session was harmed


def test_logout_answers_clear_site_data(live_app: LiveApp) -> None:
    browser = live_app.browser()
    browser.post("/login/" + uuid.uuid4().hex)
    response = browser.post("/logout")
    assert response.status_code == 200
    assert response.headers.get("clear-site-data") == '"cache"'
    assert "clear-site-data" not in browser.post("/set/a", 1).headers


def test_json_only_paths_refuse_other_bodies_with_415(live_app: LiveApp) -> None:
    browser = live_app.browser()
    browser.post("/set/a", 1)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        response = browser.post("/set/a", 2, headers={"Content-Type": content_type})
        assert response.status_code == 415, (content_type, response.text)
        assert response.json()["error"].startswith("this endpoint accepts JSON only: send Content-Type")
    assert browser.post("/set/a", 3, headers={"Content-Type": "application/json; charset=utf-8"}).status_code == 200
    assert browser.value("a") == 3


def test_an_address_guessing_session_ids_is_throttled_without_harming_valid_sessions(guessing_app: LiveApp) -> None:
    app = guessing_app
    valid = app.browser()
    valid.post("/set/a", "kept")
    answers = []
    for _ in range(8):  # the limit is 5 unknown IDs a minute
        answers.append(app.browser(secrets.token_urlsafe(32)).get("/get/a"))
    codes = [r.status_code for r in answers]
    assert codes[:4] == [200] * 4 and codes[-1] == 429, codes
    refused = answers[-1]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"].startswith("too many requests with unknown or expired session IDs")
    assert refused.headers["cache-control"] == "no-store"
    assert valid.value("a") == "kept"  # a valid session from the same address goes on
    assert app.browser().get("/get/a").status_code == 200  # so does a visitor without a session


# -- the authentication controls, once over all four ------------------------------------------


def test_a_sensitive_action_needs_a_recent_authentication(live_app: LiveApp) -> None:
    """``require_recent_auth(1)`` in the view: 401 with ``reauth_required`` when the sign-in
    (or the last ``reauthenticated()``) is more than a second old, or there is none."""
    browser = live_app.browser()
    anonymous = browser.post("/sensitive")
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["reauth_required"] is True
    browser.post("/login/" + uuid.uuid4().hex)
    fresh = browser.post("/sensitive")
    assert fresh.status_code == 200, fresh.text
    signed_in_at = datetime.fromisoformat(fresh.json()["authenticated_at"])
    assert signed_in_at.tzinfo is not None and abs(time.time() - signed_in_at.timestamp()) < 5
    time.sleep(1.2)
    stale = browser.post("/sensitive")
    assert stale.status_code == 401, stale.text
    body = stale.json()
    assert body["reauth_required"] is True and "password" in body["error"]
    assert stale.headers["cache-control"] == "no-store"
    again = browser.post("/reauth")
    assert again.status_code == 200, again.text
    assert datetime.fromisoformat(again.json()["authenticated_at"]) > signed_in_at
    assert browser.post("/sensitive").status_code == 200


def test_a_credential_change_keeps_this_session_under_a_new_id_and_ends_the_others(live_app: LiveApp) -> None:
    user = "u" + uuid.uuid4().hex[:12]
    laptop, phone, tablet = live_app.browser(), live_app.browser(), live_app.browser()
    for browser in (laptop, phone, tablet):
        assert browser.post(f"/login/{user}").status_code == 200
    laptop.post("/set/a", "kept")
    old = laptop.session_id
    changed = laptop.post("/password")
    assert changed.status_code == 200, changed.text
    assert changed.json()["revoked"] == 2
    assert laptop.session_id not in (None, old)  # the response carried the new ID
    assert live_app.browser(old).value("a") is None  # the old one is dead
    assert laptop.value("a") == "kept"
    assert [s["current"] for s in laptop.get("/sessions").json()["sessions"]] == [True]
    assert laptop.post("/sensitive").status_code == 200  # it counts as authenticated just now
    for other in (phone, tablet):
        assert other.get("/sessions").json() == {"sessions": []}


def test_a_sign_in_that_checked_the_old_password_during_a_change_does_not_survive(live_app: LiveApp) -> None:
    """A slow sign-in (its request began before the change, so its password check may
    have used the old password) binds the user while another device changes the
    password: its session is ended, whatever the framework loads when."""
    user = "u" + uuid.uuid4().hex[:12]
    laptop, slow = live_app.browser(), live_app.browser()
    laptop.post(f"/login/{user}")
    slow.fetch_csrf()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(slow.post, f"/login/{user}?sleep=0.8")
        time.sleep(0.3)
        changed = laptop.post("/password")
        signed_in = pending.result()
    assert changed.status_code == 200, changed.text
    # Django answers a session ended during the request 400 (SessionInterrupted), as for a
    # concurrent logout; the others answer the view's response with the cookie cleared.
    assert signed_in.status_code == (400 if live_app.kind == "django" else 200), signed_in.text
    assert slow.get("/sessions").json() == {"sessions": []}  # not signed in
    assert [s["current"] for s in laptop.get("/sessions").json()["sessions"]] == [True]
    later = live_app.browser()
    later.post(f"/login/{user}")  # a sign-in after the change is kept
    assert len(later.get("/sessions").json()["sessions"]) == 2


def test_django_update_session_auth_hash_keeps_working(live_app: LiveApp) -> None:
    """Django's own password-change flow: ``update_session_auth_hash()`` cycles the key,
    which keeps the session signed in and its authentication time; Django itself then
    signs the other sessions out at their next request (their auth hash is stale)."""
    if live_app.kind != "django":
        return
    user = "u" + uuid.uuid4().hex[:12]
    laptop, phone = live_app.browser(), live_app.browser()
    laptop.post(f"/login/{user}")
    phone.post(f"/login/{user}")
    before = laptop.post("/sensitive").json()["authenticated_at"]
    old = laptop.session_id
    changed = laptop.post("/password-django")
    assert changed.status_code == 200, changed.text
    assert changed.json()["key"] == laptop.session_id != old
    assert changed.json()["authenticated_at"] == before  # a rotation, not a new sign-in
    assert len(laptop.get("/sessions").json()["sessions"]) == 2
    assert phone.get("/sessions").json() == {"sessions": []}  # Django: stale hash, flushed
    assert len(laptop.get("/sessions").json()["sessions"]) == 1


def test_the_per_user_session_cap_evicts_or_refuses(capped_app: tuple[LiveApp, str]) -> None:
    app, policy = capped_app
    user = "u" + uuid.uuid4().hex[:12]
    laptop, phone = app.browser(), app.browser()
    assert laptop.post(f"/login/{user}").status_code == 200
    laptop.post("/set/a", "laptop")
    second = phone.post(f"/login/{user}")
    if policy == "evict":
        assert second.status_code == 200, second.text
        assert laptop.value("a") is None  # the least recently used session ended
        assert len(phone.get("/sessions").json()["sessions"]) == 1
    else:
        assert second.status_code == 409, second.text
        assert second.headers["cache-control"] == "no-store" and "error" in second.json()
        assert laptop.value("a") == "laptop"  # the sign-in was refused, the first session lives on


# -- lazy loading: a request that never touches its session costs no store command ----------

#: Commands a Redis client sends for its connection, not for a session (redis-py's CLIENT SETINFO
#: on a new pooled connection, the test's own INFO).
_CONNECTION_COMMANDS = ("cmdstat_client|", "cmdstat_hello", "cmdstat_info", "cmdstat_config|", "cmdstat_ping",
                        "cmdstat_select", "cmdstat_auth")  # fmt: skip


def store_commands(redis: RedisServer) -> dict[str, int]:
    """Calls per Redis command so far, connection housekeeping left out."""
    with redis.client() as client:
        stats = client.info("commandstats")
    return {name: int(v["calls"]) for name, v in stats.items() if not name.startswith(_CONNECTION_COMMANDS)}


def commands_of(redis: RedisServer, request: Callable[[], httpx.Response]) -> tuple[httpx.Response, dict[str, int]]:
    """Send ``request``; return its response and the store commands it cost, by name."""
    before = store_commands(redis)
    response = request()
    after = store_commands(redis)
    return response, {name: n - before.get(name, 0) for name, n in after.items() if n != before.get(name, 0)}


def test_a_request_that_never_touches_its_session_costs_no_store_command(
    lazy_app: tuple[LiveApp, RedisServer],
) -> None:
    app, redis = lazy_app
    browser = app.browser()
    assert browser.post("/set/a", 1).status_code == 200
    assert browser.value("a") == 1  # warmed up: the app's connections to the store are open
    response, sent = commands_of(redis, lambda: browser.get("/untouched"))
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert sent == {}, sent
    assert session_cookie(response, app.cookie_name) is None
    assert "cookie" not in ",".join(response.headers.get_list("vary")).lower()
    response, sent = commands_of(redis, lambda: browser.get("/get/a"))  # one that reads it: one read
    assert response.json() == {"value": 1} and sent == {"cmdstat_hgetall": 1}, sent
    assert "cookie" in ",".join(response.headers.get_list("vary")).lower()


def test_reading_lazily_still_checks_csrf_before_the_view(lazy_app: tuple[LiveApp, RedisServer]) -> None:
    app, redis = lazy_app
    browser = app.browser()
    assert browser.post("/set/a", "kept").status_code == 200
    assert browser.post("/set/a", "forged", csrf=False).status_code == 403
    assert browser.post("/set/a", "forged", csrf="not-the-token").status_code == 403
    assert browser.value("a") == "kept"
    response, sent = commands_of(redis, lambda: browser.post("/set/a", "mine"))
    assert response.status_code == 200 and browser.value("a") == "mine"
    assert sum(n for name, n in sent.items() if name == "cmdstat_hgetall") == 1, sent  # read once, then written


def test_a_store_outage_at_the_sessions_first_use_answers_503(lazy_outage_app: tuple[LiveApp, RedisServer]) -> None:
    app, redis = lazy_outage_app
    browser = app.browser()
    assert browser.post("/set/a", 1).status_code == 200
    browser.fetch_csrf()
    redis.kill()
    untouched = browser.get("/untouched")  # needs no store: served as if nothing were wrong
    assert untouched.status_code == 200 and untouched.json() == {"ok": True}
    for response in (browser.get("/get/a"), browser.post("/set/a", 2)):
        assert response.status_code == 503, response.text
        assert response.json() == {"error": "session store unavailable, please retry"}
        assert response.headers["retry-after"] == "1"
        assert session_cookie(response, app.cookie_name) is None
    redis.restart()
    assert browser.value("a") is None  # the restarted Redis forgot it; the app reads the store again
