"""The demo shop: a small real web app that shows serversession at work.

Sign-in with ID rotation, a cart kept in the session (and kept across sign-in),
per-session settings, and a "your active sessions" page that ends sessions on
other devices. ``serversession demo`` serves it (see :mod:`.server`); its HTTP
API is a fixed contract (``docs/demo-api.md``) that black-box tests and
benchmarks drive.

Modules: :mod:`.app` builds the Starlette app, :mod:`.api` and :mod:`.pages` are
its two faces, :mod:`.shop` holds the rules both share, and :mod:`.accounts`,
:mod:`.catalog`, :mod:`.devices` and :mod:`.audit` are the small pieces of data
they use. Needs the ``demo`` extra (Starlette, uvicorn, Jinja2).
"""
