"""Real Ultralytics detector exports for tests/test_detect_exports.py: `python tests/detector_exports.py OUT`.

Run in an environment of its own with `ultralytics` (AGPL-3.0: a test helper, never a dependency of
the package) and the torchvision it needs; `.ci/run` makes one (`.venv-exports`), because PyPI's
torchvision does not import beside CI's CPU build of torch. YOLOv8n and YOLO11n are built from
their model YAML (random weights, nothing downloaded) and exported by Ultralytics' own exporter in
the variants users have: raw output (NMS left to us), `nms=True` end to end, and a dynamic input
size. A `manifest.json` beside them says what each file is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

VARIANTS = {"raw": {}, "nms": {"nms": True}, "dynamic": {"dynamic": True}}
FAMILIES = ("yolov8n", "yolo11n")
IMGSZ = 640


def main(out: Path) -> None:
    import torch
    import ultralytics
    from ultralytics import YOLO

    out.mkdir(parents=True, exist_ok=True)
    manifest = {"ultralytics": ultralytics.__version__, "torch": torch.__version__, "files": {}}
    for family in FAMILIES:
        torch.manual_seed(0)  # the same random weights for each variant of a family
        model = YOLO(f"{family}.yaml")
        for variant, kwargs in VARIANTS.items():
            written = Path(model.export(format="onnx", imgsz=IMGSZ, **kwargs))
            target = out / f"{family}_{variant}.onnx"
            written.replace(target)
            manifest["files"][target.name] = {"family": family, "variant": variant, "imgsz": IMGSZ,
                                              "format": "xyxy_score_class" if variant == "nms" else "yolo"}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(manifest['files'])} exports to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
