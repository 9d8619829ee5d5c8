"""Small ECSV tables read without ``astropy.table`` (whose import would dominate a fresh
``xbkg report``, which reads only ``bg_rejected_runs.ecsv`` with it).

:func:`read_ecsv_columns` reads what astropy writes for a table of scalar columns: the
``# %ECSV`` header (its ``delimiter``, a space by default) then CSV rows with double-quoted
fields. Anything else (multidimensional or masked columns, another delimiter, ragged rows)
raises ValueError, so that callers can fall back to astropy.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

__all__ = ["read_ecsv_columns"]


def read_ecsv_columns(path) -> dict[str, list[str]]:
    """The columns of a simple ECSV file, as lists of field strings in file order.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.ecsv"
    >>> _ = path.write_text('# %ECSV 1.0\\n# ---\\nOBS_ID REASON\\n1 "not an off run"\\n')
    >>> read_ecsv_columns(path)
    {'OBS_ID': ['1'], 'REASON': ['not an off run']}
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# %ECSV"):
        raise ValueError(f"{path}: not an ECSV file")
    header = [line for line in lines if line.startswith("#")]
    body = [line for line in lines if not line.startswith("#") and line.strip()]
    if any("subtype" in line or "null_value" in line for line in header) or not body:
        raise ValueError(f"{path}: not a table of scalar columns")
    delimiter = " "
    for line in header:
        match = re.fullmatch(r"#\s*delimiter:\s*(.*?)\s*", line)
        if match:
            if match.group(1) not in ("' '", "','"):
                raise ValueError(f"{path}: delimiter {match.group(1)}")
            delimiter = match.group(1)[1]
    rows = list(csv.reader(io.StringIO("\n".join(body)), delimiter=delimiter, quotechar='"',
                           doublequote=True, strict=True))
    names, rows = rows[0], rows[1:]
    if len(set(names)) != len(names) or any(len(row) != len(names) for row in rows):
        raise ValueError(f"{path}: rows do not match the {len(names)} columns {names}")
    return {name: [row[k] for row in rows] for k, name in enumerate(names)}
