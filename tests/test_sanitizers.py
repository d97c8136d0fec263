"""The sanitizer step can fail: each configuration of tests/sanitizers.py (its flags, preloaded runtimes
and options) turns a planted bug into a failing process with the sanitizer's report, and passes the
same code without the bug.

The planted bugs live in a throwaway library compiled here with the step's own flags and loaded with
ctypes under the step's own environment: an out-of-bounds write into a numpy array (ASan), a
misaligned float load (UBSan, which must abort, not just print) and a data race between two threads
(TSan). tests/sanitizers.py runs the real extension the same way.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.sanitizers import SANITIZERS, cxx_compiler, environment

PLANTED = r"""
#include <cstring>
#include <thread>

extern "C" {
// Writes n + extra bytes into p, which holds n: extra = 1 is the planted heap overflow.
void write_bytes(unsigned char* p, long n, long extra) { std::memset(p, 1, n + extra); }

// Reads a float at p + offset: offset 1 is the planted misaligned load.
float load_float(const char* p, long offset) { return *reinterpret_cast<const float*>(p + offset); }

// Two threads add to one counter, with or without a lock: unlocked is the planted data race.
static int counter = 0;
int count_in_two_threads(int locked) {
  static std::mutex m;
  auto add = [&] {
    for (int i = 0; i < 1000; ++i) {
      if (locked) { std::lock_guard<std::mutex> g(m); ++counter; } else { ++counter; }
    }
  };
  std::thread a(add), b(add);
  a.join();
  b.join();
  return counter;
}
}
"""

CALLS = {  # (bug, control): Python run under the sanitizer with the library at LIB
    "asan": ("np = __import__('numpy'); a = np.zeros(64, np.uint8); lib.write_bytes(a.ctypes.data, 64, 1)",
             "np = __import__('numpy'); a = np.zeros(64, np.uint8); lib.write_bytes(a.ctypes.data, 64, 0)"),
    "ubsan": ("b = ctypes.create_string_buffer(16); lib.load_float(b, 1)",
              "b = ctypes.create_string_buffer(16); lib.load_float(b, 4)"),
    "tsan": ("lib.count_in_two_threads(0)", "lib.count_in_two_threads(1)"),
}
EXPECTED = {"asan": "AddressSanitizer: heap-buffer-overflow", "ubsan": "runtime error: load of misaligned address",
            "tsan": "ThreadSanitizer: data race"}


@pytest.fixture(scope="module")
def compiler() -> str:
    cxx = cxx_compiler()
    if shutil.which(cxx) is None:
        pytest.skip(f"no C++ compiler ({cxx})")
    return cxx


def _library(tmp_path, compiler: str, flags: str):
    src = tmp_path / "planted.cpp"
    src.write_text("#include <mutex>\n" + PLANTED)
    lib = tmp_path / "libplanted.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-g", f"-fsanitize={flags}", "-fno-sanitize-recover=all",
                    "-fno-omit-frame-pointer", str(src), "-o", str(lib), "-pthread"], check=True)
    return lib


def _run(lib, code: str, env) -> subprocess.CompletedProcess:
    script = (f"import ctypes\nlib = ctypes.CDLL({str(lib)!r})\nlib.load_float.restype = ctypes.c_float\n"
              "lib.write_bytes.argtypes = (ctypes.c_void_p, ctypes.c_long, ctypes.c_long)\n"
              "lib.load_float.argtypes = (ctypes.c_char_p, ctypes.c_long)\n"
              f"{code}\n")
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", ["asan", "ubsan", "tsan"])
def test_each_sanitizer_fails_the_step_on_a_planted_bug(case, compiler, tmp_path):
    san = SANITIZERS["tsan" if case == "tsan" else "asan"]
    try:
        env = environment(san, compiler)
    except RuntimeError as e:
        pytest.skip(str(e))
    lib = _library(tmp_path, compiler, san.flags)
    bug, control = CALLS[case]
    clean = _run(lib, control, env)
    assert clean.returncode == 0, clean.stderr[-2000:]  # the configuration itself runs Python cleanly
    planted = _run(lib, bug, env)
    assert planted.returncode == san.exit_status, f"{case}: exit {planted.returncode}:\n{planted.stderr[-2000:]}"
    assert EXPECTED[case] in planted.stderr, planted.stderr[-2000:]
