"""Files written whole or not at all: a reader (or a crash) never leaves half a file behind; and the
one rule for the folders a command writes its results into (`output_folder`)."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def writable_target(path: str | os.PathLike[str]) -> Path:
    """`path` as a Path, when a file can be written there; checked before any work is done.

    Raises:
        IsADirectoryError: `path` is a directory.
        FileNotFoundError / PermissionError: its folder is missing or not writable.
    """
    path = Path(os.fspath(path))
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a directory (give a file path)")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(f"cannot write {path}: the directory {path.parent} is not writable")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`, on error removed.

    Raises:
        IsADirectoryError: `path` is an existing directory.
        FileNotFoundError / PermissionError: the parent directory is missing or not writable
            (raised before the caller does any work).
    """
    path = writable_target(path)
    parent = path.parent
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
    except OSError as e:  # e.g. a full disk: the error names the file the caller meant, not the temporary
        if str(path) in str(e):
            raise
        named = type(e)(f"cannot write {path}: {e.strerror or e}")
        named.errno = e.errno  # kept for callers that check it; str() stays one plain line
        raise named from None
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


# What this package's commands write into a results folder (infer, eval, bench): what --overwrite replaces.
RESULT_FILES = ("keypoints.json", "metrics.json", "table.txt", "bench.json", "bench.png", "*_pose.*", "*.jsonl",
                "*.mp4", ".*.partial*")


@contextlib.contextmanager
def output_folder(path: str | os.PathLike[str], *, overwrite: bool = False,
                  name: str = "the output folder") -> Iterator[Path]:
    """The folder one run writes its results into, by one rule for every command.

    A new or empty folder is used as is (created with its parents). A folder holding anything is
    refused, so two runs' results never mix, unless `overwrite`: then this package's earlier results
    (`RESULT_FILES`) are removed first; anything else in it is still a refusal (the folder is not
    ours to clear). A folder this call created is removed again when the block fails and left it
    empty, so a failed run leaves nothing behind. `name` says what the folder is in messages (the
    CLI passes its flag, "--out").

    Raises:
        ValueError: `path` is a file, or a non-empty folder (the message says what to do).
        RuntimeError: the folder cannot be created or written to.
    """
    out = Path(os.fspath(path))
    if out.exists() and not out.is_dir():
        raise ValueError(f"{name} {out} exists and is not a folder")
    existing = sorted(out.iterdir()) if out.is_dir() else []
    if existing and not overwrite:
        raise ValueError(f"{name} {out} is not empty (it holds {existing[0].name}"
                         f"{f' and {len(existing) - 1} more' if len(existing) > 1 else ''}): give a new or empty "
                         f"folder, or overwrite=True (the CLI's --overwrite) to replace the results of an earlier run "
                         "there")
    foreign = [p for p in existing if not (p.is_file() and any(fnmatch.fnmatch(p.name, r) for r in RESULT_FILES))]
    if foreign:
        raise ValueError(f"{name} {out}: overwrite=True (the CLI's --overwrite) replaces only this package's results, "
                         f"and the folder also holds {foreign[0].name}: give a new or empty folder")
    created = not out.exists()
    try:
        for p in existing:
            p.unlink()
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".vitpose-trt-write-test-"):
            pass
    except OSError as e:
        raise RuntimeError(f"cannot write to output folder {out}: {e.strerror or e}") from None
    try:
        yield out
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            shutil.rmtree(out, ignore_errors=True)
        raise
