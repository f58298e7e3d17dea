"""Serve one test app under a real server: ``python serve.py SERVER MODULE:ATTR PORT_FILE``.

SERVER is ``uvicorn`` (ASGI), ``waitress`` (WSGI) or ``aiohttp`` (an
``aiohttp.web.Application``, or a function returning one). The socket is bound here to
an ephemeral port, which is written to PORT_FILE once the app is built, so the
test never races for a port. Apps read their store URL and timeouts from the
environment (``SS_STORE``, ``SS_IDLE``, ``SS_DB``).
"""

from __future__ import annotations

import importlib
import os
import socket
import sys


def main() -> None:
    server, target, port_file = sys.argv[1:4]
    module_name, _, attr = target.partition(":")
    app = getattr(importlib.import_module(module_name), attr)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(sock.getsockname()[1]))
    os.replace(port_file + ".tmp", port_file)
    if server == "uvicorn":
        import uvicorn

        uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off")).run(sockets=[sock])
    elif server == "aiohttp":
        from aiohttp import web

        web.run_app(app() if callable(app) and not isinstance(app, web.Application) else app,
                    sock=sock, print=None, handle_signals=True, access_log=None)  # fmt: skip
    else:
        import waitress

        waitress.serve(app, sockets=[sock], threads=8, _quiet=True)


if __name__ == "__main__":
    main()
