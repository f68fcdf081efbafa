"""Driver registry: turns ``driver="ldap3"`` into a driver object.

Built-in drivers are imported lazily, so that using one never needs the other's
package. Third-party drivers register under the ``ldappool.drivers`` entry-point
group: ``mydriver = "mypackage.module:MyDriver"``, the target being a class (or any
callable) that returns a :class:`~ldappool.Driver` when called with no
arguments.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from ldappool._errors import DriverNotInstalledError
from ldappool._port import Driver

__all__ = ["ENTRY_POINT_GROUP", "available_drivers", "resolve"]

ENTRY_POINT_GROUP = "ldappool.drivers"

# name -> (module, class, the extra that installs its package)
_BUILTIN: dict[str, tuple[str, str, str]] = {
    "python-ldap": ("ldappool._drivers.python_ldap", "PythonLdapDriver", "python-ldap"),
    "ldap3": ("ldappool._drivers.ldap3", "Ldap3Driver", "ldap3"),
}


def available_drivers() -> list[str]:
    """Names that :func:`resolve` accepts: the built-ins, then entry points."""
    names = list(_BUILTIN)
    names += sorted(
        ep.name for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in names
    )
    return names


def resolve(driver: object, **builtin_options: Any) -> Driver:
    """Return a driver object for a name, or ``driver`` itself if it already is one.

    ``builtin_options`` (``connector_cls``...) go to a built-in driver's constructor;
    a driver object or an entry point takes none. Raises TypeError/ValueError naming
    the ``driver`` argument, and DriverNotInstalledError (an ImportError) naming the
    extra to install.
    """
    if builtin_options:
        if not (isinstance(driver, str) and driver in _BUILTIN):
            names = ", ".join(sorted(builtin_options))
            raise TypeError(
                f"{names}: only with driver='python-ldap' or 'ldap3'; "
                f"give a driver object of your own its options directly, not {driver!r}"
            )
        return _load(driver, builtin_options)
    if isinstance(driver, str):
        return _load(driver)
    if isinstance(driver, Driver):
        return driver
    raise TypeError(
        f"driver must be a driver name ({', '.join(available_drivers())}) or a Driver object, "
        f"not {type(driver).__name__}"
    )


def _load(name: str, options: dict[str, Any] | None = None) -> Driver:
    if name in _BUILTIN:
        module_name, class_name, extra = _BUILTIN[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise DriverNotInstalledError(
                f"driver {name!r} needs the {extra} package: pip install 'ldappool[{extra}]'"
            ) from exc
        factory = getattr(module, class_name)
    else:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not found:
            raise ValueError(
                f"driver must be one of {', '.join(available_drivers())}; got {name!r}"
            )
        factory = found[0].load()
    instance = factory(**(options or {}))
    if not isinstance(instance, Driver):
        raise TypeError(f"driver {name!r} did not build a Driver object: {instance!r}")
    return instance
