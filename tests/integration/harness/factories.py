"""Types of the factory fixtures, for annotating tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .proxy import FaultProxy
from .slapd import Slapd

if TYPE_CHECKING:
    from ldappool import ConnectionManager

__all__ = ["ManagerFactory", "ProxyFactory"]


class ManagerFactory(Protocol):
    """``make_manager(uri, *args, **kwargs)``: ConnectionManager's own signature."""

    def __call__(self, uri: str, *args: Any, **kwargs: Any) -> ConnectionManager: ...


ProxyFactory = Callable[[Slapd], FaultProxy]
