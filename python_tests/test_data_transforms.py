"""Batched skeleton transforms (skelops.data.transforms) against per-clip references written from
the official feeders: CTR-GCN (feeders/tools.py valid_crop_resize, random_rot), pyskl
(RandomScale, PreNormalize3D, FormatGCNInput), SkateFormer (shear) and 2s-AGCN (get_nonzero_std
person selection). Where the official code draws from numpy's global state, the reference takes
the uniforms the batched function documents that it draws, replayed from a generator with the
same seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import DEVICES

from skelops.data.pose2d import uniform_sample_frames
from skelops.data.synthetic import synthetic_actions
from skelops.data.transforms import (
    SkeletonAugment,
    center,
    collate_sequences,
    mirror,
    pad_persons,
    person_energy,
    random_mirror,
    random_rotation,
    random_scale,
    random_shear,
    select_persons,
    to_stream,
    uniform_sample,
    valid_crop_resize,
    valid_lengths,
    view_normalize,
)
from skelops.graphs import Layout, bone_stream, get_layout, motion_stream

LAYOUT = get_layout("ntu_stgcn")
SIDELESS = Layout(name="sideless", joint_names=tuple("abcdefghijklmnopqrstuvwxy"), edges=((1, 0),))


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    """Six clips ``[6, 3, 24, 25, 3]`` with padding, absent persons and missing joints."""
    x, _ = synthetic_actions(6, num_frames=24, num_persons=3, missing_joints=0.1, seed=21)
    x[1] = 0  # an empty clip
    return x


def draws(shape, seed: int) -> np.ndarray:
    """The float64 uniforms a transform draws first from ``Generator().manual_seed(seed)``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator, dtype=torch.float64).numpy()


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def bone_lengths(x: torch.Tensor) -> torch.Tensor:
    child, parent = torch.tensor(LAYOUT.edges).T
    return (x[:, :, :, child] - x[:, :, :, parent]).norm(dim=1)


# ---------------------------------------------------------------------------------------------
# per-clip references


def ref_valid_crop_resize(data, valid, p_interval, window, min_length, u):
    """CTR-GCN feeders/tools.py valid_crop_resize on one [C, T, V, M] clip."""
    c, _, v, m = data.shape
    if len(p_interval) == 1:
        bias = int((1 - p_interval[0]) * valid / 2)
        crop = data[:, bias : valid - bias]
    else:
        p = u[0] * (p_interval[1] - p_interval[0]) + p_interval[0]
        length = min(max(int(np.floor(valid * p)), min_length), valid)
        bias = int(u[1] * (valid - length + 1))
        crop = data[:, bias : bias + length]
    length = crop.shape[1]
    flat = torch.as_tensor(crop).permute(0, 2, 3, 1).reshape(1, 1, c * v * m, length)
    resized = F.interpolate(flat, size=(c * v * m, window), mode="bilinear", align_corners=False)
    return resized.reshape(c, v, m, window).permute(0, 3, 1, 2)


def ref_rot3d(theta):
    """CTR-GCN's _rot (= pyskl's _rot3d): rz @ ry @ rx with their sign conventions."""
    cos, sin = np.cos(theta), np.sin(theta)
    rx = np.array([[1, 0, 0], [0, cos[0], sin[0]], [0, -sin[0], cos[0]]])
    ry = np.array([[cos[1], 0, -sin[1]], [0, 1, 0], [sin[1], 0, cos[1]]])
    rz = np.array([[cos[2], sin[2], 0], [-sin[2], cos[2], 0], [0, 0, 1]])
    return rz @ ry @ rx


def ref_pyskl_rotation_matrix(axis, theta):
    """pyskl PreNormalize3D.rotation_matrix (Euler-Rodrigues, 2s-AGCN's rotation.py)."""
    if np.abs(axis).sum() < 1e-6 or np.abs(theta) < 1e-6:
        return np.eye(3)
    axis = np.asarray(axis) / np.sqrt(np.dot(axis, axis))
    a = np.cos(theta / 2.0)
    b, c, d = -axis * np.sin(theta / 2.0)
    aa, bb, cc, dd = a * a, b * b, c * c, d * d
    bc, ad, ac, ab, bd, cd = b * c, a * d, a * c, a * b, b * d, c * d
    return np.array(
        [
            [aa + bb - cc - dd, 2 * (bc + ad), 2 * (bd - ac)],
            [2 * (bc - ad), aa + cc - bb - dd, 2 * (cd + ab)],
            [2 * (bd + ac), 2 * (cd - ab), aa + dd - bb - cc],
        ]
    )


def ref_angle_between(v1, v2):
    if np.abs(v1).sum() < 1e-6 or np.abs(v2).sum() < 1e-6:
        return 0
    v1, v2 = v1 / np.linalg.norm(v1), v2 / np.linalg.norm(v2)
    return np.arccos(np.clip(np.dot(v1, v2), -1.0, 1.0))


def ref_view_normalize(data, spine, shoulders):
    """pyskl PreNormalize3D(align_spine=True, align_center=False) on one [C, T, V, M] clip,
    the reference frame being person 0's first non-empty frame."""
    skeleton = data.transpose(3, 1, 2, 0)  # M, T, V, C
    frame = next(t for t in range(skeleton.shape[1]) if not np.all(skeleton[0, t] == 0))
    bottom, top = skeleton[0, frame, spine[0]], skeleton[0, frame, spine[1]]
    matrix_z = ref_pyskl_rotation_matrix(
        np.cross(top - bottom, [0, 0, 1]), ref_angle_between(top - bottom, [0, 0, 1])
    )
    skeleton = np.einsum("abcd,kd->abck", skeleton, matrix_z)
    right, left = skeleton[0, frame, shoulders[0]], skeleton[0, frame, shoulders[1]]
    matrix_x = ref_pyskl_rotation_matrix(
        np.cross(right - left, [1, 0, 0]), ref_angle_between(right - left, [1, 0, 0])
    )
    skeleton = np.einsum("abcd,kd->abck", skeleton, matrix_x)
    return skeleton.transpose(3, 1, 2, 0)


def ref_nonzero_std(person):
    """2s-AGCN data_gen/ntu_gendata.py get_nonzero_std on one [T, V, C] person."""
    index = person.sum(-1).sum(-1) != 0
    person = person[index]
    if len(person) == 0:
        return 0.0
    return person[:, :, 0].std() + person[:, :, 1].std() + person[:, :, 2].std()


# ---------------------------------------------------------------------------------------------
# frames


def test_valid_lengths(clips):
    lengths = valid_lengths(clips)
    assert lengths.dtype == torch.int64 and lengths[1] == 0
    for n in range(clips.shape[0]):
        frames = clips[n].abs().sum(dim=(0, 2, 3)) != 0  # CTR-GCN's count
        assert lengths[n] == frames.sum()


@pytest.mark.parametrize("p_interval", [(0.5, 1.0), (0.95,), (1.0,)])
def test_valid_crop_resize_matches_ctrgcn(clips, p_interval):
    window, min_length, seed = 20, 8, 3
    argument = p_interval if len(p_interval) == 2 else p_interval[0]
    out = valid_crop_resize(
        clips, window, argument, min_length=min_length, generator=generator(seed)
    )
    assert out.shape == (6, 3, window, 25, 3) and out.dtype == clips.dtype
    u = draws((6, 2), seed)
    lengths = valid_lengths(clips)
    for n in range(6):
        if lengths[n] == 0:
            assert (out[n] == 0).all()
            continue
        expected = ref_valid_crop_resize(
            clips[n].numpy(), int(lengths[n]), p_interval, window, min_length, u[n]
        )
        torch.testing.assert_close(out[n], expected, atol=2e-5, rtol=1e-5)  # float32 weights


def test_valid_crop_never_reads_padding_and_keeps_frames():
    x = torch.zeros(5, 2, 30, 4, 1)
    lengths = torch.tensor([30, 17, 9, 1, 24])
    for n, length in enumerate(lengths):
        x[n, :, :length] = 1 + torch.rand(2, int(length), 4, 1, generator=generator(n))
    out = valid_crop_resize(x, 12, (0.3, 1.0), min_length=2, generator=generator(0))
    assert (out >= 1).all()  # an interpolated padding frame would pull values below 1
    same = valid_crop_resize(x[:1], 30, 1.0)
    assert torch.equal(same, x[:1])
    explicit = valid_crop_resize(x, 12, 1.0, lengths=torch.tensor([30, 10, 9, 1, 20]))
    torch.testing.assert_close(explicit[1], valid_crop_resize(x[1:2, :, :10], 12, 1.0)[0])


def test_valid_crop_resize_determinism(clips):
    a = valid_crop_resize(clips, 16, (0.5, 1.0), min_length=4, generator=generator(5))
    b = valid_crop_resize(clips, 16, (0.5, 1.0), min_length=4, generator=generator(5))
    c = valid_crop_resize(clips, 16, (0.5, 1.0), min_length=4, generator=generator(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("train", [True, False])
def test_uniform_sample_uses_pyskl_indices(clips, train):
    out = uniform_sample(clips, 10, 2, train=train, generator=generator(4))
    assert out.shape == (12, 3, 10, 25, 3)
    lengths = valid_lengths(clips).clamp(min=1)
    indices = uniform_sample_frames(lengths, 10, 2, train=train, generator=generator(4))
    for n in range(6):
        for k in range(2):
            torch.testing.assert_close(out[2 * n + k], clips[n][:, indices[n, k]])
    if not train:
        assert torch.equal(out, uniform_sample(clips, 10, 2, train=False))


# ---------------------------------------------------------------------------------------------
# geometry


@pytest.mark.parametrize("device", DEVICES)
def test_random_rotation_matches_ctrgcn(clips, device):
    theta, seed = 0.3, 7
    out = random_rotation(clips.double().to(device), theta, generator=generator(seed)).cpu()
    assert out.dtype == torch.float64
    angles = theta * (2 * draws((6, 3), seed) - 1)
    for n in range(6):
        expected = np.einsum("ab,btvm->atvm", ref_rot3d(angles[n]), clips[n].double().numpy())
        torch.testing.assert_close(out[n], torch.from_numpy(expected))
    present = (clips != 0).any(dim=1)
    torch.testing.assert_close(
        bone_lengths(out)[..., :], bone_lengths(clips.double()), rtol=1e-9, atol=1e-9
    )
    assert (out.permute(1, 0, 2, 3, 4)[:, ~present] == 0).all()  # missing stays missing


def test_random_rotation_2d_and_bounds():
    x = torch.randn(4, 2, 5, 3, 2, generator=generator(0), dtype=torch.float64)
    out = random_rotation(x, 0.5, generator=generator(1))
    angles = 0.5 * (2 * draws((4,), 1) - 1)
    for n in range(4):
        cos, sin = math.cos(angles[n]), math.sin(angles[n])
        matrix = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64)
        torch.testing.assert_close(out[n], torch.einsum("ab,btvm->atvm", matrix, x[n]))
    torch.testing.assert_close(out.norm(dim=1), x.norm(dim=1))
    assert torch.equal(random_rotation(x, 0.0), x)


def test_random_scale_matches_pyskl(clips):
    out = random_scale(clips, (0.1, 0.2, 0.3), generator=generator(2))
    factors = 1 + (2 * draws((6, 3), 2) - 1) * np.array([0.1, 0.2, 0.3])
    expected = clips * torch.tensor(factors, dtype=clips.dtype)[:, :, None, None, None]
    torch.testing.assert_close(out, expected)
    assert ((out == 0) == (clips == 0)).all()


@pytest.mark.parametrize("p", [0.5, 1.0, 0.0])
def test_random_shear_matches_skateformer(clips, p):
    out = random_shear(clips.double(), 0.5, p, generator=generator(9))
    u = draws((6, 7), 9)
    for n in range(6):
        if not u[n, 0] < p:
            assert torch.equal(out[n], clips[n].double())
            continue
        s = 0.5 * (2 * u[n, 1:] - 1)  # off-diagonals, row-major
        matrix = np.array([[1, s[0], s[1]], [s[2], 1, s[3]], [s[4], s[5], 1]])
        data = clips[n].double().numpy()
        expected = np.dot(data.transpose(1, 2, 3, 0), matrix.transpose()).transpose(3, 0, 1, 2)
        torch.testing.assert_close(out[n], torch.from_numpy(expected))


def test_center_puts_joint_at_origin(clips):
    joint = 1
    out = center(clips, joint)
    for n in range(6):
        frames = (clips[n, ..., 0] != 0).any(dim=0).any(dim=1)
        if not frames.any():
            assert torch.equal(out[n], clips[n])
            continue
        first = int(frames.nonzero()[0])
        if (clips[n, :, first, joint, 0] != 0).any():
            assert (out[n, :, first, joint, 0] == 0).all()
        origin = clips[n, :, first, joint, 0]
        present = (clips[n] != 0).any(dim=0)
        torch.testing.assert_close(
            out[n][:, present], (clips[n] - origin[:, None, None, None])[:, present]
        )
        assert (out[n][:, ~present] == 0).all()


def test_mirror_reflects_x_and_swaps_sides(clips):
    out = mirror(clips, "ntu_stgcn")
    left, right = LAYOUT.flip_pairs[0]
    torch.testing.assert_close(out[:, 1:, :, left], clips[:, 1:, :, right])
    present = (clips != 0).any(dim=1)  # [N, T, V, M]
    assert torch.equal((out != 0).any(dim=1), present[:, :, list(LAYOUT.flip_permutation)])
    # x is reflected about each clip's mean x over its present joints
    n = 0
    middle = clips[n, 0][present[n]].mean()
    where = present[n, :, left]
    torch.testing.assert_close(out[n, 0, :, right][where], 2 * middle - clips[n, 0, :, left][where])
    torch.testing.assert_close(mirror(out, LAYOUT), clips, rtol=1e-5, atol=1e-5)
    assert torch.equal(out[1], clips[1])  # the empty clip


def test_random_mirror_draws_one_decision_per_clip(clips):
    out = random_mirror(clips, "ntu_stgcn", 0.5, generator=generator(4))
    chosen = draws((6,), 4) < 0.5
    assert 0 < chosen[[0, 2, 3, 4, 5]].sum() < 5  # the seed mirrors some clips, not all
    mirrored = mirror(clips, "ntu_stgcn")
    for n in range(6):
        assert torch.equal(out[n], mirrored[n] if chosen[n] else clips[n])
    assert torch.equal(random_mirror(clips, "ntu_stgcn", 0.0), clips)
    assert torch.equal(random_mirror(clips, "ntu_stgcn", 1.0), mirrored)


def test_view_normalize_matches_pyskl_and_aligns_axes():
    # Clean first frames (no missing joints), randomly turned.
    x, _ = synthetic_actions(5, num_frames=12, noise=0.0, seed=3, dtype=torch.float64)
    x = random_rotation(center(x, 1), 1.2, generator=generator(3))
    out = view_normalize(x, (0, 1), (8, 4))
    for n in range(5):
        expected = ref_view_normalize(x[n].numpy(), (0, 1), (8, 4))
        torch.testing.assert_close(out[n], torch.from_numpy(expected))
        shoulders = out[n, :, 0, 8, 0] - out[n, :, 0, 4, 0]
        assert shoulders[0] > 0 and shoulders[1:].abs().max() < 1e-9
    # With the shoulders perpendicular to the spine both axes end aligned.
    body = torch.zeros(4, 3, 2, 25, 1, dtype=torch.float64)
    body[:, :, :, 1] = torch.tensor([0.0, 0.3, 0.0], dtype=torch.float64)[:, None, None]
    body[:, :, :, 8] = torch.tensor([-0.2, 0.4, 0.0], dtype=torch.float64)[:, None, None]
    body[:, :, :, 4] = torch.tensor([0.2, 0.4, 0.0], dtype=torch.float64)[:, None, None]
    turned = random_rotation(body, math.pi, generator=generator(4))
    aligned = view_normalize(turned)
    spine = aligned[:, :, 0, 1, 0] - aligned[:, :, 0, 0, 0]
    torch.testing.assert_close(spine, torch.tensor([[0.0, 0.0, 0.3]] * 4, dtype=torch.float64))
    right_to_left = aligned[:, :, 0, 8, 0] - aligned[:, :, 0, 4, 0]
    torch.testing.assert_close(
        right_to_left, torch.tensor([[0.4, 0.0, 0.0]] * 4, dtype=torch.float64)
    )
    assert (aligned[:, :, :, 2:4] == 0).all()


# ---------------------------------------------------------------------------------------------
# persons and streams


def test_person_energy_matches_2s_agcn(clips):
    energy = person_energy(clips.double())
    for n in range(6):
        for m in range(3):
            person = clips[n, ..., m].double().permute(1, 2, 0).numpy()
            assert energy[n, m].item() == pytest.approx(ref_nonzero_std(person), abs=1e-9)


def test_select_and_pad_persons():
    x = torch.zeros(2, 3, 4, 5, 3)
    x[0, :, :, :, 0] = torch.randn(3, 4, 5, generator=generator(0)) * 0.1
    x[0, :, :, :, 1] = torch.randn(3, 4, 5, generator=generator(1)) * 2.0
    x[1, :, :, :, 2] = torch.randn(3, 4, 5, generator=generator(2))
    selected = select_persons(x, 2)
    assert torch.equal(selected[0], x[0][..., [1, 0]])
    assert torch.equal(selected[1], x[1][..., [2, 0]])  # ties (zero persons) in input order
    assert torch.equal(select_persons(x, 5)[..., 3:], torch.zeros(2, 3, 4, 5, 2))
    assert torch.equal(pad_persons(x, 2), x[..., :2])
    assert torch.equal(pad_persons(x, 4)[..., :3], x) and (pad_persons(x, 4)[..., 3] == 0).all()


def test_to_stream(clips):
    assert torch.equal(to_stream(clips, "joint"), clips)
    assert torch.equal(to_stream(clips, "bone"), bone_stream(clips, "ntu_stgcn"))
    assert torch.equal(to_stream(clips, "motion"), motion_stream(clips))
    assert torch.equal(
        to_stream(clips, "bone_motion", "ntu_pyskl"), motion_stream(bone_stream(clips, "ntu_pyskl"))
    )


def test_collate_sequences():
    x, _ = synthetic_actions(4, num_frames=30, num_persons=3, seed=5)
    lengths = valid_lengths(x).tolist()
    sequences = [x[n, :, : lengths[n], :, : 1 + n % 3] for n in range(4)]
    out = collate_sequences(sequences, 16, 2)
    assert out.shape == (4, 3, 16, 25, 2) and out.dtype == torch.float32
    for n, sequence in enumerate(sequences):
        chosen = select_persons(sequence[None], 2)
        torch.testing.assert_close(out[n : n + 1], valid_crop_resize(chosen, 16, 1.0))
    assert torch.equal(out, collate_sequences(sequences, 16, 2))  # deterministic
    arrays = collate_sequences([s.numpy() for s in sequences], 16, 2, dtype=torch.float64)
    torch.testing.assert_close(arrays, out.double())
    uniform = collate_sequences(sequences, 8, 1, temporal="uniform")
    assert uniform.shape == (4, 3, 8, 25, 1)
    assert torch.equal(uniform, collate_sequences(sequences, 8, 1, temporal="uniform"))
    noisy = collate_sequences(
        sequences, 8, 1, temporal="uniform", train=True, generator=generator(0)
    )
    assert noisy.shape == (4, 3, 8, 25, 1)


def test_collate_sequences_bad_input():
    good = torch.zeros(3, 5, 25, 1)
    with pytest.raises(ValueError, match="sequences must not be empty"):
        collate_sequences([], 8, 2)
    with pytest.raises(TypeError, match="sequences must be a sequence"):
        collate_sequences(good, 8, 2)
    with pytest.raises(ValueError, match=r"sequences\[1\] must have V = 25 like sequences\[0\]"):
        collate_sequences([good, torch.zeros(3, 5, 17, 1)], 8, 2)
    with pytest.raises(ValueError, match=r"sequences\[0\] must be \[C, T, V, M\]"):
        collate_sequences([torch.zeros(3, 5, 25)], 8, 2)
    with pytest.raises(ValueError, match="temporal must be 'resize' or 'uniform'"):
        collate_sequences([good], 8, 2, temporal="crop")
    with pytest.raises(ValueError, match="num_persons must be positive, got 0"):
        collate_sequences([good], 8, 0)


# ---------------------------------------------------------------------------------------------
# one generator per clip

PER_CLIP = {
    "valid_crop_resize": lambda x, g: valid_crop_resize(
        x, 8, (0.5, 1.0), min_length=4, generator=g
    ),
    "uniform_sample": lambda x, g: uniform_sample(x, 6, 2, generator=g),
    "random_rotation": lambda x, g: random_rotation(x, 0.3, generator=g),
    "random_rotation_2d": lambda x, g: random_rotation(x[:, :2], 0.3, generator=g),
    "random_scale": lambda x, g: random_scale(x, 0.2, generator=g),
    "random_shear": lambda x, g: random_shear(x, 0.5, 0.5, generator=g),
    "random_mirror": lambda x, g: random_mirror(x, "ntu_stgcn", 0.5, generator=g),
    "collate_sequences": lambda x, g: collate_sequences(
        list(x), 8, 2, p_interval=(0.5, 1.0), generator=g
    ),
    "augment": lambda x, g: SkeletonAugment(
        window=8, min_length=4, scale=0.1, shear=0.3, stream="bone"
    )(x, generator=g),
}


@pytest.mark.parametrize("name", sorted(PER_CLIP))
def test_per_clip_generators_draw_what_each_clip_draws_alone(clips, name):
    transform = PER_CLIP[name]
    x = clips.double()
    batch = transform(x, [generator(100 + n) for n in range(6)])
    alone = torch.cat([transform(x[n : n + 1], [generator(100 + n)]) for n in range(6)])
    torch.testing.assert_close(batch, alone, rtol=0, atol=0)
    # a one-element sequence is the same as the generator itself
    torch.testing.assert_close(
        transform(x[2:3], [generator(102)]), transform(x[2:3], generator(102)), rtol=0, atol=0
    )


def test_skeleton_augment(clips):
    augment = SkeletonAugment(window=16, min_length=4, rotation=0.3, scale=0.1, shear=0.3)
    a = augment(clips, generator=generator(1))
    b = augment(clips, generator=generator(1))
    assert a.shape == (6, 3, 16, 25, 3) and torch.equal(a, b)
    assert not torch.equal(a, augment(clips, generator=generator(2)))
    evaluation = augment(clips, train=False)
    torch.testing.assert_close(evaluation, valid_crop_resize(clips, 16, 1.0))
    # Chaining the functions with the same generator gives the same batch.
    g = generator(1)
    chained = valid_crop_resize(clips, 16, (0.5, 1.0), min_length=4, generator=g)
    chained = random_shear(
        random_scale(random_rotation(chained, 0.3, generator=g), 0.1, generator=g),
        0.3,
        generator=g,
    )
    torch.testing.assert_close(a, chained)
    absent = (clips == 0).all(dim=(1, 2, 3))  # [N, M] absent persons stay zero
    assert (a.permute(0, 4, 1, 2, 3)[absent] == 0).all()
    bones = SkeletonAugment(window=None, rotation=0.0, stream="bone")(clips)
    assert torch.equal(bones, bone_stream(clips, "ntu_stgcn"))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda x: valid_crop_resize(x[0], 8), ValueError, r"x must be \[N, C, T, V, M\]"),
        (lambda x: valid_crop_resize(x.long(), 8), TypeError, "x must be a floating-point"),
        (lambda x: valid_crop_resize(x, 0), ValueError, "window must be positive, got 0"),
        (lambda x: valid_crop_resize(x, 8, (0.0, 1.0)), ValueError, r"p_interval must lie in"),
        (
            lambda x: valid_crop_resize(x, 8, lengths=torch.tensor([1, 2])),
            ValueError,
            "lengths must have N = 6 entries, got 2",
        ),
        (
            lambda x: valid_crop_resize(x, 8, lengths=torch.full((6,), 99)),
            ValueError,
            r"lengths must lie in \[0, T = 24\]",
        ),
        (lambda x: random_rotation(x[:, :1], 0.3), ValueError, "C = 2 or 3 coordinate channels"),
        (lambda x: random_rotation(x, -1.0), ValueError, "theta must be >= 0, got -1.0"),
        (lambda x: random_scale(x, (0.1, 0.2)), ValueError, r"one entry per channel \(C = 3\)"),
        (lambda x: random_scale(x, -0.1), ValueError, "scale must be >= 0"),
        (lambda x: random_shear(x, 0.5, 1.5), ValueError, r"p must be a probability in \[0, 1\]"),
        (lambda x: center(x, 25), ValueError, r"joint must be a joint index in \[0, 25\), got 25"),
        (lambda x: center(x, 1, person=3), ValueError, "person must be a joint index"),
        (lambda x: view_normalize(x[:, :2]), ValueError, "x must have C = 3 coordinate channels"),
        (lambda x: view_normalize(x, (0, 30)), ValueError, r"spine\[1\] must be a joint index"),
        (lambda x: select_persons(x, 0), ValueError, "num_persons must be positive, got 0"),
        (lambda x: to_stream(x, "angle"), ValueError, "stream must be one of"),
        (lambda x: to_stream(x, "bone", None), ValueError, "stream 'bone' needs a layout"),
        (
            lambda x: random_rotation(x, 0.3, generator=[generator(0)] * 5),
            ValueError,
            r"one generator per clip \(N = 6\), got 5",
        ),
        (
            lambda x: random_mirror(x, LAYOUT, generator=[generator(0)] * 7),
            ValueError,
            r"one generator per clip \(N = 6\), got 7",
        ),
        (
            lambda x: valid_crop_resize(x, 8, 0.9, generator=[generator(0)]),
            ValueError,
            r"one generator per clip \(N = 6\), got 1",
        ),
        (
            lambda x: random_scale(x, 0.1, generator=[0] * 6),
            TypeError,
            "generator must be a torch.Generator, a sequence of them or None, got list",
        ),
        (
            lambda x: random_mirror(x, LAYOUT, 1.5),
            ValueError,
            r"p must be a probability in \[0, 1\]",
        ),
        (
            lambda x: mirror(x, SIDELESS),
            ValueError,
            "layout 'sideless' has no left/right joint pairs",
        ),
        (lambda x: mirror(x[:, :, :, :20], LAYOUT), ValueError, "x must have V = 25 joints"),
        (lambda x: SkeletonAugment(stream="angle"), ValueError, "stream must be one of"),
        (lambda x: SkeletonAugment(rotation=-1), ValueError, "rotation must be >= 0, got -1"),
    ],
)
def test_bad_input(clips, call, error, match):
    with pytest.raises(error, match=match):
        call(clips)
