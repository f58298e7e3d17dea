"""``python -m serversession`` runs the command line (see :mod:`serversession.cli`)."""

from .cli import main

raise SystemExit(main())
