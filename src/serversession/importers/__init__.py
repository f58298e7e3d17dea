"""``serversession import``: other frameworks' live sessions copied into a serversession store.

One small module per incumbent reads its sessions safely (JSON or plain data
only, never unpickling an object) and hands plain records to the shared
runner (:mod:`.runner`), which writes each one create-only under the SHA-256
of the cookie value the browser already holds, marked as imported. With
``SessionConfig(accept_imported=True)`` the lifecycle then accepts that cookie
once and moves the session to a server-made ID (``docs/migrating/``).
"""
