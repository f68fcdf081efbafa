"""The virtualenv holding ldappool 3.0.0 from PyPI, the library this project replaces.

It is kept apart from ours (``.venv-bench-old/``) so that the two never meet in one
interpreter: both are the ``ldappool`` package. Created once; a stamp file records a
complete install, so a later ``make bench`` costs nothing here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OLD_VENV = ROOT / ".venv-bench-old"
# 3.0.0 imports six without declaring it.
REQUIREMENTS = ("ldappool==3.0.0", "python-ldap>=3.4", "six")


def old_python() -> Path:
    """The old venv's interpreter, creating the venv first if needed."""
    python = OLD_VENV / "bin" / "python"
    stamp = OLD_VENV / ".installed"
    wanted = "\n".join(REQUIREMENTS)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"creating {OLD_VENV.name}/ with {', '.join(REQUIREMENTS)} (first run only)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(OLD_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *REQUIREMENTS], check=True)
    stamp.write_text(wanted)
    return python


if __name__ == "__main__":
    print(old_python())
