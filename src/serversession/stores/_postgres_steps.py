"""The PostgreSQL store's one plan step: a statement, carried out on a cursor of either face.

The store's plans (:mod:`.postgres`) yield :class:`Statement` and are resumed
with its :class:`Reply`, the pattern of :mod:`serversession.core.steps`. Every
step answers the same type, so a plan's ``Generator[Statement, Reply, T]``
already types each ``reply = yield Statement(...)`` exactly; no ``ask()`` needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from ..core.steps import Step


class Reply(NamedTuple):
    """What one statement returned: its rows (empty unless it has any) and rowcount."""

    rows: list[tuple[Any, ...]]
    rowcount: int


@dataclass(frozen=True, slots=True)
class Statement(Step[Reply]):
    """Execute ``query`` with ``params`` (named placeholders) in the plan's transaction."""

    query: sql.SQL | sql.Composed
    params: Mapping[str, Any]

    def call(self, cursor: psycopg.Cursor[Any]) -> Reply:
        """Carry the statement out on a sync cursor."""
        cursor.execute(self.query, self.params)
        return Reply(cursor.fetchall() if cursor.description else [], cursor.rowcount)

    async def acall(self, cursor: psycopg.AsyncCursor[Any]) -> Reply:
        """Carry the statement out on an async cursor."""
        await cursor.execute(self.query, self.params)
        return Reply(await cursor.fetchall() if cursor.description else [], cursor.rowcount)
