"""Batched pose augmentations (skelops.data.pose2d) against per-clip numpy re-implementations of
pyskl's pipelines (kennymckormick/pyskl, pyskl/datasets/pipelines/{sampling,augmentations}.py).

The references below are written from pyskl's semantics, one clip at a time in numpy. Where pyskl
draws from numpy's global random state, a reference takes the uniforms the batched function
documents that it draws (replayed from a generator with the same seed), so both compute the same
sample of the same distribution.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import skelops
from skelops.data import (
    HeatmapPipeline,
    flip_channels,
    gather_frames,
    horizontal_flip,
    pose_compact,
    random_resized_crop,
    resize_keypoints,
    uniform_sample_frames,
)
from skelops.graphs import COCO_LIMBS_POSEC3D
from skelops.ops import available_backends

# These tests check the augmentations; the renderer's backends have tests of their own. Use the
# compiled CPU kernel where there is one and the reference otherwise, never the (slow) Triton
# interpreter that conftest switches on for CPU-only machines.
RENDER = (
    "cpu" if "cpu" in available_backends("render_heatmaps", torch.device("cpu")) else "reference"
)

# ---------------------------------------------------------------------------------------------
# numpy references, one clip at a time


def ref_uniform_sample(length, clip_len, num_clips, train, p_interval, u):
    """pyskl UniformSampleFrames._get_{train,test}_clips + the final ``mod``; ``u`` is the
    [num_clips, clip_len + 4] row of uniforms standing in for numpy's random calls."""
    low, high = p_interval
    out = []
    for k in range(num_clips):
        ratio = u[k, 0] * (high - low) + low
        frames = max(int(ratio * length), 1)
        off = int(u[k, 1] * (length - frames + 1))
        if frames < clip_len:
            if train:
                start = int(u[k, 2] * frames)
            else:
                start = k if frames < num_clips else k * frames // num_clips
            inds = np.arange(start, start + clip_len)
        elif frames < 2 * clip_len:
            # np.random.choice(clip_len + 1, frames - clip_len, replace=False): the positions of
            # the smallest keys are a uniformly random subset of that size.
            chosen = np.argsort(u[k, 3 : 3 + clip_len + 1], kind="stable")[: frames - clip_len]
            gaps = np.zeros(clip_len + 1, dtype=np.int64)
            gaps[chosen] = 1
            inds = np.arange(clip_len) + np.cumsum(gaps)[:-1]
        else:
            bounds = np.array([i * frames // clip_len for i in range(clip_len + 1)])
            sizes = np.diff(bounds)
            inds = bounds[:-1] + (u[k, 3 : 3 + clip_len] * sizes).astype(np.int64)
        out.append(inds + off)
    return np.mod(np.concatenate(out), length)


def ref_pose_compact(kp, img_shape, padding, threshold, hw_ratio, allow_imgpad):
    """pyskl PoseCompact on one clip's keypoints [T, M, V, 2] (box arithmetic in float64)."""
    kp = kp.copy()
    h, w = img_shape
    kp[np.isnan(kp)] = 0.0
    kx, ky = kp[..., 0], kp[..., 1]
    min_x = float(np.min(kx[kx != 0], initial=np.inf))
    min_y = float(np.min(ky[ky != 0], initial=np.inf))
    max_x = float(np.max(kx[kx != 0], initial=-np.inf))
    max_y = float(np.max(ky[ky != 0], initial=-np.inf))
    if max_x - min_x < threshold or max_y - min_y < threshold:
        return kp, (h, w)
    cx, cy = (max_x + min_x) / 2, (max_y + min_y) / 2
    half_w = (max_x - min_x) / 2 * (1 + padding)
    half_h = (max_y - min_y) / 2 * (1 + padding)
    if hw_ratio is not None:
        half_h = max(hw_ratio[0] * half_w, half_h)
        half_w = max(1 / hw_ratio[1] * half_h, half_w)
    min_x, max_x = cx - half_w, cx + half_w
    min_y, max_y = cy - half_h, cy + half_h
    if allow_imgpad:
        min_x, min_y, max_x, max_y = int(min_x), int(min_y), int(max_x), int(max_y)
    else:
        min_x, min_y = int(max(0, min_x)), int(max(0, min_y))
        max_x, max_y = int(min(w, max_x)), int(min(h, max_y))
    kx[kx != 0] -= min_x
    ky[ky != 0] -= min_y
    return kp, (max_y - min_y, max_x - min_x)


def ref_resize(kp, img_shape, scale, keep_ratio):
    """pyskl Resize (mmcv.rescale_size) on one clip; ``scale`` as skelops takes it."""
    h, w = img_shape
    if keep_ratio:
        if isinstance(scale, tuple):
            big, small = max(scale), min(scale)
            if small == -1:
                big, small = np.inf, big
            factor = min(big / max(h, w), small / min(h, w))
        else:
            factor = scale
        new_w, new_h = int(w * factor + 0.5), int(h * factor + 0.5)
    else:
        new_h, new_w = scale
    return kp * np.array([new_w / w, new_h / h]), (new_h, new_w)


def ref_random_resized_crop(kp, img_shape, area_range, ratio_range, u, attempts=10):
    """pyskl RandomResizedCrop.get_crop_bbox + the keypoint shift on one clip."""
    h, w = img_shape
    log_lo, log_hi = np.log(ratio_range[0]), np.log(ratio_range[1])
    aspect = np.exp(log_lo + (log_hi - log_lo) * u[:attempts])
    areas = (area_range[0] + (area_range[1] - area_range[0]) * u[attempts : 2 * attempts]) * (h * w)
    cand_w = np.round(np.sqrt(areas * aspect)).astype(int)
    cand_h = np.round(np.sqrt(areas / aspect)).astype(int)
    for cw, ch in zip(cand_w, cand_h, strict=True):
        if ch <= h and cw <= w:
            left = int(u[2 * attempts] * (w - cw + 1))  # random.randint(0, w - cw)
            top = int(u[2 * attempts + 1] * (h - ch + 1))
            box = (left, top, left + cw, top + ch)
            break
    else:
        side = min(h, w)
        left, top = (w - side) // 2, (h - side) // 2
        box = (left, top, left + side, top + side)
    return kp - np.array(box[:2]), (box[3] - box[1], box[2] - box[0]), box


def ref_flip(kp, scores, width, left_kp, right_kp):
    """pyskl Flip._flip_kps on one clip."""
    kp = kp.copy()
    kx = kp[..., 0]
    kx[kx != 0] = width - kx[kx != 0]
    order = list(range(kp.shape[2]))
    for left, right in zip(left_kp, right_kp, strict=True):
        order[left], order[right] = right, left
    return kp[:, :, order], scores[:, :, order]


COCO_LEFT = [1, 3, 5, 7, 9, 11, 13, 15]  # pyskl configs' left_kp / right_kp
COCO_RIGHT = [2, 4, 6, 8, 10, 12, 14, 16]


def random_pose(n, t, m, v, seed, extent=(1080, 1920), missing=0.15):
    """Keypoints inside ``extent`` (h, w) with some missing ones at (0, 0), score 0."""
    g = torch.Generator().manual_seed(seed)
    h, w = extent
    corner = torch.rand(n, 1, 1, 1, 2, generator=g) * torch.tensor([w / 2, h / 2])
    span = (0.2 + 0.3 * torch.rand(n, 1, 1, 1, 2, generator=g)) * torch.tensor([w, h])
    kp = corner + span * torch.rand(n, t, m, v, 2, generator=g)
    scores = 0.2 + 0.8 * torch.rand(n, t, m, v, generator=g)
    gone = torch.rand(n, t, m, v, generator=g) < missing
    return kp.masked_fill(gone[..., None], 0.0), scores.masked_fill(gone, 0.0)


# ---------------------------------------------------------------------------------------------
# uniform_sample_frames


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("p_interval", [(1.0, 1.0), (0.5, 1.0)])
def test_uniform_sample_frames_matches_pyskl(train, p_interval):
    clip_len, num_clips = 12, 3
    # Lengths covering the three regimes: < clip_len, [clip_len, 2 clip_len), >= 2 clip_len.
    lengths = torch.tensor([1, 2, 5, 11, 12, 13, 20, 23, 24, 25, 40, 100, 301])
    got = uniform_sample_frames(
        lengths,
        clip_len,
        num_clips,
        train=train,
        p_interval=p_interval,
        generator=torch.Generator().manual_seed(7),
    )
    assert got.shape == (len(lengths), num_clips, clip_len) and got.dtype == torch.int64
    if train:
        u = torch.rand(
            (len(lengths), num_clips, clip_len + 4),
            dtype=torch.float64,
            generator=torch.Generator().manual_seed(7),
        )
    else:
        u = torch.rand(
            (1, num_clips, clip_len + 4),
            dtype=torch.float64,
            generator=torch.Generator().manual_seed(255),
        )
        u = u.expand(len(lengths), -1, -1)
    for n, length in enumerate(lengths.tolist()):
        want = ref_uniform_sample(length, clip_len, num_clips, train, p_interval, u[n].numpy())
        np.testing.assert_array_equal(got[n].reshape(-1).numpy(), want, err_msg=f"L={length}")


def test_uniform_sample_frames_properties_and_determinism():
    lengths = torch.tensor([7, 30, 48, 60, 95, 96, 200, 1000])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = uniform_sample_frames(lengths, 48, 2, generator=g1)
    b = uniform_sample_frames(lengths, 48, 2, generator=g2)
    assert torch.equal(a, b)
    c = uniform_sample_frames(lengths, 48, 2, generator=g1)  # the stream moved on
    assert not torch.equal(a, c)
    assert bool((a >= 0).all()) and bool((a < lengths[:, None, None]).all())
    # Long clips (p_interval = 1): strictly increasing, one index per segment.
    for n in (6, 7):
        frames = lengths[n].item()
        bounds = torch.arange(49) * frames // 48
        for k in range(2):
            assert bool((a[n, k] >= bounds[:-1]).all()) and bool((a[n, k] < bounds[1:]).all())
    # Medium clips: increasing, steps of 1 or 2, covering F frames.
    assert bool((a[3].diff(dim=-1) >= 1).all()) and bool((a[3].diff(dim=-1) <= 2).all())
    # Test mode depends on the length only.
    t = uniform_sample_frames(torch.tensor([60, 60, 90]), 48, 2, train=False)
    assert torch.equal(t[0], t[1])
    assert torch.equal(t, uniform_sample_frames(torch.tensor([60, 60, 90]), 48, 2, train=False))


def test_gather_frames():
    values = torch.arange(2 * 9 * 3, dtype=torch.float32).reshape(2, 9, 3)
    indices = torch.tensor([[[0, 8], [4, 4]], [[1, 2], [3, 5]]])
    got = gather_frames(values, indices)
    assert got.shape == (2, 4, 3)
    for n in range(2):
        assert torch.equal(got[n], values[n, indices[n].reshape(-1)])
    with pytest.raises(ValueError, match="indices"):
        gather_frames(values, torch.tensor([[[9]], [[0]]]))


# ---------------------------------------------------------------------------------------------
# geometric transforms


@pytest.mark.parametrize(
    ("hw_ratio", "allow_imgpad"), [(1.0, True), (None, True), ((0.8, 1.25), False), (1.0, False)]
)
def test_pose_compact_matches_pyskl(hw_ratio, allow_imgpad):
    kp, _ = random_pose(6, 5, 2, 17, seed=1)
    kp[1] = 0.0  # no keypoint at all: unchanged
    kp[2] = torch.where(kp[2] != 0, 100.0 + 5 * torch.rand(kp[2].shape), kp[2])  # < threshold
    kp[3, 0, 0, 0, 0] = float("nan")
    kp[4, :, :, 3, 0] = 0.0  # x missing, y present: each axis on its own
    shapes = torch.tensor(
        [[1080, 1920], [480, 640], [1080, 1920], [720, 1280], [300, 300], [1080, 1920]]
    )
    got, new_shape = pose_compact(kp, shapes, hw_ratio=hw_ratio, allow_imgpad=allow_imgpad)
    ratio = None if hw_ratio is None else (hw_ratio if isinstance(hw_ratio, tuple) else (1, 1))
    for n in range(6):
        want, want_shape = ref_pose_compact(
            kp[n].numpy(), tuple(shapes[n].tolist()), 0.25, 10, ratio, allow_imgpad
        )
        assert tuple(new_shape[n].tolist()) == want_shape, n
        np.testing.assert_allclose(got[n].numpy(), want, rtol=0, atol=1e-3)
    assert torch.equal(got[1], kp[1]) and torch.equal(new_shape[1], shapes[1])
    assert not torch.isnan(got).any()


@pytest.mark.parametrize(
    ("scale", "keep_ratio"),
    [
        ((-1, 64), True),
        ((64, 64), False),
        ((56, 40), False),
        ((100, 50), True),
        (0.37, True),
    ],
)
def test_resize_matches_pyskl(scale, keep_ratio):
    kp, _ = random_pose(4, 3, 1, 17, seed=2)
    shapes = torch.tensor([[1080, 1920], [617, 618], [33, 71], [64, 64]])
    got, new_shape = resize_keypoints(kp, shapes, scale, keep_ratio=keep_ratio)
    for n in range(4):
        want, want_shape = ref_resize(
            kp[n].double().numpy(), tuple(shapes[n].tolist()), scale, keep_ratio
        )
        assert tuple(new_shape[n].tolist()) == want_shape
        np.testing.assert_allclose(got[n].numpy(), want, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("area_range", [(0.56, 1.0), (0.08, 1.0), (1.0, 1.0)])
def test_random_resized_crop_matches_pyskl(area_range):
    n = 12
    kp, _ = random_pose(n, 2, 1, 17, seed=3, extent=(64, 64))
    # Square, wide, tall and too elongated (no candidate fits: centred-square fallback).
    shapes = torch.tensor([[64, 64], [64, 85], [91, 64], [10, 200], [64, 64], [57, 64]] * 2)
    got, new_shape, boxes = random_resized_crop(
        kp, shapes, area_range=area_range, generator=torch.Generator().manual_seed(11)
    )
    u = torch.rand((n, 22), dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    for i in range(n):
        want, want_shape, want_box = ref_random_resized_crop(
            kp[i].double().numpy(),
            tuple(shapes[i].tolist()),
            area_range,
            (3 / 4, 4 / 3),
            u[i].numpy(),
        )
        assert tuple(boxes[i].tolist()) == want_box, i
        assert tuple(new_shape[i].tolist()) == want_shape
        np.testing.assert_allclose(got[i].numpy(), want, rtol=0, atol=1e-4)
    box_w, box_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert bool((boxes[:, :2] >= 0).all()) and bool((box_w <= shapes[:, 1]).all())
    assert bool((box_h <= shapes[:, 0]).all())
    assert tuple(boxes[3].tolist()) == (95, 0, 105, 10)  # the fallback


def test_flip_matches_pyskl_and_swaps_coco_sides():
    kp, scores = random_pose(6, 3, 2, 17, seed=4, extent=(56, 56))
    shapes = torch.tensor([[56, 56], [56, 60], [40, 56], [56, 56], [56, 56], [10, 20]])
    got, got_scores, flipped = horizontal_flip(
        kp, shapes, scores, layout="coco", generator=torch.Generator().manual_seed(5)
    )
    u = torch.rand((6,), dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    assert torch.equal(flipped, u < 0.5) and 0 < int(flipped.sum()) < 6
    for n in range(6):
        if flipped[n]:
            want, want_scores = ref_flip(
                kp[n].numpy(), scores[n].numpy(), shapes[n, 1].item(), COCO_LEFT, COCO_RIGHT
            )
        else:
            want, want_scores = kp[n].numpy(), scores[n].numpy()
        np.testing.assert_allclose(got[n].numpy(), want, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(got_scores[n].numpy(), want_scores)
    # Left eye (1) lands on the right eye's slot (2), mirrored: x -> W - x.
    n = int(flipped.nonzero()[0])
    present = kp[n, :, :, 1, 0] != 0
    width = shapes[n, 1].item()
    assert torch.allclose(got[n, :, :, 2, 0][present], width - kp[n, :, :, 1, 0][present])
    assert torch.equal(got[n, :, :, 2, 1], kp[n, :, :, 1, 1])
    assert torch.equal(got_scores[n, :, :, 2], scores[n, :, :, 1])
    # Flipping twice is the identity (keypoints well inside the image).
    again, again_scores, _ = horizontal_flip(got, shapes, got_scores, flip=flipped)
    torch.testing.assert_close(again, kp, rtol=0, atol=1e-5)
    assert torch.equal(again_scores, scores)


def test_flip_channels_match_pyskl_limb_config():
    assert flip_channels("coco") == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    perm = flip_channels("coco", "limb", COCO_LIMBS_POSEC3D)
    # left_limb / right_limb of pyskl's configs/posec3d/*/limb.py.
    left, right = [0, 2, 3, 6, 7, 8, 12, 14], [1, 4, 5, 9, 10, 11, 13, 15]
    want = list(range(17))
    for a, b in zip(left, right, strict=True):
        want[a], want[b] = b, a
    assert perm == want


# ---------------------------------------------------------------------------------------------
# the pipeline


def heatmap_peaks(volume):
    """(x, y) of the brightest pixel of every [..., H, W] map."""
    flat = volume.flatten(-2).argmax(-1)
    return torch.stack([flat % volume.shape[-1], flat // volume.shape[-1]], dim=-1)


def test_val_pipeline_shapes_and_peaks():
    n, t, v = 3, 30, 17
    kp, scores = random_pose(n, t, 1, v, seed=6, missing=0.0)
    lengths = torch.tensor([30, 17, 5])
    pipe = HeatmapPipeline("val", clip_len=8, backend=RENDER)
    out = pipe(kp, scores, lengths, (1080, 1920))
    assert out.shape == (n, v, 8, 64, 64) and out.dtype == torch.float32
    # The same chain by hand: the keypoints the heatmaps should peak at.
    idx = uniform_sample_frames(lengths, 8, 1, train=False)
    moved, shape = pose_compact(gather_frames(kp, idx), (1080, 1920))
    moved, _ = resize_keypoints(moved, shape, (64, 64), keep_ratio=False)
    peaks = heatmap_peaks(out.permute(0, 2, 1, 3, 4))  # [N, T, V, 2]
    want = moved[:, :, 0].round().long()
    inside = ((want >= 0) & (want < 64)).all(-1)
    assert inside.float().mean() > 0.9
    assert torch.equal(peaks[inside], want[inside])


def train_chain(kp, scores, lengths, shapes, seed, clip_len):
    """The train pipeline's keypoints and scores by hand, drawing in the pipeline's order."""
    g = torch.Generator().manual_seed(seed)
    idx = uniform_sample_frames(lengths, clip_len, 1, generator=g)
    k, s = gather_frames(kp, idx), gather_frames(scores, idx)
    k, shape = pose_compact(k, shapes)
    k, shape = resize_keypoints(k, shape, (-1, 64))
    k, shape, _ = random_resized_crop(k, shape, area_range=(0.56, 1.0), generator=g)
    k, shape = resize_keypoints(k, shape, (56, 56), keep_ratio=False)
    k, s, _ = horizontal_flip(k, shape, s, generator=g)
    return k, s


def test_train_pipeline_is_the_chain_of_the_functions():
    n, t, v = 4, 40, 17
    kp, scores = random_pose(n, t, 2, v, seed=8)
    lengths = torch.tensor([40, 33, 12, 1])
    shapes = torch.tensor([[1080, 1920], [480, 640], [1080, 1920], [720, 1280]])
    pipe = HeatmapPipeline("train", clip_len=6, backend=RENDER)
    out = pipe(kp, scores, lengths, shapes, torch.Generator().manual_seed(21))
    assert out.shape == (n, v, 6, 56, 56) and out.dtype == torch.float32
    again = pipe(kp, scores, lengths, shapes, torch.Generator().manual_seed(21))
    assert torch.equal(out, again)
    other = pipe(kp, scores, lengths, shapes, torch.Generator().manual_seed(22))
    assert not torch.equal(out, other)

    k, s = train_chain(kp, scores, lengths, shapes, 21, 6)
    torch.testing.assert_close(out, skelops.render_heatmaps(k, s, size=(56, 56), backend=RENDER))
    # With one person, each channel peaks where its transformed keypoint went.
    kp, scores = kp[:, :, :1], scores[:, :, :1]
    lone = pipe(kp, scores, lengths, shapes, torch.Generator().manual_seed(21))
    k, s = train_chain(kp, scores, lengths, shapes, 21, 6)
    peaks = heatmap_peaks(lone.permute(0, 2, 1, 3, 4))  # [N, T, V, 2]
    target = k[:, :, 0].round().long()
    visible = ((target >= 0) & (target < 56)).all(-1) & (s[:, :, 0] > 0.05)
    assert visible.float().mean() > 0.5
    assert torch.equal(peaks[visible], target[visible])


def test_missing_keypoints_stay_harmless():
    kp, scores = random_pose(2, 10, 1, 17, seed=9, missing=0.0)
    kp[:, :, :, 4] = 0.0
    scores[:, :, :, 4] = 0.0
    for split in ("train", "val"):
        out = HeatmapPipeline(split, clip_len=5, backend=RENDER)(
            kp, scores, None, (1080, 1920), torch.Generator().manual_seed(0)
        )
        # Channel 4 (right ear) after a possible flip sits in 3 or 4: one of them is all zero.
        assert bool(
            (out[:, 3].amax((1, 2, 3)) == 0).logical_or(out[:, 4].amax((1, 2, 3)) == 0).all()
        )


@pytest.mark.parametrize("mode", ["keypoint", "limb"])
def test_test_pipeline_views_and_double(mode):
    kp, scores = random_pose(2, 20, 1, 17, seed=10, missing=0.0)
    pipe = HeatmapPipeline("test", clip_len=4, num_clips=3, mode=mode, backend=RENDER)
    out = pipe(kp, scores, torch.tensor([20, 9]), (1080, 1920))
    channels = 17
    assert out.shape == (2, 6, channels, 4, 64, 64)
    perm = flip_channels("coco", mode, COCO_LIMBS_POSEC3D)
    torch.testing.assert_close(out[:, 3:], out[:, :3].flip(-1)[:, :, perm])
    single = HeatmapPipeline(
        "val", clip_len=4, num_clips=3, mode=mode, double=False, backend=RENDER
    )
    torch.testing.assert_close(single(kp, scores, torch.tensor([20, 9]), (1080, 1920)), out[:, :3])


def test_limb_pipeline_uses_pyskl_limbs():
    pipe = HeatmapPipeline("val", clip_len=4, mode="limb", backend=RENDER)
    assert pipe.limbs == COCO_LIMBS_POSEC3D
    kp, scores = random_pose(1, 8, 1, 17, seed=12, missing=0.0)
    out = pipe(kp, scores, None, (1080, 1920))
    assert out.shape == (1, len(COCO_LIMBS_POSEC3D), 4, 64, 64)


# ---------------------------------------------------------------------------------------------
# bad inputs


def test_bad_inputs_name_the_argument():
    kp, scores = random_pose(2, 4, 1, 17, seed=13)
    with pytest.raises(ValueError, match="keypoints"):
        pose_compact(kp[0], (100, 100))
    with pytest.raises(TypeError, match="keypoints"):
        resize_keypoints(kp.long(), (100, 100), (64, 64), keep_ratio=False)
    with pytest.raises(ValueError, match="clip_len"):
        uniform_sample_frames(torch.tensor([10]), 0)
    with pytest.raises(TypeError, match="clip_len"):
        uniform_sample_frames(torch.tensor([10]), 4.0)
    with pytest.raises(ValueError, match="lengths"):
        uniform_sample_frames(torch.tensor([[10]]), 4)
    with pytest.raises(ValueError, match="lengths"):
        uniform_sample_frames(torch.tensor([0, 3]), 4)
    with pytest.raises(TypeError, match="lengths"):
        uniform_sample_frames(torch.tensor([3.0]), 4)
    with pytest.raises(ValueError, match="p_interval"):
        uniform_sample_frames(torch.tensor([3]), 4, p_interval=(0.0, 1.0))
    for bad in [(0.0, 1.0), (0.9, 0.5), (0.5, 1.5)]:
        with pytest.raises(ValueError, match="area_range"):
            random_resized_crop(kp, (64, 64), area_range=bad)
    with pytest.raises(ValueError, match="aspect_ratio_range"):
        random_resized_crop(kp, (64, 64), aspect_ratio_range=(4 / 3, 3 / 4))
    with pytest.raises(ValueError, match="image_shape"):
        pose_compact(kp, torch.tensor([[100, 100, 3]]))
    with pytest.raises(ValueError, match="image_shape"):
        pose_compact(kp, (0, 100))
    with pytest.raises(ValueError, match="scores"):
        horizontal_flip(kp, (64, 64), scores[:, :2])
    with pytest.raises(ValueError, match="flip_ratio"):
        horizontal_flip(kp, (64, 64), flip_ratio=1.5)
    with pytest.raises(ValueError, match="layout"):
        horizontal_flip(kp[..., :5, :], (64, 64), layout="coco")
    with pytest.raises(ValueError, match="scale"):
        resize_keypoints(kp, (64, 64), (0, 64), keep_ratio=False)
    with pytest.raises(ValueError, match="split"):
        HeatmapPipeline("training")
    with pytest.raises(ValueError, match="clip_len"):
        HeatmapPipeline("train", clip_len=-3, backend=RENDER)
    with pytest.raises(ValueError, match="mode"):
        HeatmapPipeline("train", mode="bones", backend=RENDER)
    with pytest.raises(ValueError, match="lengths"):
        HeatmapPipeline("val", clip_len=2, backend=RENDER)(
            kp, scores, torch.tensor([4, 5]), (64, 64)
        )


# ---------------------------------------------------------------------------------------------
# CUDA: the same results from a CPU generator


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pipeline_on_cuda_matches_cpu():
    kp, scores = random_pose(3, 24, 2, 17, seed=14)
    lengths = torch.tensor([24, 10, 3])
    shapes = torch.tensor([[1080, 1920], [480, 640], [720, 1280]])
    cpu = HeatmapPipeline("train", clip_len=8, backend=RENDER)(
        kp, scores, lengths, shapes, torch.Generator().manual_seed(1)
    )
    on_gpu = [kp.cuda(), scores.cuda(), lengths.cuda(), shapes.cuda()]
    gpu = HeatmapPipeline("train", clip_len=8)(*on_gpu, torch.Generator().manual_seed(1))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)
    idx = uniform_sample_frames(lengths.cuda(), 8, 2, generator=torch.Generator("cuda"))
    assert idx.device.type == "cuda" and bool((idx < lengths.cuda()[:, None, None]).all())
