"""vitpose_trt/sources.py: what a user names becomes frames, in order, with clear errors and no stuck threads.

Videos here are made in the test (MJPG in AVI, which every OpenCV build writes and reads), each frame
carrying its own index in its pixels so order and completeness are checked, not assumed. Faults of a
real clip (a corrupt frame, a truncated file, a cut stream, Ctrl-C) are in tests/test_video.py, end to end.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from vitpose_trt.sources import Frame, ImageSource, VideoSource, open_sources, read_images_ahead

FRAMES = 12


def numbered(i: int, size=(48, 64)) -> np.ndarray:
    """A frame whose brightness says its index (JPEG keeps a flat level to within a few values)."""
    return np.full((*size, 3), 10 + 20 * i, np.uint8)


def index_of(image: np.ndarray) -> int:
    return int(round((float(image.mean()) - 10) / 20))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sources") / "walk.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 48))
    assert writer.isOpened()
    for i in range(FRAMES):
        writer.write(numbered(i))
    writer.release()
    return path


def test_a_video_yields_every_frame_in_order_with_its_time(clip):
    with VideoSource(clip, prefetch=2) as src:
        assert (src.kind, src.name, src.size, len(src)) == ("video", "walk", (64, 48), FRAMES)
        assert src.fps == pytest.approx(25.0)
        frames = list(src)
    assert [f.index for f in frames] == list(range(FRAMES))
    assert [index_of(f.image) for f in frames] == list(range(FRAMES))  # decoded in order, none dropped
    times = [f.time for f in frames]
    assert times == sorted(times) and times[1] == pytest.approx(1 / 25, abs=1e-3)
    assert all(isinstance(f, Frame) and f.image.shape == (48, 64, 3) and f.name is None for f in frames)
    assert src.error is None and src.skipped == 0 and src.decode_seconds > 0


def test_a_video_is_iterated_once(clip):
    with VideoSource(clip) as src:
        next(iter(src))
        with pytest.raises(RuntimeError, match="iterated once"):
            next(iter(src))


def test_closing_while_the_reader_is_blocked_ends_its_thread(clip):
    """The consumer stops after one frame with the queue full: close() must not hang, and the reader
    thread ends (it drops frames to make room for its end marker)."""
    before = {t.name for t in threading.enumerate()}
    src = VideoSource(clip, prefetch=1)
    it = iter(src)
    next(it)
    src.close()
    src.close()  # twice is fine
    assert not any(t.name == "decode-walk" and t.name not in before and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("make, error, message", [
    (lambda d: d / "missing.mp4", FileNotFoundError, "video not found"),
    (lambda d: d, ValueError, "not a video file"),
])
def test_bad_video_paths_are_refused_by_name(tmp_path, make, error, message):
    with pytest.raises(error, match=message):
        VideoSource(make(tmp_path))


def test_a_file_that_is_not_a_video_is_refused_by_name(tmp_path):
    notes = tmp_path / "notes.dat"
    notes.write_text("not a video")
    with pytest.raises(ValueError, match="cannot open video .*notes.dat"):
        open_sources([str(notes)])


def test_images_are_read_ahead_in_order_and_unreadable_ones_are_none(tmp_path):
    paths = []
    for i in range(7):
        p = tmp_path / f"{i}.png"
        if i == 3:
            p.write_text("broken")
        else:
            cv2.imwrite(str(p), numbered(i))
        paths.append(p)
    for depth in (0, 1, 4, 20):
        got = list(read_images_ahead(paths, depth=depth))
        assert [i for i, _ in got] == list(range(7))
        assert [None if im is None else index_of(im) for _, im in got] == [0, 1, 2, None, 4, 5, 6]
    src = ImageSource(paths[:3])
    assert len(src) == 3 and [(f.index, f.name, f.time) for f in src] == [(0, "0.png", 0.0), (1, "1.png", 0.0),
                                                                          (2, "2.png", 0.0)]


def test_open_sources_puts_images_first_and_keeps_the_video_order(clip, tmp_path):
    still = tmp_path / "still.jpg"
    cv2.imwrite(str(still), numbered(0))
    sources = open_sources([str(clip), still, str(clip)])
    try:
        assert [type(s) for s in sources] == [ImageSource, VideoSource, VideoSource]
        assert sources[0].paths == [still]
    finally:
        for s in sources:
            s.close()
    single = open_sources(str(still))  # one spec, not a list
    assert len(single) == 1 and single[0].paths == [still]


def test_open_sources_closes_what_it_opened_when_a_later_input_is_missing(clip, tmp_path, monkeypatch):
    closed = []
    monkeypatch.setattr(VideoSource, "close", lambda self: closed.append(self.name))
    with pytest.raises(FileNotFoundError, match="input not found: .*nope.jpg"):
        open_sources([str(clip), str(tmp_path / "nope.jpg")])
    assert closed == ["walk"]
    with pytest.raises(ValueError, match="no input given"):
        open_sources([])


def test_a_digit_is_a_camera_unless_such_a_file_exists(tmp_path, monkeypatch):
    opened = []

    def fake_init(self, spec, prefetch=8):
        opened.append(spec)

    monkeypatch.setattr(VideoSource, "__init__", fake_init)
    monkeypatch.chdir(tmp_path)
    open_sources(["1"])
    assert opened == [1]  # camera index 1
    Path("2").write_bytes(b"")  # a file named 2 is a file, tried as a video
    open_sources(["2"])
    assert opened[-1] == Path("2")
