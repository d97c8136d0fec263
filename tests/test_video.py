"""Video end to end: sources (video files, corrupt and truncated ones), `vitpose-trt infer` on a video
made here from a real photo (JSONL schema and frame count, mp4, per-frame boxes files, a detector
every N frames), clean ends on Ctrl-C, and every bad input as one line and a non-zero exit."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.test_detect import constant_detector
from vitpose_trt.cli import build_parser, main

PHOTO = "000000000785.jpg"
FRAMES = 4


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory, tiny_model):
    """A 2-block random ViTPose as ONNX: fast, for what does not need real heatmap peaks."""
    from vitpose_trt.export import export_onnx

    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    export_onnx(tiny_model, path, check=False)
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory, coco_sample):
    """A still FRAMES-frame MJPG video of a real photo + its two best detector boxes per frame as a
    MOT det.txt and as JSON lines."""
    name, image, boxes = next(s for s in coco_sample if s[0] == PHOTO)
    d = tmp_path_factory.mktemp("scene")
    video = d / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (image.shape[1], image.shape[0]))
    assert w.isOpened()
    for _ in range(FRAMES):
        w.write(image)
    w.release()
    best = boxes[:2]
    mot = d / "det.txt"
    mot.write_text("".join(f"{f + 1},-1,{x1},{y1},{x2 - x1},{y2 - y1},{s}\n"
                           for f in range(FRAMES) for x1, y1, x2, y2, s in best))
    jsonl = d / "boxes.jsonl"
    jsonl.write_text("".join(json.dumps({"frame": f, "boxes": best.tolist()}) + "\n" for f in range(FRAMES)))
    return {"video": video, "mot": mot, "jsonl": jsonl, "image": image, "boxes": best}


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_schema(lines, k=17, file_times=True):
    """file_times: times are the container's, from 0 (a stream's are the wall clock since it opened)."""
    assert [ln["frame"] for ln in lines] == list(range(len(lines)))
    times = [ln["time"] for ln in lines]
    assert times == sorted(times) and (times[0] == 0.0 or not file_times)
    for ln in lines:
        assert set(ln) == {"frame", "time", "people"}
        for p in ln["people"]:
            assert set(p) == {"id", "box", "box_score", "keypoints"} and len(p["box"]) == 4
            assert np.asarray(p["keypoints"]).shape == (k, 3)


def count_frames(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    cap.release()
    return n, size


def test_video_with_mot_boxes_writes_a_line_per_frame_and_the_annotated_video(scene, sample_checkpoint, tmp_path,
                                                                                capsys):
    out = tmp_path / "out"
    rc = main(["infer", str(scene["video"]), "--boxes", str(scene["mot"]), "--engine", str(sample_checkpoint),
               "--out", str(out), "--no-progress"])
    assert rc == 0
    lines = read_jsonl(out / "clip.jsonl")
    assert len(lines) == FRAMES
    check_schema(lines)
    # a still scene: the same two ids on every frame, boxes as given, real peaks on the people
    assert all(sorted(p["id"] for p in ln["people"]) == [0, 1] for ln in lines)
    first = {p["id"]: p for p in lines[0]["people"]}
    for ln in lines[1:]:
        for p in ln["people"]:
            np.testing.assert_allclose(p["box"], first[p["id"]]["box"], atol=0.01)
            # each frame is JPEG-compressed anew (MJPG): the keypoints move by a fraction of a pixel
            np.testing.assert_allclose(p["keypoints"], first[p["id"]]["keypoints"], atol=1.0)
    assert max(np.mean([k[2] for k in p["keypoints"]]) for p in lines[0]["people"]) > 0.3
    n, size = count_frames(out / "clip.mp4")
    assert n == FRAMES and size == count_frames(scene["video"])[1]
    assert f"clip: {FRAMES} frames, {2 * FRAMES} people" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["clip.jsonl", "clip.mp4"]  # no temporary files left


@pytest.mark.parametrize("ahead", ["off", "on"])
def test_video_with_a_detector_every_third_frame(scene, sample_checkpoint, tmp_path, ahead):
    # a detector that always reports the photo's best person box, in the mmdeploy dets + labels format
    h, w = scene["image"].shape[:2]
    ratio = 320 / max(h, w)  # top-left letterbox into 320x320
    dets = np.concatenate([scene["boxes"][:1, :4] * ratio, [[0.9]]], axis=1)[None].astype(np.float32)
    det = constant_detector(tmp_path / "det.onnx", {"dets": dets, "labels": np.zeros((1, 1), np.int64)})
    out = tmp_path / "out"
    rc = main(["infer", str(scene["video"]), "--detector", str(det), "--det-every", "3", "--smooth",
               "--engine", str(sample_checkpoint), "--out", str(out), "--no-render", "--no-progress",
               "--detect-ahead", ahead])
    assert rc == 0 and not (out / "clip.mp4").exists()
    lines = read_jsonl(out / "clip.jsonl")
    check_schema(lines)
    assert [len(ln["people"]) for ln in lines] == [1] * FRAMES and {ln["people"][0]["id"] for ln in lines} == {0}
    from vitpose_trt.tracking import iou_matrix

    for f in (0, 3):  # detector frames: the detector's box
        np.testing.assert_allclose(lines[f]["people"][0]["box"], scene["boxes"][0, :4], atol=0.05)
    for f in (1, 2):  # in between: the padded box around the keypoints, on the same person
        assert iou_matrix(np.array([lines[f]["people"][0]["box"]]), scene["boxes"][:1])[0, 0] > 0.6


def test_truncated_video_ends_cleanly_with_every_decoded_frame(scene, tiny_onnx, tmp_path, capsys):
    data = scene["video"].read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 7 // 10])
    out = tmp_path / "out"
    rc = main(["infer", str(cut), "--boxes", str(scene["jsonl"]), "--engine", str(tiny_onnx), "--out", str(out),
               "--no-progress", "--show"])
    assert rc == 0
    captured = capsys.readouterr()
    lines = read_jsonl(out / "cut.jsonl")
    assert 0 < len(lines) < FRAMES
    check_schema(lines)
    assert count_frames(out / "cut.mp4")[0] == len(lines)
    assert f"cut: {len(lines)} frames" in captured.out
    assert "truncated" in captured.err and "--show ignored" in captured.err


def corrupt_copy(src, dst, frame=2):
    """`src` with one JPEG frame's header zeroed: FFmpeg cannot decode that frame, the rest are fine."""
    data = bytearray(src.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    data[starts[frame]:starts[frame] + 600] = bytes(600)
    dst.write_bytes(bytes(data))
    return dst


def test_a_corrupt_frame_is_skipped_with_a_warning(scene, tmp_path, caplog):
    from vitpose_trt.sources import VideoSource

    src = VideoSource(corrupt_copy(scene["video"], tmp_path / "bad.avi"))
    with caplog.at_level(logging.WARNING):
        frames = list(src)
    src.close()
    assert len(frames) == FRAMES - 1 and src.skipped == 1 and src.error is None
    assert [f.index for f in frames] == list(range(FRAMES - 1))
    assert any("could not be decoded: skipped" in r.getMessage() for r in caplog.records)


class _InterruptingPose:
    """Poses like the tiny model, then raises KeyboardInterrupt (Ctrl-C) on its 4th frame."""

    num_keypoints = 17

    def __init__(self, exc=KeyboardInterrupt):
        self.n, self.exc = 0, exc

    def infer(self, frame, boxes):
        self.n += 1
        if self.n == 4:
            raise self.exc()
        return np.full((len(boxes), 17, 3), 0.5, np.float32)


def test_ctrl_c_ends_cleanly_with_files_valid_to_the_last_frame(scene, tmp_path):
    from vitpose_trt.sources import VideoSource
    from vitpose_trt.pose_tracker import PoseTracker
    from vitpose_trt.video import VideoConfig, process_video
    from vitpose_trt.video_io import load_frame_detections

    res = process_video(VideoSource(scene["video"]), PoseTracker(_InterruptingPose()), tmp_path,
                        VideoConfig(progress=False), frame_boxes=load_frame_detections(scene["mot"]))
    assert res.interrupted and res.frames == 3
    lines = read_jsonl(tmp_path / "clip.jsonl")
    assert len(lines) == 3
    check_schema(lines)
    assert count_frames(tmp_path / "clip.mp4")[0] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.jsonl", "clip.mp4"]


def test_a_failure_mid_video_leaves_no_half_written_files(scene, tmp_path):
    from vitpose_trt.sources import VideoSource
    from vitpose_trt.pose_tracker import PoseTracker
    from vitpose_trt.video import VideoConfig, process_video

    with pytest.raises(RuntimeError):
        process_video(VideoSource(scene["video"]), PoseTracker(_InterruptingPose(RuntimeError)), tmp_path,
                      VideoConfig(progress=False), frame_boxes={f: scene["boxes"] for f in range(FRAMES)})
    assert list(tmp_path.iterdir()) == []


def test_odd_sized_frames_are_padded_not_cropped(tmp_path):
    from vitpose_trt.video_io import VideoWriter

    w = VideoWriter(tmp_path / "odd.mp4", 10, (33, 21))
    for i in range(3):
        w.write(np.full((21, 33, 3), 60 * i, np.uint8))
    w.close()
    assert count_frames(tmp_path / "odd.mp4") == (3, (34, 22))
    with pytest.raises(ValueError, match="differs"):
        VideoWriter(tmp_path / "x.mp4", 10, (33, 21)).write(np.zeros((20, 20, 3), np.uint8))


def test_per_frame_boxes_files(tmp_path, scene):
    from vitpose_trt.video_io import load_frame_detections

    mot, js = load_frame_detections(scene["mot"]), load_frame_detections(scene["jsonl"])
    assert sorted(mot) == sorted(js) == list(range(FRAMES))
    np.testing.assert_allclose(mot[0], scene["boxes"], atol=1e-6)
    np.testing.assert_allclose(js[FRAMES - 1], scene["boxes"], atol=1e-9)
    bad = tmp_path / "bad.txt"
    bad.write_text("1,-1,10,10,5\n")
    with pytest.raises(ValueError, match=r"bad.txt, line 1: a MOT det.txt line"):
        load_frame_detections(bad)
    bad.write_text('{"frame": 0, "boxes": [[1, 2, 3]]}\n')
    with pytest.raises(ValueError, match=r"bad.txt, line 1: each box"):
        load_frame_detections(bad)
    bad.write_text("1,-1,10,10,-5,5,0.9\n")  # the boxes of a file go through geometry.check_boxes
    with pytest.raises(ValueError, match=r"bad.txt: frame 0: boxes \[0\] have x2 < x1"):
        load_frame_detections(bad)
    bad.write_text('{"frame": 3, "boxes": [[1, 2, 3, 4, NaN]]}\n')
    with pytest.raises(ValueError, match=r"bad.txt: frame 3: boxes \[0\] contain NaN or inf"):
        load_frame_detections(bad)
    # COCO detections (for images) given for a video: the file, its format and what a video takes
    coco = tmp_path / "person_detections.json"
    coco.write_text(json.dumps([{"image_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9}], indent=1))
    with pytest.raises(ValueError, match=r"person_detections.json holds COCO detections .* for a video give "
                                         r"per-frame boxes: a MOT det.txt"):
        load_frame_detections(coco)
    coco.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match="holds COCO detections"):
        load_frame_detections(coco)


def test_a_missing_detector_fails_when_the_tracker_is_made(tmp_path):
    from vitpose_trt.pose_tracker import PoseTracker

    with pytest.raises(FileNotFoundError, match=r"detector not found: .*nope.onnx \(or a known name"):
        PoseTracker(_InterruptingPose(), detector=str(tmp_path / "nope.onnx"))


def test_the_progress_bar_shows_one_speed(scene, tmp_path, capsys):
    """fps end to end, the same figure live and in the last line; not tqdm's own rate besides."""
    from vitpose_trt.sources import VideoSource
    from vitpose_trt.pose_tracker import PoseTracker
    from vitpose_trt.video import VideoConfig, process_video

    res = process_video(VideoSource(scene["video"]), PoseTracker(_InterruptingPose(RuntimeError), detector=lambda f:
                        np.zeros((0, 5))), tmp_path, VideoConfig(render=False, progress=True, max_frames=3))
    err = capsys.readouterr().err
    assert res.frames == 3 and " fps]" in err
    assert "frame/s" not in err and "s/frame" not in err and "it/s" not in err


def test_images_as_several_paths_and_images_without_detections(coco_sample, tiny_onnx, tmp_path, capsys):
    from tests.conftest import coco_sample_dir

    root = coco_sample_dir()
    dets = [d for d in json.loads((root / "person_detections.json").read_text()) if d["image_id"] == 785]
    boxes = tmp_path / "dets.json"
    boxes.write_text(json.dumps(dets))
    a, b = root / PHOTO, root / "000000040083.jpg"
    out = tmp_path / "out"
    rc = main(["infer", str(a), str(b), "--boxes", str(boxes), "--engine", str(tiny_onnx), "--out", str(out)])
    assert rc == 0
    captured = capsys.readouterr()
    assert "000000040083.jpg" in captured.err and "no detections" in captured.err
    results = json.loads((out / "keypoints.json").read_text())
    assert len(results) == len(dets)  # every box is kept for COCO evaluation (--box-thr 0)
    assert (out / "000000000785_pose.jpg").is_file() and (out / "000000040083_pose.jpg").is_file()


def test_an_overlay_that_cannot_be_written_is_an_error_naming_it(coco_sample, tiny_onnx, tmp_path, capsys,
                                                                monkeypatch):
    import errno

    import vitpose_trt.atomic
    from tests.conftest import coco_sample_dir

    def full_disk(src, dst):  # the disk fills up as the overlay is written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(vitpose_trt.atomic.os, "replace", full_disk)
    out = tmp_path / "out"
    rc = main(["infer", str(coco_sample_dir() / PHOTO), "--whole-frame", "--engine", str(tiny_onnx),
               "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("vitpose-trt infer: error: cannot write")
    assert "000000000785_pose.jpg: No space left on device" in err[-1]
    assert not out.exists() or not [p for p in out.iterdir() if "partial" in p.name or p.suffix == ".json"]


def test_inputs_whose_outputs_share_a_name_are_refused(coco_sample, tiny_onnx, tmp_path, capsys):
    import shutil

    from tests.conftest import coco_sample_dir

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = shutil.copy(coco_sample_dir() / PHOTO, tmp_path / "a" / PHOTO)
    b = shutil.copy(coco_sample_dir() / PHOTO, tmp_path / "b" / PHOTO)
    for inputs, said in (([a, b], f"{a} and {b} both write 000000000785_pose.jpg"), ([a, a], f"{a} is given twice")):
        rc = main(["infer", *map(str, inputs), "--whole-frame", "--engine", str(tiny_onnx),
                   "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and said in err[-1], err
        assert not (tmp_path / "out").exists()


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("case, expect", [
    ("missing", "input not found"),
    ("not_a_video", "cannot open video"),
    ("camera", "camera 7 does not open"),
    ("url", "cannot open stream http://127.0.0.1:1/x.mp4"),
    ("out_is_file", "exists and is not a folder"),
    ("out_unwritable", "cannot write to output folder"),
    ("boxes_numbers", "is not COCO detections"),
    ("boxes_malformed", "is not valid JSON"),
    ("no_engine", "--random-weights"),
    ("det_every", "--det-every must be >= 1"),
    ("detector_unknown", "accepted: raw YOLOv8"),
])
def test_bad_input_is_one_line_and_a_nonzero_exit(case, expect, scene, tiny_onnx, tmp_path, capsys):
    out = tmp_path / "out"
    src = str(scene["video"])
    extra = ["--engine", str(tiny_onnx), "--no-progress"]
    if case == "missing":
        src = str(tmp_path / "nope.mp4")
    elif case == "not_a_video":
        src = str(tmp_path / "fake.mp4")
        (tmp_path / "fake.mp4").write_text("hello")
    elif case == "camera":
        src = "7"
    elif case == "url":
        src = "http://127.0.0.1:1/x.mp4"
    elif case == "out_is_file":
        out.write_text("")
    elif case == "out_unwritable":
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "sub"
    elif case in ("boxes_numbers", "boxes_malformed"):
        (tmp_path / "b.json").write_text("[1, 2, 3]" if case == "boxes_numbers" else '[{"image_id": 1,')
        src = str(scene["video"].parent.parent)  # any image path: COCO --boxes are for images
        img = tmp_path / "img.jpg"
        cv2.imwrite(str(img), scene["image"])
        src = str(img)
        extra += ["--boxes", str(tmp_path / "b.json")]
    elif case == "no_engine":
        extra = []
    elif case == "det_every":
        extra += ["--det-every", "0"]
    elif case == "detector_unknown":
        extra += ["--detector", str(constant_detector(tmp_path / "d.onnx", {"x": np.zeros((1, 7), np.float32)}))]
    rc = main(["infer", src, "--out", str(out), *extra])
    line = _error_line(capsys)
    assert rc == 2 and line.startswith("vitpose-trt infer: error:") and expect in line, line
    if case in ("boxes_numbers", "boxes_malformed"):
        assert "b.json" in line


def test_version_help_defaults_verbose_after_the_subcommand_and_python_m():
    args = build_parser().parse_args(["infer", "x.mp4", "--out", "o", "-v"])
    assert args.verbose is True
    assert build_parser().parse_args(["-v", "infer", "x.mp4", "--out", "o"]).verbose is True
    assert build_parser().parse_args(["infer", "x.mp4", "--out", "o"]).verbose is False
    run = subprocess.run([sys.executable, "-m", "vitpose_trt", "infer", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and "(default: 0.3)" in run.stdout and "--det-every" in run.stdout
    run = subprocess.run([sys.executable, "-m", "vitpose_trt", "--version"], capture_output=True, text=True,
                         timeout=120)
    from vitpose_trt import __version__

    assert run.returncode == 0 and run.stdout.strip() == f"vitpose-trt {__version__}"


@pytest.mark.slow
def test_the_readme_python_snippet_runs_verbatim(tmp_path, monkeypatch, capsys):
    """The README's Python API block, exactly as written (random ViTPose-B: a few seconds on a CPU)."""
    from tests.conftest import REPO

    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API"):]
    code = section[section.index("```python\n") + len("```python\n"):]
    code = code[:code.index("```")]
    assert "boxes = " in code and "PoseTracker(" in code
    monkeypatch.chdir(tmp_path)  # "clip.mp4" does not exist here: the snippet falls back to its frame
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["keypoints"].shape == (2, 17, 3)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("(2, 17, 3) [") and printed[1] == "0 people tracked"  # it shows a result


def test_open_sources_sorts_images_folders_globs_and_videos(scene, tmp_path):
    from vitpose_trt.sources import ImageSource, VideoSource, open_sources

    folder = tmp_path / "shots"
    folder.mkdir()
    for name in ("b.png", "a.jpg"):
        cv2.imwrite(str(folder / name), np.zeros((8, 8, 3), np.uint8))
    (folder / "notes.txt").write_text("not an image")
    sources = open_sources([str(folder), str(folder / "*.png"), str(scene["video"])])
    try:
        images, video = sources
        assert isinstance(images, ImageSource) and [p.name for p in images.paths] == ["a.jpg", "b.png", "b.png"]
        assert isinstance(video, VideoSource) and video.name == "clip" and video.fps == pytest.approx(10.0)
        assert len(video) == FRAMES and [f.index for f in video] == list(range(FRAMES))
    finally:
        for s in sources:
            s.close()
    with pytest.raises(FileNotFoundError, match="no file matches"):
        open_sources([str(tmp_path / "*.jpeg")])
    with pytest.raises(FileNotFoundError, match="no images"):
        open_sources([str(tmp_path / "shots" / "..")])
    bad = folder / "broken.jpg"
    bad.write_text("not a jpeg")
    with pytest.raises(ValueError, match="cannot read image .*broken.jpg"):
        list(ImageSource([bad]))


# ---- faults: a stream that stops, a detector that fails (README "Videos, cameras, streams") ----------

@pytest.fixture
def cut_stream(scene):
    """The scene's clip served over HTTP on 127.0.0.1, the connection dropped after 60% of its bytes
    (a camera or a stream server that stops mid-stream): the URL."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    data = scene["video"].read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "video/x-msvideo")
            self.send_header("Content-Length", str(len(data)))  # announces it all, sends 60%
            self.end_headers()
            try:
                self.wfile.write(data[: len(data) * 6 // 10])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/clip.avi"
    server.shutdown()
    server.server_close()


def test_a_stream_that_stops_mid_stream_ends_cleanly(cut_stream, scene, tiny_onnx, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["infer", cut_stream, "--boxes", str(scene["jsonl"]), "--engine", str(tiny_onnx), "--out", str(out),
               "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0  # a stream's end is the end of the input, as for a camera unplugged
    lines = read_jsonl(out / "clip.jsonl")
    assert 0 < len(lines) < FRAMES and all(len(ln["people"]) == 2 for ln in lines)
    check_schema(lines, file_times=False)
    assert count_frames(out / "clip.mp4")[0] == len(lines)
    assert f"clip: {len(lines)} frames" in captured.out
    assert "ended early: the stream stopped delivering frames" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["clip.jsonl", "clip.mp4"]  # no temporary files left


class _FailingDetector:
    """The photo's best box, except on the calls listed in `fail` (0-based), where it raises, or returns
    NaN boxes (a detector's garbage output counts as its failure too)."""

    def __init__(self, box, fail, nan: bool = False):
        self.box, self.fail, self.nan, self.calls = box, set(fail), nan, 0

    def __call__(self, frame):
        self.calls += 1
        if self.calls - 1 in self.fail:
            if self.nan:
                return np.full((1, 5), np.nan)
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.box.copy()


def _track_video(scene, sample_checkpoint, out, detector, failures):
    from vitpose_trt import VitPoseTRT
    from vitpose_trt.sources import VideoSource
    from vitpose_trt.pose_tracker import PoseTracker
    from vitpose_trt.video import VideoConfig, process_video

    out.mkdir(exist_ok=True)
    tracker = PoseTracker(VitPoseTRT(sample_checkpoint), detector, max_detector_failures=failures)
    return process_video(VideoSource(scene["video"]), tracker, out, VideoConfig(progress=False))


@pytest.mark.parametrize("nan", [False, True])
def test_a_detector_that_fails_on_one_frame_is_skipped(scene, sample_checkpoint, tmp_path, caplog, nan):
    """The frame whose detection failed is tracked from the previous keypoints (the same person, the same
    id, a box around their keypoints), with a warning; the detector runs again on the next frame."""
    detector = _FailingDetector(scene["boxes"][:1], fail=[1], nan=nan)
    with caplog.at_level(logging.WARNING):
        res = _track_video(scene, sample_checkpoint, tmp_path, detector, failures=10)
    assert (res.frames, res.detector_failures, res.error, res.detector_error) == (FRAMES, 1, None, None)
    assert detector.calls == FRAMES  # every frame asked the detector, the failed one included
    lines = read_jsonl(tmp_path / "clip.jsonl")
    check_schema(lines)
    assert [[p["id"] for p in ln["people"]] for ln in lines] == [[0]] * FRAMES
    from vitpose_trt.tracking import iou_matrix

    assert iou_matrix(np.array([lines[1]["people"][0]["box"]]), scene["boxes"][:1, :4])[0, 0] > 0.6
    assert count_frames(tmp_path / "clip.mp4")[0] == FRAMES
    assert any("frame 1: the person detector failed" in r.getMessage() for r in caplog.records)


def test_a_detector_that_keeps_failing_ends_the_run_with_valid_files(scene, sample_checkpoint, tmp_path):
    """Past max_detector_failures in a row the run ends like a broken stream: both files hold every frame
    processed, the result says why; the library default (0) raises the detector's own error."""
    detector = _FailingDetector(scene["boxes"][:1], fail=range(1, FRAMES))
    res = _track_video(scene, sample_checkpoint, tmp_path / "a", detector, failures=1)
    assert res.frames == 2 and res.detector_failures == 2
    assert res.detector_error == res.error and "failed on 2 frames in a row (frame 2: RuntimeError: CUDA" in res.error
    assert len(read_jsonl(tmp_path / "a" / "clip.jsonl")) == 2 and count_frames(tmp_path / "a" / "clip.mp4")[0] == 2
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["clip.jsonl", "clip.mp4"]
    with pytest.raises(RuntimeError, match="illegal memory access"):  # no tolerance: the error as raised
        _track_video(scene, sample_checkpoint, tmp_path / "b", _FailingDetector(scene["boxes"][:1], fail=[1]), 0)
    assert list((tmp_path / "b").iterdir()) == []  # and nothing half-written is left


def test_cli_a_detector_that_keeps_failing_exits_1_with_the_files(scene, tiny_onnx, tmp_path, capsys, monkeypatch):
    import vitpose_trt.detect
    import vitpose_trt.pose_tracker

    monkeypatch.setattr(vitpose_trt.detect, "make_detector",  # where the CLI imports it from
                        lambda *a, **k: _FailingDetector(scene["boxes"][:1], fail=range(1, 100)))
    monkeypatch.setattr(vitpose_trt.pose_tracker, "MAX_DETECTOR_FAILURES", 2)
    out = tmp_path / "out"
    rc = main(["infer", str(scene["video"]), "--detector", "any.onnx", "--engine", str(tiny_onnx), "--out", str(out),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "the detector failed on 3 frame(s)" in err and "ended early: the person detector failed on 3 frames" in err
    assert len(read_jsonl(out / "clip.jsonl")) == 3 and count_frames(out / "clip.mp4")[0] == 3


class _ThreadRecordingDetector:
    """The synthetic people's true boxes for the frame given (read from the frame's stamped index), noting
    the thread each call ran on; `fail` frames raise, as a flaky detector would."""

    def __init__(self, truth, fail=()):
        self.truth, self.fail, self.threads, self.frames = truth, set(fail), [], []

    def __call__(self, image):
        import threading

        from vitpose_trt.bench.video import frame_index_of

        index = frame_index_of(image)
        self.frames.append(index)
        self.threads.append(threading.current_thread().name)
        if index in self.fail:
            raise RuntimeError("detector failed")
        return self.truth[index]


@pytest.mark.parametrize("det_every", [1, 3])
def test_detecting_ahead_gives_the_same_results_as_detecting_in_turn(tiny_onnx, tmp_path, det_every):
    """process_video(VideoConfig(overlap=True)) runs the detector on the next frame while this one is
    posed: the same frames are detected, with the same boxes, and the JSONL is identical to the
    sequential run's (frame 3's detection fails in both: it is tracked from the keypoints and frame 4
    detects again)."""
    from vitpose_trt import VitPoseTRT
    from vitpose_trt.bench.video import synthetic_video
    from vitpose_trt.sources import VideoSource
    from vitpose_trt.pose_tracker import PoseTracker
    from vitpose_trt.video import VideoConfig, process_video

    truth = synthetic_video(tmp_path / "walk.avi", people=3, frames=9, size=(192, 128))
    pose = VitPoseTRT(str(tiny_onnx))
    runs = {}
    for overlap in (False, True):
        detector = _ThreadRecordingDetector(truth, fail=[3])
        tracker = PoseTracker(pose, detector, det_every=det_every, kpt_thr=-np.inf, max_detector_failures=3)
        out = tmp_path / f"overlap-{overlap}"
        out.mkdir()
        res = process_video(VideoSource(tmp_path / "walk.avi"), tracker, out,
                            VideoConfig(render=False, progress=False, overlap=overlap))
        assert (res.frames, res.detector_failures, res.error) == (9, 1, None)
        runs[overlap] = (detector, (out / "walk.jsonl").read_text())
    (seq, seq_lines), (ahead, ahead_lines) = runs[False], runs[True]
    assert ahead.frames == seq.frames  # the same frames were detected ...
    assert seq.frames == ([0, 1, 2, 3, 4, 5, 6, 7, 8] if det_every == 1 else [0, 3, 4, 7])
    assert ahead_lines == seq_lines  # ... and gave the same tracks, byte for byte
    assert set(seq.threads) == {"MainThread"}
    # every detection but the first frame's ran ahead, on the worker thread
    assert ahead.threads[0] == "MainThread" and all(t.startswith("detect-ahead") for t in ahead.threads[1:])
    assert not any(t.name.startswith("detect-ahead") for t in __import__("threading").enumerate())  # closed


def test_the_overlap_check_fails_for_a_tracker_that_uses_the_next_frames_boxes_for_this_one(tiny_onnx, tmp_path):
    """A deliberately wrong overlap (this frame posed with the boxes detected on the next) is caught by
    the comparison above: the JSONL differs."""
    from vitpose_trt import VitPoseTRT
    from vitpose_trt.bench.video import synthetic_video
    from vitpose_trt.sources import VideoSource
    from vitpose_trt.pose_tracker import PoseTracker
    from vitpose_trt.video import VideoConfig, process_video

    class OffByOne(PoseTracker):
        def __call__(self, frame, *args, **kwargs):
            self._current = frame
            return super().__call__(frame, *args, **kwargs)

        def _detect_ahead(self, frame):  # runs the detector on this frame, for the next one
            super()._detect_ahead(self._current)
            self._ahead = (frame, self._ahead[1])

    truth = synthetic_video(tmp_path / "walk.avi", people=2, frames=5, size=(192, 128))
    pose = VitPoseTRT(str(tiny_onnx))
    lines = []
    for cls, overlap in ((PoseTracker, False), (OffByOne, True)):
        out = tmp_path / f"{cls.__name__}-{overlap}"
        out.mkdir()
        tracker = cls(pose, _ThreadRecordingDetector(truth), det_every=1, kpt_thr=-np.inf)
        process_video(VideoSource(tmp_path / "walk.avi"), tracker, out,
                      VideoConfig(render=False, progress=False, overlap=overlap))
        lines.append((out / "walk.jsonl").read_text())
    assert lines[0] != lines[1]


def test_detecting_ahead_is_on_by_default_only_when_the_pose_model_runs_on_a_gpu():
    from types import SimpleNamespace

    from vitpose_trt.video import overlap_pays

    def tracker(device):
        return SimpleNamespace(pose=SimpleNamespace(engine=SimpleNamespace(device=device)))

    assert overlap_pays(tracker("cuda")) and overlap_pays(tracker("cuda:1"))
    assert not overlap_pays(tracker("cpu")) and not overlap_pays(SimpleNamespace(pose=object()))
