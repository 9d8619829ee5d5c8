"""Sphinx configuration of the xbkg documentation (plain reST, no extra theme).

Build warning-free with::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import xbkg  # noqa: E402

project = "xbkg"
author = "the xbkg developers"
copyright = "the xbkg developers, BSD-3-Clause"
release = xbkg.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "xbkg_docs",
]

root_doc = "index"
exclude_patterns = ["_build", "_ext"]
templates_path = []
html_static_path = ["_static"]
html_theme = "alabaster"
html_theme_options = {
    "description": "Background models for IACTs with xarray and dask",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "230px",
}
html_last_updated_fmt = None  # reproducible pages: no build date

# numpy-style docstrings
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
