"""The Triton Python-backend model: `write_repository` copies this file to `<repo>/vitpose/1/model.py`.

Each model instance holds one `VitPoseTRT` (its engine and pipeline options come from the config's
`parameters`). Triton's dynamic batcher hands `execute()` several requests at once; their frames and
boxes are checked one request at a time (a bad request gets an error response naming the problem,
the others are served), then all their crops run through `VitPoseTRT.infer_many`, at most
`max_batch_crops` boxes per call, and the keypoints are split back per request.

Tensors cross the stub's shared memory through DLPack, both ways: with numpy 2 the backend stub's
`Tensor.as_numpy()` returns every element equal to the first one and `pb_utils.Tensor(name, ndarray)`
sends 0 bytes (the wheel was built against numpy 1). Only empty outputs use the plain constructor.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np


def _apply_pythonpath() -> None:
    """The stub's embedded interpreter ignores PYTHONPATH (measured: Triton 2.51's stub starts it
    isolated); apply it as python3 would, so the model imports the vitpose_trt the server's
    environment names (a source checkout, a test's package) rather than whatever is installed."""
    for entry in reversed([p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]):
        if entry not in sys.path:
            sys.path.insert(0, entry)


if __name__ != "vitpose_trt.triton.backend":  # loaded by the stub as <repository>/vitpose/1/model.py
    _apply_pythonpath()

# torch and the package after _apply_pythonpath: the server's environment says which vitpose_trt to import
import torch  # noqa: E402

import vitpose_trt  # noqa: E402
from vitpose_trt.batching import frame_batches  # noqa: E402
from vitpose_trt.geometry import check_boxes, check_frame  # noqa: E402
from vitpose_trt.pipeline import VitPoseTRT  # noqa: E402

try:
    import triton_python_backend_utils as pb_utils  # provided by the Python backend's stub process
except ImportError:  # imported outside Triton: the request checks are testable
    pb_utils = None

log = logging.getLogger("vitpose_trt.triton.backend")


def split_request(image: np.ndarray, boxes: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """One request's batched inputs -> [(frame, boxes)], checked as `VitPoseTRT.infer` checks them.

    Args:
        image: (B, H, W, 3) uint8 BGR (B = 1 for `Client`'s requests).
        boxes: (B, N, 4) float32 x1, y1, x2, y2.

    Raises:
        ValueError: the message names the input and the problem (sent back as the request's error).
    """
    if image.ndim != 4:
        raise ValueError(f"image must have shape (H, W, 3) after the batch axis, got {image.shape[1:]}")
    if boxes.ndim != 3:
        raise ValueError(f"boxes must have shape (N, 4) after the batch axis, got {boxes.shape[1:]}")
    if image.shape[0] != boxes.shape[0]:
        raise ValueError(f"image has batch size {image.shape[0]} but boxes has {boxes.shape[0]}")
    items = []
    for b in range(image.shape[0]):
        try:
            frame = check_frame(image[b])
        except (TypeError, ValueError) as e:
            raise ValueError(f"image: {e}") from None
        items.append((frame, check_boxes(boxes[b])))
    return items


def _input(request, name: str) -> np.ndarray:
    """A request's input as a numpy array, through DLPack (see the module docstring)."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise ValueError(f"the request has no input {name!r} (expected 'image' and 'boxes')")
    shape = tuple(int(s) for s in tensor.shape())
    if 0 in shape:  # an empty tensor holds no data to share (boxes of a frame without people)
        return np.zeros(shape, dtype=np.uint8 if name == "image" else np.float32)
    return np.from_dlpack(tensor)


def _output(name: str, array: np.ndarray):
    array = np.ascontiguousarray(array)
    if array.size == 0:
        return pb_utils.Tensor(name, array)  # no bytes to lose: the plain constructor is safe here
    # Through torch: numpy 2 hands out versioned DLPack capsules, which this stub does not accept.
    return pb_utils.Tensor.from_dlpack(name, torch.from_numpy(array))


class TritonPythonModel:
    """Triton's entry points: `initialize` once per instance, `execute` per gathered batch of requests."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        engine = Path(params["engine"])
        if not engine.is_absolute():  # a copy inside the version folder
            engine = Path(args["model_repository"]) / args["model_version"] / engine
        device = params.get("device") or None
        if args.get("model_instance_kind") == "GPU":  # instance groups place instances on GPUs
            device = f"cuda:{args['model_instance_device_id']}"
        self.max_crops = int(params.get("max_batch_crops", "64"))
        expert = params.get("expert") or None
        self.pose = VitPoseTRT(engine, mode=params.get("mode", "udp"), flip_test=params.get("flip_test") == "true",
                               backend=params.get("backend", "auto"), device=device,
                               precision=params.get("precision") or None, dataset=params.get("dataset") or None,
                               expert=int(expert) if expert is not None else None)
        self.num_keypoints = self.pose.num_keypoints
        # Into the server's log: which package and engine this instance runs.
        pb_utils.Logger.log_info(f"{args.get('model_instance_name', 'vitpose')}: vitpose_trt {vitpose_trt.__version__} "
                                 f"from {Path(vitpose_trt.__file__).parent}, {self.pose.engine.describe()}")

    def execute(self, requests: list) -> list:
        errors: dict[int, str] = {}
        items: list[tuple[np.ndarray, np.ndarray]] = []  # every frame of every valid request
        owner: list[int] = []  # the request of each item
        for r, request in enumerate(requests):
            try:
                request_items = split_request(_input(request, "image"), _input(request, "boxes"))
            except (TypeError, ValueError) as e:
                errors[r] = str(e)
                continue
            items += request_items
            owner += [r] * len(request_items)

        k = self.num_keypoints
        results = [np.empty((len(b), k, 3), dtype=np.float32) for _, b in items]
        for call in frame_batches([len(b) for _, b in items], self.max_crops):
            try:
                keypoints = self.pose.infer_many([items[s.frame][0] for s in call],
                                                 [items[s.frame][1][s.lo:s.hi] for s in call])
            except (TypeError, ValueError, RuntimeError) as e:  # the whole call failed: so do its requests
                log.error("engine call failed: %s", e)
                for s in call:
                    errors.setdefault(owner[s.frame], f"inference failed: {e}")
                continue
            for s, kp in zip(call, keypoints):
                results[s.frame][s.lo:s.hi] = kp

        responses = []
        for r in range(len(requests)):
            if r in errors:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(errors[r])))
                continue
            batch = np.stack([results[i] for i in range(len(items)) if owner[i] == r])  # (B, N, K, 3)
            responses.append(pb_utils.InferenceResponse(output_tensors=[_output("keypoints", batch)]))
        return responses

    def finalize(self) -> None:
        self.pose = None
