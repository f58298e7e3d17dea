"""The sans-I/O core: every session decision, no sockets, drivers or frameworks.

A test (``tests/core/test_purity.py``) makes sure nothing under this package
imports asyncio, a database driver or a web framework.
"""
