"""The README's framework examples run as written (stores swapped for memory://)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

README = (Path(__file__).parent.parent / "README.md").read_text()


def example(heading: str, **replace: str) -> dict[str, Any]:
    """Execute the first python block after ``heading``; return its namespace (a module's,
    registered in ``sys.modules``: Litestar resolves handler annotations through it)."""
    section = README.split(f"## {heading}", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, heading
    source = re.sub(r'"(redis|sqlite)[^"]*"', '"memory://"', code.group(1))
    for old, new in replace.items():
        source = source.replace(old, new)
    module = types.ModuleType("readme_example")
    sys.modules[module.__name__] = module
    exec(compile(source, f"README:{heading}", "exec"), module.__dict__)
    return module.__dict__


def test_fastapi_example() -> None:
    app = example("FastAPI / Starlette in 20 lines")["app"]
    app.user_middleware[0].kwargs["config"] = app.user_middleware[0].kwargs["config"].__class__(
        cookie_secure=False, idle_timeout=1800, absolute_timeout=8 * 3600
    )
    with TestClient(app) as client:
        csrf = client.get("/api/session").json()["csrf_token"]
        assert client.post("/api/cart", headers={"x-csrf-token": csrf}).json() == {"n": 1}
        new_csrf = client.post("/api/login", headers={"x-csrf-token": csrf}).json()["csrf_token"]
        assert new_csrf != csrf
        assert client.post("/api/cart", headers={"x-csrf-token": new_csrf}).json() == {"n": 2}


def test_flask_example() -> None:
    """The seed's Flask app with the one added line works with CSRF on, through its own forms."""
    app = example("Flask")["app"]
    client = app.test_client()
    https = {"base_url": "https://localhost"}  # the cookie is Secure

    def token(page: str) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert found, page
        return found.group(1)

    page = client.get("/", **https).text
    assert page.startswith("You are not logged in")
    bare = client.post("/login", data={"username": "alice"}, **https)
    assert bare.status_code == 403 and "csrf_token form field" in bare.json["error"]
    client.post("/login", data={"username": "alice", "csrf_token": token(page)}, **https)
    page = client.get("/", **https).text
    assert page.startswith("Logged in as alice")
    client.post("/logout", data={"csrf_token": token(page)}, **https)
    assert client.get("/", **https).text.startswith("You are not logged in")


def test_wsgi_example() -> None:
    from werkzeug.test import Client

    client = Client(example("Plain WSGI (Bottle, Falcon, Pyramid…)")["application"])
    assert client.get("/").get_data() == b"visit 1"


def test_litestar_example() -> None:
    from litestar.testing import TestClient as LitestarClient

    namespace = example("Litestar", **{"SessionConfig()": "SessionConfig(cookie_secure=False)"})
    with LitestarClient(namespace["app"]) as client:
        assert client.post("/login", json={"name": "ana"}).status_code == 403  # no CSRF token
        token = client.get("/csrf").json()["csrf_token"]
        signed_in = client.post("/login", json={"name": "ana"}, headers={"X-CSRF-Token": token})
        assert signed_in.status_code == 201, signed_in.text
        assert signed_in.json()["csrf_token"] != token  # rotated at sign-in
        assert "session=" in signed_in.headers.get("set-cookie", "")  # the new ID


def test_quart_example() -> None:
    import asyncio

    namespace = example("Quart", **{'store="memory://"': 'store="memory://", cookie_secure=False'})
    app = namespace["app"]

    async def scenario() -> None:
        client = app.test_client()
        bare = await client.post("/login", form={"username": "ana"})
        assert bare.status_code == 403 and "csrf_token" in (await bare.get_json())["error"]

    asyncio.run(scenario())


def test_aiohttp_example() -> None:
    import asyncio

    from aiohttp.test_utils import TestClient as AiohttpClient
    from aiohttp.test_utils import TestServer

    namespace = example("aiohttp", **{"SessionConfig()": "SessionConfig(cookie_secure=False)"})

    async def scenario() -> None:
        async with AiohttpClient(TestServer(namespace["app"])) as client:
            token = (await (await client.get("/")).json())["csrf_token"]
            bare = await client.post("/login", data={"name": "ana"}, allow_redirects=False)
            assert bare.status == 403
            signed_in = await client.post("/login", data={"name": "ana", "csrf_token": token},
                                          allow_redirects=False)  # fmt: skip
            assert signed_in.status == 302 and "session=" in signed_in.headers.get("Set-Cookie", "")
            assert (await (await client.get("/")).json())["user"] == "ana"

    asyncio.run(scenario())
