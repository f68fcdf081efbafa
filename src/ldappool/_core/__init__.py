"""The pool core: a state machine with no I/O, no threads and no clock of its own.

:mod:`~ldappool._core.machine` takes every decision; :mod:`~ldappool._core.slots` holds
the records it decides about; :mod:`~ldappool._core.waiting` orders the checkouts that
wait. A runner (threads: :mod:`ldappool._threaded`) drives it and does the I/O.
"""
