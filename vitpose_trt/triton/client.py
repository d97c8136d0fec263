"""`Client`: `VitPoseTRT.infer` over the network, on a Triton server that serves `write_repository`'s model."""

from __future__ import annotations

import json
import logging
from types import ModuleType
from urllib.parse import urlparse

import numpy as np

from vitpose_trt.geometry import check_boxes, check_frame
from vitpose_trt.triton.repository import MODEL_NAME

log = logging.getLogger(__name__)

PROTOCOLS = ("http", "grpc")


def _tritonclient(protocol: str) -> tuple[ModuleType, ModuleType]:
    """(tritonclient.http or tritonclient.grpc, tritonclient.utils)."""
    # lazy: tritonclient is optional (pip install "vitpose-trt[triton]"); parse_url works without it
    if protocol == "http":
        import tritonclient.http as module
    else:
        import tritonclient.grpc as module
    import tritonclient.utils as utils

    return module, utils


def parse_url(url: str, protocol: str | None = None) -> tuple[str, str]:
    """`http://host:port`, `grpc://host:port`, or `host:port` with `protocol` -> (protocol, "host:port").

    Raises:
        ValueError: an unknown scheme, a scheme that contradicts `protocol`, a missing port, or a path.
    """
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if "://" in url:
        parsed = urlparse(url)
        if parsed.scheme not in PROTOCOLS:
            raise ValueError(f"unsupported URL scheme {parsed.scheme!r} in {url!r}: use http:// or grpc://")
        if protocol is not None and protocol != parsed.scheme:
            raise ValueError(f"the URL {url!r} says {parsed.scheme} but protocol={protocol!r}")
        if parsed.path not in ("", "/") or parsed.query:
            raise ValueError(f"the URL {url!r} has a path; give only the scheme, host and port")
        protocol, address = parsed.scheme, parsed.netloc
    else:
        if protocol is None:
            raise ValueError(f"{url!r} has no scheme: write http://{url} or grpc://{url}, or pass protocol=")
        address = url
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"the server address {address!r} needs a host and a port, e.g. 127.0.0.1:8000")
    return protocol, address


class Client:
    """A drop-in for `VitPoseTRT.infer` that asks a Triton server.

    Args:
        url: `http://host:port` (Triton's HTTP port, 8000 by default) or `grpc://host:port` (8001),
            or `host:port` with `protocol`.
        protocol: "http" or "grpc" when `url` has no scheme.
        model_name: the model's name in the server's repository.
        timeout_s: the longest wait for one request (connection and inference).

    Boxes travel as float32 (the model's `boxes` input): from float64 boxes the crops may differ from
    the local call's by float32's rounding of the coordinates (under 1e-4 px on a 2,000 px frame).
    The frame travels as is: a frame that is not uint8 is refused by the server, named.

    One client per thread: tritonclient's clients are not thread-safe.

    Example:
        >>> client = Client("grpc://127.0.0.1:8001")
        >>> keypoints = client.infer(frame_bgr, boxes_xyxy)   # (N, 17, 3): x, y, score
    """

    def __init__(self, url: str, *, protocol: str | None = None, model_name: str = MODEL_NAME,
                 timeout_s: float = 60.0) -> None:
        self.protocol, self.address = parse_url(url, protocol)
        self.model_name = model_name
        self.timeout_s = float(timeout_s)
        module, utils = _tritonclient(self.protocol)
        if self.protocol == "http":
            self._client = module.InferenceServerClient(self.address, connection_timeout=self.timeout_s,
                                                        network_timeout=self.timeout_s)
        else:
            self._client = module.InferenceServerClient(self.address)
        self._module = module
        self._server_error = utils.InferenceServerException
        self._to_triton_dtype = utils.np_to_triton_dtype
        self._num_keypoints: int | None = None

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.address}"

    def is_ready(self) -> bool:
        """True when the server is up and the model is loaded."""
        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model_name))
        except Exception:  # noqa: BLE001 - any failure to reach the server means "not ready"
            return False

    def metadata(self) -> dict[str, str]:
        """The model's parameters from its config: engine, mode, flip_test, variant, num_keypoints,
        keypoint_names (a JSON list), random_weights, ..."""
        config = self._call(self._client.get_model_config, self.model_name)
        if self.protocol == "grpc":
            params = {k: v.string_value for k, v in config.config.parameters.items()}
        else:
            params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        return params

    @property
    def num_keypoints(self) -> int:
        if self._num_keypoints is None:
            self._num_keypoints = int(self.metadata()["num_keypoints"])
        return self._num_keypoints

    @property
    def keypoint_names(self) -> list[str]:
        return list(json.loads(self.metadata()["keypoint_names"]))

    def infer(self, frame: np.ndarray, boxes) -> np.ndarray:
        """Keypoints for every box of one frame, computed by the server.

        Args:
            frame: HxWx3 uint8 BGR numpy array.
            boxes: (N, 4) x1, y1, x2, y2 in frame pixels, or (N, 5) with a score column (dropped).

        Returns:
            (N, K, 3) float32: x, y in frame pixels and the heatmap score.

        Raises:
            TypeError: the frame is not a numpy array.
            ValueError: a frame or boxes `VitPoseTRT.infer` would refuse, with the same message
                (checked here, before anything is sent).
            RuntimeError: the server refused the request (the message is the server's) or could not
                be reached.
        """
        if not isinstance(frame, np.ndarray):
            raise TypeError(f"frame must be a numpy array (HxWx3 uint8 BGR), got {type(frame).__name__}")
        frame = check_frame(frame)
        arr = np.ascontiguousarray(check_boxes(boxes), dtype=np.float32)  # the score column is dropped there
        image = np.ascontiguousarray(frame)[None]
        inputs = [self._input("image", image), self._input("boxes", arr[None])]
        outputs = [self._module.InferRequestedOutput("keypoints")]
        result = self._call(self._client.infer, self.model_name, inputs, outputs=outputs,
                            **({"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}))
        keypoints = result.as_numpy("keypoints")
        if keypoints is None or keypoints.ndim != 4 or keypoints.shape[:2] != (1, len(arr)):
            got = None if keypoints is None else keypoints.shape
            raise RuntimeError(f"the server answered keypoints of shape {got} for {len(arr)} boxes")
        return keypoints[0]

    def _input(self, name: str, array: np.ndarray):
        try:
            datatype = self._to_triton_dtype(array.dtype)
        except Exception:  # noqa: BLE001
            datatype = None
        if datatype is None:
            raise TypeError(f"{name}: numpy dtype {array.dtype} has no Triton equivalent")
        tensor = self._module.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        return tensor

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except self._server_error as e:
            raise RuntimeError(f"Triton server {self.url}: {e.message()}") from None
        except Exception as e:  # transport errors: refused connections, resets, timeouts
            raise RuntimeError(f"Triton server {self.url}: {type(e).__name__}: {e}") from None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
