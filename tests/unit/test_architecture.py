"""The layering is enforced: the import contracts in pyproject.toml hold, and break when
a module reaches where it must not; the public API is exactly ``ldappool.__all__``."""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ldappool

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's contracts, on the copy of the package in ``tree``."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of src/ldappool to break."""
    shutil.copytree(ROOT / "src" / "ldappool", tmp_path / "src" / "ldappool")
    return tmp_path


def _append(tree: Path, module: str, line: str) -> None:
    path = tree / "src" / "ldappool" / module
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_contracts_hold_on_the_source(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("_core/machine.py", "import ldap", "The pool never imports a driver"),
        ("_threaded.py", "import ldap3", "The pool never imports a driver"),
        (
            "_core/waiting.py",
            "from ldappool._drivers import _shared",
            "The pool never imports a driver",
        ),
        ("_drivers/_shared.py", "from ldappool import _dialer", "Drivers import only the port"),
        ("_drivers/ldap3.py", "from ldappool._errors import BackendError", "Drivers import only"),
        ("_core/slots.py", "from ldappool import _threaded", "Layers"),
        ("_port.py", "from ldappool import _errors", "No import cycles"),
    ],
)
def test_a_deliberate_violation_breaks_a_contract(
    tree: Path, module: str, line: str, contract: str
) -> None:
    _append(tree, module, line)
    result = _lint(tree)
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if row.endswith(" BROKEN")]
    assert any(row.startswith(contract) for row in broken), result.stdout


def test_every_module_but_the_package_itself_is_private() -> None:
    public = [
        info.name
        for info in pkgutil.walk_packages(ldappool.__path__, "ldappool.")
        if not any(part.startswith("_") for part in info.name.split(".")[1:])
    ]
    assert public == []


def test_the_public_names_are_exactly_all() -> None:
    shown = {name for name in dir(ldappool) if not name.startswith("_")}
    assert shown == set(ldappool.__all__)
    for name in ldappool.__all__:
        assert getattr(ldappool, name) is not None
    assert importlib.import_module("ldappool").StateConnector.__name__ == "StateConnector"
