"""The video benchmark: a synthetic video through the CLI's own path, timed per stage (tiny sizes here)."""

from __future__ import annotations

import json

import pytest

from vitpose_trt.cli import main
from vitpose_trt.bench.video import format_video_table, run_video_benchmark, synthetic_video


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory, tiny_model):
    from vitpose_trt.export import export_onnx

    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    export_onnx(tiny_model, path, check=False)
    return path


def test_synthetic_video_places_every_person_inside_the_frame(tmp_path):
    boxes = synthetic_video(tmp_path / "v.avi", people=5, frames=3, size=(320, 180))
    assert sorted(boxes) == [0, 1, 2]
    for b in boxes.values():
        assert b.shape == (5, 5)
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= 320).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= 180).all()
    assert (boxes[1][:, 0] != boxes[0][:, 0]).any()  # they walk


def test_benchmark_rows_stages_and_detector_period(tiny_onnx):
    result = run_video_benchmark(engine=str(tiny_onnx), people=(1, 3), det_every=(1, 2), frames=3, warmup=1,
                                 size=(192, 128))
    rows = result["rows"]
    assert [(r["people"], r["det_every"]) for r in rows] == [(1, 1), (1, 2), (3, 1), (3, 2)]
    for r in rows:
        assert r["frames"] == 3 and r["fps"] > 0 and r["people_found"] == r["people"]
        assert set(r["stage_ms"]) == {"decode", "detect", "pose", "track", "render", "encode"}
        assert r["stage_ms"]["pose"] > 0 and r["stage_ms"]["encode"] > 0
        # the detector runs on frames 0 (and 2) only when asked to: propagation carries the rest
        assert r["detector_runs"] == (3 if r["det_every"] == 1 else 2)
    assert result["environment"]["random_weights"] is True
    table = format_video_table(result)
    assert table.count("\n| 3 | 2 | 2/3 |") == 1 and "random weights" in table


def test_bench_video_cli(tiny_onnx, tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = main(["bench-video", "--engine", str(tiny_onnx), "--people", "2", "--det-every", "1", "--frames", "2",
               "--size", "160x96", "--no-render", "--json", str(out)])
    assert rc == 0 and "| 2 | 1 | 2/2 |" in capsys.readouterr().out
    assert json.loads(out.read_text())["rows"][0]["stage_ms"]["encode"] == 0.0
    assert main(["bench-video", "--people", "0"]) == 2
    assert "positive integers" in capsys.readouterr().err
    assert main(["bench-video", "--size", "big"]) == 2
    assert "--size must be WxH" in capsys.readouterr().err


def test_each_synthetic_frame_carries_its_index_through_the_codec(tmp_path):
    """The known-boxes stand-in finds a frame's people from the frame itself (detection runs ahead, on
    another thread): the stamped index survives MJPG."""
    from vitpose_trt.bench.video import frame_index_of
    from vitpose_trt.sources import VideoSource

    truth = synthetic_video(tmp_path / "v.avi", people=4, frames=40, size=(160, 96))
    assert [frame_index_of(f.image) for f in VideoSource(tmp_path / "v.avi")] == sorted(truth) == list(range(40))
    with pytest.raises(ValueError, match="width of at least 96 px"):
        synthetic_video(tmp_path / "w.avi", people=1, frames=2, size=(64, 64))


def test_rows_give_the_sequential_and_overlapped_speeds(tiny_onnx):
    import torch

    before = torch.get_num_threads()
    result = run_video_benchmark(engine=str(tiny_onnx), people=(2,), det_every=(1,), frames=3, warmup=1,
                                 size=(192, 128), threads=1)
    assert result["environment"]["torch_threads"] == 1 and torch.get_num_threads() == before  # restored
    (row,) = result["rows"]
    assert row["fps"] > 0 and row["fps_sequential"] > 0
    assert row["overlap_gain"] == pytest.approx(row["fps"] / row["fps_sequential"])
    assert "| fps sequential | overlap gain |" in format_video_table(result)
