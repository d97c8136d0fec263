"""Sanitizer builds of `vitpose_trt._C` and the tests that run on them: CI's second and third builds.

    python -m tests.sanitizers [asan] [tsan] [-- PYTEST_ARGS...]      (.ci/run runs both)

asan: the extension compiled again with AddressSanitizer + UndefinedBehaviorSanitizer
    (-fsanitize=address,undefined -fno-sanitize-recover=all), CPU-only, and the kernel tests plus the
    bindings' fuzzing (Hypothesis profile "ci-fuzz": a few thousand examples per binding) run on it,
    in a Python with the ASan runtime preloaded and PYTHONMALLOC=malloc (so ASan also guards the
    buffers of numpy arrays, which are the memory the kernels read and write).
tsan: compiled with -fsanitize=thread; the helper pool's tests (csrc/parallel.*: every thread count,
    concurrent callers, fork) and the fuzzing of the thread counts run on it with the TSan runtime
    preloaded. Python itself is not instrumented; TSan sees the pool's threads and every access the
    kernels make, and the GIL's hand-offs through the pthread calls it intercepts.

Any sanitizer report ends the process with a non-zero status, so this command (and CI) fails.
tests/test_sanitizers.py shows that each configuration really fails on a planted bug.

The normal build in the package folder stays as it is: each sanitized module is built under
build/sanitize-<name>/ and run from a mirror of the checkout (links to its files) whose
vitpose_trt/_C is the sanitized one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sanitizer:
    """One sanitizer configuration.

    Attributes:
        name: "asan" or "tsan".
        flags: the -fsanitize= list (CMake's VITPOSE_TRT_SANITIZE).
        runtimes: the compiler's runtime libraries to preload into Python (an uninstrumented
            executable must load them first).
        options: the runtime's environment: reports are fatal, leaks of the interpreter ignored.
        pytest_args: what runs under it.
        exit_status: the status of a process a report ended (set in `options`).
    """

    name: str
    flags: str
    runtimes: tuple[str, ...]
    options: dict[str, str]
    pytest_args: tuple[str, ...]
    exit_status: int


SANITIZERS = {
    "asan": Sanitizer(
        name="asan", flags="address,undefined", runtimes=("libasan.so", "libubsan.so"),
        # detect_leaks=0: CPython frees little at exit by design; every other report stops the run.
        options={"ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1:exitcode=86:detect_stack_use_after_return=1",
                 "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=86", "PYTHONMALLOC": "malloc"},
        pytest_args=("tests/test_kernels_cpu.py", "tests/test_bindings_fuzz.py", "--hypothesis-profile=ci-fuzz"),
        exit_status=86),
    "tsan": Sanitizer(
        name="tsan", flags="thread", runtimes=("libtsan.so",),
        # die_after_fork=0: test_helper_pool_works_after_fork starts the pool again in a forked child.
        options={"TSAN_OPTIONS": "halt_on_error=1:exitcode=66:die_after_fork=0:second_deadlock_stack=1"},
        pytest_args=tuple(f"tests/test_kernels_cpu.py::{t}" for t in (
            "test_thread_counts_give_identical_crops", "test_decode_thread_counts_give_identical_keypoints",
            "test_warp_releases_the_gil_and_is_thread_safe", "test_pool_under_concurrent_callers",
            "test_helper_pool_works_after_fork")) + (
            "tests/test_bindings_fuzz.py::test_warp_cpu", "tests/test_bindings_fuzz.py::test_decode_cpu"),
        exit_status=66),
}


def cxx_compiler(build_dir: Path | None = None) -> str:
    """The C++ compiler CMake used for `build_dir` (else $CXX, else c++): the one whose runtimes match."""
    cache = build_dir / "CMakeCache.txt" if build_dir else None
    if cache and cache.is_file():
        m = re.search(r"^CMAKE_CXX_COMPILER:\w+=(.+)$", cache.read_text(), re.M)
        if m:
            return m.group(1).strip()
    return os.environ.get("CXX") or shutil.which("c++") or "g++"


def runtime_paths(san: Sanitizer, compiler: str) -> list[str]:
    """The runtime libraries of `san` that `compiler` links against.

    Raises:
        RuntimeError: the compiler has no such runtime (e.g. a compiler without sanitizer support).
    """
    paths = []
    for lib in san.runtimes:
        out = subprocess.run([compiler, f"-print-file-name={lib}"], capture_output=True, text=True, check=True)
        path = out.stdout.strip()
        if not os.path.isabs(path) or not os.path.exists(path):
            raise RuntimeError(f"{compiler} has no {lib} (install the compiler's sanitizer runtimes)")
        paths.append(path)
    return paths


def environment(san: Sanitizer, compiler: str) -> dict[str, str]:
    """os.environ plus the runtimes preloaded and the sanitizer's options."""
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(runtime_paths(san, compiler) + [p for p in [env.get("LD_PRELOAD")] if p])
    env.update(san.options)
    return env


def build(san: Sanitizer, build_dir: Path | None = None) -> Path:
    """Configure and build the sanitized extension (CPU-only, debug info, the project's -O3); returns it."""
    import pybind11

    build_dir = build_dir or REPO / "build" / f"sanitize-{san.name}"
    out_dir = build_dir / "module"
    cmake = shutil.which("cmake") or "cmake"
    args = [cmake, "-S", str(REPO), "-B", str(build_dir), f"-DVITPOSE_TRT_SANITIZE={san.flags}",
            "-DVITPOSE_TRT_CUDA=OFF", "-DCMAKE_BUILD_TYPE=Debug", f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}", f"-Dpybind11_DIR={pybind11.get_cmake_dir()}"]
    if shutil.which("ninja") and not (build_dir / "CMakeCache.txt").exists():
        args.append("-GNinja")
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([cmake, "--build", str(build_dir), "-j", str(os.cpu_count() or 2)], check=True)
    modules = sorted(out_dir.glob("_C*.so"))
    if len(modules) != 1:
        raise RuntimeError(f"expected one _C module in {out_dir}, found {[m.name for m in modules]}")
    return modules[0]


def mirror(module: Path, into: Path) -> Path:
    """A checkout made of links to this one (tests/, pyproject.toml, each file of vitpose_trt/) whose
    vitpose_trt/_C is the sanitized `module`; pytest run there imports that package first."""
    pkg = into / "vitpose_trt"
    pkg.mkdir(parents=True)
    for entry in (REPO / "vitpose_trt").iterdir():
        if entry.name != "__pycache__" and not (entry.name.startswith("_C.") and entry.suffix in (".so", ".pyd")):
            (pkg / entry.name).symlink_to(entry)
    shutil.copy2(module, pkg / module.name)
    for name in ("tests", "pyproject.toml"):
        (into / name).symlink_to(REPO / name)
    return into


def run_tests(san: Sanitizer, module: Path, extra_args: list[str], compiler: str) -> int:
    """pytest under `san` on a mirror holding `module`; its exit status (non-zero on any report)."""
    env = environment(san, compiler)
    with tempfile.TemporaryDirectory(prefix=f"vitpose_trt_{san.name}_") as tmp:
        tree = mirror(module, Path(tmp))
        probe = subprocess.run([sys.executable, "-c", "import vitpose_trt._C as c; print(c.__file__)"], cwd=tree,
                               env=env, capture_output=True, text=True)
        loaded = probe.stdout.strip()
        if probe.returncode != 0 or Path(loaded).parent != tree / "vitpose_trt":
            raise RuntimeError(f"{san.name}: the sanitized module is not the one imported ({loaded or probe.stderr})")
        # --capture=sys: a report is written to file descriptor 2 by a process about to exit; pytest's
        # default fd capture would swallow it with the process.
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--capture=sys", *san.pytest_args,
               *extra_args]
        print(f"[{san.name}] {' '.join(cmd[2:])} (LD_PRELOAD={env['LD_PRELOAD']})", flush=True)
        return subprocess.run(cmd, cwd=tree, env=env).returncode


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    names = [a for a in (argv[:argv.index("--")] if "--" in argv else argv)] or list(SANITIZERS)
    unknown = [n for n in names if n not in SANITIZERS]
    if unknown:
        print(f"unknown sanitizer(s) {unknown}: expected {sorted(SANITIZERS)}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        san = SANITIZERS[name]
        t0 = time.monotonic()
        module = build(san)
        built = time.monotonic()
        code = run_tests(san, module, extra, cxx_compiler(module.parent.parent))
        verdict = {0: "passed, no sanitizer report", san.exit_status: "FAILED: a sanitizer report (above)"}.get(
            code, f"FAILED (pytest exit status {code})")
        print(f"[{name}] build {built - t0:.0f} s, tests {time.monotonic() - built:.0f} s: {verdict}", flush=True)
        status = status or code
    return status


if __name__ == "__main__":
    sys.exit(main())
