"""Atomic file writes: write under a temporary name next to the target, then rename.

A crash or an exception while writing leaves the target untouched (absent, or its previous
content) and no half-written file under the target's name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path"]


def _refuse(path: Path) -> FileExistsError:
    return FileExistsError(f"{path}: file exists (pass overwrite=True to replace it)")


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``path``; without ``overwrite`` never clobber a file."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic and refuses an existing target, even one created meanwhile
    except FileExistsError:
        raise _refuse(path) from None
    except OSError:  # file system without hard links: check, then rename
        if os.path.lexists(path):
            raise _refuse(path) from None
        os.replace(tmp, path)


@contextmanager
def atomic_path(path, overwrite: bool = False):
    """Context manager yielding a temporary path to write; renamed to ``path`` on success.

    The temporary file has the same name as ``path`` inside a fresh hidden directory next to
    it (same file system, so the final rename is atomic; extension-based format detection of
    writers still works). On an exception inside the block the temporary directory is removed
    and ``path`` is left as it was.

    Parameters
    ----------
    path : str or Path
        Final file name. Its directory must exist.
    overwrite : bool
        Replace an existing ``path``. Without it an existing ``path`` raises FileExistsError,
        both on entry and (should one appear meanwhile) at the final rename.

    Yields
    ------
    Path
        Where to write; the file does not exist yet.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "a.txt") as tmp:
    ...     _ = tmp.write_text("hello")
    >>> (d / "a.txt").read_text(), sorted(p.name for p in d.iterdir())
    ('hello', ['a.txt'])
    """
    path = Path(path)
    if not overwrite and os.path.lexists(path):
        raise _refuse(path)
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"{path}: directory {parent} does not exist")
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    try:
        tmp = tmpdir / path.name
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{path}: nothing was written to the temporary file {tmp}")
        _commit(tmp, path, overwrite)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
