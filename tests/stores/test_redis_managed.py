"""Managed Redis against real servers: TLS (verified by default, client certificates),
an ACL user held to the session prefix, and Sentinel failover (issue 14).

The servers come from :mod:`redis_servers`: certificates are generated per test
run, the ACL user is built from the code block in ``docs/operations.md`` (the
line an operator copies is the line tested), and the Sentinel set is a master, a
replica and three sentinels with a one-second down-after.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import anyio
import pytest
import redis
import redis.sentinel

from redis_servers import Certificates, SentinelSet, TLSRedisServer, make_certificates
from servers import HOST, RedisServer
from serversession.core.codec import SessionMeta, encode_meta
from serversession.core.ids import new_session_id, storage_key
from serversession.core.records import Commit, Outcome, UserCap
from serversession.exceptions import ConfigurationError, StoreError, StoreUnavailableError
from serversession.stores.redis import RedisStore

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
PASSWORD = "long-random-test-password"
SENTINEL_PASSWORD = "sentinels-own-password"
T = TypeVar("T")


def new_key() -> str:
    return storage_key(new_session_id())


def fresh(user: str | None = None, cap: UserCap | None = None) -> Commit:
    now = time.time()
    meta = encode_meta(SessionMeta(created_at=now, last_seen_at=now, user=user, csrf_secret="c"))
    return Commit(set_data={"cart": '["apple"]'}, meta=meta, expires_at=now + 60, index_user=user,
                  absolute_at=now + 120, user_cap=cap)  # fmt: skip


def lifecycle(store: RedisStore) -> None:
    """Every store operation once: create, load, commit, rotate, list_user, cap, scan, delete."""
    store.ping()
    key = new_key()
    assert store.create(key, fresh(user="ann")).outcome is Outcome.OK
    loaded = store.load(key)
    assert loaded is not None and loaded.data["cart"] == '["apple"]'
    assert store.commit(key, Commit(set_data={"n": "1"}, expect={"n": None})).outcome is Outcome.OK
    new = new_key()
    assert store.rotate(key, new, Commit(expires_at=time.time() + 60), grace=5).outcome is Outcome.OK
    assert [s.key for s in store.list_user("ann")] == [new]
    capped = store.create(new_key(), fresh(user="ann", cap=UserCap(1, True, "signed out elsewhere")))
    assert capped.outcome is Outcome.OK and capped.evicted == (new,)
    assert len(list(store.scan())) >= 1
    assert store.delete(capped_key := next(iter(s.key for s in store.list_user("ann"))))
    assert store.load(capped_key) is None


# --- TLS ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(certs: Certificates) -> Iterator[TLSRedisServer]:
    """TLS only; a client certificate is optional."""
    with TLSRedisServer(certs, "optional") as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(certs: Certificates) -> Iterator[TLSRedisServer]:
    """TLS only; a client certificate signed by the CA is required."""
    with TLSRedisServer(certs, "yes") as server:
        yield server


def test_tls_with_the_ca_named_in_the_url(tls_server: TLSRedisServer, certs: Certificates) -> None:
    store = RedisStore(f"{tls_server.url}?ssl_ca_certs={certs.ca}")
    try:
        lifecycle(store)
    finally:
        store.close()


def test_tls_host_name_in_the_certificate(tls_server: TLSRedisServer, certs: Certificates) -> None:
    """``localhost`` is one of the certificate's names, as ``127.0.0.1`` is."""
    store = RedisStore(f"rediss://localhost:{tls_server.port}/0?ssl_ca_certs={certs.ca}")
    try:
        store.ping()
    finally:
        store.close()


def test_tls_host_name_is_checked_by_default(certs: Certificates) -> None:
    """A certificate from the trusted CA but for another name is refused unless the check is turned off."""
    with TLSRedisServer(certs, misnamed=True) as server:
        store = RedisStore(f"{server.url}?ssl_ca_certs={certs.ca}")
        try:
            with pytest.raises(StoreUnavailableError):
                store.ping()
        finally:
            store.close()
        unchecked = RedisStore(f"{server.url}?ssl_ca_certs={certs.ca}&ssl_check_hostname=false")
        try:
            unchecked.ping()  # the chain still verifies: only the name check is off
        finally:
            unchecked.close()


@pytest.mark.parametrize("trust", ["system", "other"])
def test_tls_verification_is_on_by_default(tls_server: TLSRedisServer, certs: Certificates, trust: str) -> None:
    """A server certificate from a CA the client does not trust is refused, not accepted quietly."""
    url = tls_server.url if trust == "system" else f"{tls_server.url}?ssl_ca_certs={certs.other_ca}"
    with tls_server.client() as admin:
        before = admin.dbsize()
    store = RedisStore(url)
    try:
        with pytest.raises(StoreUnavailableError) as caught:
            store.ping()
        assert "certificate verify failed" in str(caught.value) + repr(caught.value.__cause__)
        with pytest.raises(StoreUnavailableError):
            store.create(new_key(), fresh())
    finally:
        store.close()
    with tls_server.client() as admin:
        assert admin.dbsize() == before  # nothing was written over the unverified connection


def test_tls_options_need_a_tls_url(certs: Certificates) -> None:
    with pytest.raises(ConfigurationError, match="needs a TLS URL"):
        RedisStore(f"redis://{HOST}:1/0?ssl_ca_certs={certs.ca}")


def test_client_certificate(mtls_server: TLSRedisServer, certs: Certificates) -> None:
    without = RedisStore(f"{mtls_server.url}?ssl_ca_certs={certs.ca}")
    try:
        with pytest.raises(StoreUnavailableError):
            without.ping()
    finally:
        without.close()
    url = f"{mtls_server.url}?ssl_ca_certs={certs.ca}&ssl_certfile={certs.client_cert}&ssl_keyfile={certs.client_key}"
    store = RedisStore(url)
    try:
        lifecycle(store)
    finally:
        store.close()


@pytest.mark.anyio
async def test_tls_async_face(mtls_server: TLSRedisServer, certs: Certificates) -> None:
    store = RedisStore(f"{mtls_server.url}?ssl_ca_certs={certs.ca}",
                       ssl_certfile=str(certs.client_cert), ssl_keyfile=str(certs.client_key))  # fmt: skip
    try:
        key = new_key()
        assert (await store.acreate(key, fresh(user="bo"))).outcome is Outcome.OK
        assert (await store.aload(key)) is not None
        assert await store.adelete(key)
    finally:
        await store.aclose()
        store.close()


def test_tls_with_the_near_cache(mtls_server: TLSRedisServer, certs: Certificates) -> None:
    """The near cache's invalidation connection takes the store's TLS settings, from the URL
    (the CA) and from keywords (the client certificate): tracking comes on, a repeat is a hit."""
    store = RedisStore(f"{mtls_server.url}?ssl_ca_certs={certs.ca}&near_cache=1",
                       ssl_certfile=str(certs.client_cert), ssl_keyfile=str(certs.client_key))  # fmt: skip
    try:
        key = new_key()
        assert store.create(key, fresh(user="al")).outcome is Outcome.OK
        cache = store.near_cache
        assert cache is not None
        deadline = time.monotonic() + 10
        while True:  # until a load is answered from memory (tracking on over TLS)
            hits = cache.stats().hits
            assert store.load(key) is not None
            if cache.stats().hits > hits:
                break
            assert time.monotonic() < deadline, "the near cache never served a hit over TLS"
            time.sleep(0.01)
        assert store.delete(key)
        assert store.load(key) is None
    finally:
        store.close()


# --- ACL users ---------------------------------------------------------------


def documented_acl(prefix: str = "ss:") -> list[str]:
    """The ``ACL SETUSER`` line in docs/operations.md, its password and prefix filled in."""
    blocks = re.findall(r"```acl\n(.*?)\n```", DOCS.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/operations.md must hold exactly one ```acl block"
    line = blocks[0].strip().replace(">CHANGE-ME", f">{PASSWORD}").replace("~ss:*", f"~{prefix}*")
    return shlex.split(line)


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    with RedisServer() as server, server.client() as admin:
        admin.execute_command(*documented_acl())
        admin.execute_command("ACL", "SETUSER", "stranger", "on", f">{PASSWORD}", "~other:*", "+@all")
        yield server


def test_the_documented_acl_user_runs_the_whole_lifecycle(acl_server: RedisServer) -> None:
    store = RedisStore(f"redis://serversession:{PASSWORD}@{HOST}:{acl_server.port}/0")
    try:
        with acl_server.client() as admin:
            admin.script_flush()  # the first script call must take the EVAL / SCRIPT LOAD path too
        lifecycle(store)
        lifecycle(store)
    finally:
        store.close()


def test_the_acl_user_with_wait_replicas(acl_server: RedisServer) -> None:
    """WAIT is in the line: a delete with ``wait_replicas`` (no replica here: it times out, logged)."""
    url = f"redis://serversession:{PASSWORD}@{HOST}:{acl_server.port}/0?wait_replicas=1&wait_timeout=0.05"
    store = RedisStore(url)
    try:
        key = new_key()
        store.create(key, fresh())
        with acl_server.client() as admin:
            admin.script_flush()
        assert store.delete(key)
    finally:
        store.close()


@pytest.mark.anyio
async def test_the_acl_user_async_face(acl_server: RedisServer) -> None:
    store = RedisStore(f"redis://serversession:{PASSWORD}@{HOST}:{acl_server.port}/0")
    try:
        key = new_key()
        assert (await store.acreate(key, fresh(user="cy"))).outcome is Outcome.OK
        assert (await store.aload(key)) is not None
        assert [s.key for s in await store.alist_user("cy")] == [key]
        assert await store.adelete(key)
    finally:
        await store.aclose()
        store.close()


def test_a_user_without_rights_on_the_prefix_gets_a_clear_error(acl_server: RedisServer) -> None:
    store = RedisStore(f"redis://stranger:{PASSWORD}@{HOST}:{acl_server.port}/0")
    try:
        store.ping()  # logged in: PING touches no key
        with pytest.raises(StoreError) as caught:
            store.create(new_key(), fresh())
        assert "no permissions to access one of the keys" in str(caught.value)
        assert isinstance(caught.value.__cause__, redis.exceptions.NoPermissionError)
    finally:
        store.close()


def test_a_wrong_password_is_unavailable(acl_server: RedisServer) -> None:
    store = RedisStore(f"redis://serversession:wrong@{HOST}:{acl_server.port}/0")
    try:
        with pytest.raises(StoreUnavailableError):
            store.ping()
    finally:
        store.close()


def test_another_prefix_needs_its_own_acl(acl_server: RedisServer) -> None:
    """The documented line's key pattern is the store's prefix, nothing wider."""
    store = RedisStore(f"redis://serversession:{PASSWORD}@{HOST}:{acl_server.port}/0", prefix="app2:")
    try:
        with pytest.raises(StoreError):
            store.create(new_key(), fresh())
    finally:
        store.close()


# --- Sentinel ----------------------------------------------------------------


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelSet]:
    with SentinelSet(sentinel_password=SENTINEL_PASSWORD) as found:
        yield found


def test_the_sentinel_set_fails_over(sentinels: SentinelSet) -> None:
    """The harness itself, with redis-py's own Sentinel client: the replica takes over."""
    finder = redis.sentinel.Sentinel([(HOST, s.port) for s in sentinels.sentinels], socket_timeout=2,
                                     sentinel_kwargs={"password": SENTINEL_PASSWORD, "socket_timeout": 2})
    master = finder.master_for(sentinels.service, socket_timeout=2)
    try:
        master.set("before", "1")
        assert finder.discover_master(sentinels.service)[1] == sentinels.master_port()
        old = sentinels.master_port()
        new = sentinels.failover()
        assert new != old
        deadline = time.monotonic() + 10
        while True:  # the first command after the switch may meet the old, demoted master
            try:
                master.set("after", "1")
                break
            except (redis.ConnectionError, redis.ReadOnlyError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert master.get("before") == b"1"
    finally:
        master.close()
        for s in finder.sentinels:
            s.close()


def until_available(call: Callable[[], T], what: str) -> T:
    """``call()`` until it stops answering StoreUnavailableError (the first calls after a
    failover may meet the demoted master); bounded."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return call()
        except StoreUnavailableError:
            if time.monotonic() > deadline:
                raise AssertionError(f"the store never reached the new master: {what}") from None
            time.sleep(0.1)


async def auntil_available(call: Callable[[], Awaitable[T]], what: str) -> T:
    """The async twin of :func:`until_available`."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return await call()
        except StoreUnavailableError:
            if time.monotonic() > deadline:
                raise AssertionError(f"the store never reached the new master: {what}") from None
            await anyio.sleep(0.1)


def test_sentinel_url_sessions_survive_a_failover(sentinels: SentinelSet, caplog: pytest.LogCaptureFixture) -> None:
    """Sessions keep working across ``SENTINEL FAILOVER`` through the new master, found
    without a restart; a logout acknowledged with ``wait_replicas`` stays done."""
    store = RedisStore(f"{sentinels.url}&wait_replicas=1&wait_timeout=2")
    try:
        sentinels.wait_synced()  # WAIT 1 needs a replica that follows
        before = sentinels.master_port()
        kept, ended = new_key(), new_key()
        assert store.create(kept, fresh(user="di")).outcome is Outcome.OK
        assert store.create(ended, fresh(user="di")).outcome is Outcome.OK
        with caplog.at_level("WARNING", logger="serversession"):
            assert store.delete(ended)  # WAIT 1 on the same connection: the replica has it (and the creates)
        assert not [r for r in caplog.records if "replicas within" in r.getMessage()], "WAIT timed out"
        assert sentinels.failover() != before
        loaded = until_available(lambda: store.load(kept), "load")
        assert loaded is not None and loaded.data["cart"] == '["apple"]'
        assert store.load(ended) is None  # the acknowledged logout was not undone
        # A read may still be answered by the demoted master (now a replica); the first
        # write there meets READONLY, which drops the connection: the next finds the new master.
        written = until_available(lambda: store.commit(kept, Commit(set_data={"after": "1"})), "commit")
        assert written.outcome is Outcome.OK
        assert [s.key for s in store.list_user("di")] == [kept]
        master, _ = sentinels.nodes()
        assert master.port != before
        with master.client() as admin:  # the write went to the node now named master
            assert admin.hget(f"ss:s:{kept}", "d:after") == b"1"
    finally:
        store.close()


def test_sentinel_url_forms() -> None:
    """``redis+sentinel://[user:pass@]h:p[,h:p...]/service[/db]`` and its TLS and Valkey forms."""
    RedisStore(f"redis+sentinel://{HOST}:26379,{HOST}:26380/sessions/0").close()
    RedisStore(f"rediss+sentinel://u:p@{HOST}:26379/sessions").close()
    RedisStore(f"valkey+sentinel://{HOST}/sessions/2?sentinel_password=s&socket_timeout=1").close()
    RedisStore(f"valkeys+sentinel://[::1]:26379,{HOST}/sessions?ssl_cert_reqs=none").close()
    for bad in [
        f"redis+sentinel://{HOST}:26379/",  # no service name
        f"redis+sentinel://{HOST}:26379",
        "redis+sentinel:///sessions",  # no sentinel
        f"redis+sentinel://{HOST}:26379,,{HOST}:1/sessions",
        f"redis+sentinel://{HOST}:port/sessions",
        f"redis+sentinel://{HOST}:26379/sessions/zero",  # db is a number
        f"redis+sentinel://{HOST}:26379/sessions/0/more",
        f"redis+sentinel://{HOST}:26379/sessions?socket_timeot=1",  # the redis:// checks apply
        f"redis+sentinel://{HOST}:26379/sessions?ssl_ca_certs=/x",  # TLS options need rediss+sentinel
        f"redis+sentinel://{HOST}:26379/sessions?sentinel_password=",
    ]:
        with pytest.raises(ConfigurationError):
            RedisStore(bad)


@pytest.mark.anyio
async def test_sentinel_url_async_face(sentinels: SentinelSet) -> None:
    """The async face finds the master through ``redis.asyncio.sentinel`` (whichever node it
    is now) and follows a failover too."""
    store = RedisStore(sentinels.url)
    try:
        key = new_key()
        assert (await store.acreate(key, fresh(user="ed"))).outcome is Outcome.OK
        assert (await store.aload(key)) is not None
        sentinels.wait_synced()
        with sentinels.nodes()[0].client() as admin:  # the create replicated before the switch
            admin.execute_command("WAIT", 1, 2000)
        sentinels.failover()
        assert (await auntil_available(lambda: store.aload(key), "aload")) is not None
        written = await auntil_available(lambda: store.acommit(key, Commit(set_data={"n": "2"})), "acommit")
        assert written.outcome is Outcome.OK
        assert await store.adelete(key)
        assert (await store.aload(key)) is None
    finally:
        await store.aclose()
        store.close()


@pytest.mark.parametrize("auth", ["", "?sentinel_password=wrong", "?password=" + SENTINEL_PASSWORD])
def test_the_sentinel_password_is_its_own_option(sentinels: SentinelSet, auth: str) -> None:
    """These sentinels ask for a password and the data nodes for none: ``sentinel_password``
    reaches the sentinels only, and the URL's own password (the data nodes') never does."""
    store = RedisStore(sentinels.url.partition("?")[0] + auth)
    try:
        with pytest.raises(StoreUnavailableError, match="No master found"):
            store.ping()
    finally:
        store.close()


@pytest.mark.anyio
async def test_the_sentinel_urls_timeouts_are_used(sentinels: SentinelSet) -> None:
    """``?socket_timeout=`` and ``?socket_connect_timeout=`` on a sentinel URL bound the
    calls as they do on ``redis://`` (where the URL's value wins over the keyword's
    default), on both faces and for the sentinels too; not the 2 s default in their place."""
    store = RedisStore(sentinels.url + "&socket_timeout=0.3&socket_connect_timeout=0.4")
    try:
        store.ping()
        await store.aping()
        pools = [store._sync_client().connection_pool, store._async_client().connection_pool,
                 *(s.connection_pool for s in (*store._finder.sentinels, *store._afinder.sentinels))]  # fmt: skip
        for pool in pools:
            kwargs = pool.connection_kwargs
            assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.3, 0.4), pool
    finally:
        await store.aclose()
