"""Store URLs: every scheme opens, the scheme tables agree, and a URL option a store
cannot use is refused when the store is opened, not at the first request.

The Redis options are checked against real servers, TLS ones included (a server
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
import redis.asyncio.connection
import redis.connection

from servers import HOST, RedisServer, free_port
from serversession.exceptions import ConfigurationError
from serversession.stores import open_store
from serversession.stores._redis_url import OWN_OPTIONS, driver_options
from serversession.stores.redis import RedisStore
from serversession.stores.url import REDIS_SCHEMES, REDIS_SENTINEL_SCHEMES, SCHEMES

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
# The Sentinel schemes need a Sentinel set: test_redis_managed opens them.
@pytest.mark.parametrize("scheme", [s for s in SCHEMES if s not in REDIS_SENTINEL_SCHEMES])
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
    assert routed_to_redis == set(REDIS_SCHEMES) | set(REDIS_SENTINEL_SCHEMES)
    port = free_port()  # nothing listens: each store is built, never used
    for scheme, (driver_scheme, cluster) in REDIS_SCHEMES.items():
        store = RedisStore(f"{scheme}://{HOST}:{port}")
        try:
            assert store.cluster is cluster and store._url.startswith(f"{driver_scheme}://")
        finally:
            store.close()
    for scheme in [*(s for s in SCHEMES if s not in routed_to_redis), "unix", "http", "redis+cluster+sentinel"]:
        with pytest.raises(ConfigurationError, match="not a Redis store URL"):
            RedisStore(f"{scheme}://{HOST}:{port}")


def test_the_readme_names_every_scheme() -> None:
    table = README.split("Stores are opened by URL", 1)[1].split("\n## ", 1)[0]
    missing = [s for s in SCHEMES if f"`{s}://" not in table]
    assert not missing, f"README's store URL table lacks {missing}"


# -- Redis options: the ones listed work, everything else is refused -------------------
def _sample(option: str, files: dict[str, str]) -> str:
    """A query that sets ``option`` to a value a live server accepts."""
    cert, key = quote(files["cert"], safe=""), quote(files["key"], safe="")
    samples = {
        "db": "db=0", "socket_timeout": "socket_timeout=1.5", "socket_connect_timeout": "socket_connect_timeout=1.5",
        "socket_read_size": "socket_read_size=32768", "socket_keepalive": "socket_keepalive=no",
        "max_connections": "max_connections=20", "protocol": "protocol=3", "legacy_responses": "legacy_responses=0",
        "client_name": "client_name=shop", "username": "username=default",
        "password": "username=default&password=anything",  # the default user has nopass: AUTH passes
        "health_check_interval": "health_check_interval=5",
        "ssl_cert_reqs": "ssl_cert_reqs=none", "ssl_ca_certs": f"ssl_ca_certs={cert}",
        "ssl_certfile": f"ssl_certfile={cert}&ssl_keyfile={key}",
        "ssl_keyfile": f"ssl_keyfile={key}&ssl_certfile={cert}",
        "ssl_check_hostname": f"ssl_check_hostname=false&ssl_ca_certs={cert}",
        "ssl_include_verify_flags": "ssl_include_verify_flags=VERIFY_X509_PARTIAL_CHAIN",
        "ssl_exclude_verify_flags": "ssl_exclude_verify_flags=VERIFY_X509_STRICT",
        "ssl_ca_path": f"ssl_ca_path={quote(files['dir'], safe='')}&ssl_cert_reqs=none",
        "ssl_password": f"ssl_password=x&ssl_certfile={cert}&ssl_keyfile={key}",
        "ssl_min_version": "ssl_min_version=771", "ssl_ciphers": "ssl_ciphers=HIGH",
        "wait_replicas": "wait_replicas=0", "wait_timeout": "wait_timeout=0.5",
    }  # fmt: skip
    return samples[option]


_REPRESENTATIVES = ("redis", "redis+cluster", "rediss", "rediss+cluster")
_CASES = [
    (scheme, option)
    for scheme in _REPRESENTATIVES
    for option in [*driver_options(REDIS_SCHEMES[scheme][1], scheme.startswith("rediss")), *OWN_OPTIONS]
]


@pytest.mark.parametrize(("scheme", "option"), _CASES)
def test_every_listed_option_works_on_both_faces(scheme: str, option: str, request: pytest.FixtureRequest) -> None:
    files = request.getfixturevalue("tls_files") if "ssl_" in option else {"cert": "", "key": "", "dir": ""}
    both_faces_answer(open_store(redis_url(request, scheme, _sample(option, files))))


@pytest.mark.parametrize("scheme", list(REDIS_SCHEMES))
def test_a_misspelt_option_is_refused_naming_the_known_ones(scheme: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        open_store(f"{scheme}://{HOST}:{free_port()}/0?socket_timeot=1")
    message = str(info.value)
    assert message.startswith("unknown Redis") and "'socket_timeot'" in message
    assert "socket_timeout" in message and "wait_replicas" in message


# Every option redis-py parses from a URL, sync or async: a value its parser cannot
# read must be refused at open, whether or not the store takes the option.
_PARSED = sorted({*redis.connection.URL_QUERY_ARGUMENT_PARSERS, *redis.asyncio.connection.URL_QUERY_ARGUMENT_PARSERS})


@pytest.mark.parametrize("scheme", _REPRESENTATIVES)
@pytest.mark.parametrize("option", _PARSED)
def test_a_value_redis_py_cannot_parse_is_refused(scheme: str, option: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"'{option}'|option {option}='abc'"):
        open_store(f"{scheme}://{HOST}:{free_port()}?{option}=abc")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("redis://H/0?socket_timeout=-1", "socket_timeout"),
        ("redis://H/0?socket_timeout=0", "socket_timeout"),
        ("redis://H/0?socket_timeout=nan", "socket_timeout"),
        ("redis://H/0?socket_connect_timeout=inf", "socket_connect_timeout"),
        ("redis://H/0?socket_timeout=", "has no value"),
        ("redis://H/0?db=0&db=1", "more than once"),
        ("redis://H/0?db=-1", "db"),
        ("redis://H/0?socket_keepalive=off", "socket_keepalive"),  # redis-py reads "off" as true
        ("redis://H/0?max_connections=0", "max_connections"),
        ("redis://H/0?socket_read_size=0", "socket_read_size"),
        ("redis://H/0?protocol=4", "protocol"),
        ("redis://H/0?client_name=my%20shop", "client_name"),
        ("redis://H/sessions", "database number"),
        ("redis://H:port/0", "port"),
        ("redis+cluster://H/1", "only database 0"),
        ("redis+cluster://H?db=2", "only database 0"),
        ("redis+cluster://H?health_check_interval=5", "'health_check_interval'"),  # the sync cluster drops it
        ("redis://H/0?ssl_cert_reqs=none", "needs a TLS URL"),
        ("rediss://H/0?ssl_cert_reqs=CERT_NONE", "ssl_cert_reqs"),
        ("rediss://H/0?ssl_ca_certs=/no/such/ca.pem", "no such file"),
        ("rediss://H/0?ssl_min_version=5", "ssl_min_version"),
        ("rediss://H/0?ssl_include_verify_flags=VERIFY_NOTHING", "VERIFY_NOTHING"),
        ("rediss+cluster://H?ssl_password=x", "'ssl_password'"),  # the async cluster refuses it
        ("redis://H/0?retry_on_timeout=true", "'retry_on_timeout'"),  # the store never retries
        ("redis://H/0?timeout=5", "'timeout'"),  # for a blocking pool: TypeError at every request
        ("redis://H/0?decode_responses=false", "'decode_responses'"),
        ("valkey://H/0?wait_replicas=1&wait_replicas=2", "more than once"),
    ],
)
def test_a_malformed_option_is_refused_at_open(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        open_store(url.replace("H", f"{HOST}:{free_port()}", 1) if "H:port" not in url else url.replace("H", HOST))


@pytest.mark.parametrize("options", [{"socket_timeout": 0}, {"connect_timeout": -1}, {"socket_timeout": float("nan")}])
def test_bad_timeouts_as_arguments_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="seconds above 0"):
        RedisStore(f"redis://{HOST}:{free_port()}/0", **options)


# -- SQLite and memory: no options at all ---------------------------------------------------
def test_sqlite_options_are_refused_in_the_same_words(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        open_store(f"sqlite:///{tmp_path}/s.db?busy_timeout=1")
    assert str(info.value) == "unknown SQLite store URL option 'busy_timeout'; the options are: (none)"
    for url in (f"sqlite:///{tmp_path}/s.db?", f"sqlite:///{tmp_path}/s.db#x", f"sqlite:/{tmp_path}/s.db"):
        with pytest.raises(ConfigurationError):
            open_store(url)


@pytest.mark.parametrize("busy_timeout", [-1.0, float("nan"), float("inf")])
def test_a_bad_sqlite_busy_timeout_is_refused(busy_timeout: float, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="busy_timeout"):
        open_store(f"sqlite:///{tmp_path}/s.db", busy_timeout=busy_timeout)


@pytest.mark.parametrize("url", ["memory://?limit=5", "memory://host", "memory:///sessions", "memory://?", "memory:"])
def test_the_memory_url_takes_nothing(url: str) -> None:
    with pytest.raises(ConfigurationError, match="memory"):
        open_store(url)


def test_an_unknown_keyword_is_a_configuration_error(tmp_path: Path) -> None:
    for url in ("memory://", f"sqlite:///{tmp_path}/s.db"):
        with pytest.raises(ConfigurationError, match="busy_timeot"):
            open_store(url, busy_timeot=1)
