"""Engines: one interface, checks at the boundary, clear errors for bad files, the CPU's ONNX cache."""

import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from vitpose_trt import VitPoseTRT
from vitpose_trt.engines import open_engine
from vitpose_trt.engines.onnxruntime import OnnxRuntimeEngine
from vitpose_trt.engines.pytorch import PyTorchEngine


def _identityish_onnx(path, in_shape, out_shape):
    """A tiny graph (N, C, H, W) -> (N, 6C, H/4, W/4) made with onnx.helper (AveragePool 4x4, Tile)."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)
    y = helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, out_shape)
    pool = helper.make_node("AveragePool", ["input"], ["p"], kernel_shape=[4, 4], strides=[4, 4])
    reps = helper.make_tensor("reps", TensorProto.INT64, [4], [1, 6, 1, 1])
    tile = helper.make_node("Tile", ["p", "reps"], ["heatmaps"])
    graph = helper.make_graph([pool, tile], "g", [x], [y], initializer=[reps])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_bad_onnx_files_are_value_errors_naming_the_file(tmp_path, tiny_model):
    from vitpose_trt.export import export_onnx

    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 50)
    good = export_onnx(tiny_model, tmp_path / "good.onnx").path
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    for path in (empty, corrupt, truncated):
        with pytest.raises(ValueError, match=f"{path.name}: not a loadable ONNX model"):
            VitPoseTRT(path)
    one_channel = _identityish_onnx(tmp_path / "gray.onnx", ["N", 1, 256, 192], ["N", 6, 64, 48])
    with pytest.raises(ValueError, match="3 input channels"):
        OnnxRuntimeEngine(one_channel)  # refused when opened, not at the first frame
    symbolic = _identityish_onnx(tmp_path / "sym.onnx", ["N", 3, "H", "W"], ["N", 18, "h", "w"])
    with pytest.raises(ValueError, match="height and width must be fixed"):
        OnnxRuntimeEngine(symbolic)
    with pytest.raises(FileNotFoundError):
        OnnxRuntimeEngine(tmp_path / "missing.onnx")


def test_engines_check_their_input_the_same_way(tiny_model):
    engine = PyTorchEngine(tiny_model)
    with pytest.raises(ValueError, match=r"expected \(N, 3, 256, 192\)"):
        engine.run(np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(ValueError, match="float32"):
        engine.run(np.zeros((1, 3, 256, 192), np.float64))
    with pytest.raises(TypeError, match="numpy array"):
        engine.run([[0.0]])
    assert engine.run(np.zeros((0, 3, 256, 192), np.float32)).shape == (0, 17, 64, 48)
    with pytest.raises(NotImplementedError, match="no CUDA device path|runs on the CPU"):
        engine.run_cuda(None, None)


def test_engine_run_chunks_by_max_batch(tiny_model):
    crops = np.random.default_rng(0).standard_normal((5, 3, 256, 192)).astype(np.float32)
    whole = PyTorchEngine(tiny_model, max_batch=8).run(crops)
    calls = []
    engine = PyTorchEngine(tiny_model, max_batch=2)
    hook = engine.model.register_forward_pre_hook(lambda module, args: calls.append(len(args[0])))
    try:
        np.testing.assert_allclose(engine.run(crops), whole, rtol=1e-4, atol=1e-6)
    finally:
        hook.remove()  # the model is the session's tiny_model
    assert calls == [2, 2, 1]


def test_cpu_checkpoint_runs_onnxruntime_from_a_cached_export(sample_checkpoint, coco_sample, tmp_path,
                                                              monkeypatch, caplog):
    """backend="auto" on the CPU: the checkpoint is exported once (checked against PyTorch), the file
    is reused, and the keypoints equal PyTorch's on the fixture's real peaks."""
    monkeypatch.setenv("VITPOSE_TRT_CACHE_DIR", str(tmp_path / "cache"))
    _, frame, boxes = coco_sample[0]
    with caplog.at_level(logging.INFO, logger="vitpose_trt"):
        pose = VitPoseTRT(sample_checkpoint, device="cpu")
    assert pose.engine.name == "onnxruntime" and "ONNX Runtime on the CPU" in caplog.text
    cached = sorted((tmp_path / "cache").glob("*.onnx"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    again = VitPoseTRT(sample_checkpoint, device="cpu")
    assert again.engine.path == cached[0] and cached[0].stat().st_mtime_ns == mtime  # reused, not re-exported
    torch_pose = VitPoseTRT(sample_checkpoint, device="cpu", backend="pytorch")
    assert torch_pose.engine.name == "pytorch"
    a, b = pose.infer(frame, boxes[:4]), torch_pose.infer(frame, boxes[:4])
    np.testing.assert_allclose(a[..., :2], b[..., :2], atol=1e-2)  # FP32 summation order only
    np.testing.assert_allclose(a[..., 2], b[..., 2], atol=1e-4)


def test_cache_key_follows_the_checkpoint_content(tmp_path):
    from vitpose_trt.engines.onnx_cache import checkpoint_digest

    a = tmp_path / "a.pth"
    a.write_bytes(b"weights v1")
    d1 = checkpoint_digest(a)
    a.write_bytes(b"weights v2")
    assert checkpoint_digest(a) != d1
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"x")
    d2 = checkpoint_digest(folder)
    (folder / "model.safetensors").write_bytes(b"y")
    assert checkpoint_digest(folder) != d2


def test_engines_are_context_managers(tiny_model, tmp_path):
    from vitpose_trt.export import export_onnx

    path = export_onnx(tiny_model, tmp_path / "t.onnx").path
    with open_engine(path) as engine:
        assert engine.run(np.zeros((1, 3, 256, 192), np.float32)).shape == (1, 17, 64, 48)
    assert engine.session is None


def test_every_threads_argument_is_checked_by_check_threads(tmp_path):
    """One rule for `threads=` (engines.base.check_threads): None or a positive integer, never a bool;
    the pipeline, both ONNX Runtime runners and the benchmarks' PyTorch thread count all use it."""
    from vitpose_trt.engines.pytorch import torch_threads
    from vitpose_trt.bench.run import BenchConfig
    from vitpose_trt.engines.base import check_threads
    from vitpose_trt.engines.onnxruntime import OnnxRuntimeGraph

    assert check_threads(None) is None and check_threads(3) == 3
    assert check_threads(np.int64(2)) == 2 and type(check_threads(np.int64(2))) is int
    path = _identityish_onnx(tmp_path / "g.onnx", [None, 3, 8, 8], [None, 18, 2, 2])
    assert OnnxRuntimeEngine(path, threads=1).run(np.zeros((1, 3, 8, 8), np.float32)).shape == (1, 18, 2, 2)
    for bad in (0, -1, 2.5, True, "2"):
        with pytest.raises(ValueError, match=rf"threads must be a positive integer, got {bad!r}"):
            check_threads(bad)
    for use in (lambda t: OnnxRuntimeEngine(path, threads=t), lambda t: OnnxRuntimeGraph(path, threads=t),
                lambda t: torch_threads(t).__enter__(), lambda t: BenchConfig(threads=t),
                lambda t: VitPoseTRT(path, threads=t)):
        with pytest.raises(ValueError, match="threads must be a positive integer, got 0"):
            use(0)


def test_the_build_command_is_spelled_only_by_rebuild_command(tmp_path):
    """`engines.sidecar.rebuild_command` is the one spelling of `vitpose-trt build ... -o ...`: the
    messages that suggest a build use it, and no other string of the package spells one."""
    import ast
    import re
    from pathlib import Path

    from vitpose_trt.engines.sidecar import rebuild_command

    ckpt = tmp_path / "my model.pth"
    ckpt.write_bytes(b"")
    with pytest.raises(ValueError) as e:
        open_engine(ckpt, backend="tensorrt")
    assert f"`{rebuild_command({'source': {'path': str(ckpt)}})}`" in str(e.value)
    assert "'" in rebuild_command({"source": {"path": str(ckpt)}})  # a path with a space is quoted
    with pytest.raises(ValueError) as e:
        open_engine(ckpt, precision="int8", device="cuda")
    assert f"`{rebuild_command({'source': {'path': 'model.int8.onnx'}, 'precision': 'int8'})}`" in str(e.value)
    root = Path(__file__).resolve().parents[1]
    spelled = []
    for path in [*(root / "vitpose_trt").rglob("*.py"), *(root / "build_engine").rglob("*.py")]:
        if path.name == "sidecar.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):  # an f-string: its parts, each value as "{}"
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                text = node.value
            else:
                continue
            if re.search(r"vitpose-trt build \S+ -o ", str(text)):
                spelled.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not spelled, spelled


def test_a_pytorch_cpu_engine_sets_its_threads_per_run_and_restores_them(tiny_model):
    """PyTorch's thread count is process-wide: an engine opened with threads= uses them while it runs
    and leaves the program's setting as it was (before, opening the engine changed it for good)."""
    import copy

    import torch

    from vitpose_trt.engines import open_engine

    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    engine = open_engine(copy.deepcopy(tiny_model), backend="pytorch", device="cpu", threads=wanted)
    assert torch.get_num_threads() == before
    seen = []
    engine.model.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    engine.run(np.zeros((1, 3, 256, 192), np.float32))
    assert seen == [wanted] and torch.get_num_threads() == before
