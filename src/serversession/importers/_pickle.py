"""Reading a pickle that may only hold plain data: Python's documented way to restrict it.

Django's Redis cache stores every value pickled. Unpickling runs whatever the
pickle names, so :func:`plain_loads` uses an :class:`pickle.Unpickler` whose
``find_class`` refuses every global: with no class to reach, a pickle can build
only the built-in containers and scalars (dict, list, tuple, set, frozenset, str,
bytes, int, float, bool, None) and nothing in it is executed. A session holding a
``datetime``, a model instance or anything else names a global and is refused.
"""

from __future__ import annotations

import io
import pickle
from typing import Any


class UnsafePickleError(ValueError):
    """The pickle names a global (a class or function): refused, never loaded."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickleError(f"it holds a {module}.{name}, which is not plain data")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("it holds a persistent reference")


def plain_loads(raw: bytes) -> Any:
    """Unpickle ``raw`` if it holds plain data only; raise :class:`UnsafePickleError` otherwise
    (a global named, or not a pickle at all)."""
    try:
        return _PlainUnpickler(io.BytesIO(raw)).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # any malformed pickle: the unpickler raises many kinds
        raise UnsafePickleError(f"it is not a readable pickle ({type(exc).__name__})") from exc
