"""Files written whole or not at all: a reader (or a crash) never leaves half a file behind."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, on error removed.

    Raises:
        IsADirectoryError: `path` is an existing directory.
        FileNotFoundError / PermissionError: the parent directory is missing or not writable
            (raised before the caller does any work).
    """
    path = Path(os.fspath(path))
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the directory {parent} does not exist")
    try:
        # the temporary name keeps the suffix: OpenCV and matplotlib choose the format from it
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=parent)
    except PermissionError:
        raise PermissionError(f"cannot write {path}: the directory {parent} is not writable") from None
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the file gets the permissions open() would give
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write `data` to `path` atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data)
        else:
            tmp.write_bytes(data)
    return Path(os.fspath(path))


def write_json(path: str | os.PathLike[str], obj, *, indent: int | None = None) -> Path:
    """`obj` as JSON, atomically, creating the folder. numpy scalars become numbers, paths strings,
    and the non-finite floats JSON lacks become "inf" / "-inf" / null."""
    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)

    def default(o):
        if hasattr(o, "item") and callable(o.item):  # numpy scalars
            return o.item()
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        raise TypeError(f"not JSON serializable: {type(o).__name__}")

    def clean(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None if math.isnan(o) else ("inf" if o > 0 else "-inf")
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    return atomic_write(path, json.dumps(clean(obj), indent=indent, default=default))
