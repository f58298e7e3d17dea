"""The near cache's rules, with no server: bypass, tickets, epochs, the lease, the bounds.

The listener's parsing of what a server sends is checked here too; its
connections, against real servers, in ``test_near_cache.py``.
"""

from __future__ import annotations

import pytest

from serversession.exceptions import ConfigurationError
from serversession.stores._near_cache import NearCacheConfig, near_cache_config
from serversession.stores._near_entries import NearEntries, record_size
from serversession.stores._near_listener import ProtocolError, _cluster_nodes, _Reader

RECORD = {"c": "1", "s": "2", "d:cart": '["apple"]'}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def active(max_entries: int = 100, max_bytes: int = 1 << 20) -> tuple[NearEntries, Clock]:
    clock = Clock()
    entries = NearEntries(max_entries, max_bytes, silence_limit=2.0, clock=clock)
    entries.activate([0])
    return entries, clock


def cached(entries: NearEntries, key: str, record: dict[str, str] = RECORD) -> bool:
    return entries.fill(entries.begin(key), record)


def test_nothing_is_served_or_cached_before_tracking_is_on() -> None:
    entries = NearEntries(10, 1 << 20, silence_limit=2.0)
    assert not cached(entries, "k") and entries.get("k") is None
    stats = entries.stats()
    assert (stats.bypassed, stats.dropped_fills, stats.entries) == (1, 1, 0)


def test_a_hit_returns_a_read_only_copy() -> None:
    entries, _ = active()
    source = dict(RECORD)
    assert entries.fill(entries.begin("k"), source)
    source["c"] = "changed"
    hit = entries.get("k")
    assert hit == RECORD
    with pytest.raises(TypeError):
        hit["c"] = "x"  # type: ignore[index]


def test_an_invalidation_before_the_reply_spoils_the_read() -> None:
    entries, _ = active()
    ticket = entries.begin("k")
    entries.invalidate(["k"])
    assert not entries.fill(ticket, RECORD) and entries.get("k") is None


def test_an_invalidation_of_another_key_does_not() -> None:
    entries, _ = active()
    ticket = entries.begin("k")
    entries.invalidate(["other"])
    assert entries.fill(ticket, RECORD)


def test_an_own_write_spoils_reads_in_flight_and_evicts() -> None:
    entries, _ = active()
    cached(entries, "k")
    ticket = entries.begin("k")
    entries.evict("k")
    assert entries.get("k") is None and not entries.fill(ticket, RECORD)
    assert entries.stats().local_evictions == 1


def test_a_flush_or_a_loss_spoils_every_read_in_flight() -> None:
    entries, _ = active()
    ticket = entries.begin("k")
    entries.flush()
    assert not entries.fill(ticket, RECORD)
    cached(entries, "j")
    ticket = entries.begin("k")
    entries.deactivate()
    entries.activate([0])
    assert not entries.fill(ticket, RECORD) and entries.get("j") is None


def test_a_silent_connection_turns_the_cache_off_at_the_next_lookup() -> None:
    entries, clock = active()
    cached(entries, "k")
    clock.now += 1.5
    entries.heard(0)
    clock.now += 1.5
    assert entries.get("k") is not None  # heard 1.5 s ago: within the lease
    clock.now += 1.0
    assert entries.get("k") is None and not entries.active
    assert entries.stats().entries == 0


def test_the_lease_is_the_most_silent_connection() -> None:
    clock = Clock()
    entries = NearEntries(10, 1 << 20, silence_limit=2.0, clock=clock)
    entries.activate([0, 1])
    cached(entries, "k")
    clock.now += 1.5
    entries.heard(0)
    clock.now += 1.0
    assert entries.get("k") is None  # link 1 has been silent 2.5 s


def test_empty_replies_are_not_cached() -> None:
    entries, _ = active()
    assert not cached(entries, "k", {})


def test_entries_are_bounded_least_recently_used_first() -> None:
    entries, _ = active(max_entries=2)
    for key in ("a", "b"):
        cached(entries, key)
    entries.get("a")
    cached(entries, "c")
    assert entries.get("b") is None and entries.get("a") is not None and entries.get("c") is not None
    assert entries.stats().lru_evictions == 1


def test_bytes_are_bounded_and_a_huge_record_is_not_cached() -> None:
    size = record_size("a", RECORD)
    entries, _ = active(max_bytes=size * 8 + 10)
    for key in "abcdefghij":
        cached(entries, key)
    stats = entries.stats()
    assert stats.bytes <= entries.max_bytes and stats.entries == 8
    assert not cached(entries, "big", {"d:blob": "x" * size * 2})


def test_released_tickets_leave_nothing_behind() -> None:
    entries, _ = active()
    for _ in range(3):
        entries.release(entries.begin("k"))
    assert entries._pending == {}


def test_the_config_and_the_url_option() -> None:
    assert near_cache_config("1") == NearCacheConfig() and near_cache_config("off") is None
    assert near_cache_config({"max_entries": 5}) == NearCacheConfig(max_entries=5)
    for bad in ("maybe", {"nope": 1}, 3):
        with pytest.raises(ConfigurationError):
            near_cache_config(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        NearCacheConfig(heartbeat=3.0, silence_limit=2.0)


def test_the_reader_parses_invalidations_flushes_and_pongs_in_pieces() -> None:
    wire = (
        b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*2\r\n$5\r\nss:s:\r\n$1\r\nk\r\n"
        b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n"
        b"*2\r\n$4\r\npong\r\n$0\r\n\r\n-ERR no\r\n"
    )
    reader, got = _Reader(), []
    for i in range(0, len(wire), 7):
        reader.feed(wire[i : i + 7])
        got.extend(reader.messages())
    assert got[:3] == [
        [b"message", b"__redis__:invalidate", [b"ss:s:", b"k"]],
        [b"message", b"__redis__:invalidate", None],
        [b"pong", b""],
    ]
    assert isinstance(got[3], ProtocolError)


def test_a_failed_master_with_slots_keeps_the_cluster_cache_off() -> None:
    healthy = (
        "a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-8191\n"
        "b 127.0.0.1:7001@17001 master - 0 0 2 connected 8192-16383\n"
        "c 127.0.0.1:7002@17002 slave a 0 0 1 connected\n"
    )
    nodes, _ = _cluster_nodes(healthy, "seed")
    assert nodes == [("127.0.0.1", 7000), ("127.0.0.1", 7001), ("127.0.0.1", 7002)]
    with pytest.raises(ProtocolError):
        _cluster_nodes(healthy.replace("b 127.0.0.1:7001@17001 master", "b 127.0.0.1:7001@17001 master,fail"), "s")


def test_the_counters_reach_prometheus_at_scrape_time() -> None:
    prom = pytest.importorskip("prometheus_client")
    from serversession.stores._near_cache import NearCache
    from serversession.stores._near_metrics import NearCacheCollector

    cache = NearCache("redis://127.0.0.1:1/0", "ss:s:", cluster=False)  # never started: no lookup made
    cache.entries.activate([0])
    cache.entries.fill(cache.entries.begin("ss:s:k"), RECORD)
    cache.entries.get("ss:s:k")
    registry = prom.CollectorRegistry()
    registry.register(NearCacheCollector(cache))
    assert registry.get_sample_value("serversession_near_cache_hits_total") == 1
    assert registry.get_sample_value("serversession_near_cache_entries") == 1
    assert registry.get_sample_value("serversession_near_cache_active") == 1
