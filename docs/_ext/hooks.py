"""MkDocs hooks (mkdocs.yml ``hooks:``): the parts of pages that are read from the code.

A page writes a marker such as ``<!-- generated: cli-help -->`` on a line of its
own; the site shows what the code says there, so the page cannot drift from it.
On GitHub the marker is an invisible comment and the sentence around it says
where the real thing is.

* ``cli-help``: ``serversession --help`` and every subcommand's ``--help``,
  from the parser in :mod:`serversession.cli`.
* ``store-schemes``: every store URL scheme :func:`serversession.open_store`
  knows, its store class and its pip extra, from
  :data:`serversession.stores.url.SCHEMES`.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

MARKER = re.compile(r"^<!-- generated: (?P<name>[a-z-]+) -->$", re.MULTILINE)


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            return list(dict.fromkeys(action.choices.values()))
    return []


def cli_help() -> str:
    from serversession.cli import _parser

    # The defaults shown come from the environment, and argparse wraps to the terminal:
    # the page shows the defaults of a clean environment, at one width.
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("SERVERSESSION_") or k == "COLUMNS"}
    os.environ["COLUMNS"] = "100"
    try:
        blocks = []
        todo = [_parser()]
        while todo:
            parser = todo.pop(0)
            blocks.append(f"`{parser.prog}`\n\n```text\n{parser.format_help().rstrip()}\n```")
            todo[:0] = _subparsers(parser)
    finally:
        os.environ.pop("COLUMNS")
        os.environ.update(saved)
    return "\n\n".join(blocks)


def store_schemes() -> str:
    from serversession.stores.url import REDIS_SCHEMES, SCHEMES

    lines = ["| scheme | store | extra | notes |", "| --- | --- | --- | --- |"]
    for scheme, (module, cls, extra) in SCHEMES.items():
        notes = []
        if scheme in REDIS_SCHEMES:
            driver_scheme, cluster = REDIS_SCHEMES[scheme]
            notes.append("a Redis Cluster, through any seed node" if cluster else "one server")
            if driver_scheme == "rediss":
                notes.append("TLS")
            if scheme.startswith("valkey"):
                notes.append("Valkey spelling")
        ref = f"[`{cls}`](reference/stores.md#{module}.{cls})"
        lines.append(f"| `{scheme}://` | {ref} | {f'`[{extra}]`' if extra else 'none'} | {', '.join(notes)} |")
    return "\n".join(lines)


GENERATORS = {"cli-help": cli_help, "store-schemes": store_schemes}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in GENERATORS:
            raise ValueError(f"{page.file.src_path}: unknown generated block {name!r}")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)
