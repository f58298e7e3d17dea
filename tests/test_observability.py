"""Metrics and logs: events counted, store calls timed, no session ID in any log line."""

from __future__ import annotations

import logging

import anyio
import pytest
from prometheus_client import CollectorRegistry

from serversession import AsyncSessionManager, MemoryStore, SessionConfig, SessionManager, StoreUnavailableError
from serversession.core.transport import IncomingToken
from serversession.observability import PrometheusMetrics, log_event


class DownStore(MemoryStore):
    def load(self, key: str):  # type: ignore[no-untyped-def]
        raise StoreUnavailableError("down", store="memory", operation="load")


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    return got or 0.0


def test_metrics_count_events_and_time_store_calls() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    manager = SessionManager(MemoryStore(), SessionConfig())
    metrics.attach(manager)
    s = manager.load(IncomingToken(None, via_header=False))
    s["a"] = 1
    sid = manager.save(s).set_cookies[0].split(";")[0].split("=", 1)[1]
    manager.load(IncomingToken(sid, via_header=False))
    manager.load(IncomingToken("A" * 43, via_header=False))
    assert value(registry, "serversession_events_total", kind="created") == 1
    assert value(registry, "serversession_events_total", kind="unknown_id") == 1
    assert value(registry, "serversession_store_seconds_count", store="memory", operation="load") == 2
    body, content_type = metrics.render()
    assert b"serversession_store_seconds_bucket" in body and content_type.startswith("text/plain")


def test_store_errors_are_counted() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    manager = SessionManager(DownStore())
    metrics.attach(manager)
    with pytest.raises(StoreUnavailableError):
        manager.load(IncomingToken("A" * 43, via_header=False))
    assert value(registry, "serversession_store_errors_total", store="memory", operation="load") == 1


def test_async_store_calls_are_timed_too() -> None:
    registry = CollectorRegistry()
    manager = AsyncSessionManager(MemoryStore())
    PrometheusMetrics(registry).attach(manager)

    async def main() -> None:
        s = await manager.aload(IncomingToken(None, via_header=False))
        s["a"] = 1
        await manager.asave(s)

    anyio.run(main)
    assert value(registry, "serversession_store_seconds_count", store="memory", operation="create") == 1


def test_event_logs_name_the_handle_never_the_id(caplog: pytest.LogCaptureFixture) -> None:
    manager = SessionManager(MemoryStore())
    manager.add_listener(log_event)
    with caplog.at_level(logging.INFO, logger="serversession"):
        s = manager.load(IncomingToken(None, via_header=False))
        s["a"] = 1
        sid = manager.save(s).set_cookies[0].split(";")[0].split("=", 1)[1]
        s = manager.load(IncomingToken(sid, via_header=False))
        s.destroy()
        manager.save(s)
    text = caplog.text
    assert "session created" in text and "session destroyed" in text and s.handle in text
    assert sid not in text and s.key not in text
