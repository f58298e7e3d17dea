"""The Lua text of the Redis store: each session write is one atomic script call.

Every script shares one prelude. Arguments after the script's own ones are a
*write spec*, packed by :func:`pack`::

    now (seconds)  expire (ms, "" = keep)
    nset   field value ...            data fields already "d:"-prefixed
    nunset field ...
    nexpect field present("1"/"0") value ...
    member score                      user index entry ("" score = the key's expiry)
    [limit evict reason prefix user keep]   the per-user cap (standalone; see :func:`cap_args`)

Replies are flat arrays of strings and integers (no Lua booleans, whose RESP3
form differs from RESP2): ``{"missing"}``, ``{"moved", key}``, ``{"taken"}``,
``{"refused"}``, ``{"conflict", field, present, value, ...}`` or ``{"ok",
expiry_ms, user, user_before, evicted_key ...}``. The user index is written by
the same script when the caller passes its key (standalone); on a cluster it
lives in another slot and gets its own call.

The per-user cap on a standalone server is part of the write's script: it reads
the user's index, then ``HMGET u s m`` of each member's hash (keys built from the
prefix it is passed, not declared in KEYS: fine on one server, refused by a
cluster, which is why a cluster gets :data:`CLAIM` and :data:`FINISH` instead),
and ends the least recently used in place: an *ended marker* is a hash holding
``m`` = "" (moved nowhere) and ``r`` = the reason, with the session's remaining TTL.
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

from ..core.records import MISSING, REFUSED, TAKEN, Commit, CommitResult, Outcome, committed

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
  local limit = tonumber(argv[i + 2])
  if limit then
    w.cap = {limit = limit, evict = argv[i + 3] == '1', reason = argv[i + 4], prefix = argv[i + 5],
             user = argv[i + 6], keep = argv[i + 7]}
  end
  return w
end

local function gone(key)
  if redis.call('EXISTS', key) == 0 then return {'missing'} end
  local to = redis.call('HGET', key, 'm')
  if to == '' then return {'missing'} end
  if to then return {'moved', to} end
  return nil
end

-- Replace a session by an ended marker that lives as long as the session would have.
local function finish(key, reason)
  local ttl = redis.call('PTTL', key)
  redis.call('DEL', key)
  redis.call('HSET', key, 'm', '', 'r', reason)
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end

-- The per-user cap: the evicted members, or nil to refuse. Sessions are the
-- index's members whose hash is live, names the user and is no marker.
local function cap(ikey, w)
  local c = w.cap
  if not c or not ikey then return {} end
  redis.call('ZREMRANGEBYSCORE', ikey, '-inf', w.nowtext)
  local live, stale, out = {}, {}, {}
  for _, m in ipairs(redis.call('ZRANGE', ikey, 0, -1)) do
    if m ~= w.member and m ~= c.keep then
      local f = redis.call('HMGET', c.prefix .. m, 'u', 's', 'm')
      if f[1] == c.user and not f[3] then
        live[#live + 1] = {tonumber(f[2]) or 0, m}
      else
        stale[#stale + 1] = m
      end
    end
  end
  local over = #live + 1 - c.limit
  if over > 0 then
    if not c.evict then return nil end
    table.sort(live, function(a, b) if a[1] ~= b[1] then return a[1] < b[1] end return a[2] < b[2] end)
    for j = 1, over do
      finish(c.prefix .. live[j][2], c.reason)
      out[#out + 1] = live[j][2]
      stale[#stale + 1] = live[j][2]
    end
  end
  for j = 1, #stale, 200 do redis.call('ZREM', ikey, unpack(stale, j, math.min(j + 199, #stale))) end
  return out
end

local function ok(expiry, after, before, evicted)
  local out = {'ok', expiry, after, before}
  for _, m in ipairs(evicted) do out[#out + 1] = m end
  return out
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
local evicted = cap(KEYS[2], w)
if not evicted then return {'refused'} end
local expiry = write(KEYS[1], w)
index(KEYS[2], w, expiry)
return ok(expiry, user(KEYS[1]), '', evicted)
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
local evicted = cap(KEYS[2], w)
if not evicted then return {'refused'} end
local before = user(KEYS[1])
local expiry = write(KEYS[1], w)
index(KEYS[2], w, expiry)
return ok(expiry, user(KEYS[1]), before, evicted)
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
local evicted = cap(KEYS[3], w)
if not evicted then return {'refused'} end
local before = user(KEYS[1])
redis.call('RENAME', KEYS[1], KEYS[2])
local expiry = write(KEYS[2], w)
redis.call('HSET', KEYS[1], 'm', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
index(KEYS[3], w, expiry)
return ok(expiry, user(KEYS[2]), before, evicted)
"""
)

#: KEYS: old. ARGV: new storage key, grace_ms. Cluster rotation, step one: take the fields
#: and leave the tombstone in one atomic step. Reply: {"ok", pttl, field, value, ...}.
TAKE = (
    _PRELUDE
    + """
local st = gone(KEYS[1])
if st then return st end
local fields = redis.call('HGETALL', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'm', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
table.insert(fields, 1, ttl)
table.insert(fields, 1, 'ok')
return fields
"""
)

#: KEYS: old. ARGV: new storage key, pttl, field, value, ... Cluster rotation refused by the
#: per-user cap: put back what TAKE took, if the tombstone still points at the new key.
RESTORE = """
if redis.call('HGET', KEYS[1], 'm') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
for j = 3, #ARGV, 200 do redis.call('HSET', KEYS[1], unpack(ARGV, j, math.min(j + 199, #ARGV))) end
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

#: KEYS: user index. ARGV: the session's expiry_ms, spec (only now, member, score used).
INDEX = (
    _PRELUDE
    + """
index(KEYS[1], spec(ARGV, 2), tonumber(ARGV[1]))
return {'ok', 0, ''}
"""
)

#: KEYS: user index. ARGV as INDEX. The per-user cap on a cluster, step one: index the
#: session and answer every member, in the one atomic step that orders the binds of a user
#: (a later bind sees an earlier one's session). The caller reads the members' hashes.
CLAIM = (
    _PRELUDE
    + """
index(KEYS[1], spec(ARGV, 2), tonumber(ARGV[1]))
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
)

#: KEYS: session. ARGV: user, reason. End the session with an ended marker if it is
#: still a session of the user (a concurrent bind may have ended it first). 1 if ended.
FINISH = (
    _PRELUDE
    + """
local f = redis.call('HMGET', KEYS[1], 'u', 'm')
if f[1] ~= ARGV[1] or f[2] then return 0 end
finish(KEYS[1], ARGV[2])
return 1
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
    "create": CREATE, "commit": COMMIT, "rotate": ROTATE, "take": TAKE, "restore": RESTORE,
    "index": INDEX, "claim": CLAIM, "finish": FINISH, "delete": DELETE, "members": MEMBERS,
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


def cap_args(commit: Commit, prefix: str, keep: str = "") -> list[Any]:
    """The spec's per-user cap part for ``commit`` (empty without one): session keys are
    ``prefix`` + storage key; ``keep`` (a rotation's old key) does not count."""
    cap = commit.user_cap
    if cap is None or not commit.index_user:
        return []
    return [cap.limit, "1" if cap.evict else "0", cap.reason, prefix, commit.index_user, keep]


def result(reply: list[Any]) -> CommitResult:
    """Read a create/commit/rotate/take reply as a :class:`CommitResult`."""
    status = reply[0]
    if status == "ok":
        return committed(reply[4:])
    if status == "taken":
        return TAKEN
    if status == "refused":
        return REFUSED
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
