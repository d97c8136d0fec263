"""`vitpose-trt bench`: statistics, timing, scenarios, correctness column, end to end on CPU
(the FLOP count is tested with the model, in test_model.py).

Everything here runs on a 2-core CPU in seconds: a tiny ViTPose (1 block, D = 32, simple decoder),
1-3 iterations, one CPU thread. Rows that need a GPU or TensorRT must come back as skipped with a
reason, never as a crash.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from vitpose_trt import bench
from vitpose_trt.coco import sample_checkpoint as coco_sample_checkpoint
from vitpose_trt.coco import sample_dir
from vitpose_trt.bench import (
    Runner,
    Skip,
    Timer,
    build_scenarios,
    keypoint_disagreement,
    resolve_alternatives,
    run_benchmark,
    summarize,
)
from vitpose_trt.atomic import write_json
from vitpose_trt.model import ViTPose, ViTPoseConfig, model_flops


def _tiny(decoder: str = "simple", seed: int = 0) -> ViTPose:
    torch.manual_seed(seed)
    model = ViTPose(ViTPoseConfig(variant="tiny", embed_dim=32, depth=1, num_heads=2, decoder=decoder)).eval()
    model.random_weights = True
    return model


@pytest.fixture(scope="module")
def micro():
    return _tiny()


FAST = dict(iters=2, warmup=1, max_seconds_per_row=5.0, threads=1, progress=False, matmul=False)


# --- statistics and timing ------------------------------------------------------------------


def test_summarize_known_samples():
    s = summarize(range(1, 101))  # 1..100
    assert s["n"] == 100
    assert s["median"] == pytest.approx(50.5)
    assert s["p90"] == pytest.approx(90.1)
    assert s["p99"] == pytest.approx(99.01)
    assert s["min"] == 1 and s["max"] == 100 and s["mean"] == pytest.approx(50.5)
    one = summarize([3.0])
    assert one["median"] == one["p90"] == one["p99"] == 3.0 and one["n"] == 1
    empty = summarize([])
    assert empty["n"] == 0 and empty["median"] is None


def test_timer_cpu_stages_sum_and_e2e():
    timer = Timer().start()
    time.sleep(0.01)
    timer.mark("crop")
    time.sleep(0.02)
    timer.mark("model")
    time.sleep(0.01)
    timer.mark("crop")  # a stage marked twice (one box at a time) is summed
    result = timer.stop()
    assert result["crop"] >= 19 and result["model"] >= 19
    assert result["e2e"] >= result["crop"] + result["model"] - 1e-6
    timer.mark("late")  # after stop: ignored
    assert "late" not in timer.stop()


def test_timer_needs_start():
    with pytest.raises(RuntimeError):
        Timer().mark("x")


# --- the public stage hook the benchmark times through ---------------------------------------------


def test_stage_hook_and_stream_of_the_cpu_path(micro):
    from vitpose_trt import VitPoseTRT
    from vitpose_trt.engines.pytorch import PyTorchEngine

    engine = PyTorchEngine(micro, device="cpu", precision="fp32")
    engine.max_batch = 2  # three boxes: two chunks
    pose = VitPoseTRT(engine)
    assert pose.stream is None  # the CPU path has no CUDA stream
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 60, 110], [50, 5, 150, 115], [0, 0, 160, 120]], np.float64)
    stages = []
    keypoints = pose.infer_async(frame, boxes, stage_hook=stages.append).result()
    assert stages == ["crop", "model", "decode"] * 2
    np.testing.assert_array_equal(keypoints, pose.infer(frame, boxes))


# --- scenarios ----------------------------------------------------------------------------------


def test_synthetic_scenarios():
    scenarios = build_scenarios([1, 4, 16], coco_sample=False)
    assert [s.people for s in scenarios] == [1, 4, 16]
    for s in scenarios:
        assert s.frame.shape == (1080, 1920, 3) and s.frame.dtype == np.uint8 and s.source == "synthetic"
        assert s.boxes.shape == (s.people, 4)
        assert (s.boxes[:, 0] >= 0).all() and (s.boxes[:, 2] <= 1920).all() and (s.boxes[:, 3] <= 1080).all()
        assert (s.boxes[:, 2] > s.boxes[:, 0]).all() and (s.boxes[:, 3] > s.boxes[:, 1]).all()


def test_missing_coco_sample_falls_back_to_synthetic(tmp_path, monkeypatch):
    monkeypatch.setenv("VITPOSE_TRT_COCO_SAMPLE", str(tmp_path / "absent"))
    assert build_scenarios([2])[0].source == "synthetic"


def test_coco_sample_scenarios_repeat_real_boxes():
    root = sample_dir()
    if root is None:
        pytest.skip("real photos not found: ../shared/data/coco-sample is absent (set VITPOSE_TRT_COCO_SAMPLE)")
    frame, boxes = bench.compose_coco_frame(root)
    assert frame.shape == (1080, 1920, 3) and len(boxes) > 4
    assert (np.diff(boxes[:, 4]) <= 0).all() and (boxes[:, 4] >= bench.COCO_MIN_SCORE).all()
    assert (boxes[:, 0] >= -1).all() and (boxes[:, 2] <= 1921).all() and (boxes[:, 3] <= 1081).all()
    s1, s64 = build_scenarios([1, 64])
    assert s1.source == "coco-sample" and s64.boxes.shape == (64, 4)
    np.testing.assert_array_equal(s1.boxes[0], boxes[0, :4])  # the best-scoring box first
    np.testing.assert_array_equal(s64.boxes[len(boxes)], boxes[0, :4])  # then they repeat


# --- correctness column -------------------------------------------------------------------------


def test_ties_are_told_apart_from_errors():
    ref_hm = np.zeros((1, 2, 8, 8), np.float32)
    ref_hm[0, :, 2, 2] = 1.0
    ref_hm[0, 0, 6, 6] = 0.99  # keypoint 0 has a near-equal second maximum; keypoint 1 has not
    transforms = np.array([[3.5, 3.5, 8.0, 8.0]], np.float32)  # heatmap px -> frame px: x * 8/7 - 0.5
    from vitpose_trt.geometry import heatmap_to_frame

    def frame(xy):
        return heatmap_to_frame(np.array(xy, np.float64).reshape(1, 2, 2), transforms, (8, 8), "udp")

    ref_kp = np.zeros((1, 2, 3))
    ref_kp[..., :2] = frame([[2, 2], [2, 2]])
    reference = bench.Reference(keypoints=ref_kp, heatmaps=ref_hm, transforms=transforms, mode="udp")
    alt = ref_kp.copy()
    alt[..., :2] = frame([[6, 6], [6, 6]])  # both moved to (6, 6): a tie for keypoint 0, an error for 1
    d = keypoint_disagreement(alt, reference)
    far = 4 * np.sqrt(2) * 8 / 7
    assert d["ties"] == 1
    assert d["max_px"] == pytest.approx(far) and d["max_px_excl_ties"] == pytest.approx(far)
    alt[0, 1, :2] = ref_kp[0, 1, :2] + 0.25
    d = keypoint_disagreement(alt, reference)
    assert d["ties"] == 1 and d["max_px_excl_ties"] == pytest.approx(0.25 * np.sqrt(2))


def test_keypoint_disagreement():
    ref = np.zeros((2, 3, 3), np.float32)
    kp = ref.copy()
    kp[1, 2, :2] = (3, 4)
    kp[..., 2] = 0.9  # scores do not count
    d = keypoint_disagreement(kp, ref)
    assert d["max_px"] == pytest.approx(5.0) and d["median_px"] == 0
    assert keypoint_disagreement(kp[:1], ref)["max_px"] == float("inf")
    kp[0, 0, 0] = np.nan
    assert keypoint_disagreement(kp, ref)["max_px"] == float("inf")


def _perturbed(shift_px: float):
    """The baseline with its keypoints moved by shift_px along x: a deliberately wrong alternative."""

    def factory(ctx):
        runner = bench.runner_baseline(ctx)
        infer = runner.infer

        def shifted(frame, boxes, timer):
            out = infer(frame, boxes, timer).copy()
            out[..., 0] += shift_px
            return out

        runner.infer, runner.name = shifted, "perturbed"
        return runner

    return factory


def test_correctness_column_flags_a_perturbed_alternative(micro):
    r = run_benchmark(model=micro, people=(2,), alternatives="pytorch-cpu,baseline", coco_sample=False,
                      extra={"perturbed": _perturbed(2.5)}, **FAST)
    rows = {row["alternative"]: row for row in r["rows"]}
    assert set(rows) == {"pytorch-cpu", "baseline", "perturbed"}
    assert all(row["status"] == "ok" for row in rows.values())
    # the baseline is the reference's own arithmetic, one box at a time
    assert rows["baseline"]["max_px"] < 1e-3 and rows["baseline"]["ties"] == 0
    # C++ crops round differently from cv2.warpAffine (half a grey level): with random weights a few
    # argmax ties flip and DARK's Newton step at a flat or border peak amplifies the rest
    assert rows["pytorch-cpu"]["median_px"] < 0.5 and np.isfinite(rows["pytorch-cpu"]["max_px"])
    assert rows["perturbed"]["max_px"] == pytest.approx(2.5, abs=1e-3)
    assert rows["perturbed"]["max_px_excl_ties"] == pytest.approx(2.5, abs=1e-3)
    table = bench.format_table(r)
    perturbed_line = next(line for line in table.splitlines() if line.startswith("perturbed"))
    assert perturbed_line.split()[-3:] == ["2.5", "0", "2.5"]


def test_correctness_column_with_real_peaks_flags_a_perturbed_alternative(micro, sample_checkpoint):
    """The accuracy columns from the fixture model (real peaks): nearly every keypoint counts, the
    package's rows agree with the reference to a fraction of a pixel, and a shift is seen as it is."""
    r = run_benchmark(model=micro, people=(3,), alternatives="pytorch-cpu,baseline", accuracy_weights=sample_checkpoint,
                      extra={"perturbed": _perturbed(2.5)}, **FAST)
    assert r["accuracy"]["source"] == "separate weights" and r["accuracy"]["random_weights"] is False
    rows = {row["alternative"]: row for row in r["rows"]}
    assert all(row["status"] == "ok" and row["accuracy_source"] == "separate weights" for row in rows.values())
    for row in rows.values():
        assert row["accuracy"]["counted"] >= 0.8 * row["accuracy"]["keypoints"]  # real peaks, few ties
        assert row["accuracy_benchmark_weights"]["max_px"] is not None  # the timed weights' run, kept too
    assert rows["baseline"]["max_px"] < 1e-3 and rows["baseline"]["ties"] == 0
    # C++ crops vs cv2.warpAffine (half a grey level), DARK-refined on real peaks: well under a pixel
    assert rows["pytorch-cpu"]["max_px_excl_ties"] < 0.5
    assert rows["perturbed"]["max_px_excl_ties"] == pytest.approx(2.5, abs=1e-3)
    assert rows["perturbed"]["ties"] == 0
    assert "real heatmap peaks" in bench.format_table(r)


def test_loaded_machine_warning(micro):
    assert bench.load_warning({"cpu_cores": 2, "load_average": [1.5, 1, 1], "load_average_end": [0.2, 0, 0]}) is None
    warning = bench.load_warning({"cpu_cores": 2, "load_average": [1.0, 1, 1], "load_average_end": [6.5, 4, 2]})
    assert "6.5 at the end on 2 cores" in warning and "ratios are noisy" in warning
    r = run_benchmark(model=micro, people=(1,), alternatives="baseline", coco_sample=False, **FAST)
    r["environment"]["load_average"] = [r["environment"]["cpu_cores"] + 3.0, 0, 0]
    assert "WARNING: the machine was loaded" in bench.format_table(r)


def test_plot_has_a_throughput_panel_only_when_batches_were_asked_for(micro):
    """No --batches: one panel, latency (not a half-empty figure); --batches that could not run: the
    throughput panel says so."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    r = run_benchmark(model=micro, people=(1,), alternatives="baseline", coco_sample=False, **FAST)
    fig = bench.make_figure(r)
    assert [ax.get_title() for ax in fig.axes] == ["latency per frame"]
    plt.close(fig)
    r = run_benchmark(model=micro, people=(1,), batches=(1,), alternatives="baseline", coco_sample=False, **FAST)
    fig = bench.make_figure(r)
    texts = [t.get_text() for t in fig.axes[1].texts]
    plt.close(fig)
    assert [ax.get_title() for ax in fig.axes] == ["latency per frame", "model throughput"]
    assert any("no batch size could run" in t for t in texts)


# --- transformers from our weights --------------------------------------------------------------


@pytest.mark.parametrize("decoder", ["classic", "simple"])
def test_hf_model_gives_our_heatmaps(decoder):
    pytest.importorskip("transformers")
    model = _tiny(decoder, seed=1)
    with torch.no_grad():  # give BatchNorm non-trivial statistics so that their mapping is exercised
        for name, buf in model.named_buffers():
            if name.endswith("running_mean") or name.endswith("running_var"):
                buf.copy_(torch.rand_like(buf) + 0.5)
    hf = bench.build_hf_model(model)
    x = torch.randn(2, 3, 256, 192)
    with torch.inference_mode():
        torch.testing.assert_close(hf(pixel_values=x).heatmaps, model(x), rtol=1e-4, atol=1e-5)


# --- alternatives, skips and failures -------------------------------------------------------------


def test_resolve_alternatives():
    assert resolve_alternatives("auto") == list(bench.ALTERNATIVES)
    assert resolve_alternatives("pipeline,baseline") == ["tensorrt", "pytorch-cuda", "onnxruntime", "onnxruntime-int8",
                                                        "pytorch-cpu", "baseline"]
    assert resolve_alternatives("int8") == ["onnxruntime", "onnxruntime-int8", "transformers"]
    assert resolve_alternatives(" baseline , baseline ") == ["baseline"]
    with pytest.raises(ValueError, match="unknown alternative"):
        resolve_alternatives("tensorrt,fast")


def test_rows_that_cannot_run_are_skipped_with_a_reason(micro, tmp_path):
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"not a real plan")

    def broken_setup(ctx):
        raise RuntimeError("boom at setup")

    def broken_run(ctx):
        def infer(frame, boxes, timer):
            raise RuntimeError("boom at run")

        return Runner(name="broken-run", device="cpu", precision="fp32", description="raises", infer=infer)

    def unavailable(ctx):
        raise Skip("needs a quantum computer")

    r = run_benchmark(model=micro, engine=plan, people=(1,), alternatives="tensorrt,pytorch-cuda,torch-fp16-eager",
                      device="cpu", coco_sample=False,
                      extra={"broken-setup": broken_setup, "broken-run": broken_run, "unavailable": unavailable},
                      **FAST)
    skipped = r["skipped"]
    assert set(skipped) == {"tensorrt", "pytorch-cuda", "torch-fp16-eager", "broken-setup", "unavailable"}
    if bench.tensorrt_version() is None:
        assert "tensorrt" in skipped["tensorrt"] and "not installed" in skipped["tensorrt"]
    assert "--device cpu" in skipped["pytorch-cuda"] and "--device cpu" in skipped["torch-fp16-eager"]
    assert "boom at setup" in skipped["broken-setup"]
    assert skipped["unavailable"] == "needs a quantum computer"
    (row,) = r["rows"]
    assert row["alternative"] == "broken-run" and row["status"] == "failed" and "boom at run" in row["reason"]
    table = bench.format_table(r)
    assert "Skipped:" in table and "Failed:" in table and "needs a quantum computer" in table


def test_the_fp32_baseline_runs_without_tf32():
    """cuDNN's TF32 convolutions (PyTorch's default) would make the "FP32" baseline row TF32 on a GPU."""
    model, seen = _tiny(), []
    model.register_forward_pre_hook(lambda m, a: seen.append(torch.backends.cudnn.allow_tf32))
    assert torch.backends.cudnn.allow_tf32  # PyTorch's default, restored after the run
    r = run_benchmark(model=model, people=(1,), alternatives="baseline", coco_sample=False, device="cpu", **FAST)
    assert [row["status"] for row in r["rows"]] == ["ok"]
    # the first forward pass is the bench's CPU reference (TF32 means nothing on a CPU); then the row's
    assert len(seen) > 2 and not any(seen[1:]) and torch.backends.cudnn.allow_tf32


def test_gpu_rows_report_why_without_a_gpu(micro):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = run_benchmark(model=micro, people=(1,), alternatives="gpu", coco_sample=False, **FAST)
    for name in ("pytorch-cuda", "torch-fp16-eager"):
        assert "CUDA" in r["skipped"][name]
    assert "--engine" in r["skipped"]["tensorrt"]
    ok = {row["alternative"] for row in r["rows"] if row["status"] == "ok"}
    assert ok == {"baseline", "transformers"}  # they fall back to the CPU


# --- end to end -----------------------------------------------------------------------------------


def test_python_api_end_to_end_writes_json_and_plot(micro, tmp_path):
    r = run_benchmark(model=micro, people=(1, 3), batches=(1, 2), alternatives="cpu", coco_sample=False,
                      **{**FAST, "matmul": True})
    assert r["model"]["random_weights"] is True
    assert r["model"]["flops_per_crop"] == model_flops(micro.config)
    ok = [row for row in r["rows"] if row["status"] == "ok"]
    assert {row["alternative"] for row in ok} == {"onnxruntime", "onnxruntime-int8", "pytorch-cpu", "baseline",
                                                   "transformers"}
    for row in ok:
        assert row["e2e"]["n"] == row["iterations"] >= 1
        assert {"crop", "model", "decode"} <= set(row["stages"])
        assert np.isfinite(row["max_px"])
        if row["precision"] == "fp32":
            assert row["median_px"] < 0.5  # FP32 rows agree with the FP32 reference
        assert row["e2e"]["median"] >= row["stages"]["model"]["median"]
    assert {row["precision"] for row in ok if row["alternative"] == "onnxruntime-int8"} == {"int8"}
    base = {row["people"]: row for row in ok if row["alternative"] == "baseline"}
    assert all(row["speedup_vs_baseline"] == pytest.approx(1.0) for row in base.values())
    tp = [t for t in r["throughput"] if t["status"] == "ok"]
    assert {(t["alternative"], t["batch"]) for t in tp} == {(a, b) for a in ("onnxruntime", "onnxruntime-int8",
                                                                             "pytorch-cpu", "transformers")
                                                             for b in (1, 2)}
    assert all(t["crops_per_s"] > 0 and 0 < t["fraction_of_matmul"] for t in tp)
    assert {t["alternative"] for t in r["throughput"] if t["status"] == "skipped"} == {"baseline"}
    assert r["matmul"]["cpu"]["tflops"] > 0

    table = bench.format_table(r)
    assert "RANDOM WEIGHTS" in table and "p99" in table and "crops/s" in table

    path = write_json(tmp_path / "bench.json", r, indent=1)
    data = json.loads(path.read_text())
    assert data["environment"]["cpu_cores"] >= 1 and data["rows"][0]["e2e"]["n"] >= 1
    pytest.importorskip("matplotlib")
    png = bench.plot_results(r, tmp_path / "bench.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bench_end_to_end(micro, tmp_path, monkeypatch, capsys):
    import vitpose_trt.model as model_module
    from vitpose_trt.cli import main

    monkeypatch.setattr(model_module, "build_random_model", lambda *a, **k: micro)  # the CLI's default weights
    monkeypatch.chdir(tmp_path)  # the default results folder is bench_out/<date-time>/ in the current folder
    out_json, out_png = tmp_path / "b.json", tmp_path / "b.png"
    argv = ["bench", "--people", "1,2", "--batches", "1", "--iters", "2", "--warmup", "1", "--threads", "1",
            "--max-seconds-per-row", "5", "--alternatives", "tensorrt,pytorch-cpu,onnxruntime", "--synthetic",
            "--no-progress", "--json", str(out_json)]
    try:
        import matplotlib  # noqa: F401

        argv += ["--plot", str(out_png)]
    except ImportError:
        out_png = None
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "RANDOM WEIGHTS" in text and "pytorch-cpu" in text and "onnxruntime" in text
    assert "tensorrt: " in text  # listed as skipped, with its reason
    data = json.loads(out_json.read_text())
    assert data["settings"]["people"] == [1, 2] and data["scenarios"][0]["source"] == "synthetic"
    assert sum(row["status"] == "ok" for row in data["rows"]) == 4
    assert "tensorrt" in data["skipped"]
    if out_png is not None:
        assert out_png.stat().st_size > 1000
    # the results folder, named in the output, holds the same table and numbers
    (folder,) = (tmp_path / "bench_out").iterdir()
    assert f"to bench_out/{folder.name}/" in text
    assert (folder / "table.txt").read_text().strip() in text
    assert json.loads((folder / "bench.json").read_text())["settings"] == data["settings"]
    assert (folder / "bench.png").exists() == (out_png is not None)
    # every row in plain words, under the table
    assert "pytorch-cpu: this package with PyTorch FP32 on the CPU" in text
    assert "tensorrt: this package with a TensorRT engine (FP16, or INT8/FP8" in text
    if coco_sample_checkpoint() is not None:  # real peaks for the accuracy columns
        assert data["accuracy"]["source"] == "separate weights" and not data["accuracy"]["random_weights"]
        assert all(row["accuracy_source"] == "separate weights" for row in data["rows"])
        assert all(row["accuracy"]["counted"] > 0.5 * row["accuracy"]["keypoints"] for row in data["rows"])
    else:
        assert data["accuracy"]["source"] == "benchmark weights"


def test_required_rows_must_all_run(micro, tmp_path, monkeypatch, capsys):
    """--require fails the command when a required alternative did not set up or a row of it failed:
    on a GPU machine, a failing GPU row is then a failing command (benchmarks/run_gpu_bench.sh)."""
    import vitpose_trt.model as model_module
    from vitpose_trt.cli import main

    monkeypatch.setattr(model_module, "build_random_model", lambda *a, **k: micro)
    argv = ["bench", "--people", "1", "--iters", "1", "--warmup", "1", "--threads", "1", "--synthetic",
            "--no-progress", "--alternatives", "pytorch-cpu,torch-fp16-eager", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "a"), "--require", "pytorch-cpu"]) == 0
    assert main([*argv, "--out", str(tmp_path / "b"), "--require", "pytorch-cpu,torch-fp16-eager"]) == 1
    assert "--require torch-fp16-eager: did not run" in capsys.readouterr().err
    result = {"skipped": {}, "throughput": [
        {"alternative": "x", "batch": 64, "status": "skipped", "reason": "predicted 40.0 s per run > 3 x budget 5 s"},
        {"alternative": "x", "batch": 8, "status": "skipped", "reason": "OutOfMemoryError: CUDA out of memory"}],
        "rows": [{"alternative": "x", "people": 1, "status": "ok"},
                 {"alternative": "x", "people": 4, "status": "failed", "reason": "RuntimeError: boom"}]}
    assert bench.unmet_requirements(result, ["x"]) == ["x, 4 people: failed (RuntimeError: boom)",
                                                       "x, batch 8: skipped (OutOfMemoryError: CUDA out of memory)"]
    assert bench.unmet_requirements(result, ["y"]) == ["y: no rows (not among the alternatives run)"]


def test_cli_rejects_bad_lists(capsys):
    from vitpose_trt.cli import main

    assert main(["bench", "--people", "1,x"]) == 2
    assert "--people" in capsys.readouterr().err


@pytest.mark.requires_cuda
def test_gpu_rows_run_and_agree(micro):
    r = run_benchmark(model=micro, people=(1, 4), batches=(1, 8), alternatives="gpu", coco_sample=False,
                      iters=3, warmup=2, max_seconds_per_row=10, progress=False)
    ok = {row["alternative"]: row for row in r["rows"] if row["status"] == "ok"}
    assert {"pytorch-cuda", "baseline", "transformers", "torch-fp16-eager"} <= set(ok)
    assert ok["pytorch-cuda"]["device"] == "cuda"
    assert {"upload", "crop", "model", "decode", "download"} <= set(ok["pytorch-cuda"]["stages"])
    assert r["matmul"]["cuda"]["tflops"] > 1


def test_the_environment_asks_the_cuda_runtime_for_the_gpu():
    """Whether CUDA rows run and which GPU the report names come from `cuda_runtime` (its
    `default_device` and device resolver), as for the engines: here its CPU stand-in."""
    from tests.standins.cuda import CudaStandIn
    from vitpose_trt.bench.environment import cuda_reason, environment
    from vitpose_trt.cuda_runtime import use_runtime

    with use_runtime(CudaStandIn(gpu_name="Stand-in L4", capability="8.9")):
        env = environment()
        assert cuda_reason() == ""
    assert env["gpu"] == "Stand-in L4" and env["gpu_capability"] == "8.9"
