"""The dataset table: flip pairs are involutions that map each left name to its right one, the
ViTPose++ experts' K match their datasets, lookups and the K -> dataset rule, and the errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from vitpose_trt import datasets
from vitpose_trt.datasets import COCO, COCO_WHOLEBODY, flip_index

ALL = list(datasets.DATASETS.values())

# The side a name carries, in each naming convention of the table: left_x / L_X / l_x / lshoulder.
_SIDE = re.compile(r"^(?P<side>left|right|L|R|l|r)(?P<sep>_?)(?P<rest>.+)$")
_OTHER = {"left": "right", "right": "left", "L": "R", "R": "L", "l": "r", "r": "l"}


def mirror_name(name: str) -> str | None:
    """The name of the keypoint on the other side, or None for a keypoint on the middle line."""
    m = _SIDE.match(name)
    if m is None or (not m["sep"] and m["rest"] != "shoulder"):  # "lshoulder" is SynthPose's only unseparated one
        return None
    return _OTHER[m["side"]] + m["sep"] + m["rest"]


def face68_mirror(i: int) -> int:
    """The iBUG 68-point face's left-right mirror, from its contours (independent of the table's list):
    jaw 0-16, brows 17-26, nose bridge 27-30, nostrils 31-35, eyes 36-41 / 42-47 (each eye from its
    outer corner, clockwise), outer lip 48-59, inner lip 60-67 (both from the left corner, clockwise)."""
    if i <= 16:
        return 16 - i
    if i <= 26:
        return 43 - i
    if i <= 30:
        return i
    if i <= 35:
        return 66 - i
    if i <= 47:  # the other eye, walked the other way round from its outer corner
        j = (i - 36) % 6
        other = 42 if i < 42 else 36
        return other + ((3 - j) % 6)
    if i <= 59:  # outer lip: corners 48 and 54, walk mirrored
        return 48 + ((6 - (i - 48)) % 12)
    return 60 + ((4 - (i - 60)) % 8)  # inner lip: corners 60 and 64


@pytest.mark.parametrize("ds", ALL, ids=[d.name for d in ALL])
def test_flip_pairs_are_an_involution_mapping_left_to_right(ds):
    perm = flip_index(ds.num_keypoints, ds.flip_pairs)
    assert sorted(perm) == list(range(ds.num_keypoints))
    assert [perm[perm[k]] for k in range(ds.num_keypoints)] == list(range(ds.num_keypoints))  # involution
    for k, name in enumerate(ds.keypoints):
        other = mirror_name(name)
        if name.startswith("face-"):
            assert perm[k] == 23 + face68_mirror(k - 23), name
        elif other is None:
            assert perm[k] == k, f"{ds.name}: {name} is on the middle line but is swapped with {ds.keypoints[perm[k]]}"
        else:
            assert ds.keypoints[perm[k]] == other, f"{ds.name}: {name} is swapped with {ds.keypoints[perm[k]]}"


def test_the_face_rule_is_itself_an_involution():
    assert sorted(face68_mirror(i) for i in range(68)) == list(range(68))
    assert all(face68_mirror(face68_mirror(i)) == i for i in range(68))


def test_a_wrong_pair_list_trips_the_name_check():
    """The check above can fail: COCO-WholeBody with two hand keypoints of one side swapped."""
    pairs = list(COCO_WHOLEBODY.flip_pairs)
    pairs[pairs.index((92, 113))] = (92, 114)
    pairs[pairs.index((93, 114))] = (93, 113)
    perm = flip_index(133, pairs)
    assert COCO_WHOLEBODY.keypoints[perm[92]] != mirror_name(COCO_WHOLEBODY.keypoints[92])


@pytest.mark.parametrize("ds", ALL, ids=[d.name for d in ALL])
def test_table_is_consistent(ds):
    assert len(set(ds.keypoints)) == ds.num_keypoints
    assert ds.sigmas is None or (len(ds.sigmas) == ds.num_keypoints and min(ds.sigmas) > 0)
    assert all(a != b for a, b in ds.skeleton)
    assert len(ds.link_colors) == len(ds.skeleton) and len(ds.keypoint_colors) == ds.num_keypoints
    covered = [i for p in ds.parts for i in range(p.start, p.stop)]
    assert covered == list(range(ds.num_keypoints))  # parts tile the keypoints in order


def test_vitpose_plus_experts_match_their_datasets():
    """The six ViTPose++ heads (its config's associate_keypoint_head out_channels) in dataset-index order."""
    experts = datasets.experts()
    assert [d.expert_index for d in experts] == list(range(6))
    assert [(d.name, d.num_keypoints) for d in experts] == [
        ("coco", 17), ("aic", 14), ("mpii", 16), ("ap-10k", 17), ("apt-36k", 17), ("coco-wholebody", 133)]
    assert datasets.by_expert(5) is COCO_WHOLEBODY
    with pytest.raises(ValueError, match="no dataset index 6"):
        datasets.by_expert(6)


def test_coco_wholebody_layout():
    wb = COCO_WHOLEBODY
    assert [(p.name, p.size, p.annotation_key) for p in wb.parts] == [
        ("body", 17, "keypoints"), ("foot", 6, "foot_kpts"), ("face", 68, "face_kpts"),
        ("lefthand", 21, "lefthand_kpts"), ("righthand", 21, "righthand_kpts")]
    assert wb.keypoints[:17] == COCO.keypoints and wb.sigmas[:17] == COCO.sigmas
    assert wb.sigmas[91:112] == wb.sigmas[112:133]  # the hands share their sigmas
    assert wb.keypoints[91] == "left_hand_root" and wb.keypoints[132] == "right_pinky_finger4"
    assert len(wb.flip_pairs) == 8 + 3 + 29 + 21
    assert [p.small for p in wb.parts] == [False, False, True, True, True]


@pytest.mark.parametrize(("spelling", "name"), [
    ("coco-wholebody", "coco-wholebody"), ("COCO-WholeBody", "coco-wholebody"), ("coco_wholebody", "coco-wholebody"),
    ("wholebody", "coco-wholebody"), ("AP10K", "ap-10k"), ("apt36k", "apt-36k"), ("SynthPose", "synthpose"),
    ("AIC", "aic"), ("mpii", "mpii")])
def test_get_accepts_any_spelling(spelling, name):
    assert datasets.get(spelling).name == name


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'halpe'; known: coco, aic, mpii, ap-10k, apt-36k, "
                                         r"coco-wholebody"):
        datasets.get("halpe")


def test_k_tells_the_dataset_where_it_can():
    assert datasets.from_num_keypoints(133) is COCO_WHOLEBODY
    assert datasets.from_num_keypoints(16).name == "mpii"
    assert datasets.from_num_keypoints(52).name == "synthpose"
    assert datasets.from_num_keypoints(17) is COCO  # COCO, AP-10K, APT-36K: COCO unless named
    assert datasets.from_num_keypoints(14) is None  # AI Challenger or CrowdPose: must be named
    assert datasets.from_num_keypoints(5) is None


def test_resolve_checks_k_and_the_recorded_dataset():
    assert datasets.resolve("ap-10k", 17).name == "ap-10k"
    assert datasets.resolve(None, 17, "apt-36k").name == "apt-36k"
    with pytest.raises(ValueError, match=r"dataset 'coco-wholebody' has 133 keypoints but the model has 17"):
        datasets.resolve("coco-wholebody", 17)
    with pytest.raises(ValueError, match="made for dataset 'mpii', not 'aic'"):
        datasets.resolve("aic", 14, "mpii")  # K differs: caught by K first
    with pytest.raises(ValueError, match="made for dataset 'coco', not 'ap-10k'"):
        datasets.resolve("ap-10k", 17, "coco")


def test_flip_index_without_pairs_names_the_way_out():
    assert flip_index(17) == COCO.flip_index()
    with pytest.raises(ValueError, match=r"flip pairs of a 133-keypoint model: name its dataset"):
        flip_index(133)
    with pytest.raises(ValueError, match="one pair only"):
        flip_index(5, [(0, 1), (1, 2)])
    with pytest.raises(ValueError, match="out of range"):
        flip_index(5, [(0, 5)])


def test_sigmas_are_refused_where_none_are_published():
    assert np.allclose(COCO_WHOLEBODY.oks_sigmas()[:17], np.array(COCO.sigmas))
    with pytest.raises(ValueError, match="no published OKS sigmas"):
        datasets.get("synthpose").oks_sigmas()
