"""The near cache's ears: one invalidation connection per Redis node, kept by one thread.

How it asks. Each connection (RESP2) runs ``CLIENT ID``, then ``CLIENT
TRACKING ON REDIRECT <its own id> BCAST PREFIX <prefix>s:``, then ``SUBSCRIBE
__redis__:invalidate``: from then on the server sends it, as a pub/sub message,
the name of every session key any client changes (a write, a delete, an
expiry, an eviction; a FLUSHALL arrives as a null message and flushes
everything). BCAST rather than default tracking: default tracking must be
switched on with the redirect on *every* pooled connection that reads
(and again after each reconnect of either side), which the store's clients do
not let us hook without owning their pools, and it costs the server a tracking
table entry per key and reading client. BCAST needs no change to the store's
clients and no server memory per key; its cost is that every process hears
about every session write, cached or not (a few microseconds each to parse
and miss).

Why a thread. One listener per process serves the sync face and every event
loop alike, and a request never waits on it: lookups only read the shared
:class:`~._near_entries.NearEntries`.

Failures. A connection that closes, errs or stays silent past the lease (its
PING every ``heartbeat`` seconds unanswered for ``silence_limit``) deactivates
the cache at once (flush, then bypass); so does a lookup that finds the lease
run out first, and the supervisor, checking every ``heartbeat``, takes that as
a loss too (else the cache would stay off for good behind connections that
look healthy). The supervisor reconnects with backoff and activates
again only once every node's connection has tracking on. On a cluster the
connections go to every node that is not marked failed, replicas included (a
replica reports the writes it replicates, so a manual failover is heard from
the first write), and the supervisor re-reads ``CLUSTER NODES`` every
``topology_interval`` seconds: any change of nodes, roles or slots flushes
the cache and starts over; a failed node that still owns slots keeps the
cache off.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._near_entries import NearEntries

CHANNEL = b"__redis__:invalidate"

log = logging.getLogger("serversession")

_Node = tuple[str, int]


class ProtocolError(Exception):
    """The server answered something the listener did not ask for (internal; means reconnect)."""


class _Reader:
    """Incremental RESP2 parsing of what an invalidation connection receives."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> None:
        self._buf += data

    def messages(self) -> list[Any]:
        """Every complete reply received so far; an incomplete one waits for more bytes."""
        out, pos = [], 0
        while (parsed := self._parse(pos)) is not None:
            value, pos = parsed
            out.append(value)
        self._buf = self._buf[pos:]
        return out

    def _parse(self, pos: int) -> tuple[Any, int] | None:
        line_end = self._buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        kind, text, pos = self._buf[pos : pos + 1], self._buf[pos + 1 : line_end], line_end + 2
        if kind == b"+":
            return text, pos
        if kind == b"-":
            return ProtocolError(text.decode(errors="replace")), pos
        if kind == b":":
            return int(text), pos
        if kind == b"$":
            size = int(text)
            if size < 0:
                return None, pos
            if len(self._buf) < pos + size + 2:
                return None
            return self._buf[pos : pos + size], pos + size + 2
        if kind == b"*":
            count = int(text)
            if count < 0:
                return None, pos
            items = []
            for _ in range(count):
                parsed = self._parse(pos)
                if parsed is None:
                    return None
                item, pos = parsed
                items.append(item)
            return items, pos
        raise ProtocolError(f"unexpected RESP type {kind!r}")


def _command(*args: str | bytes | int) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


class _Link:
    """One node's invalidation connection; its thread reads until the connection ends."""

    def __init__(self, index: int, node: _Node, factory: Callable[[str, int], Any]) -> None:
        self.index = index
        self.node = node
        self._conn = factory(*node)
        self._reader = _Reader()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = False

    def _call(self, *args: str | bytes | int) -> Any:
        """One command and its reply, before the reading thread starts."""
        sock = self._connected()
        sock.sendall(_command(*args))
        while True:
            replies = self._reader.messages()
            if replies:
                if len(replies) > 1 or isinstance(replies[0], ProtocolError):
                    raise ProtocolError(f"unexpected reply to {args[0]!r}: {replies!r}")
                return replies[0]
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed during the tracking handshake")
            self._reader.feed(data)

    def _connected(self) -> socket.socket:
        if self._sock is None:
            raise ProtocolError("the invalidation connection is not open")
        return self._sock

    def open(self, prefix: str) -> None:
        """Connect (redis-py does AUTH, TLS and the handshake), then switch tracking on."""
        self._conn.connect()
        # Raw reads from here on: redis-py's parsers expect one reply per command, not pub/sub pushes.
        self._sock = self._conn._sock
        client_id = self._call("CLIENT", "ID")
        self._call("CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", "PREFIX", prefix)
        reply = self._call("SUBSCRIBE", CHANNEL)
        if not (isinstance(reply, list) and reply[:2] == [b"subscribe", CHANNEL]):
            raise ProtocolError(f"unexpected SUBSCRIBE reply {reply!r}")

    def start(self, entries: NearEntries, heartbeat: float, silence_limit: float, lost: Callable[[], None]) -> None:
        self._thread = threading.Thread(
            target=self._read, args=(entries, heartbeat, silence_limit, lost),
            name=f"near-cache-{self.node[0]}:{self.node[1]}", daemon=True,
        )  # fmt: skip
        self._thread.start()

    def _read(self, entries: NearEntries, heartbeat: float, silence_limit: float, lost: Callable[[], None]) -> None:
        last_ping = last_heard = time.monotonic()
        try:
            sock = self._connected()
            sock.settimeout(heartbeat)
            while not self._closing:
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    data = None
                if data == b"":
                    raise ConnectionError("invalidation connection closed")
                if data:
                    last_heard = time.monotonic()
                    self._reader.feed(data)
                    self._apply(entries, self._reader.messages())
                elif time.monotonic() - last_heard > silence_limit:  # no PONG: a partition, a stopped server
                    raise TimeoutError(f"no answer to the heartbeat for {silence_limit} s")
                if time.monotonic() - last_ping >= heartbeat:
                    sock.sendall(_command("PING"))
                    last_ping = time.monotonic()
        except Exception as exc:  # any failure, a parsing bug included, is a loss: reconnect
            if not self._closing:
                log.warning("near cache off: invalidation connection to %s:%s lost (%s: %s)",
                            *self.node, type(exc).__name__, exc)  # fmt: skip
        finally:
            if not self._closing:
                lost()  # deactivates at once, in this thread

    def _apply(self, entries: NearEntries, replies: list[Any]) -> None:
        for reply in replies:
            if isinstance(reply, ProtocolError):
                raise reply
            if not isinstance(reply, list) or not reply:
                raise ProtocolError(f"unexpected message {reply!r}")
            if reply[0] == b"message" and len(reply) == 3 and reply[1] == CHANNEL:
                keys = reply[2]
                if keys is None:  # FLUSHALL / FLUSHDB
                    entries.flush()
                else:
                    entries.invalidate(k.decode(errors="surrogateescape") for k in keys)
            elif reply[0] != b"pong":
                raise ProtocolError(f"unexpected message {reply!r}")
            entries.heard(self.index)

    def close(self) -> None:
        self._closing = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self._conn.disconnect()


def _cluster_nodes(text: str, seed_host: str) -> tuple[list[_Node], tuple[Any, ...]]:
    """(nodes to listen to, a fingerprint of the topology) from CLUSTER NODES.

    Raises ProtocolError while a failed node still owns slots: its slots cannot
    be tracked, so the cache stays off.
    """
    nodes, shape = [], []
    for line in sorted(text.splitlines()):
        parts = line.split()
        if len(parts) < 8:
            continue
        node_id, address, flags, master, slots = parts[0], parts[1], set(parts[2].split(",")), parts[3], parts[8:]
        host, _, port = address.split("@")[0].rpartition(":")
        role = "master" if "master" in flags else "replica"
        failed = bool(flags & {"fail", "noaddr", "handshake"})
        shape.append((node_id, address.split("@")[0], role, master, failed, tuple(slots)))
        if failed:
            if slots and role == "master":
                raise ProtocolError(f"cluster node {address} has failed and still owns slots")
            continue
        nodes.append((host or seed_host, int(port)))
    return nodes, tuple(shape)


class InvalidationListener:
    """Keeps ``entries`` active while every node's invalidation connection has tracking on.

    ``url`` is the store's driver URL (``redis://`` or ``rediss://``, with its
    query options: auth, TLS, timeouts); ``cluster`` says whether it names a
    cluster's seed node. ``prefix`` is the key prefix tracked (``"ss:s:"``).
    ``heartbeat`` (seconds) paces the PINGs; a connection silent for
    ``silence_limit`` seconds is a loss; ``connect_timeout`` bounds each
    connect; ``topology_interval`` paces the cluster's ``CLUSTER NODES`` check.
    :meth:`start` returns at once; :meth:`stop` ends the threads and closes the
    connections.
    """

    def __init__(
        self, entries: NearEntries, url: str, prefix: str, *, cluster: bool, heartbeat: float = 0.5,
        silence_limit: float = 2.0, connect_timeout: float = 2.0, topology_interval: float = 1.0, **options: Any,
    ) -> None:  # fmt: skip
        self.entries = entries
        self.prefix = prefix
        self.cluster = cluster
        self.heartbeat = heartbeat
        self.silence_limit = silence_limit
        self.topology_interval = topology_interval
        pool = redis.ConnectionPool.from_url(url, **options)
        self._class = pool.connection_class
        self._kwargs = {
            **pool.connection_kwargs, "protocol": 2, "socket_timeout": connect_timeout,
            "socket_connect_timeout": connect_timeout, "retry": Retry(NoBackoff(), 0),
        }  # fmt: skip
        pool.disconnect()
        self.seed: _Node = (self._kwargs.pop("host"), int(self._kwargs.pop("port")))
        self._known: list[_Node] = [self.seed]
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread: threading.Thread | None = None
        #: How many times tracking was (re)established; tests wait on it.
        self.established = 0

    def _connection(self, host: str, port: int) -> Any:
        return self._class(host=host, port=port, **self._kwargs)

    def start(self) -> None:
        """Start the supervisor thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._supervise, name="near-cache-supervisor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop listening; the cache is deactivated (empty, bypassed)."""
        self._stop.set()
        self._lost.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.entries.deactivate()

    def _discover(self) -> tuple[list[_Node], tuple[Any, ...]]:
        """The nodes to listen to, and the topology's fingerprint (a standalone server has none)."""
        if not self.cluster:
            return [self.seed], ()
        failure: Exception | None = None
        for host, port in dict.fromkeys([self.seed, *self._known]):
            conn = self._connection(host, port)
            try:
                conn.connect()
                conn.send_command("CLUSTER", "NODES")
                raw = conn.read_response()
                nodes, shape = _cluster_nodes(raw.decode() if isinstance(raw, bytes) else raw, host)
                self._known = nodes
                return nodes, shape
            except (redis.RedisError, OSError, ProtocolError) as exc:
                failure = exc
            finally:
                conn.disconnect()
        raise ProtocolError(f"no cluster node answered CLUSTER NODES: {failure}")

    def _supervise(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            links: list[_Link] = []
            try:
                nodes, shape = self._discover()
                for index, node in enumerate(nodes):
                    links.append(_Link(index, node, self._connection))
                    links[-1].open(self.prefix)
                self._lost.clear()
                for link in links:
                    link.start(self.entries, self.heartbeat, self.silence_limit, self._on_lost)
                self.entries.activate(range(len(links)))
                if self._lost.is_set():  # a link died before activation: its loss must win
                    continue
                self.established += 1
                log.info("near cache on: tracking %d node(s), prefix %r", len(links), self.prefix)
                backoff = 0.05
                next_check = time.monotonic() + self.topology_interval
                while not self._stop.is_set() and not self._lost.wait(self.heartbeat):
                    if not self.entries.active:  # a lookup found the lease run out (rule 4): start over
                        log.warning("near cache off: a lookup found an invalidation connection silent; reconnecting")
                        break
                    if self.cluster and time.monotonic() >= next_check:
                        next_check = time.monotonic() + self.topology_interval
                        if self._discover()[1] != shape:
                            break
            except Exception as exc:  # the cache stays off; a bug must not end the retries either
                log.debug("near cache: tracking not established: %s: %s", type(exc).__name__, exc)
            finally:
                self.entries.deactivate()
                for link in links:
                    link.close()
            self._stop.wait(backoff)
            backoff = min(1.0, backoff * 2)

    def _on_lost(self) -> None:
        self._lost.set()
        self.entries.deactivate()
