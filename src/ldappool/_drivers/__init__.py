"""The built-in drivers: adapters from the port to python-ldap and to ldap3.

Each imports its LDAP library and, of ldappool, only the port (:mod:`ldappool._port`)
and the helpers here (``_shared``, ``_liveness``...). ``make lint`` holds them to it.
"""
