"""Serving on NVIDIA Triton Inference Server: frame + boxes -> keypoints over HTTP and gRPC.

    write_repository  a Triton model repository whose model `vitpose` (Python backend) holds one
                      `VitPoseTRT` per instance and runs the crops of every request that the dynamic
                      batcher gathers in shared engine calls (`repository.py`, `backend.py`)
    Client            `client.infer(frame, boxes)` over tritonclient: a drop-in for the local call
    TritonServer      runs `tritonserver` (from PATH or the nvidia-pytriton wheel) on a repository,
                      with a readiness deadline and a clean stop; `serve` is the CLI's blocking loop

The request contract is `VitPoseTRT.infer`'s: `image` uint8 (H, W, 3) BGR and `boxes` float32 (N, 4)
in, `keypoints` float32 (N, K, 3) x, y, score out; on the wire each carries a leading batch axis of 1.
tritonclient is imported only by `Client` (pip install "vitpose-trt[triton]").
"""

from __future__ import annotations

from vitpose_trt._lazy import lazy_attributes

_LAZY = {
    "Client": "vitpose_trt.triton.client",
    "write_repository": "vitpose_trt.triton.repository",
    "RepositoryInfo": "vitpose_trt.triton.repository",
    "RepositoryConfig": "vitpose_trt.triton.repository",
    "MODEL_NAME": "vitpose_trt.triton.repository",
    "TritonServer": "vitpose_trt.triton.server",
    "find_tritonserver": "vitpose_trt.triton.server",
    "serve": "vitpose_trt.triton.server",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
