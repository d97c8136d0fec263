"""Run `tritonserver` on a model repository: from PATH, or the one bundled in the nvidia-pytriton wheel.

What a working Python backend needs here (measured with pytriton 0.7's Triton 2.51, CPU only):
- the stub process embeds the Python of the first `python3` on PATH: this interpreter's `bin` goes
  first on PATH (and EXECUTION_ENV_PATH is left alone), so the stub sees the same packages;
- the stub must load this interpreter's libpython: its LIBDIR goes first on LD_LIBRARY_PATH (else
  models fail to load with an `_thread.RLock` error);
- the wheel ships the backend, its utils and one stub per Python version in separate folders: a
  backend folder is assembled from links in a temp folder, with the wheel's libraries on the
  library path;
- a stub that cannot start leaves the server "loading" forever and deaf to SIGINT: readiness has a
  deadline, stopping escalates to SIGKILL, and the shared-memory regions of this server (a unique
  prefix) are removed from /dev/shm afterwards;
- a stub that dies later (killed, out of memory) is never restarted: the server still answers
  ready, and the dead instance fails every request the scheduler hands it ("Stub process
  'vitpose_0_1' is not healthy."), about one a second under load while the others serve.
  `dead_instances()` sees it; `serve` then stops the server and fails, so that a supervisor
  restarts it whole.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from vitpose_trt.triton.repository import write_repository

log = logging.getLogger(__name__)

SHM_DIR = Path("/dev/shm")
STOP_GRACE_S = 10.0  # SIGINT first; a server still alive after this gets SIGKILL


@dataclass
class ServerDist:
    """Where a Triton server's pieces are.

    Attributes:
        binary: the `tritonserver` executable.
        backend_dir: a folder holding `python/` (libtriton_python.so, its utils and the stub).
        lib_dirs: folders the server and stub need on LD_LIBRARY_PATH.
        source: "PATH" or "nvidia-pytriton <version>".
    """

    binary: Path
    backend_dir: Path | None
    lib_dirs: list[Path]
    source: str


def find_tritonserver() -> ServerDist:
    """The Triton server to run: `tritonserver` on PATH (e.g. NVIDIA's container, with its backends
    in /opt/tritonserver/backends), else the nvidia-pytriton wheel's bundled server.

    Raises:
        RuntimeError: neither is available; the message says how to get one.
    """
    on_path = shutil.which("tritonserver")
    if on_path:
        binary = Path(on_path).resolve()
        backends = binary.parent.parent / "backends"
        return ServerDist(binary=binary, backend_dir=backends if backends.is_dir() else None, lib_dirs=[],
                          source="PATH")
    try:
        version = md.version("nvidia-pytriton")
        root = Path(str(md.distribution("nvidia-pytriton").locate_file("pytriton")))
    except Exception:  # noqa: BLE001 - any failure means "not installed"
        raise RuntimeError(
            "no Triton server: put `tritonserver` on PATH (NVIDIA's tritonserver container) or "
            "`pip install --no-deps nvidia-pytriton` (its wheel bundles a Linux x86_64/aarch64 server)") from None
    dist = root / "tritonserver"
    binary = dist / "bin" / "tritonserver"
    if not binary.is_file():
        raise RuntimeError(f"nvidia-pytriton {version} is installed but has no server binary at {binary}")
    return ServerDist(binary=binary, backend_dir=None, lib_dirs=[root.parent / "nvidia_pytriton.libs"],
                      source=f"nvidia-pytriton {version}")


def _pytriton_backends(dist: ServerDist, into: Path) -> Path:
    """A backend folder for the wheel's server: python/ with links to its backend, utils and the stub
    built for this interpreter's Python version."""
    root = dist.binary.parent.parent
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        have = sorted(p.name for p in (root / "python_backend_stubs").iterdir())
        raise RuntimeError(f"{dist.source} has no Python backend stub for Python {version} (it has {have})")
    python = into / "python"
    python.mkdir(parents=True)
    for src in (root / "backends" / "python" / "libtriton_python.so",
                root / "backends" / "python" / "triton_python_backend_utils.py", stub):
        (python / src.name).symlink_to(src)
    return into


def proc_stats() -> dict[int, list[str]]:
    """{pid: the fields of /proc/pid/stat after the command name}: [0] state, [1] parent pid,
    [2] process group, ... (empty where there is no /proc)."""
    out = {}
    for p in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            out[int(p.name)] = stat[stat.rindex(")") + 2:].split()
    return out


def process_group(pgid: int) -> list[int]:
    """The pids of process group `pgid` (a server started in its own session, and its stubs)."""
    return [pid for pid, fields in proc_stats().items() if int(fields[2]) == pgid]


def _alive(pid: int) -> bool:
    """True unless `pid` is gone or a zombie (a dead child the server has not reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] not in ("Z", "X")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class TritonServer:
    """A `tritonserver` process serving a model repository, for tests, benchmarks and `serve`.

    Args:
        repository: the model repository folder (from `write_repository`).
        http_port / grpc_port: ports to listen on (None: a free one).
        host: the address to bind (127.0.0.1: this machine only; 0.0.0.0: every interface).
        log_file: where the server's output goes (None: a file in the server's temp folder).
        extra_args: more `tritonserver` flags.
        env: more environment variables for the server (and its stubs).

    Use as a context manager, or `start()` then `stop()`:
        >>> with TritonServer(repo) as server:
        ...     server.wait_ready(60)
        ...     Client(server.http_url).infer(frame, boxes)
    """

    def __init__(self, repository: str | os.PathLike, *, http_port: int | None = None,
                 grpc_port: int | None = None, host: str = "127.0.0.1", log_file: str | os.PathLike | None = None,
                 extra_args: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.repository = Path(os.fspath(repository)).resolve()
        if not self.repository.is_dir():
            raise FileNotFoundError(f"model repository not found: {self.repository}")
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.extra_args = list(extra_args or [])
        self.extra_env = dict(env or {})
        self.shm_prefix = f"vitpose_trt_{uuid.uuid4().hex[:12]}_"
        self._tmp: Path | None = None
        self._log_path = Path(os.fspath(log_file)) if log_file else None
        self._log = None
        self._keep_log = log_file is not None
        self.process: subprocess.Popen | None = None
        self._stubs: dict[int, str] = {}  # pid -> model instance, recorded when the server got ready

    # --- addresses ---------------------------------------------------------------------------
    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def http_url(self) -> str:
        return f"http://{self._client_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self._client_host}:{self.grpc_port}"

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def log_text(self) -> str:
        """The server's output so far ('' before it started)."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")

    # --- lifecycle ---------------------------------------------------------------------------
    def command(self, dist: ServerDist, backend_dir: Path | None) -> list[str]:
        cmd = [str(dist.binary), f"--model-repository={self.repository}",
               f"--http-address={self.host}", f"--http-port={self.http_port}",
               f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
               "--allow-metrics=false", "--allow-sagemaker=false", "--allow-vertex-ai=false",
               "--disable-auto-complete-config",  # the config is complete; no model is imported to guess it
               f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
               "--exit-timeout-secs=5"]
        if backend_dir is not None:
            cmd.append(f"--backend-directory={backend_dir}")
        return cmd + self.extra_args

    def environment(self, dist: ServerDist) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        libs = [sysconfig.get_config_var("LIBDIR") or ""] + [str(p) for p in dist.lib_dirs]
        env["LD_LIBRARY_PATH"] = os.pathsep.join([p for p in libs if p] + [env.get("LD_LIBRARY_PATH", "")]).rstrip(":")
        env.update(self.extra_env)
        return env

    def start(self) -> TritonServer:
        """Start the server process (returns at once; see `wait_ready`).

        Raises:
            RuntimeError: no server is available, or this one is already running.
        """
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the server is already running")
        dist = find_tritonserver()
        self._tmp = Path(tempfile.mkdtemp(prefix="vitpose_trt_triton_"))
        backend_dir = dist.backend_dir if dist.backend_dir is not None else _pytriton_backends(dist, self._tmp / "backends")
        if self._log_path is None:
            self._log_path = self._tmp / "tritonserver.log"
        self._log = open(self._log_path, "ab")  # noqa: SIM115 - closed in stop()
        cmd = self.command(dist, backend_dir)
        log.info("starting %s (%s): HTTP %s, gRPC %s", dist.binary, dist.source, self.http_url, self.grpc_url)
        log.debug("%s", " ".join(cmd))
        # cwd: the stub puts its working directory first on sys.path; the caller's must not decide what it imports.
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=self.environment(dist), start_new_session=True, cwd=self._tmp)
        return self

    def is_ready(self) -> bool:
        """True when the server answers /v2/health/ready with 200 (all models loaded)."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout_s: float = 120.0) -> TritonServer:
        """Block until the server is ready.

        Raises:
            RuntimeError: the server exited, or is not ready after `timeout_s` (it is then stopped);
                the message carries the server's last error lines and where its full log is kept.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                self._keep_log = True
                self.stop()
                raise RuntimeError(f"tritonserver exited with code {code} before it was ready: {self.errors()}")
            if self.is_ready():
                self._stubs = self.instances()
                return self
            time.sleep(0.2)
        self._keep_log = True
        self.stop()
        raise RuntimeError(f"tritonserver was not ready within {timeout_s:g} s (stopped it): {self.errors()}")

    def instances(self) -> dict[int, str]:
        """The Python-backend stub processes of this server: {pid: model instance name, e.g. "vitpose_0_1"}
        (empty on systems without /proc, and for backends that run in the server's own process)."""
        if self.process is None:
            return {}
        out = {}
        for pid in process_group(self.process.pid):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if "stub" in Path(args[0]).name:
                out[pid] = next((a for a in args[1:] if re.fullmatch(r".+_\d+_\d+", a)), f"pid {pid}")
        return out

    def dead_instances(self) -> list[str]:
        """The model instances whose stub process died since the server got ready (see the module notes)."""
        return [name for pid, name in self._stubs.items() if not _alive(pid)]

    def errors(self, lines: int = 3) -> str:
        """The server log's last error lines on one line, and where the whole log is."""
        text = self.log_text().splitlines()
        errors = [ln.strip() for ln in text if ln.startswith("E") or "Error" in ln or "error" in ln]
        picked = " | ".join(errors[-lines:]) or (text[-1].strip() if text else "no output")
        return f"{picked} (log: {self._log_path})"

    def kill(self) -> None:
        """SIGKILL the server at once (tests of a server dying under load); `stop()` still cleans up."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """Stop the server: SIGINT, then SIGKILL after `grace_s`; remove its shared memory and temp
        folder. Safe to call twice. Returns the exit code (None if it never started)."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                try:
                    self.process.send_signal(signal.SIGINT)  # the server stops its stubs itself
                    self.process.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    log.warning("tritonserver ignored SIGINT for %g s: killing it", grace_s)
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait()
                except ProcessLookupError:
                    self.process.wait()
            self._kill_group_leftovers()
            code = self.process.returncode
        for region in SHM_DIR.glob(f"{self.shm_prefix}*") if SHM_DIR.is_dir() else ():
            try:
                region.unlink()
            except OSError as e:  # another process may have removed it first
                log.debug("could not remove %s: %s", region, e)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            # The log stays for a post-mortem when the server failed (the error message names it).
            log_inside = self._log_path is not None and self._log_path.parent == self._tmp
            shutil.rmtree(self._tmp / "backends" if self._keep_log and log_inside else self._tmp, ignore_errors=True)
            self._tmp = None
        return code

    def _kill_group_leftovers(self) -> None:
        """Stub processes share the server's process group; none may outlive it."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(engine: str | os.PathLike, *, http_port: int = 8000, grpc_port: int = 8001, host: str = "127.0.0.1",
          ready_timeout_s: float = 300.0, on_ready=None, **repository_options) -> int:
    """Serve `engine` until SIGINT/SIGTERM: a throw-away repository in a temp folder, a Triton server on it.

    Args:
        engine: as `write_repository`'s.
        http_port / grpc_port / host: where to listen.
        ready_timeout_s: the longest wait for the model to load.
        on_ready: called with the running `TritonServer` once it is ready (the CLI prints the URLs).
        repository_options: more `write_repository` options (instances, max_batch_crops, ...).

    Returns:
        the server's exit code (0 after a clean stop).
    """
    with tempfile.TemporaryDirectory(prefix="vitpose_trt_repo_") as tmp:
        repo = write_repository(Path(tmp) / "repository", engine, copy_engine=False, **repository_options)
        server = TritonServer(repo.path, http_port=http_port, grpc_port=grpc_port, host=host)
        stopping = []

        def _stop(signum, frame):  # noqa: ARG001 - signal handler signature
            stopping.append(signum)

        previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.start()
            server.wait_ready(ready_timeout_s)
            if on_ready is not None:
                on_ready(server)
            while not stopping and server.process is not None and server.process.poll() is None:
                if dead := server.dead_instances():
                    server._keep_log = True
                    raise RuntimeError(f"model instance {', '.join(dead)} died (its Python-backend stub exited) and "
                                       "Triton does not restart it: stopped the server, which would fail that "
                                       "instance's share of the requests (run serve under a supervisor that "
                                       "restarts it)")
                time.sleep(0.2)
            if not stopping:
                server._keep_log = True
                raise RuntimeError(f"tritonserver exited with code {server.process.returncode}: {server.errors()}")
        finally:
            code = server.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
    return 0 if stopping else (code or 1)
