"""What only the memory store has: its timing wheel, its User-Agent table, its packed records.

The store contract is tested once, against every store, in test_conformance.py.
Here a fake clock moves time, so nothing waits; a few tests look inside the store
(``_records``, ``_buckets``, ``_user_agents``) because what they pin is the
store's own bookkeeping, which the contract cannot see.
"""

from __future__ import annotations

import enum
from typing import Any

import pytest

from serversession.core.codec import SessionMeta, decode_meta, encode_meta, encode_meta_fields
from serversession.core.ids import new_session_id, storage_key
from serversession.core.records import Commit, Outcome
from serversession.exceptions import CorruptRecordError
from serversession.stores import memory
from serversession.stores.memory import MemoryStore

T0 = 1_700_000_000.25


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class LookupCounter(dict[Any, Any]):
    """A dict that counts ``get`` calls: how many records a sweep looked at."""

    lookups = 0

    def get(self, key: Any, default: Any = None) -> Any:
        self.lookups += 1
        return super().get(key, default)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def mem(clock: Clock) -> MemoryStore:
    return MemoryStore(clock=clock)


def new_key() -> str:
    return storage_key(new_session_id())


def meta_at(now: float, **changes: Any) -> dict[str, str]:
    meta = SessionMeta(created_at=now, last_seen_at=now, user_agent="UA/1.0", ip="192.0.2.7", csrf_secret="csrf")
    return encode_meta(meta.with_changes(**changes))


def created(mem: MemoryStore, clock: Clock, ttl: float, user: str | None = None) -> str:
    key = new_key()
    commit = Commit(
        set_data={"n": "1"}, meta=meta_at(clock.now, user=user), expires_at=clock.now + ttl, index_user=user
    )
    assert mem.create(key, commit)
    return key


def references(mem: MemoryStore) -> int:
    """How many keys the timing wheel holds."""
    return sum(len(keys) for keys in mem._buckets.values())


# -- the timing wheel ---------------------------------------------------------------


def test_a_sweep_looks_only_at_what_expires(mem: MemoryStore, clock: Clock) -> None:
    live = [created(mem, clock, ttl=3600) for _ in range(1000)]
    expiring = [created(mem, clock, ttl=10) for _ in range(10)]
    mem._records = spy = LookupCounter(mem._records)
    clock.now += 11
    assert mem.purge_expired() == 10
    assert spy.lookups == 10  # one look per expiring session, none for the 1,000 alive
    assert len(mem) == 1000
    assert all(mem.load(key) is None for key in expiring)
    assert all(mem.load(key) is not None for key in live)


def test_purge_removes_exactly_what_expired(mem: MemoryStore, clock: Clock) -> None:
    keys = {ttl: created(mem, clock, ttl) for ttl in (5, 10, 15, 20)}
    clock.now += 12
    assert mem.purge_expired() == 2
    assert {ttl for ttl, key in keys.items() if mem.load(key) is not None} == {15, 20}
    assert len(mem) == 2
    clock.now += 10
    assert mem.purge_expired() == 2
    assert len(mem) == 0 and references(mem) == 0


def test_a_session_filed_in_a_swept_second_is_still_purged(mem: MemoryStore, clock: Clock) -> None:
    clock.now += 5
    mem.purge_expired()  # every second before T0 + 5 is swept
    key = new_key()
    lagging = Commit(meta=meta_at(clock.now), expires_at=clock.now - 3)  # from a manager whose clock lags
    assert mem.create(key, lagging)
    clock.now += 1
    assert mem.purge_expired() == 1
    assert len(mem) == 0


def test_a_commit_into_a_swept_second_does_not_leak(mem: MemoryStore, clock: Clock) -> None:
    key = created(mem, clock, ttl=60)
    clock.now += 10
    mem.purge_expired()
    assert mem.commit(key, Commit(expires_at=clock.now - 5)).outcome is Outcome.OK
    assert mem.load(key) is None  # dead at its new expiry
    clock.now += 60
    assert mem.purge_expired() == 1  # and purged by its old one at the latest
    assert len(mem) == 0


def test_a_rotation_marker_filed_after_the_clock_stepped_back_is_purged(mem: MemoryStore, clock: Clock) -> None:
    old = created(mem, clock, ttl=60)
    clock.now += 10
    mem.purge_expired()
    clock.now -= 8  # the wall clock is stepped back: the marker's grace ends in a swept second
    assert mem.rotate(old, new_key(), Commit(expires_at=clock.now + 60), grace=5).outcome is Outcome.OK
    clock.now += 20
    assert mem.purge_expired() == 1  # the marker
    assert len(mem) == 1


def test_a_renewal_moves_the_expiry(mem: MemoryStore, clock: Clock) -> None:
    key = created(mem, clock, ttl=60)
    clock.now += 50
    renew = Commit(meta=encode_meta_fields(last_seen_at=clock.now), expires_at=clock.now + 60)
    assert mem.commit(key, renew).outcome is Outcome.OK
    clock.now += 30  # past the first expiry, before the second
    assert mem.purge_expired() == 0
    assert mem.load(key) is not None
    clock.now += 31
    assert mem.purge_expired() == 1
    assert mem.load(key) is None and len(mem) == 0


def test_renewals_keep_one_reference_in_the_wheel(mem: MemoryStore, clock: Clock) -> None:
    key = created(mem, clock, ttl=60)
    for _ in range(30):
        clock.now += 10
        assert mem.commit(key, Commit(expires_at=clock.now + 60)).outcome is Outcome.OK
        mem.purge_expired()
    assert references(mem) == 1
    assert mem.load(key) is not None


def test_an_earlier_expiry_ends_the_session_then(mem: MemoryStore, clock: Clock) -> None:
    key = created(mem, clock, ttl=600)
    assert mem.commit(key, Commit(expires_at=clock.now + 10)).outcome is Outcome.OK
    clock.now += 11
    assert mem.load(key) is None
    assert mem.commit(key, Commit(set_data={"n": "2"})).outcome is Outcome.MISSING
    clock.now += 600
    assert mem.purge_expired() == 1 and len(mem) == 0


def test_rotation_markers_are_purged_after_their_grace(mem: MemoryStore, clock: Clock) -> None:
    old, new = created(mem, clock, ttl=600), new_key()
    assert mem.rotate(old, new, Commit(expires_at=clock.now + 600), grace=5).outcome is Outcome.OK
    clock.now += 4
    assert mem.purge_expired() == 0
    moved = mem.commit(old, Commit(set_data={"a": "1"}))
    assert (moved.outcome, moved.moved_to) == (Outcome.MOVED, new)
    clock.now += 2
    assert mem.purge_expired() == 1
    assert len(mem) == 1
    assert mem.commit(old, Commit(set_data={"a": "1"})).outcome is Outcome.MISSING
    assert mem.load(new) is not None


def test_purging_a_signed_in_session_empties_its_user_index(mem: MemoryStore, clock: Clock) -> None:
    created(mem, clock, ttl=10, user="alice")
    kept = created(mem, clock, ttl=60, user="bob")
    clock.now += 11
    assert mem.purge_expired() == 1
    assert list(mem._users) == ["bob"]
    assert [s.key for s in mem.list_user("bob")] == [kept]


# -- the User-Agent table -----------------------------------------------------------


def test_the_user_agent_table_is_bounded(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_USER_AGENTS_KEPT", 3)
    mem = MemoryStore(clock=clock)
    agent_of: dict[str, str] = {}
    for i in list(range(5)) * 2:
        key, agent = new_key(), "".join(["Browser/", str(i)])  # a new str each time, as parsed headers are
        assert mem.create(key, Commit(meta=meta_at(clock.now, user_agent=agent), expires_at=clock.now + 60))
        agent_of[key] = agent
    assert len(mem._user_agents) == 3
    loaded = {key: mem.load(key) for key in agent_of}
    assert {key: s.meta.user_agent for key, s in loaded.items() if s} == agent_of
    kept = [s.meta.user_agent for key, s in loaded.items() if s and agent_of[key] == "Browser/0"]
    assert kept[0] is kept[1]  # one shared string
    key = next(iter(agent_of))
    assert mem.commit(key, Commit(meta=encode_meta_fields(user_agent="Browser/new"))).outcome is Outcome.OK
    assert (loaded_again := mem.load(key)) and loaded_again.meta.user_agent == "Browser/new"  # kept inline
    assert len(mem._user_agents) == 3


def test_long_user_agents_are_not_kept_in_the_table(mem: MemoryStore, clock: Clock) -> None:
    key, agent = new_key(), "A" * (memory._USER_AGENT_LONGEST + 1)
    assert mem.create(key, Commit(meta=meta_at(clock.now, user_agent=agent), expires_at=clock.now + 60))
    assert (loaded := mem.load(key)) and loaded.meta.user_agent == agent
    assert len(mem._user_agents) == 0


# -- packed records -----------------------------------------------------------------


class Field(str, enum.Enum):
    THEME = "theme"


DATA: dict[str, str] = {
    "cart": '[1,{"sku":"é"}]',
    "": '""',
    "nul\x00key": "null",
    "lone \udc80 surrogate": "1",
    Field.THEME: '"dark"',  # marshal refuses str subclasses: the store must not
    "big": '"' + "x" * 5000 + '"',
}
FULL = SessionMeta(created_at=T0, last_seen_at=T0 + 1.5, user="alice", user_agent="Mozilla/5.0 (X11; é)",
                   ip="2001:db8::1", persistent=True, csrf_secret="s3cret", idle_limit=300.0,
                   ends_at=T0 + 86400.5)  # fmt: skip
EMPTY = SessionMeta(created_at=0.0, last_seen_at=T0)


@pytest.mark.parametrize("meta", [FULL, EMPTY], ids=["full", "empty"])
def test_a_record_round_trips_every_field(mem: MemoryStore, clock: Clock, meta: SessionMeta) -> None:
    key = new_key()
    assert mem.create(key, Commit(set_data=DATA, meta=encode_meta(meta), expires_at=clock.now + 60))
    loaded = mem.load(key)
    assert loaded is not None and loaded.key == key
    assert loaded.meta == decode_meta(encode_meta(meta)) == meta
    assert dict(loaded.data) == DATA


@pytest.mark.parametrize(("before", "after"), [(FULL, EMPTY), (EMPTY, FULL)], ids=["emptied", "filled"])
def test_commits_and_rotations_round_trip_every_field(
    mem: MemoryStore, clock: Clock, before: SessionMeta, after: SessionMeta
) -> None:
    key = new_key()
    assert mem.create(key, Commit(set_data=DATA, meta=encode_meta(before), expires_at=clock.now + 60))
    cleared = encode_meta_fields(idle_limit=after.idle_limit, ends_at=after.ends_at)  # as the lifecycle clears them
    change = Commit(set_data={"new": "2"}, unset_data=frozenset({"cart"}), meta={**encode_meta(after), **cleared})
    assert mem.commit(key, change).outcome is Outcome.OK
    expected = {k: v for k, v in DATA.items() if k != "cart"} | {"new": "2"}
    loaded = mem.load(key)
    assert loaded is not None and loaded.meta == after and dict(loaded.data) == expected
    new = new_key()
    rotation = Commit(meta=encode_meta_fields(csrf_secret="rotated"), expires_at=clock.now + 60)
    assert mem.rotate(key, new, rotation, grace=5).outcome is Outcome.OK
    moved = mem.load(new)
    assert moved is not None and moved.meta == after.with_changes(csrf_secret="rotated")
    assert dict(moved.data) == expected


def test_a_record_holds_the_expiry_fields_only_when_the_app_set_an_expiry(mem: MemoryStore, clock: Clock) -> None:
    plain, limited = new_key(), new_key()
    for key, meta in ((plain, EMPTY), (limited, EMPTY.with_changes(ends_at=T0 + 60))):
        assert mem.create(key, Commit(meta=encode_meta(meta), expires_at=clock.now + 60))
    bodies = {key: memory._unpack(mem._records[memory._key(key)]) for key in (plain, limited)}
    assert (len(bodies[plain]), len(bodies[limited])) == (8, 10)  # most sessions pay nothing for the feature
    assert mem.commit(limited, Commit(meta=encode_meta_fields(ends_at=None))).outcome is Outcome.OK
    assert len(memory._unpack(mem._records[memory._key(limited)])) == 8
    loaded = mem.load(limited)
    assert loaded is not None and loaded.meta == EMPTY


def test_any_key_round_trips(mem: MemoryStore, clock: Clock) -> None:
    keys = [new_key(), "plain", "é-ü", "lone \udc80", ""]
    for key in keys:
        assert mem.create(key, Commit(meta=meta_at(clock.now, user="alice"), expires_at=clock.now + 60,
                                      index_user="alice"))  # fmt: skip
    assert sorted(s.key for s in mem.scan()) == sorted(keys)
    assert sorted(s.key for s in mem.list_user("alice")) == sorted(keys)
    assert all((s := mem.load(key)) and s.key == key for key in keys)


@pytest.mark.parametrize(
    "fields",
    [
        {"c": "soon", "s": "1"}, {"s": "1"}, {"c": "nan", "s": "1"}, {"c": "1", "s": "inf"},
        {"c": "1", "s": "1", "e": "soon"}, {"c": "1", "s": "1", "l": "nan"},
    ],
)  # fmt: skip
def test_corrupt_timestamps_fail_the_load_as_decode_meta_does(
    mem: MemoryStore, clock: Clock, fields: dict[str, str]
) -> None:
    with pytest.raises(CorruptRecordError):
        decode_meta(fields)  # what the other stores do with such a record
    key = new_key()
    assert mem.create(key, Commit(meta=fields, expires_at=clock.now + 60))
    with pytest.raises(CorruptRecordError):
        mem.load(key)


# -- found by review: each failed on the first version of this layout ---------------------


class PopCounter(dict[Any, Any]):
    """A dict that counts ``pop`` calls: how many seconds a sweep visited."""

    pops = 0

    def pop(self, key: Any, *default: Any) -> Any:
        self.pops += 1
        return super().pop(key, *default)


@pytest.mark.parametrize("new_user", ["bob", None], ids=["rebound", "signed-out"])
def test_a_commit_that_changes_the_user_leaves_no_stale_index(
    mem: MemoryStore, clock: Clock, new_user: str | None
) -> None:
    key = created(mem, clock, ttl=60, user="alice")
    change = Commit(meta=encode_meta_fields(user=new_user), index_user=new_user)  # no rotation
    assert mem.commit(key, change).outcome is Outcome.OK
    assert "alice" not in mem._users  # at once, not only when someone lists alice's sessions
    clock.now += 61
    assert mem.purge_expired() == 1 and len(mem) == 0
    assert mem._users == {}


def test_purge_stops_at_its_limit_even_inside_one_second(mem: MemoryStore, clock: Clock) -> None:
    for _ in range(50):
        created(mem, clock, ttl=10)  # all in the same second's bucket
    clock.now += 11
    assert mem.purge_expired(10) == 10
    assert mem.purge_expired(1000) == 40 and len(mem) == 0


def test_a_clock_jump_visits_only_the_seconds_that_have_sessions(clock: Clock) -> None:
    """A machine that boots at 1970 and is then set by NTP must not walk every
    empty second in between with the store's lock held."""
    clock.now = 0.0
    mem = MemoryStore(clock=clock)
    mem._buckets = PopCounter()
    early = [created(mem, clock, ttl=10) for _ in range(3)]
    clock.now = 100_000.0
    created(mem, clock, ttl=60)  # create sweeps first
    assert mem._buckets.pops <= 3  # type: ignore[attr-defined]
    assert all(mem.load(k) is None for k in early) and len(mem) == 1


def test_an_infinite_expiry_is_kept_and_breaks_nothing(mem: MemoryStore, clock: Clock) -> None:
    """``SessionConfig`` accepts infinite timeouts; their sessions never expire."""
    forever = new_key()
    assert mem.create(forever, Commit(meta=meta_at(clock.now), expires_at=float("inf")))
    renewed = created(mem, clock, ttl=10)
    others = [created(mem, clock, ttl=10) for _ in range(3)]  # the same bucket, after `renewed`
    assert mem.commit(renewed, Commit(expires_at=float("inf"))).outcome is Outcome.OK
    clock.now += 11
    created(mem, clock, ttl=60)  # sweeps the bucket holding `renewed`
    assert mem.purge_expired() == 0
    assert all(k.encode() not in mem._records for k in others)
    assert mem.load(forever) is not None and mem.load(renewed) is not None


def test_a_nan_expiry_is_refused_before_anything_changes(mem: MemoryStore, clock: Clock) -> None:
    key = new_key()
    with pytest.raises(ValueError, match="NaN"):
        mem.create(key, Commit(meta=meta_at(clock.now), expires_at=float("nan")))
    assert len(mem) == 0
    key = created(mem, clock, ttl=10)
    with pytest.raises(ValueError, match="NaN"):
        mem.commit(key, Commit(expires_at=float("nan")))
    clock.now += 11
    assert mem.purge_expired() == 1


def test_an_expired_session_stays_listed_if_the_clock_steps_back(mem: MemoryStore, clock: Clock) -> None:
    key = created(mem, clock, ttl=10, user="alice")
    clock.now += 10.5
    assert mem.list_user("alice") == []
    clock.now -= 5  # NTP steps the clock back: the session is live again, as it is in SQLite
    assert [s.key for s in mem.list_user("alice")] == [key]


def test_loads_outside_the_lock_see_whole_records_while_the_table_grows(mem: MemoryStore) -> None:
    """Loads unpack outside the lock while writers add User-Agents to the table."""
    import threading

    errors: list[BaseException] = []
    written: list[tuple[str, str]] = []
    guard, stop = threading.Lock(), threading.Event()

    def writer(w: int) -> None:
        try:
            for i in range(800):
                key, ua = new_key(), f"UA-{w}-{i}"
                assert mem.create(key, Commit(meta=meta_at(T0, user_agent=ua), expires_at=T0 + 60))
                with guard:
                    written.append((key, ua))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            while not stop.is_set():
                with guard:
                    sample = written[-50:]
                for key, ua in sample:
                    session = mem.load(key)
                    assert session is not None and session.meta.user_agent == ua
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in readers:
        thread.join()
    assert not errors, errors[:3]
