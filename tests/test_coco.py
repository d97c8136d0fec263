"""COCO files: detections read with their format checked, errors naming the file and the detection."""

import json

import numpy as np
import pytest

from vitpose_trt.coco import load_detections


def test_detections_by_id_and_name_as_xyxy(tmp_path):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps({"images": [{"id": 7, "file_name": "a.jpg"}],
                                "annotations": [{"image_id": 7, "bbox": [10, 20, 30, 40], "score": 0.5},
                                                {"image_id": 7, "bbox": [0, 0, 1, 1], "category_id": 2}]}))
    found = load_detections(path)
    np.testing.assert_array_equal(found["by_id"][7], [[10, 20, 40, 60, 0.5]])  # x, y, w, h -> x1, y1, x2, y2
    np.testing.assert_array_equal(found["by_name"]["a.jpg"], found["by_id"][7])


@pytest.mark.parametrize("bbox, what", [([5, 5, -3, 10], "its width is -3.0"), ([5, 5, 3, float("nan")],
                                                                                "its height is nan")])
def test_a_box_with_a_negative_side_names_the_file_the_image_and_the_format(tmp_path, bbox, what):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 5, 5], "score": 1},
                                {"image_id": 42, "bbox": bbox, "score": 1}]))
    with pytest.raises(ValueError, match=rf"dets.json: detection 1 \(image_id 42\) has bbox \[x, y, w, h\] = .*"
                                         rf"COCO boxes are x, y, width, height, and {what}"):
        load_detections(path)
