"""Checks that keep the user's data safe before anything is read or written.

* :func:`check_output`: an output path must not be an input, lie inside an input's folder, or
  contain an input (``make-models STORE STORE --overwrite`` would otherwise replace the store).
* :func:`check_replaceable`: ``--overwrite`` replaces only a folder that an earlier run of the
  same command wrote (it holds one of the command's marker files), never an arbitrary folder.
* :func:`require_regular_file`: FIFOs, devices and sockets are refused before they are opened
  (opening a FIFO blocks until a writer appears; a device can be endless).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["UnsafeOutputError", "check_output", "check_replaceable", "check_writable",
           "guard_output", "require_regular_file"]


class UnsafeOutputError(ValueError):
    """An output path that would overwrite or delete an input."""


def _real(path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _overlap(out: Path, inp: Path) -> str | None:
    if out == inp:
        return "is"
    if inp in out.parents:
        return "is inside"
    if out in inp.parents:
        return "contains"
    return None


def check_output(output, inputs, *, option: str = "OUTDIR") -> None:
    """Raise :class:`UnsafeOutputError` when ``output`` is, is inside, or contains an input.

    ``inputs`` are files or folders (``None`` entries are ignored); list the folder of a data
    file to protect the folder. Paths are compared after resolving symbolic links.

    Examples
    --------
    >>> check_output("/data/out", ["/data/store"])
    >>> check_output("/data/store/models", ["/data/store"])
    Traceback (most recent call last):
    ...
    xbkg.io.safety.UnsafeOutputError: OUTDIR /data/store/models is inside the input /data/store: refusing to write there (it could replace or delete the input)
    """
    out = _real(output)
    for given in inputs:
        if given is None or str(given) == "":
            continue
        inp = _real(given)
        how = _overlap(out, inp)
        if how:
            raise UnsafeOutputError(
                f"{option} {output} {how} the input {given}: refusing to write there (it "
                "could replace or delete the input)")


def check_replaceable(outdir, markers, *, option: str = "OUTDIR") -> None:
    """Refuse to replace an existing non-empty folder that holds none of ``markers``.

    ``markers`` are file names an earlier output of the command always holds (``model.nc`` for
    ``make-models``). An empty or missing folder passes.
    """
    path = Path(outdir)
    if not path.is_dir() or not any(path.iterdir()):
        return
    if not any((path / name).exists() for name in markers):
        names = " or ".join(markers)
        raise UnsafeOutputError(
            f"{option} {outdir}: not empty and not an earlier output of this command (no "
            f"{names}): refusing to replace it; choose a new or empty folder")


def guard_output(output, inputs, *, overwrite: bool, markers=(), option: str = "OUTDIR") -> None:
    """:func:`check_output`, then with ``overwrite`` :func:`check_replaceable` (when ``markers``
    are given): what every command runs before it reads or computes anything."""
    check_output(output, inputs, option=option)
    if overwrite and markers:
        check_replaceable(output, markers, option=option)
    check_writable(output, option=option)


def check_writable(output, *, option: str = "OUTDIR") -> None:
    """Refuse, before any work, an output whose folder cannot be written (permissions, a
    read-only file system): the nearest existing folder of ``output``'s parent is checked."""
    folder = _real(output).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UnsafeOutputError(f"{option} {output}: the folder {folder} is not writable")


def require_regular_file(path) -> None:
    """Raise ValueError unless ``path`` is a regular file (after symbolic links); a missing
    path raises FileNotFoundError and a folder IsADirectoryError, as ``open`` would."""
    mode = os.stat(path).st_mode  # FileNotFoundError, PermissionError: as open() would say
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not regular")
        raise ValueError(f"{path}: is {kind}, not a regular file: refused")
