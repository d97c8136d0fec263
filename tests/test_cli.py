"""The vitpose-trt command line: end to end on a real photo, and every subcommand's help and errors."""

import argparse
import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.conftest import coco_sample_dir
from vitpose_trt.cli import main


@pytest.fixture(scope="module")
def onnx_s(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "vitpose-s.onnx"
    assert main(["export", "-o", str(path), "--variant", "s"]) == 0
    return path


def test_export_writes_a_labelled_model(onnx_s):
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(onnx_s)).metadata_props}
    assert meta["variant"] == "vitpose-s" and meta["random_weights"] == "true"


def test_infer_on_a_real_photo_with_detector_boxes(onnx_s, tmp_path, capsys):
    root = coco_sample_dir()
    if root is None:
        pytest.skip("real photos not found: ../shared/data/coco-sample is absent")
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(root / "000000000785.jpg", images)  # a temp copy, so the folder holds one image
    out = tmp_path / "out"
    rc = main(["infer", str(images), "--boxes", str(root / "person_detections.json"), "--out", str(out),
               "--engine", str(onnx_s), "--box-thr", "0.3"])
    assert rc == 0
    results = json.loads((out / "keypoints.json").read_text())
    dets = [d for d in json.loads((root / "person_detections.json").read_text())
            if d["image_id"] == 785 and d["score"] >= 0.3]
    assert len(results) == len(dets) > 0
    for r in results:
        assert r["image_id"] == 785 and r["category_id"] == 1 and len(r["keypoints"]) == 51
    overlay = cv2.imread(str(out / "000000000785_pose.jpg"))
    assert overlay is not None and overlay.shape == (425, 640, 3)
    assert "RANDOM WEIGHTS" in capsys.readouterr().out


def test_infer_whole_frame_without_boxes(onnx_s, tmp_path):
    img = tmp_path / "person.png"
    cv2.imwrite(str(img), (255 * (cv2.getGaussianKernel(64, 10) @ cv2.getGaussianKernel(48, 10).T)).astype("uint8"))
    rc = main(["infer", str(img), "--out", str(tmp_path / "o"), "--engine", str(onnx_s), "--mode", "classic",
               "--whole-frame"])
    assert rc == 0
    (result,) = json.loads((tmp_path / "o" / "keypoints.json").read_text())
    xs, ys = result["keypoints"][0::3], result["keypoints"][1::3]
    assert len(xs) == len(ys) == 17
    # the whole 48x64 frame is the box; padded by 1.25 it spans x in [-6, 54], y in [-8, 72], and classic
    # decoding never leaves the crop
    assert all(-6 - 1e-3 <= x <= 54 + 1e-3 for x in xs) and all(-8 - 1e-3 <= y <= 72 + 1e-3 for y in ys)


def test_errors_exit_nonzero_with_a_message(tmp_path, capsys):
    assert main(["infer", str(tmp_path / "missing.jpg"), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_build_without_tensorrt_says_how_to_install(tmp_path, capsys):
    import tensorrt

    if hasattr(tensorrt, "Builder"):
        pytest.skip("TensorRT is installed here")
    rc = main(["build", str(tmp_path / "model.onnx"), "-o", str(tmp_path / "m.engine"), "--fp16"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "install" in err.lower()


# --- what a new user trips on (issue 19) -------------------------------------------------------------


@pytest.fixture
def one_photo(tmp_path):
    root = coco_sample_dir()
    if root is None:
        pytest.skip("real photos not found: ../shared/data/coco-sample is absent")
    images = tmp_path / "images"
    images.mkdir()
    for name in ("000000000785.jpg", "000000040083.jpg"):
        shutil.copy(root / name, images)
    return root, images


def test_reusing_out_is_refused_unless_overwrite_and_a_failed_run_leaves_nothing(onnx_s, one_photo, tmp_path, capsys):
    root, images = one_photo
    out = tmp_path / "out"
    argv = ["infer", str(images), "--boxes", str(root / "person_detections.json"), "--engine", str(onnx_s),
            "--box-thr", "0.5", "--out", str(out)]
    assert main(argv) == 0
    first = sorted(p.name for p in out.iterdir())
    assert main(argv) == 2 and "is not empty" in capsys.readouterr().err and sorted(p.name for p in out.iterdir()) == first
    assert main([*argv, "--overwrite"]) == 0 and sorted(p.name for p in out.iterdir()) == first
    failed = tmp_path / "failed"
    assert main(["infer", str(images), "--engine", str(tmp_path / "missing.onnx"), "--out", str(failed)]) == 2
    assert not failed.exists()


def test_ctrl_c_over_images_keeps_the_keypoints_done(onnx_s, one_photo, tmp_path, monkeypatch, capsys):
    from vitpose_trt.pipeline import VitPoseTRT

    root, images = one_photo
    calls = []
    real = VitPoseTRT.infer

    def interrupt_second(self, frame, boxes):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, frame, boxes)

    monkeypatch.setattr(VitPoseTRT, "infer", interrupt_second)
    out = tmp_path / "out"
    assert main(["infer", str(images), "--boxes", str(root / "person_detections.json"), "--engine", str(onnx_s),
                 "--box-thr", "0.5", "--out", str(out)]) == 130
    results = json.loads((out / "keypoints.json").read_text())
    assert results and {r["image_id"] for r in results} == {785}  # the first image's people, kept
    assert "1 of 2 images (interrupted)" in capsys.readouterr().out


def test_bad_boxes_files_name_the_file_the_image_and_the_format(onnx_s, one_photo, tmp_path, capsys):
    root, images = one_photo
    dets = json.loads((root / "person_detections.json").read_text())
    dets[3]["bbox"][2] = -4.0
    bad = tmp_path / "dets.json"
    bad.write_text(json.dumps(dets))
    assert main(["infer", str(images), "--boxes", str(bad), "--engine", str(onnx_s), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: detection 3 (image_id {dets[3]['image_id']}) has bbox [x, y, w, h]" in err
    assert "its width is -4.0" in err


def test_help_texts(capsys):
    from vitpose_trt.cli import build_parser

    top = build_parser().format_help()
    for command in ("export", "quantize", "build", "infer", "eval", "bench", "bench-video", "triton-repo", "serve"):
        assert command in top.split("positional arguments")[0], command  # the description names every command
    sub = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps subparsers here
    serve = sub["serve"].format_help()
    assert serve.count("127.0.0.1") == 2  # once in the text, once as "(default: 127.0.0.1)"
    assert "(default: )" not in sub["bench"].format_help()
    bench_variant = next(a.default for a in sub["bench"]._actions if a.dest == "variant")  # noqa: SLF001
    video_variant = next(a.default for a in sub["bench-video"]._actions if a.dest == "variant")  # noqa: SLF001
    assert bench_variant == video_variant == "b"
    with pytest.raises(SystemExit):
        main(["infer", "x.jpg", "--out", "o", "--box-thr", "2"])
    assert "--box-thr: expected a score threshold in [0, 1], got 2" in capsys.readouterr().err


def test_random_weights_are_said_once(tmp_path):
    """One warning line, not one per layer the random model passes through (a fresh process)."""
    import subprocess
    import sys

    image = tmp_path / "person.png"
    cv2.imwrite(str(image), np.full((256, 192, 3), 100, np.uint8))
    run = subprocess.run([sys.executable, "-m", "vitpose_trt", "infer", str(image), "--random-weights", "--whole-frame",
                          "--out", str(tmp_path / "out"), "--backend", "pytorch", "--device", "cpu"],
                         capture_output=True, text=True, env={**__import__("os").environ, "TQDM_DISABLE": "1"})
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("RANDOM") == 1, run.stderr


# --- every subcommand: its help, and one clear error line for bad input ------------------------------


SUBCOMMANDS = ("export", "quantize", "build", "infer", "eval", "bench", "bench-video", "triton-repo", "serve")

# {case: (argv with {tmp} for a fresh folder, what the one error line says)}: inputs a user gets wrong,
# each refused before any model is loaded or measured (other files test more: test_export.py,
# test_quantize.py, test_bench.py, test_video.py, test_video_bench.py, test_triton.py, test_detector_engine.py)
BAD_INPUT = {
    "export": (["export", "{tmp}/missing.pth", "-o", "{tmp}/m.onnx"], "checkpoint not found"),
    "export-not-a-checkpoint": (["export", "{tmp}/junk.onnx", "-o", "{tmp}/m.onnx"], "unsupported checkpoint type"),
    "quantize": (["quantize", "{tmp}/missing.pth", "-o", "{tmp}/q.onnx", "--calib", "{tmp}"], "model not found"),
    "build": (["build", "{tmp}/missing.onnx", "-o", "{tmp}/m.engine", "--fp16"], "ONNX model not found"),
    "infer": (["infer", "{tmp}/photo.png", "--engine", "{tmp}/junk.onnx", "--whole-frame",
                           "--out", "{tmp}/out"], "junk.onnx: not a loadable ONNX model"),
    "eval": (["eval", "--ann", "{tmp}/junk.json"], "--images and --engine are required"),
    "eval-junk-results": (["eval", "--ann", "{tmp}/junk.json", "--results", "{tmp}/junk.json"],
                          "junk.json: not a JSON file"),
    "bench": (["bench", "--precision", "fp16", "--out", "{tmp}/out"], "each bench row runs at its own precision"),
    "bench-video": (["bench-video", "--known-boxes"], "--known-boxes runs --detector for its cost"),
    "bench-video-junk-engine": (["bench-video", "--engine", "{tmp}/junk.onnx", "--frames", "1", "--people", "1",
                                 "--det-every", "1"], "junk.onnx: not a loadable ONNX model"),
    "triton-repo": (["triton-repo", "{tmp}/repo", "--engine", "{tmp}/missing.onnx"],
                    "engine, model or checkpoint not found"),
    "serve": (["serve", "--engine", "{tmp}/missing.onnx"], "engine, model or checkpoint not found"),
    "serve-gpus": (["serve", "--engine", "{tmp}/missing.onnx", "--gpus", "a"], "--gpus: expected comma-separated"),
}


def test_the_tables_name_every_subcommand():
    from vitpose_trt.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    assert set(subparsers.choices) == set(SUBCOMMANDS)  # a new subcommand needs its help and error cases here
    assert {argv[0] for argv, _ in BAD_INPUT.values()} == set(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: vitpose-trt {command} ") and "-v, --verbose" in out and "-h, --help" in out


@pytest.fixture
def bad_input_folder(tmp_path, monkeypatch):
    """A folder with a photo, a junk .onnx and a junk .json (the working directory too: nothing may land elsewhere);
    `vitpose-trt build` runs on the TensorRT stand-in, so its answer does not depend on this machine."""
    from tests.standins import tensorrt as standin_trt

    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    (tmp_path / "junk.json").write_text("{not json")
    cv2.imwrite(str(tmp_path / "photo.png"), np.full((64, 48, 3), 128, np.uint8))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "tensorrt", standin_trt)
    return tmp_path


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_error_line_and_exit_status_2(case, bad_input_folder, capsys):
    argv, says = BAD_INPUT[case]
    before = sorted(p.name for p in bad_input_folder.iterdir())
    rc = main([a.replace("{tmp}", str(bad_input_folder)) for a in argv])  # an exception here is a traceback
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"vitpose-trt {argv[0]}: error: ") and says in lines[0], lines[0]
    assert sorted(p.name for p in bad_input_folder.iterdir()) == before  # nothing written


@pytest.mark.parametrize("command", ["triton-repo", "serve", "quantize", "bench"])
def test_a_corrupt_onnx_is_one_error_line(command, bad_input_folder, capsys):
    junk = str(bad_input_folder / "junk.onnx")
    argv = {"triton-repo": ["triton-repo", "repo", "--engine", junk], "serve": ["serve", "--engine", junk],
            "quantize": ["quantize", junk, "-o", "q.onnx", "--calib", "."],
            "bench": ["bench", "--engine", junk, "--out", str(bad_input_folder / "bench"), "--no-progress"]}[command]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vitpose-trt {command}: error: ") and "not a loadable ONNX model" in lines[0]


# a value of the wrong type for one option of each subcommand: argparse's usage, then its error line
BAD_OPTION = {"export": "--opset", "quantize": "--calib-crops", "build": "--max-batch", "infer": "--det-every",
              "eval": "--limit", "bench": "--iters", "bench-video": "--frames", "triton-repo": "--instances",
              "serve": "--http-port"}


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_a_malformed_option_is_refused_by_the_parser(command, capsys):
    option = BAD_OPTION[command]
    with pytest.raises(SystemExit) as done:
        main([command, option, "many"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: vitpose-trt {command} ") and "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"vitpose-trt {command}: error: argument {option}: invalid int value: 'many'"


def test_an_error_in_a_fresh_process_is_one_line_without_a_traceback(tmp_path):
    """`python -m vitpose_trt` itself: the exit status reaches the shell and stderr holds only the error."""
    import subprocess

    run = subprocess.run([sys.executable, "-m", "vitpose_trt", "eval", "--ann", str(tmp_path / "a.json"),
                          "--results", str(tmp_path / "missing.json")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("vitpose-trt eval: error: ") and run.stderr.count("\n") == 1, run.stderr


def test_help_loads_no_heavy_library():
    """`vitpose-trt --help` (and importing the CLI) loads no torch, onnx, onnxruntime or TensorRT: the
    subcommands import what pulls them when they run."""
    code = ("import sys, vitpose_trt.cli; heavy = {'torch', 'onnx', 'onnxruntime', 'tensorrt'}; "
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
