"""vitpose_trt/engines/onnx_cache.py: the CPU's ONNX (and INT8) graphs are made once per content and reused.

The end-to-end use (a checkpoint opened on the CPU runs ONNX Runtime from the cached export, with
PyTorch's keypoints) is in tests/test_engines.py; here, the cache itself: where it lives, what keys an
entry, that a second call reuses the file and changed content makes a new one, and the errors.
"""

from __future__ import annotations

import logging

import onnx
import pytest

from vitpose_trt.engines.onnx_cache import CACHE_ENV, cache_dir, cached_int8_onnx, cached_onnx


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "here"))
    assert cache_dir() == tmp_path / "here"
    monkeypatch.delenv(CACHE_ENV)
    assert cache_dir().name == "vitpose_trt"  # the user's cache folder (platformdirs)


@pytest.fixture
def fake_checkpoint(tmp_path, tiny_model, monkeypatch):
    """A checkpoint file whose loading gives the tiny model; counts the loads (= exports)."""
    import vitpose_trt.checkpoint

    path = tmp_path / "tiny.pth"
    path.write_bytes(b"weights v1")
    loads = []

    def load(checkpoint, **kwargs):
        loads.append(checkpoint)
        return tiny_model

    monkeypatch.setattr(vitpose_trt.checkpoint, "load_model", load)
    return path, loads


def test_an_export_is_made_once_and_redone_when_the_checkpoint_changes(fake_checkpoint, tmp_path):
    path, loads = fake_checkpoint
    cache = tmp_path / "cache"
    first = cached_onnx(path, cache)
    assert first.parent == cache and first.name.startswith("tiny-") and first.suffix == ".onnx"
    mtime = first.stat().st_mtime_ns
    assert cached_onnx(path, cache) == first and first.stat().st_mtime_ns == mtime and len(loads) == 1
    path.write_bytes(b"weights v2")  # same name, new content: a new entry
    second = cached_onnx(path, cache)
    assert second != first and len(loads) == 2
    assert cached_onnx(path, cache, expert=1) not in (first, second)  # another expert is another graph
    onnx.checker.check_model(str(second))
    assert not list(cache.glob("*.partial*")), "a temporary file was left in the cache"


def test_a_cache_folder_that_cannot_be_made_names_the_variable(fake_checkpoint, tmp_path):
    path, _ = fake_checkpoint
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(RuntimeError, match=f"cannot create the ONNX cache folder .*set \\${CACHE_ENV}"):
        cached_onnx(path, blocker / "cache")


def test_int8_is_made_once_per_fp32_graph(tiny_model, tmp_path, coco_sample, caplog):
    """The INT8 graph of the tiny random model: quantized and checked against FP32 once, reused, and
    made anew when the FP32 graph changes."""
    import torch

    from vitpose_trt.model_info import read_metadata
    from vitpose_trt.export import export_onnx

    fp32 = export_onnx(tiny_model, tmp_path / "tiny.onnx", check=False).path
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="vitpose_trt"):
        int8 = cached_int8_onnx(fp32, cache)
    assert int8.name.endswith(".int8.onnx") and "INT8 vs FP32 on" in caplog.text
    meta = read_metadata({p.key: p.value for p in onnx.load(str(int8), load_external_data=False).metadata_props})
    assert meta["precision"] == "int8"
    mtime = int8.stat().st_mtime_ns
    assert cached_int8_onnx(fp32, cache) == int8 and int8.stat().st_mtime_ns == mtime
    with torch.no_grad():
        tiny_model.keypoint_head.final_layer.bias.add_(1.0)  # another FP32 graph
    try:
        export_onnx(tiny_model, fp32, check=False)
    finally:
        with torch.no_grad():
            tiny_model.keypoint_head.final_layer.bias.sub_(1.0)
    assert cached_int8_onnx(fp32, cache) != int8
