"""Drives CMake to build the `vitpose_trt._C` extension; all build logic lives in CMakeLists.txt.

Environment variables:
    VITPOSE_TRT_CUDA=0            force a CPU-only build even when nvcc is found.
    VITPOSE_TRT_CUDA_ARCHS="..."  CMAKE_CUDA_ARCHITECTURES (default: 75;80;86;87;89;90 + PTX).
    VITPOSE_TRT_BUILD_TYPE=Debug  CMake build type (default Release).
"""

import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(self.build_temp).resolve() / ext.name
        build_dir.mkdir(parents=True, exist_ok=True)
        cfg = os.environ.get("VITPOSE_TRT_BUILD_TYPE", "Release")
        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}{os.sep}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_BUILD_TYPE={cfg}",
        ]
        if os.environ.get("VITPOSE_TRT_CUDA", "1") == "0":
            args.append("-DVITPOSE_TRT_CUDA=OFF")
        if "VITPOSE_TRT_CUDA_ARCHS" in os.environ:
            args.append(f"-DCMAKE_CUDA_ARCHITECTURES={os.environ['VITPOSE_TRT_CUDA_ARCHS']}")
        try:
            import ninja  # noqa: F401

            args.append("-GNinja")
        except ImportError:
            pass
        subprocess.run(["cmake", str(ROOT), *args], cwd=build_dir, check=True)
        jobs = str(os.cpu_count() or 2)
        subprocess.run(["cmake", "--build", ".", "--config", cfg, "-j", jobs], cwd=build_dir, check=True)


setup(ext_modules=[CMakeExtension("vitpose_trt._C")], cmdclass={"build_ext": CMakeBuild})
