"""Logs and Prometheus metrics, fed by lifecycle events and timed store calls.

* :func:`log_event` is a listener that writes one structured log line per
  :class:`~serversession.core.events.SessionEvent` to the ``serversession``
  logger, naming the session by its public handle (never its ID).
* :class:`PrometheusMetrics` (extra ``metrics``: ``prometheus-client``) counts
  events by kind and times every store operation by store and operation.
  ``attach(manager)`` wires both; nothing is measured unless you attach it, so
  the request path pays nothing by default.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .core.events import EventKind, SessionEvent
from .exceptions import ConfigurationError

log = logging.getLogger("serversession")

STORE_OPERATIONS = frozenset({"load", "create", "commit", "rotate", "delete", "list_user", "purge_expired", "ping"})


#: Kinds a request can trigger at will (one per refused request): the request boundary
#: already logs them, at most once per route and reason a minute (``integrations.kit``).
_FLOODABLE = frozenset({EventKind.REFUSED, EventKind.CSRF_FAILED, EventKind.UNKNOWN_ID})


def log_event(event: SessionEvent) -> None:
    """Listener: log ``event`` at INFO with handle, user and reason as ``extra`` fields.

    Refusals, CSRF failures and unknown IDs are logged at DEBUG: any client can
    cause one per request, and the boundary's own WARNING line (rate-limited)
    already tells an operator. Metrics still count every one.
    """
    level = logging.DEBUG if event.kind in _FLOODABLE else logging.INFO
    log.log(
        level,
        "session %s handle=%s user=%s%s",
        event.kind.value,
        event.handle or "-",
        event.user or "-",
        f" reason={event.reason!r}" if event.reason else "",
        extra={"session_event": event.kind.value, "session_handle": event.handle, "session_user": event.user},
    )


class ObservedStore:
    """Wraps a store so each operation (sync or ``a``-prefixed async) is timed.

    ``observe(store_kind, operation, seconds, error)`` is called after each call.
    """

    def __init__(self, store: Any, observe: Callable[[str, str, float, BaseException | None], None]) -> None:
        self._store = store
        self._observe = observe
        self.kind = getattr(store, "kind", "unknown")

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        operation = name[1:] if name.startswith("a") and name[1:] in STORE_OPERATIONS else name
        if operation not in STORE_OPERATIONS:
            return target
        if operation != name:

            async def timed_async(*args: Any) -> Any:
                start = time.perf_counter()
                try:
                    result = await target(*args)
                except BaseException as exc:
                    self._observe(self.kind, operation, time.perf_counter() - start, exc)
                    raise
                self._observe(self.kind, operation, time.perf_counter() - start, None)
                return result

            return timed_async

        def timed(*args: Any) -> Any:
            start = time.perf_counter()
            try:
                result = target(*args)
            except BaseException as exc:
                self._observe(self.kind, operation, time.perf_counter() - start, exc)
                raise
            self._observe(self.kind, operation, time.perf_counter() - start, None)
            return result

        return timed


class PrometheusMetrics:
    """Prometheus counters and histograms for sessions and their store.

    Metrics (prefix ``namespace``, default ``serversession``):
    ``_events_total{kind}`` (created, rotated, destroyed, revoked, unknown_id =
    strict-mode rejections, csrf_failed, ...), ``_store_seconds{store,operation}``
    (histogram) and ``_store_errors_total{store,operation}``. Raises
    :class:`ConfigurationError` if ``prometheus-client`` is not installed.
    """

    def __init__(self, registry: Any = None, namespace: str = "serversession") -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:
            raise ConfigurationError("metrics need: pip install 'serversession[metrics]'") from exc
        self.registry = registry if registry is not None else prom.REGISTRY
        self.events = prom.Counter(
            f"{namespace}_events_total", "Session lifecycle events by kind.", ["kind"], registry=self.registry
        )
        self.store_seconds = prom.Histogram(
            f"{namespace}_store_seconds",
            "Session store operation latency.",
            ["store", "operation"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.store_errors = prom.Counter(
            f"{namespace}_store_errors_total",
            "Failed session store operations.",
            ["store", "operation"],
            registry=self.registry,
        )

    def on_event(self, event: SessionEvent) -> None:
        """Listener: count one event."""
        self.events.labels(event.kind.value).inc()

    def observe_store(self, store: str, operation: str, seconds: float, error: BaseException | None) -> None:
        """Record one store call's latency (and its failure)."""
        self.store_seconds.labels(store, operation).observe(seconds)
        if error is not None:
            self.store_errors.labels(store, operation).inc()

    def attach(self, manager: Any) -> None:
        """Count ``manager``'s events and time its store calls from now on."""
        manager.add_listener(self.on_event)
        manager.store = ObservedStore(manager.store, self.observe_store)

    def render(self) -> tuple[bytes, str]:
        """Return (body, content type) for a ``/metrics`` endpoint."""
        import prometheus_client as prom

        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST
