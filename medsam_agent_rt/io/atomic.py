"""Atomic outputs: a file appears complete or not at all, and a failed write leaves nothing
behind (no temporary file, no half-written target; an existing target is kept unchanged).

Files are written to a hidden temporary file in the target's directory (same file system),
flushed to disk, then renamed over the target (``os.replace``). A directory of outputs can be
produced the same way with :func:`atomic_directory`.

Output-folder safety (:func:`check_output_dir`, also applied by :func:`atomic_directory` before
it replaces anything): a folder that is replaced as a whole must not be, or contain, the working
directory, the home directory, a file-system root or any protected input (compared both as
given and with symlinks resolved, so a link cannot smuggle an input into the folder), and its
parent must be writable. Commands call it with their inputs before any work starts.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


class UnsafeOutputError(ValueError):
    """The output folder cannot be used safely (it would delete inputs, or is not writable)."""


def _forms(path: Path) -> list[Path]:
    """``path`` as given (absolute, ``..`` collapsed) and with every symlink resolved."""
    given = Path(os.path.normpath(path.absolute()))
    real = Path(os.path.realpath(path))
    return [given] if given == real else [given, real]


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_output_dir(
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    overwrite: bool = False,
    what: str = "--out",
) -> Path:
    """Refuse an output folder that cannot be written safely; returns it (as given).

    Raises :class:`UnsafeOutputError` naming the folder and the reason when ``path``:
    exists and is not a directory; is non-empty without ``overwrite``; is (or contains) the
    working directory, the home directory or a file-system root; is (or contains) one of
    ``inputs``, as given or through a symlink (with ``overwrite`` the folder would be replaced
    as a whole); or cannot be created / written (no writable parent: probed by creating and
    removing a temporary folder, so it holds for root and read-only mounts too)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UnsafeOutputError(f"{what} {out}: exists and is not a directory")
    outs = _forms(out)
    danger = [Path.cwd()]
    try:
        danger.append(Path.home())
    except (RuntimeError, KeyError):  # no HOME and no password entry: nothing to protect there
        pass
    for o in outs:
        if o == Path(o.anchor):
            raise UnsafeOutputError(f"{what} {out}: is a file-system root; choose a new folder")
        for d in danger:
            for dd in _forms(d):
                if _inside(dd, o):
                    kind = "working directory" if d == danger[0] else "home directory"
                    raise UnsafeOutputError(
                        f"{what} {out}: is or contains the {kind} ({dd}); it would be replaced "
                        "as a whole: choose a new, dedicated output folder"
                    )
        for item in inputs:
            for i in _forms(Path(item)):
                if _inside(i, o):
                    raise UnsafeOutputError(
                        f"{what} {out}: contains the input {item} ({i}); the output folder is "
                        "replaced as a whole, so it must not hold inputs: choose another folder"
                    )
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UnsafeOutputError(
            f"{what} {out}: the output directory exists and is not empty; pass --overwrite to "
            "replace it, or choose another folder"
        )
    _check_writable(out, what)
    return out


def _check_writable(out: Path, what: str) -> None:
    """The nearest existing ancestor of ``out``'s parent must be a directory we can create in."""
    parent = Path(os.path.normpath(out.absolute())).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UnsafeOutputError(f"{what} {out}: {parent} is not a directory")
    probe = parent / f".msrt-probe-{secrets.token_hex(6)}"
    try:
        probe.mkdir()
    except OSError as exc:
        raise UnsafeOutputError(
            f"{what} {out}: cannot create folders in {parent} ({exc.strerror or exc})"
        ) from None
    probe.rmdir()


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
def atomic_directory(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    protect: Iterable[str | os.PathLike[str]] = (),
) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``path``; when the block succeeds it becomes
    ``path``, when it raises it is removed. An existing empty ``path`` is replaced; a non-empty
    one raises FileExistsError unless ``overwrite`` (then it is replaced as a whole).
    ``protect``: paths (inputs) the replaced folder must not contain; the folder is also
    checked against the working/home directory (:func:`check_output_dir`) before and after
    the block, so nothing outside the outputs is ever removed."""
    path = Path(path)
    protect = list(protect)
    if path.is_dir():
        check_output_dir(path, inputs=protect, overwrite=True, what="output folder")
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
            check_output_dir(path, inputs=protect, overwrite=overwrite, what="output folder")
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
