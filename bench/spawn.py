"""Running one worker script in a virtualenv of its own, and reading its JSON lines.

Every part of the bench (the searches, the login storm, the peers, asyncio) times its
contestants in worker processes, each in the interpreter of the venv that holds them
(ldappool 3.0.0, bonsai and ldap3's pool live in their own). They all start the same
way: from outside the repository, so that no other venv sees this ldappool package.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.integration.harness import Slapd

__all__ = ["run_script", "target_argv"]


def run_script(what: str, python: Path, script: Path, argv: list[str]) -> list[dict[str, Any]]:
    """Run ``script`` with ``argv`` under ``python``; its output, one record per line.

    Raises RuntimeError naming ``what`` (with the script's stderr) if it fails.
    """
    done = subprocess.run(
        [str(python), str(script), *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",  # outside the repository: see the module's docstring
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def target_argv(slapd: Slapd) -> list[str]:
    """The server and identity a search worker is given (``add_target_arguments``)."""
    user = slapd.users["alice"]
    return [
        *("--uri", slapd.ldap_uri, "--dn", user.dn, "--password", user.password),
        *("--ca-file", slapd.ca_file),
    ]
