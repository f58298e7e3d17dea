"""The near cache's counters as Prometheus metrics, read at scrape time.

Why a collector and not counters bumped on each lookup: a hit costs about 2 µs,
and incrementing labelled Prometheus counters would add about as much again.
:class:`~._near_entries.NearEntries` keeps plain integers under the lock it
takes anyway; this collector copies them out only when ``/metrics`` is read.
``prometheus-client`` (the ``metrics`` extra) is imported only here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..exceptions import ConfigurationError
from ._near_cache import NearCache

#: Counter name (without namespace and ``_total``) -> the ``NearCacheStats`` field and its help text.
COUNTERS = {
    "near_cache_hits": ("hits", "Session loads answered from the near cache."),
    "near_cache_misses": ("misses", "Session loads sent to Redis (bypassed ones included)."),
    "near_cache_bypassed": ("bypassed", "Session loads sent to Redis while the near cache was off."),
    "near_cache_dropped_fills": ("dropped_fills", "Replies not cached because an invalidation overtook their read."),
    "near_cache_invalidations": ("invalidations", "Keys Redis reported changed."),
    "near_cache_flushes": ("flushes", "Times the near cache was emptied (loss of tracking, FLUSHALL, topology)."),
    "near_cache_lru_evictions": ("lru_evictions", "Entries dropped to stay within the bounds."),
}
GAUGES = {
    "near_cache_entries": ("entries", "Session records in the near cache."),
    "near_cache_bytes": ("bytes", "Estimated bytes the near cache holds."),
    "near_cache_active": ("active", "1 while tracking is on and hits are served."),
}


class NearCacheCollector:
    """``registry.register(NearCacheCollector(cache))``: the cache's figures, each scrape.

    Names start with ``namespace`` (``serversession``): ``serversession_near_cache_hits_total``
    and the rest of :data:`COUNTERS`, plus the gauges of :data:`GAUGES`. Raises
    :class:`ConfigurationError` if ``prometheus-client`` is not installed.
    """

    def __init__(self, cache: NearCache, namespace: str = "serversession") -> None:
        try:
            from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        except ImportError as exc:
            raise ConfigurationError("metrics need: pip install 'serversession[metrics]'") from exc
        self._counter, self._gauge = CounterMetricFamily, GaugeMetricFamily
        self.cache = cache
        self.namespace = namespace

    def collect(self) -> Iterator[Any]:
        """What the registry calls at each scrape."""
        stats = self.cache.stats().as_dict()
        for name, (field, text) in COUNTERS.items():
            yield self._counter(f"{self.namespace}_{name}", text, value=stats[field])
        for name, (field, text) in GAUGES.items():
            yield self._gauge(f"{self.namespace}_{name}", text, value=stats[field])
