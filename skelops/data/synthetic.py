"""Synthetic skeleton actions for demos and tests, deterministic by seed.

Every sample is a short clip of one to several persons. The actor's body is a small rigid-segment
model (pelvis, torso, head, upper arms, forearms, thighs, shanks) driven by joint-angle
trajectories; each joint of the requested layout is read off that body by its name, so any
layout whose joints are named like the built-in ones (NTU RGB+D, Kinect v1, COCO, OpenPose) gets
a plausible skeleton. A class is a parametric motion: one primary degree of freedom (arm raise,
elbow flexion, knee bend, torso bend, turning, jumping, ...; classes ``c`` and ``c + 16`` share
it at a different frequency) plus one or two secondary ones, each a sinusoid with a
class-specific amplitude, frequency and phase. Every fifth class (``c % 5 == 4``) is mutual: a
second person faces the actor and approaches, retreats or mirrors the motion. The class
definitions do not depend on ``seed``, so clips drawn with different seeds are a train and a
held-out set of the same task.

Per sample, the seed draws: the valid length (60-100 % of the frames, zero padding after it as
in the NTU / pyskl data), playback speed and time offset, per-degree amplitude jitter, body
scale, position on the floor, camera height and view (yaw), bystanders in the other person
slots (each with probability 0.3; they sway idly), Gaussian noise and missing joints. The class
is carried by the motion only: position, view and scale are drawn independently of it.

Coordinates are those of a camera 0.8-1.2 m above the floor looking along ``+z`` (``y`` up, metres,
persons 2.5-4 m away); ``channels=2`` projects them with a unit focal length, ``(x / z, y / z)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..graphs.layouts import Layout, get_layout
from ..rotations import _single_axis

__all__ = ["SyntheticActions", "synthetic_actions"]

# Rigid segments of the body model as (name, parent, pivot point); parents come first.
_SEGMENTS = (
    ("pelvis", None, "spine_base"),
    ("torso", "pelvis", "spine_mid"),
    ("head", "torso", "neck"),
    ("left_upper_arm", "torso", "left_shoulder"),
    ("left_forearm", "left_upper_arm", "left_elbow"),
    ("right_upper_arm", "torso", "right_shoulder"),
    ("right_forearm", "right_upper_arm", "right_elbow"),
    ("left_thigh", "pelvis", "left_hip"),
    ("left_shank", "left_thigh", "left_knee"),
    ("right_thigh", "pelvis", "right_hip"),
    ("right_shank", "right_thigh", "right_knee"),
)
_SEGMENT_INDEX = {name: i for i, (name, _, _) in enumerate(_SEGMENTS)}

# Rest pose in the body frame: x to the person's left, y up, z forward, origin on the floor
# between the feet (metres). Each point moves rigidly with its segment.
_LEFT_POINTS = {
    "shoulder": ("torso", (0.18, 1.43, 0.0)),
    "eye": ("head", (0.035, 1.67, 0.08)),
    "ear": ("head", (0.075, 1.65, 0.0)),
    "elbow": ("left_upper_arm", (0.20, 1.15, 0.0)),
    "wrist": ("left_forearm", (0.21, 0.90, 0.02)),
    "hand": ("left_forearm", (0.21, 0.83, 0.03)),
    "hand_tip": ("left_forearm", (0.21, 0.75, 0.04)),
    "thumb": ("left_forearm", (0.18, 0.84, 0.07)),
    "hip": ("pelvis", (0.09, 0.97, 0.0)),
    "knee": ("left_thigh", (0.10, 0.53, 0.01)),
    "ankle": ("left_shank", (0.10, 0.09, -0.01)),
    "heel": ("left_shank", (0.10, 0.03, -0.05)),
    "foot": ("left_shank", (0.10, 0.03, 0.10)),
    "big_toe": ("left_shank", (0.08, 0.02, 0.17)),
    "small_toe": ("left_shank", (0.14, 0.02, 0.15)),
}
_POINTS: dict[str, tuple[str, tuple[float, float, float]]] = {
    "spine_base": ("pelvis", (0.0, 1.00, 0.0)),
    "spine_mid": ("torso", (0.0, 1.22, 0.0)),
    "spine_shoulder": ("torso", (0.0, 1.45, 0.0)),
    "neck": ("torso", (0.0, 1.53, 0.0)),
    "head": ("head", (0.0, 1.65, 0.02)),
    "head_top": ("head", (0.0, 1.76, 0.0)),
    "nose": ("head", (0.0, 1.63, 0.10)),
    # Objects of the MP-GCN layouts: a ball in the right hand, a net behind the player.
    "ball": ("right_forearm", (-0.21, 0.80, 0.15)),
    "net": ("pelvis", (0.0, 2.20, -1.00)),
}
for _name, (_segment, (_x, _y, _z)) in _LEFT_POINTS.items():
    _POINTS["left_" + _name] = (_segment, (_x, _y, _z))
    _POINTS["right_" + _name] = (_segment.replace("left", "right"), (-_x, _y, _z))
# Other datasets' names for the same points (Kinect v1, OpenPose BODY_25 / BODY_25B).
_ALIASES = {
    "hip_center": "spine_base",
    "mid_hip": "spine_base",
    "spine": "spine_mid",
    "shoulder_center": "spine_shoulder",
    "upper_neck": "neck",
}

# Degrees of freedom: (segment, kind, axis, sign, one_sided). Rotations are about the body-frame
# axis; "translate" moves the whole body along it. Signs make a positive angle the natural
# direction (arms and legs forward, arms outward, knees backward); one-sided degrees use
# (1 - cos) / 2 instead of sin, so an elbow or a knee only flexes.
_DOFS = (
    ("pelvis", "rotate", 1, 1.0, False),  # 0 turning
    ("torso", "rotate", 0, 1.0, True),  # 1 bending forward
    ("torso", "rotate", 1, 1.0, False),  # 2 twisting
    ("head", "rotate", 0, 1.0, False),  # 3 nodding
    ("left_upper_arm", "rotate", 0, -1.0, False),  # 4 left arm forward / back
    ("left_upper_arm", "rotate", 2, 1.0, True),  # 5 left arm outward
    ("left_forearm", "rotate", 0, -1.0, True),  # 6 left elbow
    ("right_upper_arm", "rotate", 0, -1.0, False),  # 7 right arm forward / back
    ("right_upper_arm", "rotate", 2, -1.0, True),  # 8 right arm outward
    ("right_forearm", "rotate", 0, -1.0, True),  # 9 right elbow
    ("left_thigh", "rotate", 0, -1.0, False),  # 10 left leg forward / back
    ("left_shank", "rotate", 0, 1.0, True),  # 11 left knee
    ("right_thigh", "rotate", 0, -1.0, False),  # 12 right leg forward / back
    ("right_shank", "rotate", 0, 1.0, True),  # 13 right knee
    ("pelvis", "translate", 1, 1.0, True),  # 14 jumping
    ("pelvis", "translate", 0, 1.0, False),  # 15 swaying sideways
)
# Primary degree of class c: _PRIMARY[c % 16], ordered so that the first classes differ in limb.
_PRIMARY = (4, 9, 11, 1, 14, 7, 6, 12, 5, 0, 8, 13, 3, 10, 2, 15)
_CLASS_SEED = 0x5EED  # class definitions are fixed: independent of the sample seed
_MUTUAL_EVERY = 5
_BYSTANDER_PROBABILITY = 0.3
_CAMERA_HEIGHT = (0.8, 1.2)  # metres above the floor, drawn per clip
_CHUNK = 128  # samples per forward-kinematics chunk, bounds the memory of the rotation stack


def _resolve_points(layout: Layout) -> tuple[list[int], Tensor]:
    """Segment index and rest position of each joint of ``layout``.

    Joints with unknown names ride on their nearest named neighbour in the layout graph, 5 cm
    off it in a direction fixed by the joint index.
    """
    known: dict[int, tuple[str, tuple[float, float, float]]] = {}
    for joint, name in enumerate(layout.joint_names):
        name = _ALIASES.get(name, name)
        if name in _POINTS:
            known[joint] = _POINTS[name]
    if not known:
        raise ValueError(
            f"layout {layout.name!r} has no joint named like a body joint (e.g. 'left_shoulder', "
            f"'spine_base', 'nose'); synthetic_actions cannot place its joints, got names "
            f"{layout.joint_names[:5]}..."
        )
    neighbours: list[list[int]] = [[] for _ in range(layout.num_joints)]
    for a, b in layout.edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    # Breadth-first from all named joints at once gives each unnamed joint its nearest one.
    frontier = list(known)
    while frontier:
        following = []
        for joint in frontier:
            for other in neighbours[joint]:
                if other not in known:
                    segment, (x, y, z) = known[joint]
                    angle = 2.399963 * other  # golden angle: distinct directions per joint
                    known[other] = (
                        segment,
                        (x + 0.05 * math.cos(angle), y + 0.05 * math.sin(angle), z),
                    )
                    following.append(other)
        frontier = following
    missing = [j for j in range(layout.num_joints) if j not in known]
    for joint in missing:  # joints in components without any named joint: keep them at the root
        known[joint] = ("pelvis", _POINTS["spine_base"][1])
    segments = [_SEGMENT_INDEX[known[j][0]] for j in range(layout.num_joints)]
    rest = torch.tensor([known[j][1] for j in range(layout.num_joints)], dtype=torch.float64)
    return segments, rest


def _class_table(num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """``[K, D]`` amplitudes (radians or metres), frequencies (cycles per clip) and phases."""
    num_dofs = len(_DOFS)
    amplitude = torch.zeros(num_classes, num_dofs, dtype=torch.float64)
    frequency = torch.ones(num_classes, num_dofs, dtype=torch.float64)
    phase = torch.zeros(num_classes, num_dofs, dtype=torch.float64)
    for c in range(num_classes):
        g = torch.Generator().manual_seed(_CLASS_SEED + c)
        u = torch.rand(8, generator=g, dtype=torch.float64)
        primary = _PRIMARY[c % num_dofs]
        is_translation = _DOFS[primary][1] == "translate"
        amplitude[c, primary] = (0.15 + 0.15 * u[0]) if is_translation else (0.8 + 0.5 * u[0])
        frequency[c, primary] = 1.0 + (c // num_dofs) % 4 + 0.5 * u[1]
        phase[c, primary] = 2 * math.pi * u[2]
        others = [d for d in torch.randperm(num_dofs, generator=g).tolist() if d != primary]
        for k, d in enumerate(others[: 1 + int(u[3] < 0.5)]):
            is_translation = _DOFS[d][1] == "translate"
            amplitude[c, d] = (0.03 + 0.05 * u[4 + k]) if is_translation else (0.2 + 0.4 * u[4 + k])
            frequency[c, d] = 0.5 + 2.5 * u[5 + k]
            phase[c, d] = 2 * math.pi * u[6 - k]
    return amplitude, frequency, phase


def _pose_world(
    values: Tensor,
    heading: Tensor,
    position: Tensor,
    scale: Tensor,
    segments: list[int],
    rest: Tensor,
) -> Tensor:
    """Forward kinematics of the body model.

    Args:
        values: ``[B, D]`` degree values (angles or translations), one row per person-frame.
        heading: ``[B]`` yaw of the body frame in the camera frame.
        position: ``[B, 3]`` camera-frame position of the body frame's origin.
        scale: ``[B]`` body size factor.
        segments, rest: from :func:`_resolve_points`.

    Returns:
        ``[B, V, 3]`` camera-frame joint positions.
    """
    pivots = torch.tensor(
        [_POINTS[pivot][1] for _, _, pivot in _SEGMENTS], dtype=values.dtype, device=values.device
    )
    scale = scale[:, None]
    local = {name: None for name, _, _ in _SEGMENTS}
    translation = torch.zeros(values.shape[0], 3, dtype=values.dtype, device=values.device)
    for d, (segment, kind, axis, sign, _) in enumerate(_DOFS):
        if kind == "translate":
            translation[:, axis] += sign * values[:, d]
            continue
        rotation = _single_axis("XYZ"[axis], sign * values[:, d])
        # Later degrees of a segment compose on the left (outward after forward for the arm).
        local[segment] = rotation if local[segment] is None else rotation @ local[segment]
    root = _single_axis("Y", heading)
    rotations: list[Tensor] = []
    origins: list[Tensor] = []
    for s, (name, parent, _) in enumerate(_SEGMENTS):
        if parent is None:
            rotation = root
            origin = position + (root @ (scale * pivots[s] + translation)[..., None])[..., 0]
        else:
            p = _SEGMENT_INDEX[parent]
            offset = scale * (pivots[s] - pivots[p])
            origin = origins[p] + (rotations[p] @ offset[..., None])[..., 0]
            rotation = rotations[p]
        if local[name] is not None:
            rotation = rotation @ local[name]
        rotations.append(rotation)
        origins.append(origin)
    index = torch.tensor(segments, device=values.device)
    rotation = torch.stack(rotations, 1)[:, index]  # [B, V, 3, 3]
    origin = torch.stack(origins, 1)[:, index]  # [B, V, 3]
    relative = rest.to(values) - pivots[index]  # [V, 3]
    return origin + (rotation @ (scale[:, :, None] * relative)[..., None])[..., 0]


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def synthetic_actions(
    num_samples: int,
    num_classes: int = 10,
    num_frames: int = 64,
    layout: str | Layout = "ntu_stgcn",
    num_persons: int = 2,
    channels: int = 3,
    noise: float = 0.02,
    missing_joints: float = 0.0,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Synthetic skeleton clips of ``num_classes`` parametric actions (see the module docstring).

    The clips are computed on the CPU in float64 from a ``torch.Generator`` seeded with
    ``seed`` and then moved to ``device`` and cast to ``dtype``, so a seed gives the same data on
    every device. Labels are balanced: ``arange(num_samples) % num_classes``, shuffled.

    Args:
        num_samples: number of clips ``N``.
        num_classes: number of action classes ``K``.
        num_frames: frames per clip ``T``; each clip's valid part is 60-100 % of it, the rest
            zero.
        layout: a layout (or its name) whose joint names the generator knows; joints with other
            names follow their nearest named neighbour in the layout graph.
        num_persons: person slots ``M``; slot 0 is the actor, slot 1 the partner of a mutual
            class, every other slot a bystander with probability 0.3 or zero.
        channels: 3 for camera coordinates (metres), 2 for their projection ``(x/z, y/z)``.
        noise: standard deviation of the Gaussian noise added to every present coordinate, in
            output units.
        missing_joints: probability that a present joint of a valid frame is zeroed (all its
            channels), as a tracker dropping it.
        seed: the random seed.
        device: output device.
        dtype: output floating-point dtype.

    Returns:
        ``(x, labels)``: ``x`` ``[N, C, T, V, M]`` skeletons (batch, channels, frames, joints,
        persons) with zeros for padding, absent persons and missing joints; ``labels`` ``[N]``
        int64 in ``[0, num_classes)``.
    """
    num_samples = _check_int(num_samples, "num_samples", 1)
    num_classes = _check_int(num_classes, "num_classes", 1)
    num_frames = _check_int(num_frames, "num_frames", 2)
    num_persons = _check_int(num_persons, "num_persons", 1)
    seed = _check_int(seed, "seed", 0)
    if channels not in (2, 3):
        raise ValueError(f"channels must be 2 or 3, got {channels!r}")
    if not isinstance(noise, (int, float)) or isinstance(noise, bool) or not noise >= 0:
        raise ValueError(f"noise must be a number >= 0, got {noise!r}")
    if (
        not isinstance(missing_joints, (int, float))
        or isinstance(missing_joints, bool)
        or not 0.0 <= missing_joints < 1.0
    ):
        raise ValueError(f"missing_joints must be a probability in [0, 1), got {missing_joints!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    segments, rest = _resolve_points(get_layout(layout))

    n, t, m, d = num_samples, num_frames, num_persons, len(_DOFS)
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64

    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> Tensor:
        return low + (high - low) * torch.rand(shape, generator=g, dtype=f64)

    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    lengths = torch.floor(uniform(n, low=0.6, high=1.0) * t + 1).clamp(max=t).to(torch.int64)
    speed = uniform(n, low=0.8, high=1.25)
    time_offset = uniform(n, high=0.2)
    jitter = uniform(n, m, d, low=0.8, high=1.2)
    scale = uniform(n, m, low=0.85, high=1.15)
    heading = uniform(n, m, low=-math.pi / 4, high=math.pi / 4)
    floor_x = uniform(n, m, low=-0.7, high=0.7)
    depth = uniform(n, m, low=2.5, high=4.0)
    camera_height = uniform(n, 1, low=_CAMERA_HEIGHT[0], high=_CAMERA_HEIGHT[1])
    bystander = uniform(n, m) < _BYSTANDER_PROBABILITY
    idle_amplitude = uniform(n, m, d, high=0.12)
    idle_frequency = uniform(n, m, d, low=0.3, high=1.5)
    idle_phase = uniform(n, m, d, high=2 * math.pi)
    bystander_side = torch.where(uniform(n, m) < 0.5, -1.0, 1.0).to(f64)
    partner_gap = uniform(n, low=0.9, high=1.3)
    # Which way a mutual pair faces: either, so that the actor is not always on the same side.
    pair_side = torch.where(uniform(n) < 0.5, -1.0, 1.0).to(f64)

    amplitude, frequency, phase = (p[labels] for p in _class_table(num_classes))  # [N, D]
    mutual = labels % _MUTUAL_EVERY == _MUTUAL_EVERY - 1
    interaction = (labels // _MUTUAL_EVERY) % 3  # approach, retreat, mirror

    # Person parameters [N, M, D]: the actor plays the class, a mutual partner plays it a
    # quarter cycle late, any other present person sways idly.
    partner = torch.zeros(n, m, dtype=torch.bool)
    if m > 1:
        partner[:, 1] = mutual
    actor = torch.zeros(n, m, dtype=torch.bool)
    actor[:, 0] = True
    present = actor | partner | (bystander & ~actor & ~partner)
    acting = (actor | partner)[..., None]
    person_amplitude = torch.where(acting, amplitude[:, None], idle_amplitude) * jitter
    person_frequency = torch.where(acting, frequency[:, None], idle_frequency)
    person_phase = torch.where(acting, phase[:, None], idle_phase)
    person_phase = person_phase + partner[..., None] * (math.pi / 2)

    # Placement: a mutual pair stands in profile, facing each other across the floor point.
    heading = heading + math.pi  # face the camera
    heading[:, 0] = torch.where(mutual, heading[:, 0] + pair_side * (math.pi / 2), heading[:, 0])
    if m > 1:
        heading[:, 1] = torch.where(mutual, heading[:, 0] + math.pi, heading[:, 1])
    base = torch.stack([floor_x, -camera_height.expand(n, m), depth], -1)
    base = base + (
        bystander_side[..., None]
        * torch.tensor([1.4, 0.0, 0.0], dtype=f64)
        * (~actor & ~partner)[..., None]
    )

    frame_time = torch.arange(t, dtype=f64)
    progress = speed[:, None] * frame_time / lengths[:, None].to(f64) + time_offset[:, None]
    # progress [N, T] counts clip cycles: the action plays once over the valid frames.

    x = torch.zeros(n, m, t, len(segments), 3, dtype=f64)
    one_sided = torch.tensor([dof[4] for dof in _DOFS])
    for start in range(0, n, _CHUNK):
        rows = slice(start, min(start + _CHUNK, n))
        k = rows.stop - rows.start
        angle = 2 * math.pi * person_frequency[rows, :, None] * progress[rows, None, :, None]
        angle = angle + person_phase[rows, :, None]  # [k, M, T, D]
        wave = torch.where(one_sided, (1 - torch.cos(angle)) / 2, torch.sin(angle))
        values = person_amplitude[rows, :, None] * wave

        # Pair distance along the actor's facing direction, in metres.
        fraction = (frame_time / lengths[rows, None].to(f64)).clamp(max=1.0)  # [k, T]
        kind = interaction[rows, None]
        gap = partner_gap[rows, None]
        distance = torch.where(
            kind == 0,
            gap + 1.0 * (1 - fraction),
            torch.where(kind == 1, gap + 1.0 * fraction, gap),
        )
        forward = torch.stack(
            [torch.sin(heading[rows, 0]), torch.zeros(k, dtype=f64), torch.cos(heading[rows, 0])],
            -1,
        )  # [k, 3] actor's facing direction in the camera frame
        position = base[rows, :, None].expand(k, m, t, 3).clone()
        if m > 1:
            pair = mutual[rows, None, None]
            centre = base[rows, 0, None]  # the pair is centred on the actor's floor point
            actor_position = centre - forward[:, None] * (distance[..., None] / 2)
            partner_position = centre + forward[:, None] * (distance[..., None] / 2)
            position[:, 0] = torch.where(pair, actor_position, position[:, 0])
            position[:, 1] = torch.where(pair, partner_position, position[:, 1])
        world = _pose_world(
            values.reshape(-1, d),
            heading[rows, :, None].expand(k, m, t).reshape(-1),
            position.reshape(-1, 3),
            scale[rows, :, None].expand(k, m, t).reshape(-1),
            segments,
            rest,
        )
        x[rows] = world.reshape(k, m, t, -1, 3)

    if channels == 2:
        x = x[..., :2] / x[..., 2:]
    x = x + noise * torch.randn(x.shape, generator=g, dtype=f64)
    valid = frame_time[None, :] < lengths[:, None]  # [N, T]
    keep = present[:, :, None, None] & valid[:, None, :, None]
    if missing_joints > 0:
        keep = keep & (torch.rand(x.shape[:-1], generator=g, dtype=f64) >= missing_joints)
    x = torch.where(keep[..., None], x, 0.0)
    x = x.permute(0, 4, 2, 3, 1).to(device=device, dtype=dtype).contiguous()  # [N, C, T, V, M]
    return x, labels.to(device)


class SyntheticActions(Dataset):
    """:func:`synthetic_actions` as a map-style dataset.

    Items are ``(x, label)``: ``x`` ``[C, T, V, M]`` (channels, frames, joints, persons) and a
    0-d int64 label. The whole set is generated once, on construction; the arguments are those
    of :func:`synthetic_actions`.
    """

    def __init__(
        self,
        num_samples: int,
        num_classes: int = 10,
        num_frames: int = 64,
        layout: str | Layout = "ntu_stgcn",
        num_persons: int = 2,
        channels: int = 3,
        noise: float = 0.02,
        missing_joints: float = 0.0,
        seed: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.data, self.labels = synthetic_actions(
            num_samples,
            num_classes,
            num_frames,
            layout,
            num_persons,
            channels,
            noise,
            missing_joints,
            seed,
            device,
            dtype,
        )
        self.num_classes = num_classes

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.data[index], self.labels[index]
