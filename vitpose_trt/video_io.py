"""Video outputs and per-frame inputs: the JSONL pose log, the annotated video (encoded in its own
thread), per-frame detection files, and all-or-nothing file writes.

Every output is written under a temporary name in its final folder and renamed when complete, so a
reader never sees a half-written file; an interrupted video (Ctrl-C, a broken stream) is closed
normally and its files hold every frame processed up to then.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from vitpose_trt.atomic import atomic_path, atomic_write
from vitpose_trt.geometry import check_boxes

log = logging.getLogger(__name__)


class _Staged:
    """A file written under a temporary name beside `path` (`atomic.atomic_path`), renamed onto
    `path` by `finish(commit=True)`, removed by `finish(commit=False)`."""

    def __init__(self, path: Path) -> None:
        self._stack = contextlib.ExitStack()
        self.tmp = self._stack.enter_context(atomic_path(path))

    def finish(self, commit: bool) -> None:
        if commit:
            self._stack.close()
        else:
            self._stack.__exit__(RuntimeError, RuntimeError("not committed"), None)


def write_image_atomic(path, image: np.ndarray) -> Path:
    """Encode `image` by `path`'s suffix and write it atomically (an encoding failure is an error too)."""
    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".jpg", image)
    if not ok:
        raise RuntimeError(f"cannot encode {path} as {path.suffix or '.jpg'}")
    return atomic_write(path, buf.tobytes())


# The JSON line of one video frame, as `vitpose-trt infer` writes it and `load_frame_detections` reads it back:
#   {"frame": i, "time": s, "people": [{"id", "box": [x1, y1, x2, y2], "box_score", "keypoints": [[x, y, score], ...]}]}
def person_record(id: int, box, box_score: float, keypoints, decimals: int = 2) -> dict:
    """One person of a frame's line: pixels rounded to `decimals`, scores to 4."""
    return {"id": int(id), "box": [round(float(v), decimals) for v in box], "box_score": round(float(box_score), 4),
            "keypoints": [[round(float(x), decimals), round(float(y), decimals), round(float(s), 4)]
                          for x, y, s in keypoints]}


def frame_record(frame: int, time: float, people: list[dict]) -> dict:
    return {"frame": int(frame), "time": round(float(time), 4), "people": people}


def _boxes_of_record(obj) -> list[list[float]]:
    """The (x1, y1, x2, y2, score) rows of a JSON line: `{"frame", "boxes"}` or a `frame_record`."""
    if not isinstance(obj, dict) or "frame" not in obj:
        raise ValueError('expected an object with "frame" and "boxes" (or "people")')
    if "boxes" in obj:
        rows = [[float(v) for v in b] + ([1.0] if len(b) == 4 else []) for b in obj["boxes"]]
    elif "people" in obj:
        rows = [[float(v) for v in p["box"]] + [float(p.get("box_score", 1.0))] for p in obj["people"]]
    else:
        raise ValueError('expected "boxes" or "people"')
    if any(len(r) != 5 for r in rows):
        raise ValueError("each box must be [x1, y1, x2, y2] or [x1, y1, x2, y2, score]")
    return rows


class JsonlWriter:
    """DIR/<stem>.jsonl: one `frame_record` per frame, flushed per line."""

    def __init__(self, path) -> None:
        self.path = Path(path)
        self._staged = _Staged(self.path)
        self._f = open(self._staged.tmp, "w")
        self.frames = 0

    def write(self, frame: int, time: float, people: list[dict]) -> None:
        self._f.write(json.dumps(frame_record(frame, time, people)) + "\n")
        self._f.flush()
        self.frames += 1

    def close(self, commit: bool = True) -> None:
        """Rename to the final name (commit) or delete the temporary file."""
        if self._f.closed:
            return
        self._f.close()
        self._staged.finish(commit)


class VideoWriter:
    """DIR/<stem>.mp4 at the source's frame rate, encoded in a background thread.

    Args:
        path: output file (.mp4: MPEG-4 Part 2 "mp4v", which every OpenCV-FFmpeg build can write; odd
            sizes are padded by one replicated row/column to the even size the codec needs).
        fps: frames per second.
        size: (width, height).
        queue_size: frames waiting for the encoder; a full queue blocks the caller (bounded memory).

    Raises:
        RuntimeError: OpenCV cannot open a writer for this file.
    """

    def __init__(self, path, fps: float, size: tuple[int, int], queue_size: int = 16) -> None:
        self.path = Path(path)
        self._staged = _Staged(self.path)
        w, h = size
        # MPEG-4 needs even sizes (FFmpeg would drop the odd row/column): odd frames get one
        # replicated row/column instead, so nothing of the picture is lost.
        self._pad = (h % 2, w % 2)
        self._writer = cv2.VideoWriter(str(self._staged.tmp), cv2.VideoWriter.fourcc(*"mp4v"), float(fps),
                                       (w + w % 2, h + h % 2))
        if not self._writer.isOpened():
            self._staged.finish(commit=False)
            raise RuntimeError(f"cannot open a video writer for {self.path} ({size[0]}x{size[1]} at {fps} fps)")
        self.size = tuple(size)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self.encode_seconds = 0.0  # time the encoder thread spent in VideoWriter.write
        self._thread = threading.Thread(target=self._encode, name=f"encode-{self.path.stem}", daemon=True)
        self._thread.start()
        self.frames = 0

    def _encode(self) -> None:
        while True:
            image = self._queue.get()
            if image is None:
                return
            try:
                t0 = time.perf_counter()
                if any(self._pad):
                    image = cv2.copyMakeBorder(image, 0, self._pad[0], 0, self._pad[1], cv2.BORDER_REPLICATE)
                self._writer.write(image)
                self.encode_seconds += time.perf_counter() - t0
            except Exception as e:  # kept and raised in the caller's thread
                self._error = e

    def write(self, image: np.ndarray) -> None:
        """Queue one HxWx3 uint8 BGR frame of the writer's size."""
        if self._error is not None:
            raise RuntimeError(f"encoding {self.path} failed: {self._error}")
        if image.shape[1::-1] != self.size:
            raise ValueError(f"{self.path}: frame size {image.shape[1]}x{image.shape[0]} differs from the "
                             f"video's {self.size[0]}x{self.size[1]}")
        self._queue.put(image)
        self.frames += 1

    def close(self, commit: bool = True) -> None:
        """Finish encoding and rename to the final name (commit), or delete the temporary file."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._writer.release()
        tmp = self._staged.tmp
        self._staged.finish(commit and self._error is None and tmp.exists() and tmp.stat().st_size > 0)


def _is_coco_file(path: Path, first: str) -> bool:
    """The whole file is one JSON value with COCO's shape (a detections list, an annotation file)."""
    if not first.startswith(("[", "{")):
        return False
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError):
        return False  # JSON lines, or not JSON at all: the per-line reader says which line is wrong
    return isinstance(data, list) or (isinstance(data, dict) and ("annotations" in data or "images" in data))


def load_frame_detections(path) -> dict[int, np.ndarray]:
    """Per-frame person boxes for a video, keyed by 0-based frame index.

    Formats (told from the first non-blank line):
        MOT challenge `det.txt`: `frame, id, x, y, w, h, score[, ...]` per line, frames counted from 1.
        JSON lines: `{"frame": i, "boxes": [[x1, y1, x2, y2(, score)], ...]}` per line, frames from 0;
            `{"frame": i, "people": [{"box": [...], "box_score": s}, ...]}` (our own output) also works.
    Frames absent from the file have no boxes.

    Returns:
        {frame index: (M, 5) float64 x1, y1, x2, y2, score}.

    Raises:
        FileNotFoundError / ValueError naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"detections file not found: {path}")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read detections file {path}: {e}") from None
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    if _is_coco_file(path, first):
        raise ValueError(f"{path} holds COCO detections (a JSON list of {{image_id, bbox: [x, y, w, h], score}}), "
                         "which are matched to images; for a video give per-frame boxes: a MOT det.txt "
                         "(frame, id, x, y, w, h, score per line) or JSON lines "
                         '{"frame": i, "boxes": [[x1, y1, x2, y2, score], ...]} (what infer writes works too)')
    by_frame: dict[int, list] = {}
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            if first.startswith("{"):
                obj = json.loads(line)
                rows = _boxes_of_record(obj)
                frame = int(obj["frame"])
            else:
                v = [float(x) for x in line.split(",")]
                if len(v) < 7:
                    raise ValueError("a MOT det.txt line is frame, id, x, y, w, h, score[, ...]")
                frame = int(v[0]) - 1
                rows = [[v[2], v[3], v[2] + v[4], v[3] + v[5], v[6]]]
            if frame < 0:
                raise ValueError(f"negative frame {frame}")
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{path}, line {n}: {e}") from None
        by_frame.setdefault(frame, []).extend(rows)
    if not by_frame:
        raise ValueError(f"{path}: no detections in it")
    out = {}
    for frame, rows in by_frame.items():
        try:
            out[frame] = check_boxes(np.array(rows, dtype=np.float64).reshape(-1, 5), scores=True)
        except ValueError as e:
            raise ValueError(f"{path}: frame {frame}: {e}") from None
    return out
