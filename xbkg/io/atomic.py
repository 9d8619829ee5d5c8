"""Atomic writes of files and folders: write under a temporary name next to the target, then
rename.

A crash or an exception while writing leaves the target untouched (absent, or its previous
content) and no half-written file under the target's name. Temporary names carry the writer's
process id: leftovers of a process that was killed outright (SIGKILL) are removed, or an old
folder moved back, by the next write to the same target, which logs what it did.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_dir", "discard_pending", "recover"]

log = logging.getLogger(__name__)


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
    recover(path)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp",
                                   dir=parent))
    try:
        tmp = tmpdir / path.name
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{path}: nothing was written to the temporary file {tmp}")
        _commit(tmp, path, overwrite)
    except OSError as exc:
        if exc.errno in _FULL:
            raise _no_space(exc, path) from exc
        raise
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


_FULL = (errno.ENOSPC, errno.EDQUOT)


def _no_space(exc: OSError, target) -> OSError:
    """A full disk named after the target (the bare error names no file)."""
    return OSError(exc.errno, f"{target}: no space left on the device while writing; "
                   "nothing was changed")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def recover(target) -> list[str]:
    """Clean the leftovers of killed writers of ``target`` (a file or folder); returns (and
    logs) what was done.

    ``.NAME.tmp-PID-*`` folders and ``.NAME.PID-*.tmp`` file folders of dead processes are
    removed; an ``.NAME.old-PID`` folder is moved back to ``target`` if that is missing (the
    writer was killed between its two renames), else removed.
    """
    target = Path(os.path.abspath(target))
    if not target.parent.is_dir():
        return []
    name = re.escape(target.name)
    pattern = re.compile(rf"\.{name}\.(?:(tmp|old)-(\d+)(-.*)?|(\d+)-.*\.tmp)")
    done = []
    for path in sorted(target.parent.iterdir(), key=lambda p: p.name):
        match = pattern.fullmatch(path.name)
        if not match or not path.is_dir():
            continue
        pid = int(match.group(2) or match.group(4))
        if _pid_alive(pid):
            continue
        if match.group(1) == "old" and not os.path.lexists(target):
            os.replace(path, target)
            done.append(f"restored {target} from {path.name}, left by killed process {pid}")
        else:
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path}, left by killed process {pid}")
    for message in done:
        log.warning("%s", message)
    return done


@contextmanager
def atomic_dir(outdir, *, overwrite: bool = False):
    """Yield a fresh temporary folder that replaces ``outdir`` when the block succeeds.

    Refuses (FileExistsError) a non-empty ``outdir`` unless ``overwrite``. On error or
    KeyboardInterrupt the temporary folder is removed and ``outdir`` is left as it was; should
    the final renames fail (a read-only mount point, another writer's folder appearing), the
    previous ``outdir`` is put back. A process killed outright (SIGKILL) can leave a hidden
    ``.OUTDIR.tmp-PID-*`` or ``.OUTDIR.old-PID`` sibling, never a partial ``outdir``; such
    leftovers of dead processes are cleaned (see :func:`recover`) by the next call.
    """
    outdir = Path(outdir).resolve()
    recover(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise FileExistsError(f"{outdir}: exists and is not a directory")
    if outdir.exists() and any(outdir.iterdir()) and not overwrite:
        raise FileExistsError(f"{outdir}: output folder is not empty (use --overwrite, or "
                              "overwrite=True in Python)")
    outdir.parent.mkdir(parents=True, exist_ok=True)
    # named before it is created, and created inside the ``try``: an interrupt landing at any
    # point (even right after the folder appears) still removes it
    tmp = outdir.parent / f".{outdir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    _PENDING[tmp] = outdir
    try:
        os.mkdir(tmp, 0o700)
        try:
            yield tmp
        except OSError as exc:
            if exc.errno in _FULL:
                raise _no_space(exc, outdir) from exc
            raise
        try:
            _replace_dir(tmp, outdir)
        except OSError as exc:
            raise OSError(exc.errno, f"{outdir}: cannot move the new output into place "
                          f"({exc.strerror}); the previous content was kept") from exc
    finally:
        _clean(tmp, outdir)


#: Temporary folders of :func:`atomic_dir` blocks under way in this process -> their OUTDIR.
_PENDING: dict = {}


def _old_name(outdir: Path) -> Path:
    return outdir.parent / f".{outdir.name}.old-{os.getpid()}"


def _clean(tmp: Path, outdir: Path) -> None:
    """Remove ``tmp`` (already renamed away after a success) and this process' aside copy of
    ``outdir``, put back instead should ``outdir`` be missing (interrupted between renames)."""
    shutil.rmtree(tmp, ignore_errors=True)
    old = _old_name(outdir)
    if os.path.lexists(old):
        if os.path.lexists(outdir):
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, outdir)
    _PENDING.pop(tmp, None)


def discard_pending() -> list[str]:
    """Clean up after this process' unfinished :func:`atomic_dir` blocks: what a caller about
    to end the process after an interrupt runs, as the blocks' own clean-up is skipped should
    the interrupt land between their entry and their ``try`` (or interrupt that clean-up)."""
    done = []
    for tmp, outdir in list(_PENDING.items()):
        _clean(tmp, outdir)
        done.append(str(tmp))
    return done


def _replace_dir(tmp: Path, outdir: Path) -> None:
    """Rename ``tmp`` to ``outdir``, moving an existing ``outdir`` aside first and back should
    the second rename fail."""
    old = None
    if outdir.exists():
        old = _old_name(outdir)
        if os.path.lexists(old):  # this process' own, left by an interrupted clean-up
            shutil.rmtree(old)
        os.replace(outdir, old)
    try:
        os.replace(tmp, outdir)
    except BaseException:  # an interrupt between the two renames too: put the old one back
        if old is not None:
            if os.path.lexists(outdir):  # another writer's output took the place: keep it
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(old, outdir)
        raise
    os.chmod(outdir, 0o755)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
