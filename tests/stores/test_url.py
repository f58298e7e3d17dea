"""Store URLs: every scheme opens, and the scheme tables agree.

The Redis schemes are opened against real servers, TLS ones included (a server
with a throwaway self-signed certificate, standalone and as a one-node cluster).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from servers import HOST, RedisServer, free_port
from serversession.exceptions import ConfigurationError
from serversession.stores import open_store
from serversession.stores.redis import RedisStore
from serversession.stores.url import REDIS_SCHEMES, SCHEMES

README = (Path(__file__).parent.parent.parent / "README.md").read_text()


# -- TLS servers ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key (also the client's, for mTLS options)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl binary to make a test certificate")
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={HOST}",
         "-addext", f"subjectAltName=IP:{HOST}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return {"cert": str(cert), "key": str(key), "dir": str(tmp)}


def _tls_server(files: dict[str, str], *extra: str) -> tuple[RedisServer, int]:
    port = free_port()
    server = RedisServer(
        "--tls-port", str(port), "--tls-cert-file", files["cert"], "--tls-key-file", files["key"],
        "--tls-ca-cert-file", files["cert"], "--tls-auth-clients", "no", *extra,
    )  # fmt: skip
    try:
        server.start()
    except RuntimeError:
        pytest.skip("this redis-server was built without TLS")
    return server, port


@pytest.fixture(scope="module")
def tls_redis(tls_files: dict[str, str]) -> Iterator[str]:
    """``host:port`` of a standalone server that speaks TLS there."""
    server, port = _tls_server(tls_files)
    try:
        yield f"{HOST}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls_cluster(tls_files: dict[str, str]) -> Iterator[str]:
    """``host:port`` of a one-node cluster (every slot on one master) that speaks TLS there."""
    server, port = _tls_server(
        tls_files, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
        "--cluster-port", str(free_port()), "--tls-cluster", "yes",
    )  # fmt: skip
    try:
        with server.client() as r:
            r.execute_command("CLUSTER", "ADDSLOTS", *range(16384))
            deadline = time.monotonic() + 10
            while b"cluster_state:ok" not in r.execute_command("CLUSTER", "INFO"):
                assert time.monotonic() < deadline, "the TLS cluster never reached cluster_state:ok"
                time.sleep(0.05)
        yield f"{HOST}:{port}"
    finally:
        server.stop()


def redis_url(request: pytest.FixtureRequest, scheme: str, query: str = "") -> str:
    """A URL of ``scheme`` for a live server of its kind; TLS ones trust the test certificate
    unless ``query`` sets how."""
    _, cluster = REDIS_SCHEMES[scheme]
    if scheme.startswith(("rediss", "valkeys")):
        where = request.getfixturevalue("tls_cluster" if cluster else "tls_redis")
        if not any(f"{name}=" in query for name in ("ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path")):
            ca = quote(request.getfixturevalue("tls_files")["cert"], safe="")
            query = f"{query}&ssl_ca_certs={ca}" if query else f"ssl_ca_certs={ca}"
    else:
        where = request.getfixturevalue("fresh_cluster" if cluster else "fresh_redis").url.split("://", 1)[1]
        where = where.removesuffix("/0")
    return f"{scheme}://{where}" + (f"?{query}" if query else "")


def both_faces_answer(store: Any) -> None:
    """PING through the sync face and the async one (which redis-py builds separately)."""

    async def aping() -> None:
        try:
            await store.aping()
        finally:
            await store.aclose()

    try:
        store.ping()
        asyncio.run(aping())
    finally:
        store.close()


# -- one table of schemes ---------------------------------------------------------------
@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_every_scheme_opens(scheme: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    options: dict[str, Any] = {}
    if scheme == "memory":
        url = "memory://"
    elif scheme == "sqlite":
        url = f"sqlite:///{tmp_path}/s.db"
    elif scheme in REDIS_SCHEMES:
        url = redis_url(request, scheme)
    else:
        url = request.getfixturevalue("postgres_server").url.replace("postgresql://", f"{scheme}://", 1)
        options["table"] = f"t_{uuid.uuid4().hex}"
    store = open_store(url, **options)
    if scheme in REDIS_SCHEMES:
        assert isinstance(store, RedisStore) and store.cluster == REDIS_SCHEMES[scheme][1]
        both_faces_answer(store)
    else:
        try:
            store.ping()
        finally:
            store.close()


def test_the_scheme_tables_cannot_disagree() -> None:
    routed_to_redis = {s for s, (module, _, _) in SCHEMES.items() if module == "serversession.stores.redis"}
    assert routed_to_redis == set(REDIS_SCHEMES)
    port = free_port()  # nothing listens: each store is built, never used
    for scheme, (driver_scheme, cluster) in REDIS_SCHEMES.items():
        store = RedisStore(f"{scheme}://{HOST}:{port}")
        try:
            assert store.cluster is cluster and store._url.startswith(f"{driver_scheme}://")
        finally:
            store.close()
    for scheme in [*(s for s in SCHEMES if s not in REDIS_SCHEMES), "unix", "http", "redis+sentinel"]:
        with pytest.raises(ConfigurationError, match="not a Redis store URL"):
            RedisStore(f"{scheme}://{HOST}:{port}")


def test_the_readme_names_every_scheme() -> None:
    table = README.split("Stores are opened by URL", 1)[1].split("\n## ", 1)[0]
    missing = [s for s in SCHEMES if f"`{s}://" not in table]
    assert not missing, f"README's store URL table lacks {missing}"
