"""Frame sources: images, folders or globs of images, video files, cameras and stream URLs.

`open_sources(specs)` turns what a user typed (`photo.jpg`, `photos/`, `"shots/*.png"`, `clip.mp4`, `0`,
`rtsp://...`) into sources; each one yields `Frame`s (index, time in seconds, BGR image). Video sources
decode ahead in a reader thread, so decoding overlaps the caller's compute.
"""

from __future__ import annotations

import glob
import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                            ".ts", ".gif"})
URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# A file whose decoder fails this many reads in a row has ended (or is unreadable from here on):
# a corrupt frame costs one failed read and is skipped with a warning; a broken tail ends the video cleanly.
MAX_CONSECUTIVE_FAILURES = 10


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        index: 0-based position among the frames the source delivered (skipped corrupt frames
            take no index).
        time: seconds since the start: the container's timestamp for files, the wall clock for
            cameras and streams.
        image: HxWx3 uint8 BGR.
        name: the file name for image sources, else None.
    """

    index: int
    time: float
    image: np.ndarray
    name: str | None = None


def read_images_ahead(paths: Sequence[Path], depth: int = 4) -> Iterator[tuple[int, np.ndarray | None]]:
    """Yield (index, BGR image or None where OpenCV cannot read it) in order, while a thread decodes
    the next `depth` images (cv2.imread releases the GIL, so decoding overlaps inference)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-reader") as pool:
        pending: deque = deque()
        for i, path in enumerate(paths):
            pending.append((i, pool.submit(cv2.imread, str(path), cv2.IMREAD_COLOR)))
            if len(pending) > max(1, depth):
                j, future = pending.popleft()
                yield j, future.result()
        while pending:
            j, future = pending.popleft()
            yield j, future.result()


class ImageSource:
    """Still images, decoded ahead in a thread (a failed read is an error naming the file).

    Attributes:
        paths: the image files, in the order given.
        kind: "images".
    """

    kind = "images"

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = [Path(p) for p in paths]
        self.name = "images"
        self.fps = 0.0

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[Frame]:
        for i, image in read_images_ahead(self.paths):
            path = self.paths[i]
            if image is None:
                raise ValueError(f"cannot read image {path} (not an image OpenCV can decode, or unreadable)")
            yield Frame(i, 0.0, image, path.name)

    def close(self) -> None:
        pass


class VideoSource:
    """A video file, a camera index or a stream URL, decoded ahead by a reader thread.

    Args:
        spec: a path, a camera index (int) or a URL.
        prefetch: frames decoded ahead of the consumer (bounded, so memory is bounded).

    Attributes:
        kind: "video", "camera" or "stream".
        name: a file-name-safe stem for outputs (the video's stem, "camera0", the URL's last part).
        fps: the source's frame rate (the container's; 30 when a camera/stream does not say).
        size: (width, height).
        frame_count: frames the container announces (0 when unknown: cameras, streams).

    Raises:
        FileNotFoundError: a video file that does not exist.
        ValueError: a file OpenCV cannot open as a video, a camera that does not open, a URL that fails.
    """

    def __init__(self, spec: str | int | Path, prefetch: int = 8) -> None:
        target: int | str
        if isinstance(spec, int):
            self.kind, self.name, target = "camera", f"camera{spec}", spec
        elif URL_RE.match(str(spec)):
            self.kind, self.name, target = "stream", _url_stem(str(spec)), str(spec)
        else:
            path = Path(spec)
            if not path.exists():
                raise FileNotFoundError(f"video not found: {path}")
            if not path.is_file():
                raise ValueError(f"not a video file: {path}")
            self.kind, self.name, target = "video", path.stem, str(path)
        self.spec = spec
        cap = cv2.VideoCapture(target)
        if not cap.isOpened():
            cap.release()
            what = {"camera": f"camera {spec} does not open (no such device, busy, or no permission)",
                    "stream": f"cannot open stream {spec} (unreachable, refused, or not a video stream)",
                    "video": f"cannot open video {spec} (not a video OpenCV's FFmpeg can decode, or truncated "
                             "before its header)"}[self.kind]
            raise ValueError(what)
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if np.isfinite(fps) and 0 < fps < 1000 else 30.0
        self.size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT) if self.kind == "video" else 0
        self.frame_count = int(count) if np.isfinite(count) and count > 0 else 0
        self._cap = cap
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.skipped = 0  # corrupt frames skipped
        self.error: str | None = None  # why the stream ended early, if it did
        self.decode_seconds = 0.0  # time the reader thread spent in cap.read()

    def __len__(self) -> int:
        return self.frame_count

    def __iter__(self) -> Iterator[Frame]:
        if self._thread is not None:
            raise RuntimeError(f"{self.name}: a video source can be iterated once")
        self._thread = threading.Thread(target=self._read, name=f"decode-{self.name}", daemon=True)
        self._thread.start()
        while True:
            item = self._queue.get()
            if item is None:
                return
            yield item

    def _read(self) -> None:
        """Reader thread: decode, time-stamp and queue frames; None marks the end."""
        index, failures, start = 0, 0, time.monotonic()
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                ok, image = self._cap.read()
                self.decode_seconds += time.perf_counter() - t0
                if not ok or image is None:
                    if self.kind != "video":
                        self.error = "the stream stopped delivering frames"
                        break
                    # FFmpeg steps over a frame it cannot decode (the next read goes on), while at the
                    # end of the data every read fails: so a failure is retried, a run of them is the end.
                    failures += 1
                    if failures < MAX_CONSECUTIVE_FAILURES:
                        continue
                    if self.frame_count and index + self.skipped < self.frame_count:
                        self.error = (f"the file ends after {index + self.skipped} of the {self.frame_count} frames "
                                      "its header announces (truncated?)")
                    break
                if failures:
                    self.skipped += failures
                    log.warning("%s: %d frame(s) before frame %d could not be decoded: skipped", self.name,
                                failures, index)
                failures = 0
                if self.kind == "video":
                    msec = self._cap.get(cv2.CAP_PROP_POS_MSEC)
                    t = msec / 1000.0 if np.isfinite(msec) and msec > 0 else index / self.fps
                else:
                    t = time.monotonic() - start
                self._put(Frame(index, float(t), image))
                index += 1
        except cv2.error as e:  # a decoder crash mid-stream ends the source, it does not kill the caller
            self.error = f"decoder error: {e}".splitlines()[0]
        finally:
            self._put(None, force=True)

    def _put(self, item, force: bool = False) -> None:
        while True:
            if self._stop.is_set() and not force:
                return
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():  # the consumer is gone: drop the frame, make room for the end marker
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        pass

    def close(self) -> None:
        """Stop the reader thread and release the capture (safe to call twice)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._cap.release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _url_stem(url: str) -> str:
    tail = url.split("://", 1)[1].split("?", 1)[0].rstrip("/")
    stem = Path(tail.rsplit("/", 1)[-1]).stem or "stream"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)


def _images_in(folder: Path) -> list[Path]:
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return images


def open_sources(specs: Sequence[str | int | Path], prefetch: int = 8) -> list[ImageSource | VideoSource]:
    """What the user named, as sources: all still images together as one `ImageSource` (first),
    then one `VideoSource` per video file, camera or URL, in the order given.

    A spec is an image file, a folder (its images), a shell glob (`"*.jpg"`, expanded here when the
    shell did not), a video file, a camera index (`0`, `"1"`) or a URL (`rtsp://`, `http://`, ...).

    Raises:
        FileNotFoundError: a path, folder or glob that names nothing.
        ValueError: a video/camera/URL that does not open.
    """
    if isinstance(specs, (str, int, Path)):
        specs = [specs]
    if not specs:
        raise ValueError("no input given")
    images: list[Path] = []
    videos: list[VideoSource] = []
    try:
        for spec in specs:
            if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit() and not Path(spec).exists()):
                videos.append(VideoSource(int(spec), prefetch))
                continue
            s = str(spec)
            if URL_RE.match(s):
                videos.append(VideoSource(s, prefetch))
                continue
            path = Path(s)
            if path.is_dir():
                images += _images_in(path)
            elif path.is_file():
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    images.append(path)
                else:  # anything else that exists is tried as a video; OpenCV says whether it is one
                    videos.append(VideoSource(path, prefetch))
            elif glob.has_magic(s):
                matches = sorted(Path(m) for m in glob.glob(s))
                if not matches:
                    raise FileNotFoundError(f"no file matches {s}")
                for m in matches:
                    if m.suffix.lower() in IMAGE_SUFFIXES:
                        images.append(m)
                    elif m.is_file():
                        videos.append(VideoSource(m, prefetch))
            else:
                raise FileNotFoundError(f"input not found: {s}")
    except BaseException:
        for v in videos:
            v.close()
        raise
    return ([ImageSource(images)] if images else []) + videos
