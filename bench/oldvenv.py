"""The virtualenv holding ldappool 3.0.0 from PyPI, the library this project replaces,
and how ``make bench`` builds the virtualenvs of the libraries it compares with.

Each is kept apart from ours (``.venv-bench-old/``, ``.venv-bench-<peer>/``) so that
two libraries never meet in one interpreter: ldappool 3.0.0 is the ``ldappool``
package, as ours is. Created once; a stamp file records a complete install, so a later
``make bench`` costs nothing here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OLD_VENV = ROOT / ".venv-bench-old"
# 3.0.0 imports six without declaring it.
REQUIREMENTS = ("ldappool==3.0.0", "python-ldap>=3.4", "six")


class VenvError(RuntimeError):
    """A virtualenv could not be created or its packages installed."""


def venv_python(venv: Path, requirements: Sequence[str]) -> Path:
    """The interpreter of ``venv``, after creating it with ``requirements`` if it is
    missing or incomplete; :class:`VenvError` (with pip's last words) if that fails."""
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    wanted = "\n".join(requirements)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"creating {venv.name}/ with {', '.join(requirements)} (first run only)", flush=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    steps = {
        "python -m venv": [sys.executable, "-m", "venv", "--clear", str(venv)],
        "pip install": [*pip, *requirements],
    }
    for step, argv in steps.items():
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            said = [line for line in done.stderr.splitlines() if line.strip()]
            last = said[-1].strip() if said else f"exit status {done.returncode}"
            raise VenvError(f"{step} failed: {last}")
    stamp.write_text(wanted)
    return python


def old_python() -> Path:
    """The old venv's interpreter, creating the venv first if needed."""
    return venv_python(OLD_VENV, REQUIREMENTS)


if __name__ == "__main__":
    print(old_python())
