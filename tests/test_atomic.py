"""Files written whole or not at all, with the permissions a plain open() would give."""

import os
import stat

import pytest

from vitpose_trt.atomic import atomic_path, atomic_write


def test_written_whole_with_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert path.read_text() == "{}" and stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_unwritable_targets_are_named(tmp_path):
    with pytest.raises(IsADirectoryError, match="cannot write"):
        atomic_write(tmp_path, "x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        atomic_write(tmp_path / "missing" / "f.txt", "x")
