"""Serving on Triton Inference Server (vitpose_trt.triton), tested against a REAL server.

The server is the one bundled in the nvidia-pytriton wheel (or `tritonserver` on PATH), on free ports of
127.0.0.1, serving the repository that `write_repository` writes. Its engine is ONNX Runtime on the CPU,
and the reference is the same .onnx file run in this process: the server must give the same keypoints
bit for bit. The model is a 2-block ViTPose with the light "simple" decoder and fixed random weights:
~10 ms a crop on a 2-core CPU (the fixture ViTPose-S takes 40x that, too slow for hundreds of requests).
Its heatmaps are flat, so its keypoints mean nothing, but bit-exact equality does not need peaks: equal
heatmaps break ties equally, and any change in the frame, the boxes or their pairing changes the bits
(`test_the_bit_exact_check_fails_on_a_corrupted_frame` shows it). Where the wheel or tritonclient is
missing, the server tests skip with the reason; CI installs both (.ci/run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vitpose_trt.triton.backend import split_request
from vitpose_trt.triton.client import parse_url
from vitpose_trt.triton.repository import write_repository

READY_TIMEOUT_S = 120  # model load on 2 busy cores: seconds; a stub that cannot start: forever
REQUEST_TIMEOUT_S = 60


def _skip_without_triton() -> None:
    pytest.importorskip("tritonclient.http", reason="tritonclient is not installed (pip install 'tritonclient[http,grpc]')")
    pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed")
    from vitpose_trt.triton.server import find_tritonserver

    try:
        find_tritonserver()
    except RuntimeError as e:
        pytest.skip(str(e))


# --- models and references ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory) -> Path:
    """A 2-block ViTPose (simple decoder, fixed random weights) as ONNX: the engine of the server and
    of the in-process reference."""
    import torch

    from vitpose_trt.export import export_onnx
    from vitpose_trt.model import ViTPose, ViTPoseConfig

    torch.manual_seed(0)
    model = ViTPose(ViTPoseConfig(variant="tiny", embed_dim=64, depth=2, num_heads=2, decoder="simple")).eval()
    model.random_weights = True
    path = tmp_path_factory.mktemp("triton_engine") / "tiny.onnx"
    export_onnx(model, path, check=False)
    return path


@pytest.fixture(scope="module")
def local_pose(onnx_path):
    from vitpose_trt import VitPoseTRT

    return VitPoseTRT(onnx_path)


@pytest.fixture(scope="module")
def cases(coco_sample) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The 4 photos with their detector boxes (float32, as they travel), one with 0 boxes and one with 60."""
    out = [(name, frame, boxes[:, :4].astype(np.float32)) for name, frame, boxes in coco_sample]
    name, frame, boxes = out[-1]
    rng = np.random.default_rng(0)
    many = np.concatenate([boxes, boxes + rng.uniform(-8, 8, boxes.shape).astype(np.float32)])[:60]
    many[:, 2:] = np.maximum(many[:, 2:], many[:, :2] + 4)  # keep x2 > x1, y2 > y1 after the jitter
    assert len(many) == 60
    out.append((f"{name} x60", frame, many))
    out.append((f"{out[0][0]} no boxes", out[0][1], np.zeros((0, 4), np.float32)))
    return out


@pytest.fixture(scope="module")
def references(cases, local_pose) -> list[np.ndarray]:
    return [local_pose.infer(frame, boxes) for _, frame, boxes in cases]


# --- the server -----------------------------------------------------------------------------------

def _server_env() -> dict[str, str]:
    """The stub must import this very vitpose_trt (the checkout under test)."""
    import vitpose_trt

    root = str(Path(vitpose_trt.__file__).resolve().parents[1])
    return {"PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}


@pytest.fixture(scope="module")
def repository(onnx_path, tmp_path_factory) -> Path:
    _skip_without_triton()
    out = tmp_path_factory.mktemp("triton") / "repository"
    write_repository(out, onnx_path, max_batch_crops=64, max_queue_delay_us=2000)
    return out


@pytest.fixture(scope="module")
def server(repository):
    from vitpose_trt.triton.server import TritonServer

    srv = TritonServer(repository, env=_server_env())
    try:
        srv.start().wait_ready(READY_TIMEOUT_S)
        import vitpose_trt

        # The stub's interpreter ignores PYTHONPATH unless the model applies it: it must run this checkout.
        assert f"from {Path(vitpose_trt.__file__).parent}, onnxruntime on cpu" in srv.log_text(), srv.log_text()[-2000:]
        yield srv
    finally:
        srv.stop()
    assert not list(Path("/dev/shm").glob(f"{srv.shm_prefix}*")), "the server's shared memory was left behind"


def _client(server, protocol: str):
    from vitpose_trt.triton import Client

    return Client(server.http_url if protocol == "http" else server.grpc_url, timeout_s=REQUEST_TIMEOUT_S)


# --- no server needed -----------------------------------------------------------------------------

def test_split_request_names_the_bad_input():
    frame = np.zeros((1, 8, 9, 3), np.uint8)
    good = split_request(frame, np.array([[[0, 0, 4, 4]]], np.float32))
    assert len(good) == 1 and good[0][0].shape == (8, 9, 3) and good[0][1].shape == (1, 4)
    assert split_request(frame, np.zeros((1, 0, 4), np.float32))[0][1].shape == (0, 4)
    with pytest.raises(ValueError, match="NaN"):
        split_request(frame, np.array([[[0, np.nan, 4, 4]]], np.float32))
    with pytest.raises(ValueError, match="batch size 1 but boxes has 2"):
        split_request(frame, np.zeros((2, 1, 4), np.float32))
    with pytest.raises(ValueError, match="image: frame is empty"):
        split_request(np.zeros((1, 0, 9, 3), np.uint8), np.zeros((1, 0, 4), np.float32))


def test_parse_url():
    assert parse_url("http://127.0.0.1:8000") == ("http", "127.0.0.1:8000")
    assert parse_url("grpc://host:8001") == ("grpc", "host:8001")
    assert parse_url("host:8001", "grpc") == ("grpc", "host:8001")
    for bad, match in (("host:8001", "no scheme"), ("ftp://h:1", "unsupported URL scheme"),
                       ("http://h", "needs a host and a port"), ("http://h:1/v2", "has a path")):
        with pytest.raises(ValueError, match=match):
            parse_url(bad)
    with pytest.raises(ValueError, match="says http but protocol='grpc'"):
        parse_url("http://h:1", "grpc")


def test_write_repository(onnx_path, tmp_path):
    info = write_repository(tmp_path / "repo", onnx_path, max_batch_crops=16, instances=2, max_queue_delay_us=100,
                            flip_test=True)
    model = tmp_path / "repo" / "vitpose"
    assert (model / "1" / "model.py").read_text() == (Path(__file__).parents[1] / "vitpose_trt" / "triton" /
                                                      "backend.py").read_text()
    assert (model / "1" / "tiny.onnx").read_bytes() == onnx_path.read_bytes()
    config = (model / "config.pbtxt").read_text()
    assert config == info.config
    for line in ('backend: "python"', "max_batch_size: 16", "max_queue_delay_microseconds: 100",
                 "{ count: 2 kind: KIND_CPU }", 'dims: [ -1, 17, 3 ]', "allow_ragged_batch: true",
                 'key: "flip_test" value: { string_value: "true" }', 'key: "variant" value: { string_value: "tiny" }',
                 'key: "engine" value: { string_value: "tiny.onnx" }', '\\"left_eye\\"'):
        assert line in config, line
    assert (info.variant, info.num_keypoints) == ("tiny", 17)

    gpu = write_repository(tmp_path / "gpu", onnx_path, kind="gpu", gpus=[0, 1], copy_engine=False).config
    assert "{ count: 1 kind: KIND_GPU gpus: [ 0, 1 ] }" in gpu
    assert f'string_value: "{onnx_path.resolve()}"' in gpu and not list((tmp_path / "gpu").glob("*/1/*.onnx"))

    with pytest.raises(ValueError, match="already exists and is not an empty folder"):
        write_repository(tmp_path / "repo", onnx_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        write_repository(tmp_path / "missing", tmp_path / "nope.onnx")
    for bad, match in (({"max_batch_crops": 0}, "max_batch_crops"), ({"kind": "tpu"}, "kind"),
                       ({"gpus": [0]}, "only meaningful with kind='gpu'"), ({"mode": "fast"}, "mode")):
        with pytest.raises(ValueError, match=match):
            write_repository(tmp_path / "bad", onnx_path, **bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu", "repo"]  # nothing half-written


def test_cli_triton_repo(onnx_path, tmp_path, capsys):
    from vitpose_trt.cli import main

    assert main(["triton-repo", str(tmp_path / "r"), "--engine", str(onnx_path), "--instances", "3"]) == 0
    assert "model 'vitpose'" in capsys.readouterr().out
    assert "{ count: 3 kind: KIND_CPU }" in (tmp_path / "r" / "vitpose" / "config.pbtxt").read_text()
    assert main(["triton-repo", str(tmp_path / "r"), "--engine", str(onnx_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vitpose-trt triton-repo: error:") and "already exists" in err[0]


# --- against the real server ----------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_server_equals_in_process_bit_for_bit(server, protocol, cases, references):
    with _client(server, protocol) as client:
        assert client.is_ready()
        meta = client.metadata()
        assert (meta["variant"], meta["mode"], meta["flip_test"], client.num_keypoints) == ("tiny", "udp", "false", 17)
        assert client.keypoint_names[:3] == ["nose", "left_eye", "right_eye"]
        for (name, frame, boxes), ref in zip(cases, references):
            got = client.infer(frame, boxes)
            assert got.dtype == np.float32 and got.shape == ref.shape == (len(boxes), 17, 3), name
            assert np.array_equal(got, ref), f"{name}: max |server - local| = {np.abs(got - ref).max()}"
        # (N, 5) boxes with scores, as VitPoseTRT.infer takes them: the score column is dropped
        name, frame, boxes = cases[0]
        scored = np.concatenate([boxes, np.full((len(boxes), 1), 0.9, np.float32)], axis=1)
        assert np.array_equal(client.infer(frame, scored), references[0])


def test_the_bit_exact_check_fails_on_a_corrupted_frame(server, cases, references):
    """The stub's numpy-2 bug gives every element the first one's value: that frame's keypoints differ."""
    name, frame, boxes = cases[0]
    corrupted = np.full_like(frame, frame.flat[0])
    with _client(server, "http") as client:
        assert not np.array_equal(client.infer(corrupted, boxes), references[0])
        # and the pairing of frames and boxes matters: another photo's keypoints for these boxes differ too
        assert not np.array_equal(client.infer(cases[1][1], boxes), references[0])


@pytest.mark.slow
def test_dynamic_batching_gathers_concurrent_requests(server, cases, local_pose):
    """8 client threads x 50 requests of one person each: every answer right, no error, and Triton's
    statistics show execute() calls that held more than one request."""
    singles = [(frame, boxes[i:i + 1]) for _, frame, boxes in cases[:4] for i in range(2)]
    expected = [local_pose.infer(f, b) for f, b in singles]
    threads, per_thread = 8, 50

    def stats() -> dict[int, int]:
        with _client(server, "grpc") as c:
            s = c._client.get_inference_statistics("vitpose", as_json=True)
        return {int(b["batch_size"]): int(b["compute_infer"]["count"])
                for b in s["model_stats"][0].get("batch_stats", [])}

    before = stats()
    failures: list[str] = []

    def work(t: int) -> None:
        protocol = "http" if t % 2 else "grpc"
        try:
            with _client(server, protocol) as client:
                for j in range(per_thread):
                    k = (t + j) % len(singles)
                    got = client.infer(*singles[k])
                    if not np.array_equal(got, expected[k]):
                        failures.append(f"thread {t} request {j}: wrong keypoints")
        except Exception as e:  # noqa: BLE001 - collected and reported below
            failures.append(f"thread {t}: {e}")

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout=300)
    assert not any(th.is_alive() for th in pool), "client threads hung"
    assert not failures, failures[:5]
    after = stats()
    delta = {size: after.get(size, 0) - before.get(size, 0) for size in after}
    assert sum(size * n for size, n in delta.items()) == threads * per_thread  # every request executed once
    assert any(n > 0 for size, n in delta.items() if size > 1), f"no execute() held >1 request: {delta}"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_requests_get_an_error_naming_the_problem_and_the_server_keeps_serving(server, protocol, cases,
                                                                                  references):
    """Requests sent raw (bypassing `Client`'s own checks): Triton refuses a wrong dtype or shape by the
    config, the backend a NaN or inverted box or an empty frame; the next request is served."""
    name, frame, boxes = cases[0]
    bad = [
        (frame.astype(np.float32), boxes, r"image.*(FP32|UINT8)"),  # Triton checks the dtype against the config
        (frame, boxes[:, :3].copy(), r"(boxes.*shape|shape.*boxes)"),  # Triton checks the shape against the config
        (frame, np.where(np.arange(4) == 1, np.nan, boxes).astype(np.float32), r"boxes \[0, 1, .*NaN"),
        (frame, boxes[:, [2, 1, 0, 3]].copy(), r"x2 < x1"),
        (frame[:0], np.zeros((0, 4), np.float32), r"image: frame is empty"),
    ]
    with _client(server, protocol) as client:
        from tritonclient.utils import InferenceServerException, np_to_triton_dtype

        module = __import__(f"tritonclient.{protocol}", fromlist=["InferInput"])
        raw = module.InferenceServerClient(server.http_url.split("://")[1] if protocol == "http"
                                           else server.grpc_url.split("://")[1])
        for image, b, match in bad:
            inputs = []
            for input_name, array in (("image", np.ascontiguousarray(image)[None]),
                                      ("boxes", np.ascontiguousarray(b)[None])):
                tensor = module.InferInput(input_name, list(array.shape), np_to_triton_dtype(array.dtype))
                tensor.set_data_from_numpy(array)
                inputs.append(tensor)
            with pytest.raises(InferenceServerException, match=match):
                raw.infer("vitpose", inputs)
            assert np.array_equal(client.infer(frame, boxes), references[0])  # the next request is served


def test_the_client_refuses_what_vitpose_trt_refuses_with_the_same_message(cases, local_pose):
    """`Client.infer` checks the frame and boxes before sending: a bad request is the same ValueError
    as `VitPoseTRT.infer`'s, not Triton's text about batch dimensions (no server needed)."""
    from vitpose_trt.triton import Client

    _, frame, boxes = cases[0]
    client = Client("http://127.0.0.1:9")  # nothing listens there: nothing is sent
    for image, b in ((frame.astype(np.float32), boxes), (frame, boxes[:, :3]), (frame[:0], np.zeros((0, 4))),
                     (frame, np.where(np.arange(4) == 1, np.nan, boxes)), (frame, boxes[:, [2, 1, 0, 3]])):
        with pytest.raises(ValueError) as local:
            local_pose.infer(image, b)
        with pytest.raises(ValueError) as remote:
            client.infer(image, b)
        assert str(remote.value) == str(local.value)


def _start_server(repository, **kwargs):
    from vitpose_trt.triton.server import TritonServer

    srv = TritonServer(repository, env=_server_env(), **kwargs)
    srv.start().wait_ready(READY_TIMEOUT_S)
    return srv


@pytest.mark.slow
def test_server_killed_under_load_then_restarted(repository, cases, references):
    """SIGKILL while 4 clients send requests: each gets an error (no hang); a server restarted on the same
    ports answers the same clients again; no shared memory is left behind."""
    from vitpose_trt.triton import Client

    first = _start_server(repository)
    ports = (first.http_port, first.grpc_port)
    name, frame, boxes = cases[1]
    clients = [Client(first.http_url if t % 2 else first.grpc_url, timeout_s=10) for t in range(4)]
    served, errors = [0] * 4, [None] * 4
    second = None
    try:
        def work(t: int) -> None:
            try:
                while True:
                    got = clients[t].infer(frame, boxes)
                    assert np.array_equal(got, references[1])
                    served[t] += 1
            except RuntimeError as e:
                errors[t] = str(e)

        pool = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in pool:
            th.start()
        deadline = time.monotonic() + 60
        while min(served) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert min(served) >= 1, "the clients were never served"
        first.kill()
        for th in pool:
            th.join(timeout=30)
        assert not any(th.is_alive() for th in pool), "a client hung after the server died"
        assert all(e is not None and "Triton server" in e for e in errors), errors
        first.stop()
        assert not list(Path("/dev/shm").glob(f"{first.shm_prefix}*")), "the killed server's shared memory remains"

        second = _start_server(repository, http_port=ports[0], grpc_port=ports[1])
        for client in clients:  # the same client objects: they reconnect
            deadline = time.monotonic() + 30
            while True:
                try:
                    got = client.infer(frame, boxes)
                    break
                except RuntimeError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)  # gRPC's channel backs off before reconnecting
            assert np.array_equal(got, references[1])
    finally:
        for client in clients:
            client.close()
        first.stop()
        if second is not None:
            second.stop()


def test_a_server_that_never_gets_ready_is_stopped_at_the_deadline(tmp_path):
    """A model whose initialize() never returns keeps the server "loading": the deadline stops it."""
    _skip_without_triton()
    from vitpose_trt.triton.server import TritonServer

    model = tmp_path / "repo" / "stuck"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(
        "import time\n\nclass TritonPythonModel:\n    def initialize(self, args):\n        time.sleep(3600)\n\n"
        "    def execute(self, requests):\n        return []\n")
    (model / "config.pbtxt").write_text(
        'name: "stuck"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]\noutput [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]\n')
    srv = TritonServer(tmp_path / "repo", env=_server_env(), log_file=tmp_path / "server.log")  # kept on failure
    srv.start()
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="not ready within 3 s"):
        srv.wait_ready(3)
    assert srv.process.poll() is not None, "the server is still running"
    assert time.monotonic() - t0 < 3 + 15  # the deadline, then SIGINT, then SIGKILL after 10 s at most
    assert not list(Path("/dev/shm").glob(f"{srv.shm_prefix}*"))


@pytest.mark.slow
def test_cli_serve_prints_urls_serves_and_stops_on_sigint(onnx_path, cases, references):
    _skip_without_triton()
    from vitpose_trt.triton.server import free_port

    http, grpc = free_port(), free_port()
    env = {**os.environ, **_server_env()}
    cmd = [sys.executable, "-m", "vitpose_trt.cli", "serve", "--engine", str(onnx_path),
           "--http-port", str(http), "--grpc-port", str(grpc), "--ready-timeout", str(READY_TIMEOUT_S)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        _serve_and_stop(proc, http, grpc, cases, references)


def _serve_and_stop(proc, http, grpc, cases, references) -> None:
    from vitpose_trt.triton import Client

    try:
        seen = []  # log lines, then the URLs once the server is ready (or the end of the output)
        while not seen or not (seen[-1].startswith("serving") or seen[-1] == ""):
            seen.append(proc.stdout.readline())
        line = seen[-1]
        assert f"HTTP http://127.0.0.1:{http}" in line and f"gRPC grpc://127.0.0.1:{grpc}" in line, "".join(seen)
        name, frame, boxes = cases[0]
        with Client(f"grpc://127.0.0.1:{grpc}") as client:
            assert np.array_equal(client.infer(frame, boxes), references[0])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "server stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_serve_stops_when_a_model_instance_dies_under_load(onnx_path, cases, references):
    """One of two model instances (its Python-backend stub) is SIGKILLed while 8 clients send requests.
    Triton would keep answering ready and fail that instance's share of the requests for good, so
    `serve` stops the server and exits 2 with an error naming the instance (for a supervisor to
    restart it; test_server_killed_under_load_then_restarted shows clients are then served again).
    Every answer before is right, every client ends (an error, never a hang), no shared memory stays."""
    _skip_without_triton()
    from vitpose_trt.triton import Client
    from vitpose_trt.triton.server import free_port, proc_stats, process_group

    shm_before = set(Path("/dev/shm").glob("vitpose_trt_*"))
    http, grpc = free_port(), free_port()
    cmd = [sys.executable, "-m", "vitpose_trt.cli", "serve", "--engine", str(onnx_path), "--instances", "2",
           "--http-port", str(http), "--grpc-port", str(grpc), "--ready-timeout", str(READY_TIMEOUT_S)]
    name, frame, boxes = cases[1]
    counts, lock = {"ok": 0, "wrong": 0, "error": 0}, threading.Lock()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, **_server_env()}) as proc:
        try:
            seen = []
            while not seen or not (seen[-1].startswith("serving") or seen[-1] == ""):
                seen.append(proc.stdout.readline())
            assert seen[-1].startswith("serving"), "".join(seen)

            def work(t: int) -> None:
                with Client(f"http://127.0.0.1:{http}" if t % 2 else f"grpc://127.0.0.1:{grpc}", timeout_s=10) as c:
                    while proc.poll() is None or counts["error"] < 8:
                        try:
                            kind = "ok" if np.array_equal(c.infer(frame, boxes), references[1]) else "wrong"
                        except RuntimeError:
                            kind = "error"
                        with lock:
                            counts[kind] += 1
                        if kind == "error" and proc.poll() is not None:
                            return

            pool = [threading.Thread(target=work, args=(t,)) for t in range(8)]
            for th in pool:
                th.start()
            deadline = time.monotonic() + 60
            while counts["ok"] < 16 and time.monotonic() < deadline:
                time.sleep(0.05)
            children = [pid for pid, fields in proc_stats().items() if int(fields[1]) == proc.pid]
            server = next(p for p in children if "tritonserver" in Path(f"/proc/{p}/cmdline").read_text())
            stubs = [p for p in process_group(server) if "stub" in Path(f"/proc/{p}/cmdline").read_text()]
            assert len(stubs) == 2, stubs
            os.kill(stubs[1], signal.SIGKILL)
            assert proc.wait(timeout=30) == 2
            output = proc.stdout.read()
            for th in pool:
                th.join(timeout=30)
            assert not any(th.is_alive() for th in pool), "a client hung after the instance died"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "vitpose-trt serve: error: model instance vitpose_0_" in output and "died" in output, output[-2000:]
    assert counts["ok"] >= 16 and counts["wrong"] == 0, counts
    assert set(Path("/dev/shm").glob("vitpose_trt_*")) <= shm_before, "the server's shared memory was left behind"
