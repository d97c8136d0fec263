"""What a ViTPose head's K channels mean: one table of the keypoint datasets ViTPose checkpoints are trained on.

Each `Dataset` holds its keypoint names, left/right flip pairs (flip test), skeleton (drawing), OKS sigmas
(OKS-NMS and evaluation), its parts (COCO-WholeBody's body / foot / face / hands, as its annotation files
split them) and, for the six datasets of ViTPose++, the dataset index of its expert and keypoint head.

Transcribed from the datasets' own definitions as mmpose states them (`configs/_base_/datasets/<name>.py`:
`keypoint_info` names and `swap` partners, `skeleton_info` links, `sigmas`; identical in the ViTPose
repository's copies) and, for ViTPose++, from its config (`vitPose+_*_coco+aic+mpii+ap10k+apt36k+wholebody`:
`dataset_idx` 0-5 and the order of `associate_keypoint_head`). APT-36K is annotated with AP-10K's 17
keypoints (ViTPose trains it with `ap10k_info`). SynthPose's 52 names are its Hugging Face config's
`id2label`; its 35 anatomical markers have no published OKS sigmas, and its config's skeleton (`edges`)
is COCO's.

    get("coco-wholebody")       the Dataset (any spelling: "COCO-WholeBody", "wholebody", "coco_wholebody")
    by_expert(5)                the dataset of a ViTPose++ expert
    from_num_keypoints(133)     the dataset a K-channel head is, where K tells (17: COCO, see below)
    flip_index(K, flip_pairs)   the channel permutation the flip test applies
"""

from __future__ import annotations

import logging
import operator
import re
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    """A contiguous block of keypoints that an annotation file stores under its own key.

    Attributes:
        name: "body", "foot", "face", "lefthand", "righthand".
        start, stop: keypoint indices [start, stop).
        annotation_key: the COCO(-WholeBody) annotation / result field holding them ("keypoints", "foot_kpts", ...).
        small: drawn with thin lines and small dots (faces and hands are small next to a body).
    """

    name: str
    start: int
    stop: int
    annotation_key: str = "keypoints"
    small: bool = False

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Dataset:
    """One keypoint dataset: what each of a head's K heatmaps is.

    Attributes:
        name: the canonical name ("coco-wholebody"), what `get`, `--dataset`, the ONNX metadata, the
            TensorRT sidecar and the Triton config use.
        title: how the dataset calls itself ("COCO-WholeBody").
        keypoints: the K keypoint names, in channel order.
        flip_pairs: (left, right) index pairs swapped by the flip test (each index at most once).
        skeleton: (a, b) index pairs drawn as limbs.
        sigmas: per-keypoint OKS sigmas, or None where none are published.
        expert_index: the ViTPose++ dataset index (its expert and keypoint head), None for datasets
            outside ViTPose++.
        parts: the keypoint blocks of its annotation layout (one "body" part unless it has more).
        kind: "person", "animal" or "hand".
        source: where the table was transcribed from.
    """

    name: str
    title: str
    keypoints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...] | None
    expert_index: int | None
    kind: str
    source: str
    parts: tuple[Part, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.parts:
            object.__setattr__(self, "parts", (Part("body", 0, len(self.keypoints)),))
        if self.sigmas is not None and len(self.sigmas) != len(self.keypoints):
            raise ValueError(f"{self.name}: {len(self.sigmas)} sigmas for {len(self.keypoints)} keypoints")
        flip_index(len(self.keypoints), self.flip_pairs)  # checked: in range, each index once
        if any(not (0 <= i < len(self.keypoints)) for link in self.skeleton for i in link):
            raise ValueError(f"{self.name}: a skeleton link is out of range")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    def flip_index(self) -> list[int]:
        """Channel p[k] of the flipped heatmaps holds keypoint k (see `flip_index`)."""
        return flip_index(self.num_keypoints, self.flip_pairs)

    def oks_sigmas(self) -> np.ndarray:
        """The sigmas as a float64 array.

        Raises:
            ValueError: the dataset has no published sigmas (OKS cannot be computed for it).
        """
        if self.sigmas is None:
            raise ValueError(f"{self.title} has no published OKS sigmas: OKS-NMS and OKS-based AP are not defined "
                             "for it")
        return np.asarray(self.sigmas, dtype=np.float64)

    def part_of(self, index: int) -> Part:
        return next(p for p in self.parts if p.start <= index < p.stop)

    @property
    def keypoint_colors(self) -> tuple[tuple[int, int, int], ...]:
        """One BGR colour per keypoint: left green, right orange, middle blue, fingers by finger, face white."""
        return tuple(_colour(n) for n in self.keypoints)

    @property
    def link_colors(self) -> tuple[tuple[int, int, int], ...]:
        """One BGR colour per skeleton link: the colour of its end keypoint (a finger's links take the
        finger's colour; a link from a side to the middle takes the side's)."""
        colours = self.keypoint_colors
        return tuple(colours[b] if colours[b] != _MIDDLE else colours[a] for a, b in self.skeleton)


# --- flip pairs -> the flip test's channel permutation ------------------------------------------

def flip_index(num_keypoints: int, flip_pairs=None) -> list[int]:
    """Permutation p with p[k] = the channel of the flipped heatmaps that holds keypoint k.

    Args:
        num_keypoints: K.
        flip_pairs: (left, right) index pairs; COCO's when None and K == 17 (the default dataset of a
            17-keypoint model, see `from_num_keypoints`).

    Raises:
        ValueError: no pairs for K != 17, a malformed pair, an index out of range or used twice.
    """
    if flip_pairs is None:
        if num_keypoints != 17:
            raise ValueError(f"flip test needs the flip pairs of a {num_keypoints}-keypoint model: name its dataset "
                             f"(dataset=..., one of {', '.join(names())}) or pass flip_pairs")
        flip_pairs = COCO.flip_pairs
    index = list(range(num_keypoints))
    try:
        pairs = [tuple(p) for p in flip_pairs]
    except TypeError:
        raise ValueError(f"flip_pairs must be a list of (left, right) index pairs, got {flip_pairs!r}") from None
    seen: set[int] = set()
    for pair in pairs:
        try:
            if len(pair) != 2 or any(isinstance(i, bool) for i in pair):
                raise TypeError
            a, b = (operator.index(i) for i in pair)
        except TypeError:
            raise ValueError(f"flip_pairs: each entry must be a (left, right) pair of keypoint indices, "
                             f"got {pair!r}") from None
        if not (0 <= a < num_keypoints and 0 <= b < num_keypoints):
            raise ValueError(f"flip pair ({a}, {b}) is out of range for {num_keypoints} keypoints")
        if a == b or a in seen or b in seen:
            raise ValueError(f"flip pair ({a}, {b}): each keypoint may be in one pair only, with another keypoint")
        seen |= {a, b}
        index[a], index[b] = b, a
    return index


# --- drawing colours (BGR), from the names -------------------------------------------------------

_LEFT, _RIGHT, _MIDDLE, _FACE = (0, 255, 0), (0, 128, 255), (255, 153, 51), (255, 255, 255)
_FINGERS = {"thumb": (0, 128, 255), "forefinger": (255, 153, 255), "middle": (255, 178, 102),
            "ring": (51, 51, 255), "pinky": (0, 255, 0)}
_LEFT_NAME = re.compile(r"^(left|l_|l(?=shoulder))", re.IGNORECASE)
_RIGHT_NAME = re.compile(r"^(right|r_|r(?=shoulder))", re.IGNORECASE)


def _colour(name: str) -> tuple[int, int, int]:
    finger = next((c for f, c in _FINGERS.items() if f in name), None)
    if finger is not None:
        return finger
    if name.startswith("face-"):
        return _FACE
    if _LEFT_NAME.match(name):
        return _LEFT
    if _RIGHT_NAME.match(name):
        return _RIGHT
    return _MIDDLE


# --- the table -----------------------------------------------------------------------------------

_MMPOSE = "mmpose configs/_base_/datasets/{}.py"

COCO = Dataset(
    name="coco", title="COCO", kind="person", expert_index=0, source=_MMPOSE.format("coco"),
    keypoints=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
        "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
        "right_knee", "left_ankle", "right_ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    skeleton=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
        (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
    ),
    sigmas=(
        .026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089,
    ),
)

AIC = Dataset(
    name="aic", title="AI Challenger", kind="person", expert_index=1, source=_MMPOSE.format("aic"),
    keypoints=(
        "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist", "right_hip",
        "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "head_top", "neck",
    ),
    flip_pairs=((0, 3), (1, 4), (2, 5), (6, 9), (7, 10), (8, 11)),
    skeleton=(
        (2, 1), (1, 0), (0, 13), (13, 3), (3, 4), (4, 5), (8, 7), (7, 6), (6, 9), (9, 10), (10, 11), (12, 13),
        (0, 6), (3, 9),
    ),
    sigmas=(
        0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144, 0.03909642, 0.03686941,
        0.01981803, 0.03843971, 0.03412318, 0.02415081, 0.01291456, 0.01236173,
    ),
)

MPII = Dataset(
    name="mpii", title="MPII", kind="person", expert_index=2, source=_MMPOSE.format("mpii"),
    keypoints=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
        "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
        "left_wrist",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    skeleton=(
        (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (8, 12), (12, 11), (11, 10),
        (8, 13), (13, 14), (14, 15),
    ),
    sigmas=(
        .089, .083, .107, .107, .083, .089, .026, .026, .026, .026, .062, .072, .179, .179, .072, .062,
    ),
)

_AP10K_KEYPOINTS = (
    "L_Eye", "R_Eye", "Nose", "Neck", "Root of tail", "L_Shoulder", "L_Elbow", "L_F_Paw", "R_Shoulder",
    "R_Elbow", "R_F_Paw", "L_Hip", "L_Knee", "L_B_Paw", "R_Hip", "R_Knee", "R_B_Paw",
)
_AP10K_FLIP_PAIRS = ((0, 1), (5, 8), (6, 9), (7, 10), (11, 14), (12, 15), (13, 16))
_AP10K_SKELETON = (
    (0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (3, 5), (5, 6), (6, 7), (3, 8), (8, 9), (9, 10), (4, 11), (11, 12),
    (12, 13), (4, 14), (14, 15), (15, 16),
)
_AP10K_SIGMAS = (.025, .025, .026, .035, .035, .079, .072, .062, .079, .072, .062, .107, .087, .089, .107, .087, .089)

AP10K = Dataset(
    name="ap-10k", title="AP-10K", kind="animal", expert_index=3, source=_MMPOSE.format("ap10k"),
    keypoints=_AP10K_KEYPOINTS, flip_pairs=_AP10K_FLIP_PAIRS, skeleton=_AP10K_SKELETON, sigmas=_AP10K_SIGMAS,
)

APT36K = Dataset(
    name="apt-36k", title="APT-36K", kind="animal", expert_index=4,
    source=_MMPOSE.format("ap10k") + " (APT-36K uses AP-10K's keypoints; ViTPose's apt36k configs)",
    keypoints=_AP10K_KEYPOINTS, flip_pairs=_AP10K_FLIP_PAIRS, skeleton=_AP10K_SKELETON, sigmas=_AP10K_SIGMAS,
)

_FOOT = ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
_HAND = ("hand_root",) + tuple(f"{finger}{j}" for finger in ("thumb", "forefinger", "middle_finger", "ring_finger",
                                                             "pinky_finger") for j in range(1, 5))
# The 68-point face (iBUG 300-W order) as COCO-WholeBody mirrors it: jaw, eyebrows, nostrils, eyes, outer and
# inner lips (the nose bridge 27-30 and the points on the middle line are their own mirror).
_FACE_FLIP_PAIRS = (
    (0, 16), (1, 15), (2, 14), (3, 13), (4, 12), (5, 11), (6, 10), (7, 9),
    (17, 26), (18, 25), (19, 24), (20, 23), (21, 22),
    (31, 35), (32, 34),
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),
    (48, 54), (49, 53), (50, 52), (55, 59), (56, 58),
    (60, 64), (61, 63), (65, 67),
)


def _hand_links(root: int) -> tuple[tuple[int, int], ...]:
    """Root -> each finger's four joints, in mmpose's link order."""
    return tuple(link for f in range(5) for link in
                 ((root, root + 1 + 4 * f),) + tuple((root + 4 * f + j, root + 4 * f + j + 1) for j in range(1, 4)))


COCO_WHOLEBODY = Dataset(
    name="coco-wholebody", title="COCO-WholeBody", kind="person", expert_index=5,
    source=_MMPOSE.format("coco_wholebody"),
    keypoints=(COCO.keypoints + _FOOT + tuple(f"face-{i}" for i in range(68))
               + tuple(f"left_{n}" for n in _HAND) + tuple(f"right_{n}" for n in _HAND)),
    flip_pairs=(COCO.flip_pairs + ((17, 20), (18, 21), (19, 22))
                + tuple((23 + a, 23 + b) for a, b in _FACE_FLIP_PAIRS)
                + tuple((91 + i, 112 + i) for i in range(21))),
    skeleton=(COCO.skeleton + ((15, 17), (15, 18), (15, 19), (16, 20), (16, 21), (16, 22))
              + _hand_links(91) + _hand_links(112)),
    sigmas=COCO.sigmas + (
        0.068, 0.066, 0.066, 0.092, 0.094, 0.094,  # feet
        0.042, 0.043, 0.044, 0.043, 0.04, 0.035, 0.031, 0.025, 0.02, 0.023, 0.029, 0.032, 0.037, 0.038, 0.043,
        0.041, 0.045, 0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013, 0.015, 0.009, 0.007, 0.007,
        0.007, 0.012, 0.009, 0.008, 0.016, 0.01, 0.017, 0.011, 0.009, 0.011, 0.009, 0.007, 0.013, 0.008, 0.011,
        0.012, 0.01, 0.034, 0.008, 0.008, 0.009, 0.008, 0.008, 0.007, 0.01, 0.008, 0.009, 0.009, 0.009, 0.007,
        0.007, 0.008, 0.011, 0.008, 0.008, 0.008, 0.01, 0.008,  # face
        0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022, 0.026, 0.017, 0.021,
        0.021, 0.032, 0.02, 0.019, 0.022, 0.031,  # left hand
        0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022, 0.026, 0.017, 0.021,
        0.021, 0.032, 0.02, 0.019, 0.022, 0.031,  # right hand
    ),
    parts=(Part("body", 0, 17, "keypoints"), Part("foot", 17, 23, "foot_kpts"),
           Part("face", 23, 91, "face_kpts", small=True), Part("lefthand", 91, 112, "lefthand_kpts", small=True),
           Part("righthand", 112, 133, "righthand_kpts", small=True)),
)

CROWDPOSE = Dataset(
    name="crowdpose", title="CrowdPose", kind="person", expert_index=None, source=_MMPOSE.format("crowdpose"),
    keypoints=(
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
        "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "top_head", "neck",
    ),
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    skeleton=(
        (10, 8), (8, 6), (11, 9), (9, 7), (6, 7), (0, 6), (1, 7), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5),
        (12, 13), (1, 13), (0, 13),
    ),
    sigmas=(.079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089, .079, .079),
)

INTERHAND2D = Dataset(
    name="interhand2d", title="InterHand2.6M (one hand)", kind="hand", expert_index=None,
    source=_MMPOSE.format("interhand2d"),
    keypoints=tuple(f"{finger}{j}" for finger in ("thumb", "forefinger", "middle_finger", "ring_finger",
                                                   "pinky_finger") for j in (4, 3, 2, 1)) + ("wrist",),
    flip_pairs=(),  # one hand: mirroring swaps no channels
    skeleton=tuple(link for f in range(5) for link in ((20, 4 * f + 3), (4 * f + 3, 4 * f + 2),
                                                       (4 * f + 2, 4 * f + 1), (4 * f + 1, 4 * f))),
    sigmas=None,  # evaluated by PCK / AUC / EPE, not OKS
)

SYNTHPOSE = Dataset(
    name="synthpose", title="SynthPose (OpenCapBench markers)", kind="person", expert_index=None,
    source="stanfordmimi/synthpose-vitpose-*-hf config.json (id2label, edges)",
    keypoints=(
        "Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist",
        "R_Wrist", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle", "sternum", "rshoulder",
        "lshoulder", "r_lelbow", "l_lelbow", "r_melbow", "l_melbow", "r_lwrist", "l_lwrist", "r_mwrist",
        "l_mwrist", "r_ASIS", "l_ASIS", "r_PSIS", "l_PSIS", "r_knee", "l_knee", "r_mknee", "l_mknee", "r_ankle",
        "l_ankle", "r_mankle", "l_mankle", "r_5meta", "l_5meta", "r_toe", "l_toe", "r_big_toe", "l_big_toe",
        "l_calc", "r_calc", "C7", "L2", "T11", "T6",
    ),
    flip_pairs=COCO.flip_pairs + tuple((i, i + 1) for i in range(18, 46, 2)) + ((46, 47),),
    skeleton=COCO.skeleton,
    sigmas=None,  # no published sigmas for the 35 markers
)

DATASETS: dict[str, Dataset] = {d.name: d for d in (COCO, AIC, MPII, AP10K, APT36K, COCO_WHOLEBODY, CROWDPOSE,
                                                    INTERHAND2D, SYNTHPOSE)}
_ALIASES = {"wholebody": "coco-wholebody", "cocowholebody": "coco-wholebody", "aichallenger": "aic",
            "ap10k": "ap-10k", "apt36k": "apt-36k", "ap36k": "apt-36k", "interhand": "interhand2d",
            "interhand26m": "interhand2d"}


def names() -> list[str]:
    """The canonical dataset names."""
    return list(DATASETS)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def get(dataset: str | Dataset) -> Dataset:
    """The Dataset called `dataset` (case, "-", "_" and spaces ignored; a Dataset is returned as is).

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    if isinstance(dataset, Dataset):
        return dataset
    if not isinstance(dataset, str):
        raise TypeError(f"dataset must be a name such as 'coco-wholebody', got {type(dataset).__name__}")
    key = _key(dataset)
    by_key = {_key(n): n for n in DATASETS} | _ALIASES
    if key not in by_key:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(names())}")
    return DATASETS[by_key[key]]


def by_expert(index: int) -> Dataset:
    """The dataset of ViTPose++ expert / keypoint head `index` (0 COCO ... 5 COCO-WholeBody)."""
    for d in DATASETS.values():
        if d.expert_index == index:
            return d
    raise ValueError(f"ViTPose++ has no dataset index {index}; its experts are "
                     + ", ".join(f"{d.expert_index} ({d.name})" for d in experts()))


def experts() -> list[Dataset]:
    """The six ViTPose++ datasets, in dataset-index order."""
    return sorted((d for d in DATASETS.values() if d.expert_index is not None), key=lambda d: d.expert_index)


def with_num_keypoints(num_keypoints: int) -> list[Dataset]:
    return [d for d in DATASETS.values() if d.num_keypoints == num_keypoints]


def from_num_keypoints(num_keypoints: int) -> Dataset | None:
    """The dataset a head with K channels was trained on, where K tells it.

    K = 17 is COCO, AP-10K and APT-36K: it is taken as COCO (every human ViTPose with 17 keypoints
    is COCO's, and so is the random model); an animal checkpoint must be named. Other K shared by
    several datasets (14: AI Challenger, CrowdPose) or by none give None (logged).
    """
    if num_keypoints == COCO.num_keypoints:
        return COCO
    matches = with_num_keypoints(num_keypoints)
    if len(matches) == 1:
        return matches[0]
    if matches:
        log.warning("%d keypoints fits %s: name the dataset (dataset=...) to get its flip pairs, skeleton and "
                    "sigmas", num_keypoints, " and ".join(d.title for d in matches))
    else:
        log.info("%d keypoints fits no known dataset (%s): keypoints are drawn without a skeleton, and flip "
                 "test needs flip_pairs", num_keypoints, ", ".join(f"{d.name} {d.num_keypoints}" for d in
                                                                   DATASETS.values()))
    return None


def resolve(dataset: str | Dataset | None, num_keypoints: int, recorded: str | None = None,
            what: str = "the model") -> Dataset | None:
    """The dataset a model of K keypoints runs with: the named one (checked against K and against
    what the model records), else the recorded one, else the one K tells (`from_num_keypoints`).

    Raises:
        ValueError: the named dataset's K differs from the model's, or contradicts the recorded one.
    """
    if dataset is not None:
        ds = get(dataset)
        if ds.num_keypoints != num_keypoints:
            raise ValueError(f"dataset {ds.name!r} has {ds.num_keypoints} keypoints but {what} has {num_keypoints}")
        if recorded is not None and get(recorded).keypoints != ds.keypoints:
            raise ValueError(f"{what} was made for dataset {recorded!r}, not {ds.name!r}")
        return ds
    if recorded is not None:
        ds = get(recorded)
        if ds.num_keypoints != num_keypoints:
            raise ValueError(f"{what} records dataset {ds.name!r} ({ds.num_keypoints} keypoints) but has "
                             f"{num_keypoints}")
        return ds
    return from_num_keypoints(num_keypoints)


def keypoint_names(dataset: Dataset | None, num_keypoints: int) -> list[str]:
    """The dataset's names, or `keypoint_<i>` for a model of no known dataset."""
    if dataset is not None:
        return list(dataset.keypoints)
    return [f"keypoint_{i}" for i in range(num_keypoints)]


__all__ = ["COCO", "COCO_WHOLEBODY", "DATASETS", "Dataset", "Part", "by_expert", "experts", "flip_index",
           "from_num_keypoints", "get", "keypoint_names", "names", "resolve", "with_num_keypoints"]
