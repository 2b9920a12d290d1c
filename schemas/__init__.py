"""Language-neutral contracts of the hub: JSON Schema and XSD of the canonical
records, and the code lists under ``codelists/``.

This package holds data files only; :func:`path` locates one of them in the
installed distribution (``importlib.resources``), so callers never build paths
relative to a source checkout.
"""

from __future__ import annotations

import pathlib
from importlib import resources

__all__ = ["path"]


def path(name: str) -> pathlib.Path:
    """The file ``name`` (e.g. ``"license.xsd"``, ``"codelists/case_states.json"``).

    Raises FileNotFoundError if the distribution does not ship it.
    """
    target = resources.files(__name__).joinpath(*name.split("/"))
    p = pathlib.Path(str(target))
    if not p.is_file():
        raise FileNotFoundError(f"schema file not shipped: {name}")
    return p
