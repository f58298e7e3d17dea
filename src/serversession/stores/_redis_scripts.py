"""The Lua text of the Redis store: each session write is one atomic script call.

Every script shares one prelude. Arguments after the script's own ones are a
*write spec*, packed by :func:`pack`::

    now (seconds)  expire (ms, "" = keep)
    nset   field value ...            data fields already "d:"-prefixed
    nunset field ...
    nexpect field present("1"/"0") value ...
    member score                      user index entry ("" score = the key's expiry)

Replies are flat arrays of strings and integers (no Lua booleans, whose RESP3
form differs from RESP2): ``{"missing"}``, ``{"moved", key}``, ``{"taken"}``,
``{"conflict", field, present, value, ...}`` or ``{"ok", expiry_ms, user}``.
The user index is written by the same script when the caller passes its key
(standalone); on a cluster it lives in another slot and gets its own call.
:func:`call` and :func:`acall` run a script by its SHA1 (EVALSHA) and send the
text (EVAL) only when the server's script cache lost it. :func:`call_and_wait`
and :func:`acall_and_wait` also send ``WAIT`` on the same connection, for writes
that must reach replicas before they are acknowledged.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from redis.exceptions import NoScriptError

from ..core.records import COMMITTED, MISSING, Commit, CommitResult, Outcome

_PRELUDE = """
local function spec(argv, i)
  local w = {now = tonumber(argv[i]), nowtext = argv[i], expire = argv[i + 1], set = {}, unset = {}, expect = {}}
  i = i + 2
  local n = tonumber(argv[i]); i = i + 1
  for j = 1, 2 * n do w.set[j] = argv[i]; i = i + 1 end
  n = tonumber(argv[i]); i = i + 1
  for j = 1, n do w.unset[j] = argv[i]; i = i + 1 end
  n = tonumber(argv[i]); i = i + 1
  for j = 1, 3 * n do w.expect[j] = argv[i]; i = i + 1 end
  w.member = argv[i]; w.score = argv[i + 1]
  return w
end

local function gone(key)
  if redis.call('EXISTS', key) == 0 then return {'missing'} end
  local to = redis.call('HGET', key, 'm')
  if to then return {'moved', to} end
  return nil
end

local function conflict(key, w)
  local out, bad = {'conflict'}, false
  for j = 1, #w.expect, 3 do
    local cur = redis.call('HGET', key, w.expect[j])
    if (w.expect[j + 1] == '1' and cur ~= w.expect[j + 2]) or (w.expect[j + 1] == '0' and cur) then
      bad = true
    end
    out[#out + 1] = w.expect[j]
    out[#out + 1] = cur and '1' or '0'
    out[#out + 1] = cur or ''
  end
  if bad then return out end
  return nil
end

local function write(key, w)
  for j = 1, #w.set, 200 do redis.call('HSET', key, unpack(w.set, j, math.min(j + 199, #w.set))) end
  for j = 1, #w.unset, 200 do redis.call('HDEL', key, unpack(w.unset, j, math.min(j + 199, #w.unset))) end
  if w.expire ~= '' then redis.call('PEXPIREAT', key, w.expire) end
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then return 0 end
  return math.floor(w.now * 1000) + ttl
end

local function index(ikey, w, expiry)
  if not ikey then return end
  local score = tonumber(w.score)
  if not score then
    if expiry <= 0 then return end
    score = expiry / 1000
  end
  redis.call('ZADD', ikey, score, w.member)
  redis.call('ZREMRANGEBYSCORE', ikey, '-inf', w.nowtext)
  local top = redis.call('ZRANGE', ikey, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', ikey, string.format('%d', math.ceil(tonumber(top[2]) * 1000))) end
end

local function user(key)
  return redis.call('HGET', key, 'u') or ''
end
"""

#: KEYS: session [, user index]. ARGV: spec. Fails with "taken" if the key exists.
CREATE = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return {'taken'} end
local w = spec(ARGV, 1)
local expiry = write(KEYS[1], w)
index(KEYS[2], w, expiry)
return {'ok', expiry, user(KEYS[1])}
"""
)

#: KEYS: session [, user index]. ARGV: spec. No resurrection: a missing key stays missing.
COMMIT = (
    _PRELUDE
    + """
local st = gone(KEYS[1])
if st then return st end
local w = spec(ARGV, 1)
local bad = conflict(KEYS[1], w)
if bad then return bad end
local expiry = write(KEYS[1], w)
index(KEYS[2], w, expiry)
return {'ok', expiry, user(KEYS[1])}
"""
)

#: KEYS: old, new [, user index]. ARGV: grace_ms, new storage key, spec.
#: Standalone only: the two keys are in different cluster slots.
ROTATE = (
    _PRELUDE
    + """
local st = gone(KEYS[1])
if st then return st end
local w = spec(ARGV, 3)
redis.call('RENAME', KEYS[1], KEYS[2])
local expiry = write(KEYS[2], w)
redis.call('HSET', KEYS[1], 'm', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
index(KEYS[3], w, expiry)
return {'ok', expiry, user(KEYS[2])}
"""
)

#: KEYS: old. ARGV: new storage key, grace_ms. Cluster rotation, step one: take the fields
#: and leave the tombstone in one atomic step. Reply: {"ok", field, value, ...}.
TAKE = (
    _PRELUDE
    + """
local st = gone(KEYS[1])
if st then return st end
local fields = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'm', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
table.insert(fields, 1, 'ok')
return fields
"""
)

#: KEYS: user index. ARGV: the session's expiry_ms, spec (only now, member, score used).
INDEX = (
    _PRELUDE
    + """
index(KEYS[1], spec(ARGV, 2), tonumber(ARGV[1]))
return {'ok', 0, ''}
"""
)

#: KEYS: session. A tombstone is not a session: it stays, and the answer is 0.
DELETE = """
if redis.call('HEXISTS', KEYS[1], 'm') == 1 then return 0 end
return redis.call('DEL', KEYS[1])
"""

#: KEYS: user index. ARGV: now (seconds). Prunes entries past their deadline.
MEMBERS = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

ALL = {
    "create": CREATE, "commit": COMMIT, "rotate": ROTATE, "take": TAKE,
    "index": INDEX, "delete": DELETE, "members": MEMBERS,
}  # fmt: skip
_SHA = {name: hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest() for name, text in ALL.items()}


def ms(seconds: float) -> int:
    """Seconds -> whole milliseconds, as PEXPIRE and PEXPIREAT take them."""
    return int(seconds * 1000)


def pack(commit: Commit, now: float, expires_at: float | None, member: str = "") -> list[Any]:
    """Pack a commit as a write spec; the index score is its absolute deadline."""
    fields = [*({f"d:{k}": v for k, v in commit.set_data.items()} | dict(commit.meta)).items()]
    expect = [*(commit.expect or {}).items()]
    score = commit.absolute_at if commit.absolute_at is not None else commit.expires_at
    return [
        repr(now), "" if expires_at is None else ms(expires_at),
        len(fields), *[x for pair in fields for x in pair],
        len(commit.unset_data), *[f"d:{k}" for k in commit.unset_data],
        len(expect), *[x for k, v in expect for x in (f"d:{k}", "0" if v is None else "1", v or "")],
        member, "" if score is None else repr(score),
    ]  # fmt: skip


def result(reply: list[Any]) -> CommitResult:
    """Read a create/commit/rotate/take reply as a :class:`CommitResult`."""
    status = reply[0]
    if status == "ok":
        return COMMITTED
    if status == "missing":
        return MISSING
    if status == "moved":
        return CommitResult(Outcome.MOVED, moved_to=reply[1])
    if status == "conflict":
        it = iter(reply[1:])
        current = {f[2:]: (v if p == "1" else None) for f, p, v in zip(it, it, it, strict=True)}
        return CommitResult(Outcome.CONFLICT, current=current)
    raise ValueError(f"unexpected script reply {reply!r}")


def call(client: Any, name: str, keys: list[str], argv: list[Any]) -> Any:
    """Run script ``name`` on a sync client (standalone or cluster: routed by ``keys``)."""
    try:
        return client.evalsha(_SHA[name], len(keys), *keys, *argv)
    except NoScriptError:
        return client.eval(ALL[name], len(keys), *keys, *argv)


async def acall(client: Any, name: str, keys: list[str], argv: list[Any]) -> Any:
    """Run script ``name`` on an async client."""
    try:
        return await client.evalsha(_SHA[name], len(keys), *keys, *argv)
    except NoScriptError:
        return await client.eval(ALL[name], len(keys), *keys, *argv)


log = logging.getLogger("serversession")


def _acked(name: str, acked: int, replicas: int, timeout_ms: int) -> None:
    if acked < replicas:
        log.warning(
            "Redis %s reached %d of %d replicas within %d ms: a failover now could undo it",
            name, acked, replicas, timeout_ms,
        )  # fmt: skip


def call_and_wait(client: Any, name: str, keys: list[str], argv: list[Any], replicas: int, timeout_ms: int) -> Any:
    """Run script ``name`` and then ``WAIT replicas timeout_ms`` in one pipeline.

    ``WAIT`` waits for the writes sent *on its own connection*, so the two
    commands must share one: a pipeline is the way redis-py guarantees it. When
    fewer replicas acknowledge in time the write still stands on the master (it
    cannot be taken back); that is logged, not raised.
    """
    for attempt in range(2):
        with client.pipeline(transaction=False) as pipe:
            pipe.evalsha(_SHA[name], len(keys), *keys, *argv)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            try:
                reply, acked = pipe.execute()
            except NoScriptError:
                if attempt:
                    raise
                client.script_load(ALL[name])
                continue
        _acked(name, acked, replicas, timeout_ms)
        return reply
    raise AssertionError("unreachable")  # pragma: no cover


async def acall_and_wait(
    client: Any, name: str, keys: list[str], argv: list[Any], replicas: int, timeout_ms: int
) -> Any:
    """:func:`call_and_wait` on an async client."""
    for attempt in range(2):
        async with client.pipeline(transaction=False) as pipe:
            pipe.evalsha(_SHA[name], len(keys), *keys, *argv)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            try:
                reply, acked = await pipe.execute()
            except NoScriptError:
                if attempt:
                    raise
                await client.script_load(ALL[name])
                continue
        _acked(name, acked, replicas, timeout_ms)
        return reply
    raise AssertionError("unreachable")  # pragma: no cover
