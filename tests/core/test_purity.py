"""The core stays free of I/O: no asyncio, drivers or frameworks under core/."""

from __future__ import annotations

import ast
from pathlib import Path

import serversession.core

FORBIDDEN = {"asyncio", "socket", "sqlite3", "redis", "psycopg", "starlette", "flask", "django", "threading", "time"}


def test_core_imports_nothing_that_does_io() -> None:
    root = Path(serversession.core.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
