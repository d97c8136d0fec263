"""mypy over the TensorRT build tools and runner, and the TensorRT stand-in, against the TensorRT stubs.

TensorRT cannot be installed on the machines that run these tests, so the stubs are the only
check that the TensorRT calls match the API (names, argument types, return types).

tensorrt-stubs 10.13 ships its modules without a py.typed marker (mypy would skip them and, with
`ignore_missing_imports`, type every TensorRT object as Any: a check that checks nothing), and
`tensorrt_bindings/tensorrt.pyi` has a few lines that are not valid Python (parameters named
`in`, a required parameter after defaulted ones). So the test copies the stubs, repairs those
lines, puts the copy on MYPYPATH, and first proves that the stubs are really in use.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TARGETS = ["build_engine/", "vitpose_trt/engines/tensorrt.py", "vitpose_trt/engines/sidecar.py",
           "vitpose_trt/cuda_runtime.py", "vitpose_trt/cuda_memory.py", "vitpose_trt/gpu_path.py",
           "tests/standins/tensorrt.py"]
STANDIN = REPO / "tests" / "standins" / "tensorrt.py"
STUB_PACKAGES = ("tensorrt", "tensorrt_bindings")


def _repair(text: str) -> str:
    """The two kinds of invalid lines in tensorrt-stubs 10.13, made valid without changing meaning."""
    text = re.sub(r"([(,]\s*)in(\s*:)", r"\1in_\2", text)  # `def f(self, in: ...)`: `in` is a keyword
    # `..., power: Weights = None, channel_axis: int)`: a required parameter after defaulted ones
    return re.sub(r"(=\s*None,\s*\w+:\s*[\w\[\]. ]+?)\)", r"\1 = ...)", text)


@pytest.fixture(scope="module")
def stub_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[test]')")
    from importlib import metadata

    try:
        dist = metadata.distribution("tensorrt-stubs")
    except metadata.PackageNotFoundError:
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    out = tmp_path_factory.mktemp("stubs")
    for package in STUB_PACKAGES:
        src = Path(str(dist.locate_file(package)))
        files = sorted(src.glob("*.pyi"))
        if not files:
            pytest.skip(f"tensorrt-stubs {dist.version} has no {package}/*.pyi to check against")
        (out / package).mkdir()
        for f in files:
            text = _repair(f.read_text())
            try:
                ast.parse(text)
            except SyntaxError as e:
                pytest.skip(f"tensorrt-stubs {dist.version}: {f.name} line {e.lineno} is invalid Python that this "
                            f"test cannot repair: {e.msg}")
            (out / package / f.name).write_text(text)
    return out


def _mypy(args: list[str], stubs: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYPYPATH": str(stubs)}
    return subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache), *args],
                          cwd=REPO, env=env, capture_output=True, text=True)


def test_the_stubs_are_really_used(stub_path, tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import tensorrt as trt\n"
                     "reveal_type(trt.Runtime)\n"
                     "trt.Builder(1, 2)\n")  # wrong arity: must be an error if the stubs are in use
    result = _mypy([str(probe)], stub_path, tmp_path / "cache")
    out = result.stdout + result.stderr
    assert "tensorrt_bindings.tensorrt.Runtime" in out, out
    assert result.returncode == 1 and 'Too many arguments for "Builder"' in out, out


@pytest.mark.slow  # ~25 s: mypy analyses torch and numpy too
def test_mypy_passes(stub_path, tmp_path):
    result = _mypy(TARGETS, stub_path, tmp_path / "cache")
    assert result.returncode == 0, f"mypy {' '.join(TARGETS)} failed:\n{result.stdout}{result.stderr}"


@pytest.mark.slow  # ~25 s, as above
def test_a_name_tensorrt_lacks_fails_the_standin_check(stub_path, tmp_path):
    """The TensorRT stand-in derives (for mypy) from the stubs' classes and marks its methods
    @override, so a method TensorRT does not have, or one with another signature, is an error."""
    text = STANDIN.read_text()
    anchor = "    @override\n    def create_network(self, flags: int = 0) -> INetworkDefinition:"
    assert anchor in text
    wrong = tmp_path / "standin_wrong.py"
    wrong.write_text(text.replace(anchor, "    @override\n    def create_netwerk(self) -> None:\n        pass\n\n" + anchor)
                     .replace("def set_tensor_address(self, name: str, memory: int) -> bool:",
                              "def set_tensor_address(self, name: str, memory: str) -> bool:"))
    result = _mypy([str(wrong)], stub_path, tmp_path / "cache")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert 'Method "create_netwerk" is marked as an override, but no base method was found' in out, out
    assert 'Argument 2 of "set_tensor_address" is incompatible with supertype' in out, out


@pytest.mark.slow  # ~25 s, as above
def test_the_builder_calls_tensorrt_through_the_stubs(stub_path, tmp_path):
    """The builder reaches TensorRT through `trt = lazy_module("tensorrt")`, typed as the stubs' module
    under TYPE_CHECKING: a misspelt TensorRT name in it must be a mypy error, not an Any."""
    build = REPO / "build_engine" / "tensorrt_build.py"
    text = build.read_text()
    anchor = "    builder = trt.Builder(logger)\n"
    assert anchor in text
    wrong = tmp_path / "tensorrt_build_wrong.py"
    wrong.write_text(text.replace(anchor, anchor + "    builder.create_netwerk(0)\n"))
    result = _mypy([str(wrong)], stub_path, tmp_path / "cache")
    out = result.stdout + result.stderr
    assert result.returncode == 1 and '"Builder" has no attribute "create_netwerk"' in out, out
