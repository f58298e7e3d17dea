"""The SQL text of the PostgreSQL store, all of it, in one place.

``{table}``, ``{schema}``, ``{expires_index}`` and ``{user_index}`` are
identifiers filled in by :func:`compile_queries` with :mod:`psycopg.sql`
(quoted, never pasted); ``%(name)s`` are query parameters. Times are Unix
seconds from the application's clock, passed in as ``%(now)s`` (never the
server's ``now()``), so every process agrees with its own expiry decisions and
tests can use a fake clock.

Migrations are append-only: a new schema change is a new string at the end of
:data:`MIGRATIONS`, never an edit of an old one. The applied version is the one
row of ``{schema}`` (``serversession_schema`` by default).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from psycopg import sql

#: Schema changes in order; version N is MIGRATIONS[:N] applied.
MIGRATIONS: list[str] = [
    # 1: one row per session. data: data key -> encoded JSON text; meta: the
    # one-letter fields of codec.encode_meta. A row with moved_to set is a
    # rotation tombstone (empty data and meta) living until expires_at.
    """
    CREATE TABLE {table} (
        key        text COLLATE "C" PRIMARY KEY,
        data       jsonb NOT NULL,
        meta       jsonb NOT NULL,
        user_name  text,
        expires_at double precision NOT NULL,
        moved_to   text
    );
    CREATE INDEX {expires_index} ON {table} (expires_at);
    CREATE INDEX {user_index} ON {table} (user_name) WHERE user_name IS NOT NULL
    """,
]

#: First argument of the two-key advisory lock: "ss" in ASCII, our namespace.
LOCK_CLASS = 0x7373
#: ...and of the per-user lock a write enforcing the per-user cap takes: "su".
USER_LOCK_CLASS = 0x7375
#: ``moved_to`` of an ended marker (a session the per-user cap ended): no storage key is empty.
ENDED = ""


@dataclass(frozen=True)
class Queries:
    """Every statement of the store, compiled for one table."""

    # -- migrations (one transaction, under the advisory lock) --
    lock: sql.Composed
    create_schema: sql.Composed
    get_version: sql.Composed
    set_version: sql.Composed
    # -- sessions --
    load: sql.Composed
    lock_row: sql.Composed
    lock_user: sql.Composed
    user_rows: sql.Composed
    end: sql.Composed
    delete_row: sql.Composed
    insert: sql.Composed
    update: sql.Composed
    tombstone: sql.Composed
    delete: sql.Composed
    list_user: sql.Composed
    scan: sql.Composed
    purge: sql.Composed
    ping: sql.Composed


_TEXT = {
    "lock": "SELECT pg_advisory_xact_lock(%(lock_class)s, hashtext(%(table_name)s))",
    "create_schema": "CREATE TABLE IF NOT EXISTS {schema} ("
    " id boolean PRIMARY KEY DEFAULT true CHECK (id), version integer NOT NULL)",
    "get_version": "SELECT version FROM {schema}",
    "set_version": "INSERT INTO {schema} (id, version) VALUES (true, %(version)s)"
    " ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
    # A session, or an ended marker (moved_to ''), whose meta {"r": ...} says why it ended.
    "load": "SELECT data, meta, moved_to FROM {table}"
    " WHERE key = %(key)s AND expires_at > %(now)s AND (moved_to IS NULL OR moved_to = '')",
    # Live rows only: the lock is taken on the newest row version, so a commit
    # racing a delete, a rotation or an expiry sees what happened first.
    "lock_row": "SELECT data, meta, moved_to FROM {table} WHERE key = %(key)s AND expires_at > %(now)s FOR UPDATE",
    # The per-user cap: binds of one user take turns on this lock (row locks alone would not
    # do: a row inserted by a concurrent bind is not in this statement's snapshot), then
    # lock the user's live rows, of which the least recently used may be ended.
    "lock_user": "SELECT pg_advisory_xact_lock(%(lock_class)s, hashtext(%(lock_name)s))",
    "user_rows": "SELECT key, meta FROM {table}"
    " WHERE user_name = %(user)s AND expires_at > %(now)s AND moved_to IS NULL FOR UPDATE",
    "end": "UPDATE {table} SET data = jsonb_build_object(), meta = %(meta)s, user_name = NULL, moved_to = ''"
    " WHERE key = ANY(%(keys)s)",
    "delete_row": "DELETE FROM {table} WHERE key = %(key)s",
    # A live row (session or tombstone) keeps its key; an expired one is replaced.
    "insert": "INSERT INTO {table} AS s (key, data, meta, user_name, expires_at)"
    " VALUES (%(key)s, %(data)s, %(meta)s, %(user)s, %(expires_at)s)"
    " ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, meta = EXCLUDED.meta,"
    " user_name = EXCLUDED.user_name, expires_at = EXCLUDED.expires_at, moved_to = NULL"
    " WHERE s.expires_at <= %(now)s",
    "update": "UPDATE {table} SET data = %(data)s, meta = %(meta)s, user_name = %(user)s,"
    " expires_at = COALESCE(%(expires_at)s, expires_at) WHERE key = %(key)s",
    "tombstone": "UPDATE {table} SET data = jsonb_build_object(), meta = jsonb_build_object(),"
    " user_name = NULL, moved_to = %(moved_to)s, expires_at = %(expires_at)s WHERE key = %(key)s",
    # A tombstone stays: in-flight commits must still be told where the session went.
    "delete": "DELETE FROM {table} WHERE key = %(key)s AND moved_to IS NULL AND expires_at > %(now)s",
    "list_user": "SELECT key, data, meta FROM {table}"
    " WHERE user_name = %(user)s AND expires_at > %(now)s AND moved_to IS NULL",
    # Keyset pagination on the primary key: no cursor held open between batches.
    "scan": "SELECT key, data, meta FROM {table}"
    " WHERE key > %(after)s AND expires_at > %(now)s AND moved_to IS NULL ORDER BY key LIMIT %(limit)s",
    # SKIP LOCKED: concurrent purges share the work and never wait on a row in use.
    "purge": "DELETE FROM {table} WHERE key IN (SELECT key FROM {table}"
    " WHERE expires_at <= %(now)s LIMIT %(limit)s FOR UPDATE SKIP LOCKED)",
    "ping": "SELECT 1",
}


def _identifiers(table: str) -> dict[str, sql.Identifier]:
    return {
        "table": sql.Identifier(table),
        "schema": sql.Identifier(f"{table}_schema"),
        "expires_index": sql.Identifier(f"{table}_expires"),
        "user_index": sql.Identifier(f"{table}_user"),
    }


def compile_queries(table: str) -> Queries:
    """Return every statement with ``table`` and its companions' names filled in."""
    names = _identifiers(table)
    return Queries(**{f.name: sql.SQL(_TEXT[f.name]).format(**names) for f in fields(Queries)})


def compile_migrations(table: str) -> list[sql.Composed]:
    """Return :data:`MIGRATIONS` for ``table``, in order."""
    names = _identifiers(table)
    return [sql.SQL(text).format(**names) for text in MIGRATIONS]
