"""Every dataset head a ViTPose checkpoint carries, against Hugging Face transformers (ViTPose++ with
`dataset_index`, SynthPose), with the flip test on; and ViTPose++ end to end, transformers layout and
official layout, for each of its six experts (infer, flip test, drawing, JSON results, JSONL)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.test_checkpoint import fill_random_, hf_heatmaps, hf_model, hf_to_official, images
from vitpose_trt import datasets
from vitpose_trt.checkpoint import load_model
from vitpose_trt.decode import merge_flip

REL_TOL = 1e-4  # of the heatmap scale: FP32 summation-order differences are ~1e-6 (test_checkpoint)
EXPERTS = datasets.experts()


def assert_close_to_scale(got: np.ndarray, expected: np.ndarray) -> None:
    scale = float(np.abs(expected).max())
    assert scale > 1e-2, "reference heatmaps are ~0: the comparison would prove nothing"
    assert float(np.abs(got - expected).max()) / scale < REL_TOL


def ours_with_flip(model, x: torch.Tensor, ds) -> tuple[np.ndarray, np.ndarray]:
    """(heatmaps, flip-test heatmaps) through our model and our numpy flip merge (UDP: no shift)."""
    with torch.no_grad():
        plain, mirrored = model(x).numpy(), model(x.flip(-1)).numpy()
    return plain, merge_flip(plain, mirrored, "udp", ds.flip_pairs)


def hf_with_flip(hf, x: torch.Tensor, ds, dataset_index=None) -> tuple[np.ndarray, np.ndarray]:
    """The same through transformers: its head flips the mirrored crop's heatmaps back itself
    (`flip_pairs=`, its own flip_back)."""
    index = None if dataset_index is None else torch.full((x.shape[0],), dataset_index)
    with torch.no_grad():
        plain = hf(x, dataset_index=index).heatmaps
        back = hf(x.flip(-1), dataset_index=index, flip_pairs=torch.tensor(ds.flip_pairs)).heatmaps
    return plain.numpy(), ((plain + back) / 2).numpy()


@pytest.mark.parametrize("ds", EXPERTS, ids=[d.name for d in EXPERTS])
def test_vitpose_plus_head_matches_transformers_for_every_expert(tmp_path, ds):
    """A transformers ViTPose++ (6 experts) with this dataset's head, saved and loaded by `load_model`:
    the dataset's own expert by default, and any expert on request, with and without the flip test."""
    hf = hf_model(embed_dim=64, depth=2, heads=4, num_keypoints=ds.num_keypoints, num_experts=6,
                  part_features=16, seed=ds.expert_index)
    hf.save_pretrained(tmp_path)
    x = images(2)
    ours = load_model(tmp_path, dataset=ds.name)
    assert ours.dataset == ds.name
    for got, expected in zip(ours_with_flip(ours, x, ds), hf_with_flip(hf, x, ds, ds.expert_index)):
        assert_close_to_scale(got, expected)
    for expert in range(6):
        ours = load_model(tmp_path, dataset=ds.name, expert=expert)
        for got, expected in zip(ours_with_flip(ours, x, ds), hf_with_flip(hf, x, ds, expert)):
            assert_close_to_scale(got, expected)


def test_a_wrong_expert_or_flip_pairs_trips_the_comparison(tmp_path):
    """The comparison above can fail: another expert, or another dataset's pairs, differ."""
    ds = datasets.COCO_WHOLEBODY
    hf = hf_model(embed_dim=64, depth=2, heads=4, num_keypoints=133, num_experts=6, part_features=16, seed=5)
    hf.save_pretrained(tmp_path)
    x = images(1)
    ours = load_model(tmp_path, dataset=ds.name, expert=4)
    plain, _ = ours_with_flip(ours, x, ds)
    with pytest.raises(AssertionError):
        assert_close_to_scale(plain, hf_with_flip(hf, x, ds, 5)[0])
    ours = load_model(tmp_path, dataset=ds.name)
    with torch.no_grad():
        merged = merge_flip(ours(x).numpy(), ours(x.flip(-1)).numpy(), "udp", datasets.COCO.flip_pairs)
    with pytest.raises(AssertionError):
        assert_close_to_scale(merged, hf_with_flip(hf, x, ds, 5)[1])


def test_synthpose_matches_transformers_and_is_named_by_its_config(tmp_path):
    """SynthPose: a plain ViTPose with a 52-marker head; config.json's id2label names the dataset."""
    transformers = pytest.importorskip("transformers")
    ds = datasets.get("synthpose")
    backbone = transformers.VitPoseBackboneConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                  out_indices=[2], layer_norm_eps=1e-6)
    config = transformers.VitPoseConfig(backbone_config=backbone, num_labels=52,
                                        id2label=dict(enumerate(ds.keypoints)),
                                        label2id={n: i for i, n in enumerate(ds.keypoints)})
    with torch.device("meta"):
        hf = transformers.VitPoseForPoseEstimation(config)
    hf = fill_random_(hf.to_empty(device="cpu").eval(), seed=7)
    hf.save_pretrained(tmp_path)
    ours = load_model(tmp_path)
    assert ours.dataset == "synthpose" and ours.config.num_keypoints == 52
    x = images(2)
    for got, expected in zip(ours_with_flip(ours, x, ds), hf_with_flip(hf, x, ds)):
        assert_close_to_scale(got, expected)
    with pytest.raises(ValueError, match="dataset 'coco-wholebody' has 133 keypoints but the checkpoint's"):
        load_model(tmp_path, dataset="coco-wholebody")


def test_hugging_face_vitpose_plus_keeps_only_the_coco_head(tmp_path):
    """Published transformers ViTPose++ checkpoints hold six experts and one 17-keypoint head: another
    dataset is refused with the way out (its expert with COCO's metadata)."""
    from vitpose_trt import VitPoseTRT

    hf = hf_model(embed_dim=64, depth=2, heads=4, num_keypoints=17, num_experts=6, part_features=16)
    hf.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"dataset 'aic' has 14 keypoints but the checkpoint's single keypoint "
                                         r"head has 17 .* run expert=1 with dataset='coco'"):
        load_model(tmp_path, dataset="aic")
    with pytest.raises(ValueError, match=r"choose the dataset to run, e.g. load_model\(path, dataset='coco'\)"):
        load_model(tmp_path)
    pose = VitPoseTRT(tmp_path, expert=1, backend="pytorch", device="cpu")
    assert pose.dataset is datasets.COCO


# --- official layout: a ViTPose++-S file, every expert end to end -------------------------------

@pytest.fixture(scope="module")
def official_vitpose_plus_s(tmp_path_factory):
    """A random ViTPose++-S in the official layout (experts in every MLP, dataset 0's head in
    keypoint_head, dataset j's in associate_keypoint_heads.{j-1}), float16 on disk."""
    transformers = pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("vitpose_plus") / "vitpose+_small.pth"
    hf = hf_model(embed_dim=384, depth=12, heads=12, num_experts=6, part_features=96, seed=11)
    sd = hf_to_official(hf.state_dict())
    for ds in EXPERTS:
        head = hf_model(embed_dim=384, depth=1, heads=12, num_keypoints=ds.num_keypoints, seed=20 + ds.expert_index).head
        prefix = "keypoint_head" if ds.expert_index == 0 else f"associate_keypoint_heads.{ds.expert_index - 1}"
        sd |= hf_to_official({"head." + n: t for n, t in head.state_dict().items()}, head_prefix=prefix)
    torch.save({"state_dict": {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}}, path)
    del transformers
    return path


def test_official_vitpose_plus_runs_every_expert_with_its_metadata(official_vitpose_plus_s, coco_sample, tmp_path):
    from vitpose_trt import VitPoseTRT
    from vitpose_trt.coco import keypoint_results
    from vitpose_trt.draw import draw_poses
    from vitpose_trt.video_io import JsonlWriter

    name, frame, boxes = coco_sample[0]
    boxes = boxes[:2]
    outputs = {}
    for ds in EXPERTS:
        pose = VitPoseTRT(official_vitpose_plus_s, dataset=ds.name, flip_test=True, backend="pytorch", device="cpu")
        assert pose.dataset is ds and pose.num_keypoints == ds.num_keypoints
        kp = pose.infer(frame, boxes)
        assert kp.shape == (2, ds.num_keypoints, 3) and np.isfinite(kp).all()
        outputs[ds.name] = kp
        drawn = draw_poses(frame, kp, boxes, -1.0, pose.dataset)  # every keypoint drawn
        assert (drawn != frame).any()
        results = keypoint_results(785, kp, boxes[:, 4], dataset=pose.dataset)
        assert sum(len(r[p.annotation_key]) for r in results[:1] for p in ds.parts) == 3 * ds.num_keypoints
        writer = JsonlWriter(tmp_path / f"{ds.name}.jsonl")
        writer.write(0, 0.0, [{"keypoints": kp[0].tolist()}])
        writer.close()
        line = json.loads((tmp_path / f"{ds.name}.jsonl").read_text())
        assert len(line["people"][0]["keypoints"]) == ds.num_keypoints
    # AP-10K and APT-36K share their keypoints but not their expert and head
    assert not np.allclose(outputs["ap-10k"], outputs["apt-36k"])
    with pytest.raises(ValueError, match="dataset 'synthpose' is not one of ViTPose\\+\\+'s"):
        VitPoseTRT(official_vitpose_plus_s, dataset="synthpose", backend="pytorch", device="cpu")


# --- the command line: a whole-body ViTPose++ from infer to eval ---------------------------------

def test_cli_wholebody_infer_video_eval_and_triton(tmp_path, coco_sample, capsys):
    """A transformers-layout ViTPose++ with a whole-body head through the CLI on the CPU's default
    engine (a cached ONNX export of the COCO-WholeBody expert): image results in the official part
    layout and overlays, a video's JSONL, `eval --dataset coco-wholebody` on whole-body annotations
    of the sample, and a Triton config that records the dataset."""
    import cv2

    from tests.conftest import coco_sample_dir
    from tests.test_wholebody import write_wholebody_annotations
    from vitpose_trt.cli import main

    root = coco_sample_dir()
    hf = hf_model(embed_dim=64, depth=2, heads=4, num_keypoints=133, num_experts=6, part_features=16, seed=3)
    hf.save_pretrained(tmp_path / "plus")
    model = ["--engine", str(tmp_path / "plus"), "--dataset", "coco-wholebody", "--flip-test"]
    photo = root / "000000000785.jpg"
    assert main(["infer", str(photo), "--boxes", str(root / "person_detections.json"), "--out", str(tmp_path / "img"),
                 "--no-progress", *model]) == 0
    results = json.loads((tmp_path / "img" / "keypoints.json").read_text())
    assert results and all(len(r["face_kpts"]) == 204 and len(r["righthand_kpts"]) == 63 for r in results)
    assert (tmp_path / "img" / "000000000785_pose.jpg").is_file()

    image = cv2.imread(str(photo))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (image.shape[1], image.shape[0]))
    for _ in range(3):
        writer.write(image)
    writer.release()
    boxes = next(b for n, _, b in coco_sample if n == photo.name)[:2]
    (tmp_path / "boxes.jsonl").write_text("".join(json.dumps({"frame": f, "boxes": boxes.tolist()}) + "\n"
                                                  for f in range(3)))
    assert main(["infer", str(video), "--boxes", str(tmp_path / "boxes.jsonl"), "--out", str(tmp_path / "vid"),
                 "--no-progress", *model]) == 0
    lines = [json.loads(ln) for ln in (tmp_path / "vid" / "clip.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all(np.asarray(p["keypoints"]).shape == (133, 3) for ln in lines for p in ln["people"])

    ann = tmp_path / "wholebody.json"
    write_wholebody_annotations(root, ann)
    assert main(["eval", "--images", str(root), "--ann", str(ann), "--out", str(tmp_path / "eval"),
                 "--no-progress", *model]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["settings"]["dataset"] == "coco-wholebody"
    assert set(metrics["parts"]) == {"body", "foot", "face", "lefthand", "righthand", "wholebody"}
    assert "wholebody" in capsys.readouterr().out  # the table has a column per part

    assert main(["triton-repo", str(tmp_path / "repo"), *model[:4]]) == 0
    config = (tmp_path / "repo" / "vitpose" / "config.pbtxt").read_text()
    assert '"coco-wholebody"' in config and "left_hand_root" in config and "dims: [ -1, 133, 3 ]" in config
    assert main(["infer", str(photo), "--out", str(tmp_path / "bad"), "--engine", str(tmp_path / "plus"),
                 "--dataset", "halpe", "--whole-frame"]) == 2
    assert "unknown dataset 'halpe'; known: coco" in capsys.readouterr().err


# --- the dataset travels with the file: ONNX metadata, TensorRT sidecar -------------------------

def test_onnx_metadata_and_sidecar_carry_the_dataset(tmp_path):
    from vitpose_trt.engines import ModelInfo
    from tests.test_sidecar import sample_sidecar
    from vitpose_trt import VitPoseTRT
    from vitpose_trt.engines.sidecar import read_sidecar, write_sidecar
    from vitpose_trt.export import export_onnx

    hf = hf_model(embed_dim=64, depth=2, heads=4, num_keypoints=17)
    hf.save_pretrained(tmp_path / "hf")
    unnamed = load_model(tmp_path / "hf")
    assert unnamed.dataset is None  # 17 keypoints: COCO by default, but not recorded as if it were known
    export_onnx(unnamed, tmp_path / "unnamed.onnx", check=False)
    pose = VitPoseTRT(tmp_path / "unnamed.onnx")
    assert pose.dataset is datasets.COCO and pose.engine.dataset is None
    assert VitPoseTRT(tmp_path / "unnamed.onnx", dataset="ap-10k", flip_test=True).dataset.name == "ap-10k"

    export_onnx(load_model(tmp_path / "hf", dataset="apt-36k"), tmp_path / "animal.onnx", check=False)
    pose = VitPoseTRT(tmp_path / "animal.onnx", flip_test=True)
    assert pose.engine.dataset == "apt-36k" and pose.dataset.name == "apt-36k"
    with pytest.raises(ValueError, match="made for dataset 'apt-36k', not 'coco'"):
        VitPoseTRT(tmp_path / "animal.onnx", dataset="coco")
    with pytest.raises(ValueError, match="expert=2 picks a ViTPose\\+\\+ expert when a checkpoint is loaded"):
        VitPoseTRT(tmp_path / "animal.onnx", expert=2)

    write_sidecar(tmp_path / "m.engine", sample_sidecar(model=ModelInfo("vitpose-b", 133, "classic", (256, 192), False,
                                                                        "coco-wholebody")))
    assert read_sidecar(tmp_path / "m.engine")["dataset"] == "coco-wholebody"
