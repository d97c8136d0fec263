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


# --- the one rule for results folders --------------------------------------------------------------


def test_output_folder_rule(tmp_path):
    from vitpose_trt.atomic import output_folder

    new = tmp_path / "a" / "new"
    with output_folder(new) as out:  # created with its parents
        (out / "keypoints.json").write_text("[]")
    with pytest.raises(ValueError, match=r"the output folder .*new is not empty \(it holds keypoints.json\).*"
                                         r"overwrite=True \(the CLI's --overwrite\)"):
        with output_folder(new):
            pass
    (new / "photo_pose.jpg").write_bytes(b"x")
    with output_folder(new, overwrite=True) as out:  # an earlier run's results are replaced, not mixed
        assert list(out.iterdir()) == []
    (new / "my_notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"--overwrite\) replaces only this package's results.*my_notes.txt"):
        with output_folder(new, overwrite=True):
            pass
    assert (new / "my_notes.txt").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        with output_folder(tmp_path / "file"):
            pass


def test_a_failed_run_leaves_no_empty_folder(tmp_path):
    from vitpose_trt.atomic import output_folder

    with pytest.raises(RuntimeError, match="boom"):
        with output_folder(tmp_path / "run"):
            raise RuntimeError("boom")
    assert not (tmp_path / "run").exists()
    (tmp_path / "kept").mkdir()  # a folder that was there before stays, empty or not
    with pytest.raises(RuntimeError):
        with output_folder(tmp_path / "kept"):
            raise RuntimeError("boom")
    assert (tmp_path / "kept").is_dir()
