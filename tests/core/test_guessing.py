"""The guessing monitor: a sliding window per address, bounded memory, valid sessions never blocked."""

from __future__ import annotations

from serversession.core.guessing import GuessingMonitor, address_bucket


def test_the_limit_blocks_once_and_the_block_ends_after_the_window() -> None:
    monitor = GuessingMonitor(limit=3, window=60)
    crossed = [monitor.record_miss("10.0.0.1", 1000.0 + i) for i in range(5)]
    assert crossed == [None, None, 3, None, None]  # reported once per block
    assert monitor.blocked_for("10.0.0.1", 1005.0) is not None
    assert monitor.blocked_for("10.0.0.2", 1005.0) is None  # another address is not touched
    assert monitor.blocked_for("10.0.0.1", 1002.0 + 60) is None  # the block lasts one window


def test_the_window_slides_rather_than_resetting_at_its_edge() -> None:
    monitor = GuessingMonitor(limit=10, window=60)
    for i in range(8):
        monitor.record_miss("10.0.0.1", 59.0 + i * 0.01)  # 8 misses just before the window's edge
    # Just after the edge the previous window still counts almost fully: 3 more cross 10.
    assert [monitor.record_miss("10.0.0.1", 60.5 + i) for i in range(3)][-1] is not None


def test_misses_spread_thinner_than_the_limit_never_block() -> None:
    monitor = GuessingMonitor(limit=5, window=60)
    assert all(monitor.record_miss("10.0.0.1", t * 30.0) is None for t in range(100))  # 2 a minute


def test_ipv6_counts_per_slash_64() -> None:
    assert address_bucket("2001:db8:1:2:aaaa::1") == address_bucket("2001:db8:1:2:bbbb::9")
    assert address_bucket("2001:db8:1:3::1") != address_bucket("2001:db8:1:2::1")
    assert address_bucket("192.0.2.7") == "192.0.2.7"
    assert address_bucket("::ffff:192.0.2.7") == "192.0.2.7"  # a dual-stack server's view of an IPv4 peer
    assert address_bucket("::ffff:203.0.113.9") != address_bucket("::ffff:192.0.2.1")
    assert address_bucket("not an address") == "not an address"


def test_recently_valid_keys_are_known_for_one_window_and_memory_is_bounded() -> None:
    monitor = GuessingMonitor(limit=1, window=60, max_addresses=10, max_known=10)
    monitor.record_valid("k", 100.0)
    assert monitor.known_valid("k", 150.0) and not monitor.known_valid("k", 161.0)
    for i in range(25):
        monitor.record_valid(f"key{i}", 100.0)
        monitor.record_miss(f"10.0.1.{i}", 100.0)
    for i in range(25):  # every one of them blocked: the blocks are bounded too
        monitor.record_miss(f"10.0.2.{i}", 100.0)
    assert len(monitor._known) <= 10 and len(monitor._counts) <= 10 and len(monitor._blocked) <= 10
    assert monitor.known_valid("key24", 100.0)  # the newest are kept


def test_a_zero_limit_turns_it_off() -> None:
    monitor = GuessingMonitor(limit=0, window=60)
    assert all(monitor.record_miss("10.0.0.1", 1.0) is None for _ in range(1000))
    assert monitor.blocked_for("10.0.0.1", 1.0) is None
