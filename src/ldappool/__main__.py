"""``python -m ldappool``: the ``ldappool`` command (``check``, ``top``), see ``_cli``."""

from ldappool._cli import main

raise SystemExit(main())
