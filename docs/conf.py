"""Sphinx configuration for the ldappool documentation (``make docs``)."""

from __future__ import annotations

import sys
from pathlib import Path

# The package is installed editable in .venv; this makes a plain checkout build too.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import ldappool  # noqa: E402

project = "ldappool"
author = "ldappool developers"
copyright = "ldappool developers, MPL 2.0"  # noqa: A001
version = release = ldappool.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]

# No intersphinx: the build must not need the network, and -W turns a failed
# inventory download into an error.
exclude_patterns = ["_build"]
default_role = "code"
highlight_language = "python3"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_default_options = {"members": True, "show-inheritance": True}
autoclass_content = "class"

html_theme = "furo"
html_title = f"ldappool {release}"
