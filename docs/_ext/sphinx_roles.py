"""A griffe extension for the API reference (mkdocs.yml loads it by path).

The docstrings are written for a reader of the source, in reST habits:
``:class:`~serversession.exceptions.StoreError``` roles, ``text::`` before a
literal block, definition lists (a term, its definition indented under it).
Markdown renders a role as stray punctuation, so this rewrites each one, after
the package is loaded, into an *optional* autorefs link: a link where the
target is rendered in the reference, plain code where it is not (a private
module), and never a broken-link warning under ``--strict``. A definition
becomes the ``def_list`` extension's ``:   `` form. The source files are left
as they are.
"""

from __future__ import annotations

import html
import re
from typing import Any

from griffe import Alias, Extension, Object

ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`(?P<body>[^`]+)`")
EXPLICIT = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$")  # :class:`Title <a.b.C>`
LITERAL_BLOCK = re.compile(r"(?<=\S)::$", re.MULTILINE)  # "as before::" -> "as before:"


def _target(obj: Object, name: str) -> str:
    """The full path of ``name`` as seen from ``obj``'s scope, or ``name`` itself."""
    name = name.removesuffix("()")
    if name.startswith("."):  # relative to the module the docstring is in (its package for __init__)
        module = obj if obj.is_module else obj.module
        base = module.path if module.is_package else module.path.rsplit(".", 1)[0]
        dots = len(name) - len(name.lstrip("."))
        for _ in range(dots - 1):
            base = base.rsplit(".", 1)[0]
        return f"{base}.{name.lstrip('.')}"
    for scope in (obj, obj.parent):
        if scope is None:
            continue
        try:
            return scope.resolve(name.split(".", 1)[0]) + ("." + name.split(".", 1)[1] if "." in name else "")
        except Exception:  # a name griffe cannot resolve: keep it as written
            continue
    return name


def _definitions(text: str) -> str:
    """reST definition lists as the ``def_list`` extension's: a term line (after a blank line or
    the previous definition) with its definition indented under it, no blank line between (a
    literal block has one)."""
    lines = text.split("\n")
    for i in range(len(lines) - 1):
        term, first = lines[i], lines[i + 1]
        after = i == 0 or lines[i - 1] == "" or lines[i - 1].startswith("    ")
        if after and term[:1] not in ("", " ", "*", "-", "#", "|") and first.startswith("    ") and first[4:5].strip():
            lines[i + 1] = ":   " + first[4:]
    return "\n".join(lines)


def _link(obj: Object, match: re.Match[str]) -> str:
    body = match.group("body")
    explicit = EXPLICIT.match(body)
    if explicit:
        title, name = explicit.group("title"), explicit.group("target")
    else:
        name = body.lstrip("~")
        title = name.rsplit(".", 1)[-1] if body.startswith("~") else name
    target = _target(obj, name)
    return f'<autoref identifier="{html.escape(target)}" optional><code>{html.escape(title)}</code></autoref>'


class SphinxRoles(Extension):
    """Rewrite reST roles and literal-block markers in every docstring of the package."""

    def on_package(self, *, pkg: Any, **kwargs: Any) -> None:
        seen: set[int] = set()
        stack: list[Object] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.docstring is not None:
                text = ROLE.sub(lambda m, o=obj: _link(o, m), obj.docstring.value)
                text = LITERAL_BLOCK.sub(":", text)
                obj.docstring.value = _definitions(text)
            stack.extend(m for m in obj.members.values() if not isinstance(m, Alias))
