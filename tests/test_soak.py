"""benchmarks/soak.py: its short CI variant runs clean, and its checks trip on what they guard against.

The long runs (20,000 video frames, 10 minutes of Triton with 8 clients) are published in
docs/RELIABILITY.md; this runs `soak.py ci` (~30 s): both soaks, small, bounded by --seconds.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def soak():
    spec = importlib.util.spec_from_file_location("soak", REPO / "benchmarks" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trend_tells_flat_from_growing(soak):
    t = np.arange(0, 600, 5.0)
    flat = [(x, 500 + 0.5 * np.sin(x), 12) for x in t]
    assert soak.trend(flat)["flat"] is True
    leak = [(x, 500 + 0.05 * x, 12) for x in t]  # 3 MB/min: 15 MB over the second half
    assert soak.trend(leak)["flat"] is False and soak.trend(leak)["rss_mb_per_min"] == pytest.approx(3.0)
    fd_leak = [(x, 500.0, 12 + int(x // 60)) for x in t]  # one descriptor a minute
    assert soak.trend(fd_leak)["flat"] is False


def test_check_jsonl_finds_bad_lines(soak, tmp_path):
    good = {"frame": 0, "time": 0.0, "people": [{"id": 0, "box": [0, 0, 1, 1], "box_score": 1.0,
                                                 "keypoints": [[1.0, 2.0, 0.5]] * 17}]}
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "frame": 1}) + "\n")
    assert soak.check_jsonl(path, 2) == []
    assert soak.check_jsonl(path, 3) == ["a.jsonl: 2 lines for 3 frames"]
    bad = {**good, "frame": 1, "people": [{**good["people"][0], "keypoints": [[np.nan, 0, 0]] * 17}]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n" + '{"frame": 2, "peo')
    problems = soak.check_jsonl(path, 3)
    assert len(problems) == 2 and "line 2: bad person" in problems[0] and "line 3" in problems[1]


@pytest.mark.slow
def test_soak_ci_variant_runs_clean_and_stops_by_itself(tmp_path):
    pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")
    from tests.test_triton import _skip_without_triton

    _skip_without_triton()
    out = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "soak.py"), "ci", "--json", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    video, triton = json.loads(out.read_text())["runs"]
    assert video["errors"] == [] and video["frames"] > 0 and video["detector_frames_checked"] > 0
    assert video["memory"]["samples"] >= 3
    assert triton["errors"] == [] and triton["requests_ok"] > 0 and triton["requests_wrong"] == 0
    assert triton["requests_error"] == 0 and triton["server_memory"]["samples"] >= 3
    assert run.stdout.strip().splitlines()[-1] == "soak: passed: video 0 errors; triton 0 errors"
