"""Managed-Redis test servers: TLS with generated certificates, and a Sentinel set.

Built on :mod:`servers` (free ports, the ``atexit`` safety net, ``RedisServer``)
without changing it. Certificates are made with the ``openssl`` CLI into a
temporary directory at test time, so no key is ever committed: one CA signs the
server certificate (``127.0.0.1`` and ``localhost`` as names) and a client
certificate; a second, unrelated CA exists to be distrusted.

The Sentinel set is one master, one replica and three sentinels (quorum 2) with
short timeouts, so a ``SENTINEL FAILOVER`` finishes in a few seconds. Every
wait is bounded and every process is stopped by the context manager.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from servers import _LIVE, HOST, START_TIMEOUT, RedisServer, _log_tail, _Managed, find_redis_server, free_port

if TYPE_CHECKING:
    from typing_extensions import Self


@dataclass(frozen=True)
class Certificates:
    """PEM files: ``ca`` signs ``server``, ``client`` and ``misnamed`` (issued for
    ``elsewhere.test``, not this host); ``other_ca`` signs nothing here."""

    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    misnamed_cert: Path
    misnamed_key: Path
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    res = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed:\n{res.stderr}")


def _ca(dir: Path, name: str) -> tuple[Path, Path]:
    cert, key = dir / f"{name}.crt", dir / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=dir)  # fmt: skip
    return cert, key


def _leaf(dir: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    cert, key, csr, ext = (dir / f"{name}{s}" for s in (".crt", ".key", ".csr", ".ext"))
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}", cwd=dir)  # fmt: skip
    ext.write_text(extensions)
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext), cwd=dir)  # fmt: skip
    return cert, key


def make_certificates(dir: Path) -> Certificates:
    """Generate the CA, server and client certificates (and an unrelated CA) into ``dir``."""
    dir.mkdir(parents=True, exist_ok=True)
    ca = _ca(dir, "test-ca")
    server = _leaf(dir, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")  # fmt: skip
    client = _leaf(dir, "client", ca, "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    misnamed = _leaf(dir, "misnamed", ca, "subjectAltName=DNS:elsewhere.test\n"
                     "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")  # fmt: skip
    other = _ca(dir, "other-ca")
    return Certificates(dir, ca[0], *server, *client, *misnamed, other[0])


class TLSRedisServer(RedisServer):
    """A TLS-only redis-server (``--port 0``): ``port`` is its TLS port.

    ``auth_clients`` is redis' ``tls-auth-clients``: ``"yes"`` demands a client
    certificate signed by the CA, ``"optional"`` checks one only if it is sent.
    """

    def __init__(self, certs: Certificates, auth_clients: str = "optional", *, misnamed: bool = False) -> None:
        port = free_port()
        cert, key = (certs.misnamed_cert, certs.misnamed_key) if misnamed else (certs.server_cert, certs.server_key)
        super().__init__(
            "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
            "--tls-key-file", str(key), "--tls-ca-cert-file", str(certs.ca),
            "--tls-auth-clients", auth_clients, port=port,
        )  # fmt: skip
        self.certs = certs

    @property
    def url(self) -> str:
        return f"rediss://{HOST}:{self.port}/0"

    def client(self) -> redis.Redis:
        """An admin client that trusts the CA and presents the client certificate (no name check)."""
        return redis.Redis(
            host=HOST, port=self.port, socket_timeout=2, socket_connect_timeout=2, ssl=True,
            ssl_check_hostname=False,
            ssl_ca_certs=str(self.certs.ca), ssl_certfile=str(self.certs.client_cert),
            ssl_keyfile=str(self.certs.client_key),
        )  # fmt: skip


class SentinelProcess(_Managed):
    """One ``redis-server --sentinel`` watching ``service`` on ``master_port``."""

    def __init__(self, service: str, master_port: int, *, down_after_ms: int = 1000,
                 failover_timeout_ms: int = 3000, password: str | None = None) -> None:  # fmt: skip
        self.binary = find_redis_server()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ss-sentinel-"))
        self.log = self.dir / "sentinel.log"
        self.conf = self.dir / "sentinel.conf"
        self.conf.write_text(  # sentinel rewrites this file, so it must be its own and writable
            f"port {self.port}\nbind {HOST}\ndir {self.dir}\nlogfile {self.log}\n"
            f"sentinel monitor {service} {HOST} {master_port} 2\n"
            f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
            f"sentinel failover-timeout {service} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {service} 1\n"
            # Sentinels use their requirepass to reach one another too.
            + (f"requirepass {password}\n" if password else "")
        )
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, socket_timeout=2, socket_connect_timeout=2,
                           password=self.password)  # fmt: skip

    def start(self) -> Self:
        _LIVE.append(self)
        self.proc = subprocess.Popen(
            [self.binary, str(self.conf), "--sentinel"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(redis.RedisError), self.client() as r:
                if r.ping():
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sentinel on port {self.port} did not start:\n{_log_tail(self.log)}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=START_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=START_TIMEOUT)
            else:
                proc.wait()
        if self in _LIVE:
            _LIVE.remove(self)
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelSet(_Managed):
    """A master, a replica and three sentinels (quorum 2) for service ``service``;
    the sentinels ask for ``sentinel_password`` if given (the data nodes ask for none)."""

    def __init__(self, service: str = "sessions", sentinel_password: str | None = None) -> None:
        self.service = service
        self.sentinel_password = sentinel_password
        self.master: RedisServer | None = None
        self.replica: RedisServer | None = None
        self.sentinels: list[SentinelProcess] = []

    @property
    def url(self) -> str:
        """The store URL: ``redis+sentinel://h:p,h:p,h:p/service`` (see docs/operations.md)."""
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        auth = f"?sentinel_password={self.sentinel_password}" if self.sentinel_password else ""
        return f"redis+sentinel://{hosts}/{self.service}{auth}"

    def start(self) -> Self:
        _LIVE.append(self)
        try:
            self.master = RedisServer().start()
            self.replica = RedisServer("--replicaof", HOST, str(self.master.port)).start()
            self._until(lambda: self._link_up(self._replica()), "the replica's link to its master")
            for _ in range(3):
                sentinel = SentinelProcess(self.service, self.master.port, password=self.sentinel_password)
                self.sentinels.append(sentinel.start())
            self._until(self._all_see_everyone, "every sentinel knowing the replica and the other sentinels")
        except BaseException:
            self.stop()
            raise
        return self

    def _replica(self) -> RedisServer:
        if self.replica is None:
            raise RuntimeError("the sentinel set is not started")
        return self.replica

    @staticmethod
    def _link_up(node: RedisServer) -> bool:
        with node.client() as r:
            return bool(r.info("replication").get("master_link_status") == "up")

    def _all_see_everyone(self) -> bool:
        for sentinel in self.sentinels:
            with sentinel.client() as r:
                state = r.sentinel_master(self.service)  # redis-py parses the reply into a dict
                if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < 2:
                    return False
        return True

    def master_port(self) -> int:
        """The port the sentinels now name as the master."""
        with self.sentinels[0].client() as r:
            _, port = r.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(port)

    def nodes(self) -> tuple[RedisServer, RedisServer]:
        """(the node the sentinels name as master now, the other one): roles swap at each failover."""
        if self.master is None or self.replica is None:
            raise RuntimeError("the sentinel set is not started")
        port = self.master_port()
        return (self.master, self.replica) if self.master.port == port else (self.replica, self.master)

    def wait_synced(self) -> None:
        """Until the replica of the moment follows the master and every sentinel knows it."""
        master, replica = self.nodes()

        def synced() -> bool:
            with replica.client() as r:
                info = r.info("replication")
            if info.get("role") != "slave" or info.get("master_port") != master.port:
                return False
            if info.get("master_link_status") != "up":
                return False
            for sentinel in self.sentinels:
                with sentinel.client() as r:
                    replicas = r.sentinel_slaves(self.service)
                if not any(int(x["port"]) == replica.port and not x["is_sdown"] for x in replicas):
                    return False
            return True

        self._until(synced, f"the replica (port {replica.port}) following the master (port {master.port})")

    def failover(self) -> int:
        """``SENTINEL FAILOVER``; wait until the replica is the master every sentinel names
        and the old master follows it.

        Repeatable: each call first waits for the replica of the moment (the old
        master after an earlier failover) to follow, so Sentinel has a replica to promote.
        """
        self.wait_synced()
        old, replica = self.nodes()
        new = replica.port

        def started() -> bool:
            with self.sentinels[0].client() as r:
                try:
                    r.execute_command("SENTINEL", "FAILOVER", self.service)
                except redis.ResponseError as exc:  # NOGOODSLAVE until the sentinel's INFO is fresh
                    if "NOGOODSLAVE" in str(exc) or "INPROG" in str(exc):
                        return False
                    raise
            return True

        def promoted() -> bool:
            with replica.client() as r:
                if r.info("replication").get("role") != "master":
                    return False
            return all(self._named_by(s) == new for s in self.sentinels)

        self._until(started, "a sentinel accepting SENTINEL FAILOVER")
        self._until(promoted, f"the replica (port {new}) promoted in place of port {old.port}")
        self.wait_synced()  # finished: the old master follows the new one
        return new

    def _named_by(self, sentinel: SentinelProcess) -> int:
        with sentinel.client() as r:
            _, port = r.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(port)

    @staticmethod
    def _until(ready: Callable[[], bool], what: str, timeout: float = 3 * START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, KeyError, ValueError):
                if ready():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the sentinel set never reached: {what}")

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for node in (self.replica, self.master):
            if node is not None:
                node.stop()
        if self in _LIVE:
            _LIVE.remove(self)
