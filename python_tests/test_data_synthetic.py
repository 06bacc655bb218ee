"""The synthetic action generator (skelops.data.synthetic): determinism, balance, shapes for
several layouts, padding, missing joints, rigid bones, and that its classes differ by motion
(separable from motion statistics, not from the clip's mean position)."""

from __future__ import annotations

import pytest
import torch
from helpers import DEVICES

from skelops.data.synthetic import SyntheticActions, synthetic_actions
from skelops.graphs import Layout, get_layout


def present_frames(x: torch.Tensor, person: int = 0) -> torch.Tensor:
    """``[N, T]`` frames in which ``person`` of ``x`` ``[N, C, T, V, M]`` has a joint."""
    return (x[..., person] != 0).any(dim=3).any(dim=1)


def test_same_seed_same_data_other_seed_other_data():
    a, la = synthetic_actions(12, num_frames=16, seed=3)
    b, lb = synthetic_actions(12, num_frames=16, seed=3)
    c, lc = synthetic_actions(12, num_frames=16, seed=4)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c)
    assert a.shape == (12, 3, 16, 25, 2) and a.dtype == torch.float32
    assert la.dtype == torch.int64


@pytest.mark.parametrize("device", DEVICES)
def test_device_and_dtype_do_not_change_values(device):
    x, labels = synthetic_actions(4, num_frames=8, seed=1, device=device, dtype=torch.float64)
    reference, reference_labels = synthetic_actions(4, num_frames=8, seed=1)
    assert x.device.type == device and labels.device.type == device
    assert x.dtype == torch.float64
    torch.testing.assert_close(x.cpu().float(), reference)
    assert torch.equal(labels.cpu(), reference_labels)


def test_labels_balanced_and_shuffled():
    _, labels = synthetic_actions(60, num_classes=6, num_frames=8)
    assert torch.equal(torch.bincount(labels, minlength=6), torch.full((6,), 10))
    assert not torch.equal(labels, torch.arange(60) % 6)


@pytest.mark.parametrize(
    ("layout", "channels", "persons"),
    [
        ("ntu_pyskl", 3, 2),
        ("coco", 2, 1),
        ("openpose18", 2, 3),
        ("openpose_body25", 3, 2),
        ("openpose_body25b", 2, 2),
        ("nw_ucla", 3, 1),
        ("coco_ball_net", 2, 4),
    ],
)
def test_layouts_shapes_and_padding(layout, channels, persons):
    frames = 20
    x, _ = synthetic_actions(
        10, num_frames=frames, layout=layout, num_persons=persons, channels=channels, seed=2
    )
    joints = get_layout(layout).num_joints
    assert x.shape == (10, channels, frames, joints, persons)
    assert torch.isfinite(x).all()
    actor = present_frames(x)
    lengths = actor.sum(dim=1)
    # The actor fills a prefix of 60-100 % of the frames; everything after it is padding.
    assert ((lengths >= 0.6 * frames) & (lengths <= frames)).all()
    assert torch.equal(actor, torch.arange(frames)[None] < lengths[:, None])
    for n in range(10):
        assert (x[n, :, lengths[n] :] == 0).all()
    if channels == 2:  # unit focal length projection of persons 2.5-4 m away
        assert x.abs().max() < 1.0
    else:
        depth = x[:, 2][x[:, 2] != 0]
        assert depth.min() > 1.5 and depth.max() < 5.5


def test_projection_matches_3d():
    kwargs = {"num_frames": 12, "noise": 0.0, "seed": 5}
    x3, _ = synthetic_actions(6, channels=3, dtype=torch.float64, **kwargs)
    x2, _ = synthetic_actions(6, channels=2, dtype=torch.float64, **kwargs)
    present = x3[:, 2] != 0
    torch.testing.assert_close(x2[:, 0][present], (x3[:, 0] / x3[:, 2])[present])
    torch.testing.assert_close(x2[:, 1][present], (x3[:, 1] / x3[:, 2])[present])
    assert (x2.permute(1, 0, 2, 3, 4)[:, ~present] == 0).all()


def test_bones_are_rigid_and_noise_is_added():
    layout = get_layout("ntu_stgcn")
    x, _ = synthetic_actions(6, num_frames=24, noise=0.0, seed=7, dtype=torch.float64)
    child, parent = torch.tensor(layout.edges).T
    bones = (x[:, :, :, child] - x[:, :, :, parent]).norm(dim=1)  # [N, T, E, M]
    actor = present_frames(x)
    for n in range(6):
        lengths = bones[n, actor[n], :, 0]
        assert (lengths.std(dim=0) < 1e-9).all()
        assert (lengths.mean(dim=0) > 0.02).all()
    noisy, _ = synthetic_actions(6, num_frames=24, noise=0.01, seed=7, dtype=torch.float64)
    difference = (noisy - x)[x != 0]
    assert 0.008 < difference.std() < 0.012


def test_missing_joints_fraction():
    x, _ = synthetic_actions(40, num_frames=20, missing_joints=0.3, seed=8)
    actor = present_frames(x)  # [N, T]
    joints = (x[..., 0] != 0).any(dim=1)  # [N, T, V]
    missing = 1 - joints[actor].float().mean()
    assert abs(missing.item() - 0.3) < 0.02
    full, _ = synthetic_actions(40, num_frames=20, missing_joints=0.0, seed=8)
    assert (full[..., 0] != 0).any(dim=1)[present_frames(full)].all()


def test_unnamed_joints_follow_a_named_neighbour():
    layout = Layout(
        name="stick", joint_names=("spine_base", "gadget", "widget"), edges=((1, 0), (2, 1))
    )
    x, _ = synthetic_actions(5, num_frames=10, layout=layout, noise=0.0, num_persons=1)
    actor = present_frames(x)
    gap = (x[:, :, :, 1, 0] - x[:, :, :, 0, 0]).norm(dim=1)[actor]
    assert ((gap > 0.04) & (gap < 0.06)).all()  # 5 cm times the body scale 0.85-1.15
    assert ((x[:, :, :, 2, 0] - x[:, :, :, 1, 0]).norm(dim=1)[actor] > 0.04).all()


def test_persons_partners_and_bystanders():
    x, labels = synthetic_actions(200, num_classes=10, num_frames=8, num_persons=3, seed=9)
    second = (x[..., 1] != 0).any(dim=(1, 2, 3))
    third = (x[..., 2] != 0).any(dim=(1, 2, 3))
    mutual = labels % 5 == 4
    assert second[mutual].all()  # the partner of a mutual class
    assert 0.15 < second[~mutual].float().mean() < 0.45  # bystanders, probability 0.3
    assert 0.15 < third.float().mean() < 0.45


def _motion_features(x: torch.Tensor) -> torch.Tensor:
    """Per joint of the actor relative to its first joint: the standard deviation over the
    valid frames and the mean absolute frame-to-frame velocity."""
    actor = x[..., 0]
    mask = (actor != 0).any(dim=1, keepdim=True).to(x.dtype)  # [N, 1, T, V]
    count = mask.sum(dim=2).clamp(min=1)
    relative = (actor - actor[:, :, :, :1]) * mask
    mean = relative.sum(dim=2) / count
    spread = (((relative - mean[:, :, None]) ** 2) * mask).sum(dim=2) / count
    velocity = (actor[:, :, 1:] - actor[:, :, :-1]) * mask[:, :, 1:] * mask[:, :, :-1]
    return torch.cat([spread.sqrt().flatten(1), velocity.abs().mean(dim=2).flatten(1)], dim=1)


def _offset_features(x: torch.Tensor) -> torch.Tensor:
    """The actor's mean position over its present joints and frames: a constant offset."""
    actor = x[..., 0]
    mask = (actor != 0).any(dim=1, keepdim=True).to(x.dtype)
    return (actor * mask).sum(dim=(2, 3)) / mask.sum(dim=(2, 3)).clamp(min=1)


def _held_out_accuracy(train, train_labels, test, test_labels, classes: int) -> float:
    """Multinomial logistic regression (L-BFGS, L2) fitted on standardised train features."""
    mean, std = train.mean(dim=0), train.std(dim=0) + 1e-6
    train, test = (train - mean) / std, (test - mean) / std
    weight = torch.zeros(train.shape[1], classes, dtype=train.dtype, requires_grad=True)
    bias = torch.zeros(classes, dtype=train.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=100)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(train @ weight + bias, train_labels)
        loss = loss + 1e-3 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return ((test @ weight + bias).argmax(dim=1) == test_labels).float().mean().item()


def test_classes_differ_by_motion_not_by_offset(one_thread):
    classes = 10
    kwargs = {"num_classes": classes, "num_frames": 32, "missing_joints": 0.05}
    train, train_labels = synthetic_actions(400, seed=11, **kwargs)
    test, test_labels = synthetic_actions(600, seed=12, **kwargs)
    motion = _held_out_accuracy(
        _motion_features(train), train_labels, _motion_features(test), test_labels, classes
    )
    offset = _held_out_accuracy(
        _offset_features(train), train_labels, _offset_features(test), test_labels, classes
    )
    assert motion > 0.8, motion  # chance is 0.1
    assert offset < 0.2, offset


def test_dataset_items():
    dataset = SyntheticActions(7, num_classes=3, num_frames=9, num_persons=1, seed=4)
    x, labels = synthetic_actions(7, num_classes=3, num_frames=9, num_persons=1, seed=4)
    assert len(dataset) == 7 and dataset.num_classes == 3
    item, label = dataset[5]
    assert item.shape == (3, 9, 25, 1)
    assert torch.equal(item, x[5]) and label.item() == labels[5].item()
    batch, batch_labels = next(iter(torch.utils.data.DataLoader(dataset, batch_size=7)))
    assert torch.equal(batch, x) and torch.equal(batch_labels, labels)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_samples": 0}, ValueError, "num_samples must be >= 1, got 0"),
        ({"num_samples": 2.0}, TypeError, "num_samples must be an int"),
        ({"num_classes": 0}, ValueError, "num_classes must be >= 1"),
        ({"num_frames": 1}, ValueError, "num_frames must be >= 2, got 1"),
        ({"num_persons": 0}, ValueError, "num_persons must be >= 1"),
        ({"channels": 4}, ValueError, "channels must be 2 or 3, got 4"),
        ({"noise": -0.1}, ValueError, "noise must be a number >= 0, got -0.1"),
        ({"missing_joints": 1.0}, ValueError, r"missing_joints must be a probability in \[0, 1\)"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"dtype": torch.int64}, TypeError, "dtype must be a floating-point torch.dtype"),
        ({"layout": "no_such_layout"}, KeyError, "unknown layout 'no_such_layout'"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = {"num_samples": 2, "num_frames": 4, **kwargs}
    with pytest.raises(error, match=match):
        synthetic_actions(**arguments)


def test_layout_without_body_joint_names():
    layout = Layout(name="anonymous", joint_names=("a", "b"), edges=((1, 0),))
    with pytest.raises(ValueError, match="layout 'anonymous' has no joint named like a body"):
        synthetic_actions(2, num_frames=4, layout=layout)
