"""Atomic outputs: a file appears complete or not at all, and a failed write leaves nothing
behind (no temporary file, no half-written target; an existing target is kept unchanged).

Files are written to a hidden temporary file in the target's directory (same file system),
flushed to disk, then renamed over the target (``os.replace``). A directory of outputs can be
produced the same way with :func:`atomic_directory`.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _check_target(path: Path) -> None:
    if path.is_dir():
        raise IsADirectoryError(21, "output path is a directory", str(path))
    if not path.parent.is_dir():
        raise FileNotFoundError(2, "output directory does not exist", str(path.parent))


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path. The file gets the usual
    permissions (0666 minus the umask), as ``open(path, 'wb')`` would give it."""
    path = Path(path)
    _check_target(path)
    tmp = _temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_directory(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``path``; when the block succeeds it becomes
    ``path``, when it raises it is removed. An existing empty ``path`` is replaced; a non-empty
    one raises FileExistsError unless ``overwrite`` (then it is replaced as a whole)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(2, "parent directory does not exist", str(path.parent))
    if path.exists() and not path.is_dir():
        raise FileExistsError(17, "output path exists and is not a directory", str(path))
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(17, "output directory exists and is not empty", str(path))
    tmp = _temp_name(path)
    tmp.mkdir()
    try:
        yield tmp
        if path.is_dir() and any(path.iterdir()):
            old = _temp_name(path)
            os.rename(path, old)
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)  # replaces an empty directory
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
