"""The reference decode: sub-pixel accuracy, official edge cases, flip test."""

import numpy as np
import pytest

from vitpose_trt.decode import merge_flip, postprocess

H, W = 64, 48


def gaussian_heatmaps(centers: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """(N, K, 2) sub-pixel peak positions (heatmap px) -> (N, K, H, W) float32, as UDP training targets."""
    ys, xs = np.mgrid[0:H, 0:W]
    dx = xs[None, None] - centers[..., 0, None, None]
    dy = ys[None, None] - centers[..., 1, None, None]
    return np.exp(-(dx**2 + dy**2) / (2 * sigma**2)).astype(np.float32)


def identity_transforms(n: int, mode: str) -> np.ndarray:
    """Transforms for which frame coordinates equal heatmap coordinates."""
    if mode == "udp":  # x = px * w / (W - 1) + cx - w / 2
        row = [(W - 1) / 2, (H - 1) / 2, W - 1, H - 1]
    else:  # x = px * w / W + cx - w / 2
        row = [W / 2, H / 2, W, H]
    return np.tile(np.array(row, np.float32), (n, 1))


def test_udp_recovers_subpixel_peaks():
    # Peaks at least 6 px from the border: closer, the official reflect-101 blur biases DARK (by design).
    rng = np.random.default_rng(0)
    centers = np.stack([rng.uniform(6, W - 7, (4, 17)), rng.uniform(6, H - 7, (4, 17))], -1)
    kp = postprocess(gaussian_heatmaps(centers), identity_transforms(4, "udp"), "udp")
    assert np.abs(kp[..., :2] - centers).max() < 0.05  # heatmap pixels
    np.testing.assert_allclose(kp[..., 2], gaussian_heatmaps(centers).reshape(4, 17, -1).max(-1))


def test_classic_is_within_the_quarter_pixel_step():
    rng = np.random.default_rng(1)
    centers = np.stack([rng.uniform(2, W - 3, (3, 17)), rng.uniform(2, H - 3, (3, 17))], -1)
    kp = postprocess(gaussian_heatmaps(centers), identity_transforms(3, "classic"), "classic")
    assert np.abs(kp[..., :2] - centers).max() <= 0.25 + 1e-6
    # locations are integers +/- 0.25 before the transform
    frac = np.abs(kp[..., :2] - np.round(kp[..., :2] * 4) / 4)
    assert frac.max() < 1e-4


def test_classic_shift_skipped_at_the_border():
    hm = np.zeros((1, 1, H, W), np.float32)
    hm[0, 0, 1, 1] = 1.0
    hm[0, 0, 1, 2] = 0.5  # larger right neighbour, but x = 1 is not 1 < x
    kp = postprocess(hm, identity_transforms(1, "classic"), "classic")
    np.testing.assert_allclose(kp[0, 0], [1, 1, 1])


def test_nonpositive_maximum_gives_official_minus_one():
    hm = np.full((1, 2, H, W), -1.0, np.float32)
    hm[0, 1, 10, 10] = -0.5
    for mode in ("udp", "classic"):
        kp = postprocess(hm, identity_transforms(1, mode), mode)
        np.testing.assert_allclose(kp[0, :, :2], -1.0)  # heatmap (-1, -1) through the identity transform
        np.testing.assert_allclose(kp[0, :, 2], [-1.0, -0.5])


def test_nan_gives_nan_score_for_that_keypoint_only():
    rng = np.random.default_rng(3)
    hm = rng.random((1, 3, H, W)).astype(np.float32)
    hm[0, 1, 5, 7] = np.nan
    kp = postprocess(hm, identity_transforms(1, "udp"), "udp")
    assert np.isnan(kp[0, 1, 2]) and np.isfinite(kp[0, [0, 2]]).all()


def test_ties_pick_the_lowest_index():
    hm = np.zeros((1, 1, H, W), np.float32)
    hm[0, 0, 20, 30] = hm[0, 0, 10, 40] = hm[0, 0, 30, 5] = 1.0
    kp = postprocess(hm, identity_transforms(1, "classic"), "classic")
    np.testing.assert_allclose(kp[0, 0, :2], [40, 10])  # row-major first: (y=10, x=40)


def test_float16_heatmaps():
    rng = np.random.default_rng(4)
    centers = np.stack([rng.uniform(8, W - 9, (2, 17)), rng.uniform(8, H - 9, (2, 17))], -1)
    hm = gaussian_heatmaps(centers)
    t = identity_transforms(2, "udp")
    np.testing.assert_allclose(postprocess(hm.astype(np.float16), t), postprocess(hm, t), atol=2e-2)


@pytest.mark.parametrize("mode", ["udp", "classic"])
def test_flip_merge_of_a_mirrored_prediction(mode):
    rng = np.random.default_rng(5)
    hm = rng.random((2, 17, H, W)).astype(np.float32)
    # what the model would output on the mirrored crop if it were perfectly equivariant
    from vitpose_trt.datasets import flip_index

    mirrored = hm[:, flip_index(17), :, ::-1].copy()
    merged = merge_flip(hm, mirrored, mode)
    if mode == "udp":
        np.testing.assert_array_equal(merged, hm)
    else:  # classic shifts the flipped-back maps one pixel right (mmpose shift_heatmap)
        np.testing.assert_array_equal(merged[..., 1:], (hm[..., 1:] + hm[..., :-1]) * np.float32(0.5))
    t = identity_transforms(2, mode)
    np.testing.assert_array_equal(postprocess(hm, t, mode, flipped=mirrored),
                                  postprocess(merged, t, mode))


def test_flip_needs_pairs_for_non_coco():
    hm = np.ones((1, 5, H, W), np.float32)
    with pytest.raises(ValueError, match="flip_pairs"):
        postprocess(hm, identity_transforms(1, "udp"), flipped=hm)
    kp = postprocess(hm, identity_transforms(1, "udp"), flipped=hm, flip_pairs=[(1, 2)])
    assert kp.shape == (1, 5, 3)


def test_decode_input_errors():
    hm = np.zeros((2, 17, H, W), np.float32)
    with pytest.raises(ValueError, match="transforms must have shape"):
        postprocess(hm, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"\(N, K, H, W\)"):
        postprocess(hm[0], np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="float32 or float16"):
        postprocess(hm.astype(np.float64), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="unknown mode"):
        postprocess(hm, np.zeros((2, 4), np.float32), mode="megvii")
    with pytest.raises(ValueError, match="unknown impl"):
        postprocess(hm, np.zeros((2, 4), np.float32), impl="triton")
    assert postprocess(np.zeros((0, 17, H, W), np.float32), np.zeros((0, 4))).shape == (0, 17, 3)


def _official_dark_udp(hm: np.ndarray, kernel: int = 11) -> np.ndarray:
    """mmpose 0.x `post_dark_udp` re-derived keypoint by keypoint (np.linalg.inv of the Hessian + eps*I,
    derivatives read from the flattened, edge-padded log map), and `transform_preds` for udp at
    scale 1: an independent spelling of the official formula, not our vectorized one."""
    import cv2

    k, h, w = hm.shape
    out = np.zeros((k, 2))
    for j in range(k):
        m = hm[j]
        y, x = np.unravel_index(int(np.argmax(m)), m.shape)
        b = cv2.GaussianBlur(m, (kernel, kernel), 0)
        b = np.log(np.clip(b, 0.001, 50))
        p = np.pad(b, ((1, 1), (1, 1)), mode="edge").flatten()
        i = (y + 1) * (w + 2) + (x + 1)
        i_x1, i_x_1 = i + 1, i - 1
        i_y1, i_y_1 = i + w + 2, i - w - 2
        dx = 0.5 * (p[i_x1] - p[i_x_1])
        dy = 0.5 * (p[i_y1] - p[i_y_1])
        dxx = p[i_x1] - 2 * p[i] + p[i_x_1]
        dyy = p[i_y1] - 2 * p[i] + p[i_y_1]
        dxy = 0.5 * (p[i_x1 + w + 2] - p[i_x1] - p[i_y1] + p[i] + p[i] - p[i_x_1] - p[i_y_1] + p[i_x_1 - w - 2])
        hess = np.array([[dxx, dxy], [dxy, dyy]]) + np.finfo(np.float32).eps * np.eye(2)
        out[j] = np.array([x, y]) - np.linalg.inv(hess) @ np.array([dx, dy])
    return out


def test_udp_decode_is_the_official_dark_udp_formula_on_peaked_maps():
    """Pinned to the official DARK-UDP on trained-like maps (peaks, a rival, noise): other ports
    blur with another Gaussian and move keypoints by up to several px near the border."""
    from tests.conftest import synthetic_heatmaps

    hm = synthetic_heatmaps(6, seed=3)
    transforms = identity_transforms(6, "udp")
    got = postprocess(hm, transforms, "udp")
    peaked = hm.reshape(6, 17, -1).max(-1) > 0.05
    for i in range(6):
        want = _official_dark_udp(hm[i])
        np.testing.assert_allclose(got[i][peaked[i], :2], want[peaked[i]], atol=1e-4)


def test_the_official_formula_pin_can_fail():
    """Another blur (as some ports use) moves peaked keypoints beyond the pin's 1e-4 px."""
    from tests.conftest import synthetic_heatmaps
    from vitpose_trt.decode import dark_udp, max_preds

    hm = synthetic_heatmaps(2, seed=3)
    preds, _ = max_preds(hm)
    other = dark_udp(preds, hm, kernel=7)
    want = np.stack([_official_dark_udp(hm[i]) for i in range(2)])
    assert np.abs(other - want).max() > 1e-3
