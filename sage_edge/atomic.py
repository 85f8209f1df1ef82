"""Atomic file writes: a reader never sees a half-written output, a crash leaves no partial file.

It is also the one place where a failed write (a folder the user cannot write to, a read-only or full
file system, a path through a file) becomes one line that says what to do: ``atomic_path`` turns the
``OSError`` into a ``SageEdgeError`` from ``output_error``, and ``check_writable`` lets a command find
out before it spends minutes on work whose result it could not save.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator

from sage_edge.errors import SageEdgeError

# errno values that mean "this output cannot be written here", whatever the command.
_NO_PERMISSION = (errno.EACCES, errno.EPERM)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NOT_A_FOLDER = (errno.ENOTDIR, errno.EEXIST)
WRITE_ERRNOS = (*_NO_PERMISSION, *_NO_SPACE, *_NOT_A_FOLDER, errno.EROFS, errno.EISDIR, errno.ENOTEMPTY)


def _blocking_file(path: Path) -> Path | None:
    """The first existing ancestor of ``path`` that is a file (so nothing can be created under it)."""
    for parent in [path, *path.parents]:
        if parent.exists() or parent.is_symlink():
            return None if parent.is_dir() else parent
    return None


def output_error(path: str | os.PathLike, exc: OSError) -> SageEdgeError:
    """One line for an OSError raised while writing ``path``: what went wrong and what to do."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    code = exc.errno
    if code in _NO_PERMISSION:
        return SageEdgeError(f"cannot write {path}: permission denied in {folder}; "
                             "choose an output folder you can write to")
    if code == errno.EROFS:
        return SageEdgeError(f"cannot write {path}: {folder} is on a read-only file system; "
                             "choose an output folder on a writable disk")
    if code in _NO_SPACE:
        return SageEdgeError(f"cannot write {path}: no space left on the disk holding {folder} (nothing was "
                             "written); free some space or choose an output folder on another disk")
    if code == errno.EISDIR or path.is_dir():
        return SageEdgeError(f"cannot write {path}: it is a directory; give a file name inside it, "
                             f"e.g. {path / 'out'}{path.suffix or ''}")
    blocking = _blocking_file(path.parent)
    if code in _NOT_A_FOLDER or blocking is not None:
        where = blocking if blocking is not None else folder
        return SageEdgeError(f"cannot write {path}: {where} is a file, not a folder; choose another output path")
    reason = exc.strerror or str(exc) or type(exc).__name__
    return SageEdgeError(f"cannot write {path}: {reason}; choose another output path")


def _is_about(exc: OSError, *paths: Path) -> bool:
    """Whether ``exc`` concerns writing one of ``paths`` (or names no file, as a failed write() does)."""
    if exc.errno not in WRITE_ERRNOS:
        return False
    if exc.filename is None:
        return True
    return any(os.fspath(exc.filename) == os.fspath(p) for p in paths) or \
        Path(os.fspath(exc.filename)).parent in {p.parent for p in paths}


def _probe(folder: Path) -> OSError | None:
    """Create and remove a temporary file in the nearest existing folder at or above ``folder``."""
    existing = next((p for p in [folder, *folder.parents] if p.is_dir()), Path("."))
    try:
        fd, probe = tempfile.mkstemp(prefix=".sage-edge-probe.", dir=existing)
    except OSError as exc:
        return exc
    os.close(fd)
    os.unlink(probe)
    return None


def check_writable(path: str | os.PathLike) -> None:
    """Fail now, with one line, if a file could not be created at ``path`` (permissions, read-only or
    missing folder, a file in the way). Creates nothing: it probes the nearest existing folder."""
    path = Path(path)
    if path.is_dir():
        raise output_error(path, IsADirectoryError(errno.EISDIR, "is a directory"))
    if _blocking_file(path.parent) is not None:
        raise output_error(path, NotADirectoryError(errno.ENOTDIR, "not a directory"))
    problem = _probe(path.parent)
    if problem is not None:
        raise output_error(path, problem)


def check_writable_dir(folder: str | os.PathLike) -> None:
    """``check_writable`` for an output folder (which may not exist yet)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise SageEdgeError(f"{folder}: is a file; give a folder for the output")
    if _blocking_file(folder) is not None:
        raise output_error(folder, NotADirectoryError(errno.ENOTDIR, "not a directory"))
    problem = _probe(folder)
    if problem is not None:
        raise output_error(folder, problem)


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final_path``; rename it into place only if the block succeeds.

    An OSError from writing (here, or in the block, about the temporary file) becomes a one-line
    ``SageEdgeError`` (``output_error``); the temporary file is removed in every case.
    """
    final_path = Path(final_path)
    # Folders this call creates are removed again if it fails: a failure leaves nothing behind.
    created = [p for p in [final_path.parent, *final_path.parent.parents] if not p.exists()]
    try:
        final_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{final_path.name}.", suffix=suffix if suffix is not None else final_path.suffix + ".tmp",
            dir=final_path.parent,
        )
    except OSError as exc:
        _remove_empty(created)
        raise output_error(final_path, exc) from None
    os.close(fd)
    tmp_path = Path(tmp_name)
    done = False
    try:
        # mkstemp creates 0600; give the output the permissions a plain open() would (0666 & ~umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        yield tmp_path
        os.replace(tmp_path, final_path)
        done = True
    except OSError as exc:
        if not _is_about(exc, final_path, tmp_path):
            raise
        raise output_error(final_path, exc) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
        if not done:
            _remove_empty(created)


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders (deepest first) if they are empty; never fails."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def write_bytes_atomic(final_path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(final_path) as tmp:
        tmp.write_bytes(data)
