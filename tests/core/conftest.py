"""Fixtures for driving the sans-I/O core with a fake clock and a counting store."""

from __future__ import annotations

import pytest
from core_fakes import Clock, CountingStore

from serversession import MemoryStore, SessionConfig, SessionManager


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> CountingStore:
    return CountingStore(MemoryStore(clock=clock))


@pytest.fixture
def config() -> SessionConfig:
    return SessionConfig(idle_timeout=600, absolute_timeout=3600, renew_fraction=0.1)


@pytest.fixture
def manager(store: CountingStore, config: SessionConfig, clock: Clock) -> SessionManager:
    return SessionManager(store, config, clock=clock)
