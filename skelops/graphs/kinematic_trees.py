"""Kinematic trees: joints, parents, rest poses and single-axis degree-of-freedom tables of
articulated bodies, as data for ``skelops.forward_kinematics`` and
``skelops.nn.KinematicSkeleton``.

A tree lists its joints so that every parent comes before its children (``parents[j] < j``,
``-1`` for a root). A DoF table gives each joint an ordered list of fixed rotation axes, the
parametrisation of biomechanical joints (SKEL's hinge knees, pin ankles, 2-DoF wrists and
3-DoF ball joints); joint ``j`` with axes ``a_1 .. a_k`` and angles ``q_1 .. q_k`` rotates by
``R(a_k, q_k) @ ... @ R(a_1, q_1)`` (:func:`skelops.rotations.dof_rotations`).

Shipped trees:

- ``"stick"``: a 20-joint stick figure (metres, y up, x to the body's left, z forward, T-pose)
  whose joints include COCO-17's keypoints (:data:`STICK_COCO17`), with a 25-DoF table of ball
  joints (pelvis, hips, spine, neck, shoulders) and hinges (knees, elbows). It is this
  library's own small test skeleton, not a published body model.
- ``"smpl"``: SMPL's 24 joints and parents (Loper et al., SIGGRAPH Asia 2015; the tree of the
  ``kintree_table`` in the model files and of smplx's ``joint_names``), 3-DoF axis-angle joints.
  SMPL's rest joints come from its licensed model file (``KinematicSkeleton.from_smpl_file``).
- ``"skel"``: SKEL's 24 bones and 46 pose parameters (Keller et al., "From Skin to Skeleton",
  SIGGRAPH Asia 2023): names, parents, axes (with SKEL's axis flips applied) and the pose limits
  published in the SKEL repository (``skel/kin_skel.py``, ``skel/skel_model.py``); its pin
  joints' axes are the z axis of the OpenSim parent frames given there as XYZ Euler angles.
  The rest joints come from the licensed model file (``KinematicSkeleton.from_skel_file``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "KinematicTree",
    "SKEL_DOF_NAMES",
    "SKEL_JOINT_NAMES",
    "SKEL_PARENTS",
    "SMPL_JOINT_NAMES",
    "SMPL_PARENTS",
    "STICK_COCO17",
    "get_kinematic_tree",
    "list_kinematic_trees",
    "tree_depth",
]


@dataclass(frozen=True)
class KinematicTree:
    """A kinematic tree and, optionally, its rest pose and DoF table.

    Attributes:
        name: registry name.
        joint_names: one name per joint.
        parents: ``parents[j] < j`` or ``-1`` (a root).
        rest_joints: ``(x, y, z)`` per joint, or ``None`` when the body model's licensed file
            supplies them.
        joint_axes: per joint, the ordered fixed rotation axes of its degrees of freedom (an
            empty tuple: a joint that does not rotate), or ``None`` for a tree posed by a full
            3-DoF rotation per joint (axis-angle, 6-D or matrices).
        dof_names: one name per degree of freedom (joint-major order), or ``None``.
        dof_limits: ``(lower, upper)`` radians per DoF (``nan`` = unlimited), or ``None``.
        keypoints: named keypoint sets, each a tuple of joint indices (e.g. ``"coco17"``).
    """

    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    rest_joints: tuple[tuple[float, float, float], ...] | None = None
    joint_axes: tuple[tuple[tuple[float, float, float], ...], ...] | None = None
    dof_names: tuple[str, ...] | None = None
    dof_limits: tuple[tuple[float, float], ...] | None = None
    keypoints: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __post_init__(self) -> None:
        joints = len(self.joint_names)
        if len(self.parents) != joints:
            raise ValueError(
                f"{self.name}: parents has {len(self.parents)} entries for {joints} joints"
            )
        for j, parent in enumerate(self.parents):
            if not -1 <= parent < j:
                raise ValueError(
                    f"{self.name}: parents[{j}] = {parent}; expected -1 or a joint before {j}"
                )
        if self.rest_joints is not None and len(self.rest_joints) != joints:
            raise ValueError(
                f"{self.name}: rest_joints has {len(self.rest_joints)} rows for {joints} joints"
            )
        if self.joint_axes is not None:
            if len(self.joint_axes) != joints:
                raise ValueError(
                    f"{self.name}: joint_axes has {len(self.joint_axes)} entries for {joints} "
                    "joints"
                )
            dofs = self.num_dofs
            for what, values in (("dof_names", self.dof_names), ("dof_limits", self.dof_limits)):
                if values is not None and len(values) != dofs:
                    raise ValueError(f"{self.name}: {what} has {len(values)} entries, {dofs} DoFs")
        for key, indices in self.keypoints:
            if any(not 0 <= i < joints for i in indices):
                raise ValueError(f"{self.name}: keypoint set {key!r} indexes past {joints} joints")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def num_dofs(self) -> int:
        """Degrees of freedom of the DoF table (``3 * J`` for a tree without one)."""
        if self.joint_axes is None:
            return 3 * self.num_joints
        return sum(len(axes) for axes in self.joint_axes)

    def keypoint_indices(self, name: str) -> tuple[int, ...]:
        """Joint indices of a named keypoint set (e.g. ``"coco17"``)."""
        for key, indices in self.keypoints:
            if key == name:
                return indices
        raise KeyError(
            f"tree {self.name!r} has no keypoint set {name!r}; it has "
            f"{[key for key, _ in self.keypoints]}"
        )


def tree_depth(parents: Sequence[int]) -> int:
    """Edges on the longest root-to-leaf path of a topologically ordered tree."""
    depth: list[int] = []
    for j, parent in enumerate(parents):
        depth.append(0 if parent < 0 else depth[parent] + 1)
        if parent >= j:
            raise ValueError(f"parents[{j}] = {parent} is not before joint {j}")
    return max(depth, default=0)


def _unit(axis: Sequence[float]) -> tuple[float, float, float]:
    norm = math.sqrt(sum(a * a for a in axis))
    return (axis[0] / norm, axis[1] / norm, axis[2] / norm)


def _pin_axis(euler_xyz: Sequence[float]) -> tuple[float, float, float]:
    """The z axis of a frame oriented by intrinsic XYZ Euler angles,
    ``Rx(a) @ Ry(b) @ Rz(c) @ (0, 0, 1)`` (SKEL's ``PinJoint``)."""
    a, b, _ = euler_xyz
    return _unit((math.sin(b), -math.sin(a) * math.cos(b), math.cos(a) * math.cos(b)))


# --- the shipped stick figure -------------------------------------------------------------------

_X, _Y, _Z = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)
_BALL = (_X, _Z, _Y)  # flexion (about the lateral axis), abduction, twist

_STICK = (
    # name, parent, rest position, DoF axes
    ("pelvis", -1, (0.0, 0.95, 0.0), _BALL),
    ("left_hip", 0, (0.09, 0.90, 0.0), _BALL),
    ("right_hip", 0, (-0.09, 0.90, 0.0), _BALL),
    ("thorax", 0, (0.0, 1.30, 0.0), _BALL),
    ("left_knee", 1, (0.09, 0.50, 0.01), (_X,)),
    ("right_knee", 2, (-0.09, 0.50, 0.01), (_X,)),
    ("neck", 3, (0.0, 1.50, 0.0), _BALL),
    ("left_shoulder", 3, (0.18, 1.45, 0.0), _BALL),
    ("right_shoulder", 3, (-0.18, 1.45, 0.0), _BALL),
    ("left_ankle", 4, (0.09, 0.08, 0.0), ()),
    ("right_ankle", 5, (-0.09, 0.08, 0.0), ()),
    ("nose", 6, (0.0, 1.62, 0.10), ()),
    ("left_eye", 6, (0.035, 1.66, 0.08), ()),
    ("right_eye", 6, (-0.035, 1.66, 0.08), ()),
    ("left_ear", 6, (0.075, 1.64, 0.0), ()),
    ("right_ear", 6, (-0.075, 1.64, 0.0), ()),
    ("left_elbow", 7, (0.45, 1.45, -0.01), (_Y,)),
    ("right_elbow", 8, (-0.45, 1.45, -0.01), ((0.0, -1.0, 0.0),)),
    ("left_wrist", 16, (0.70, 1.45, 0.0), ()),
    ("right_wrist", 17, (-0.70, 1.45, 0.0), ()),
)

STICK_COCO17 = (11, 12, 13, 14, 15, 7, 8, 16, 17, 18, 19, 1, 2, 4, 5, 9, 10)
"""Stick-figure joints in COCO-17 keypoint order (nose, eyes, ears, shoulders, elbows, wrists,
hips, knees, ankles; left before right)."""


def _stick_dof_names() -> tuple[str, ...]:
    names = []
    for name, _, _, axes in _STICK:
        suffixes = {3: ("flexion", "abduction", "twist"), 1: ("flexion",), 0: ()}[len(axes)]
        names.extend(f"{name}_{suffix}" for suffix in suffixes)
    return tuple(names)


# --- SMPL -----------------------------------------------------------------------------------------

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)  # fmt: skip
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

# --- SKEL -----------------------------------------------------------------------------------------

SKEL_JOINT_NAMES = (
    "pelvis", "femur_r", "tibia_r", "talus_r", "calcn_r", "toes_r", "femur_l", "tibia_l",
    "talus_l", "calcn_l", "toes_l", "lumbar_body", "thorax", "head", "scapula_r", "humerus_r",
    "ulna_r", "radius_r", "hand_r", "scapula_l", "humerus_l", "ulna_l", "radius_l", "hand_l",
)  # fmt: skip
SKEL_PARENTS = (-1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 12, 14, 15, 16, 17, 12, 19, 20, 21, 22)

SKEL_DOF_NAMES = (
    "pelvis_tilt", "pelvis_list", "pelvis_rotation",
    "hip_flexion_r", "hip_adduction_r", "hip_rotation_r", "knee_angle_r", "ankle_angle_r",
    "subtalar_angle_r", "mtp_angle_r",
    "hip_flexion_l", "hip_adduction_l", "hip_rotation_l", "knee_angle_l", "ankle_angle_l",
    "subtalar_angle_l", "mtp_angle_l",
    "lumbar_bending", "lumbar_extension", "lumbar_twist",
    "thorax_bending", "thorax_extension", "thorax_twist",
    "head_bending", "head_extension", "head_twist",
    "scapula_abduction_r", "scapula_elevation_r", "scapula_upward_rot_r",
    "shoulder_r_x", "shoulder_r_y", "shoulder_r_z", "elbow_flexion_r", "pro_sup_r",
    "wrist_flexion_r", "wrist_deviation_r",
    "scapula_abduction_l", "scapula_elevation_l", "scapula_upward_rot_l",
    "shoulder_l_x", "shoulder_l_y", "shoulder_l_z", "elbow_flexion_l", "pro_sup_l",
    "wrist_flexion_l", "wrist_deviation_l",
)  # fmt: skip


def _flip(axes, flips):
    return tuple(tuple(f * a for a in axis) for axis, f in zip(axes, flips, strict=True))


_SKEL_ZXY = (_Z, _X, _Y)
_SKEL_SPINE = (_X, _Z, _Y)
_SKEL_SCAPULA = (_Y, _Z, _X)
_SKEL_SHOULDER = (_X, _Y, _Z)
_SKEL_KNEE = ((0.0, 0.0, -1.0),)  # SKEL's WalkerKnee: axis-angle (0, 0, -q)
_SKEL_AXES = (
    _SKEL_ZXY,  # pelvis
    _SKEL_ZXY,  # femur_r
    _SKEL_KNEE,  # tibia_r
    (_pin_axis((0.175895, -0.105208, 0.0186622)),),  # talus_r
    (_pin_axis((-1.76818999, 0.906223, 1.8196000)),),  # calcn_r
    (_pin_axis((-3.141589999, 0.6199010, 0.0)),),  # toes_r
    _flip(_SKEL_ZXY, (1, -1, -1)),  # femur_l
    _SKEL_KNEE,  # tibia_l
    (_pin_axis((0.175895, -0.105208, 0.0186622)),),  # talus_l
    (_pin_axis((1.768189999, -0.906223, 1.8196000)),),  # calcn_l
    (_pin_axis((-3.141589999, -0.6199010, 0.0)),),  # toes_l
    _SKEL_SPINE,  # lumbar_body
    _SKEL_SPINE,  # thorax
    _SKEL_SPINE,  # head
    _flip(_SKEL_SCAPULA, (1, -1, -1)),  # scapula_r
    _SKEL_SHOULDER,  # humerus_r
    (_unit((0.0494, 0.0366, 0.99810825)),),  # ulna_r
    (_unit((-0.01716099, 0.99266564, -0.11966796)),),  # radius_r
    (_X, (0.0, 0.0, -1.0)),  # hand_r
    _SKEL_SCAPULA,  # scapula_l
    _SKEL_SHOULDER,  # humerus_l
    (_unit((-0.0494, -0.0366, 0.99810825)),),  # ulna_l
    (_unit((0.01716099, -0.99266564, -0.11966796)),),  # radius_l
    ((-1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),  # hand_l
)

_PI = math.pi
_SKEL_LIMITS = {
    "scapula_abduction_r": (-0.628, 0.628),
    "scapula_elevation_r": (-0.4, -0.1),
    "scapula_upward_rot_r": (-0.190, 0.319),
    "scapula_abduction_l": (-0.628, 0.628),
    # SKEL's table writes (-0.1, -0.4) here, lower above upper; stored as an interval.
    "scapula_elevation_l": (-0.4, -0.1),
    "scapula_upward_rot_l": (-0.210, 0.219),
    "elbow_flexion_r": (0.0, 0.75 * _PI),
    "pro_sup_r": (-0.375 * _PI, 0.375 * _PI),
    "wrist_flexion_r": (-_PI / 2, _PI / 2),
    "wrist_deviation_r": (-_PI / 4, _PI / 4),
    "elbow_flexion_l": (0.0, 0.75 * _PI),
    "pro_sup_l": (-_PI / 2, _PI / 2),
    "wrist_flexion_l": (-_PI / 2, _PI / 2),
    "wrist_deviation_l": (-_PI / 4, _PI / 4),
    "shoulder_r_y": (-_PI / 2, _PI / 2),
    "lumbar_bending": (-_PI / 6, _PI / 6),
    "lumbar_extension": (-_PI / 4, _PI / 4),
    "lumbar_twist": (-_PI / 4, _PI / 4),
    "thorax_bending": (-_PI / 4, _PI / 4),
    "thorax_extension": (-_PI / 4, _PI / 4),
    "thorax_twist": (-_PI / 4, _PI / 4),
    "head_bending": (-_PI / 4, _PI / 4),
    "head_extension": (-_PI / 4, _PI / 4),
    "head_twist": (-_PI / 4, _PI / 4),
    "ankle_angle_r": (-_PI / 4, _PI / 4),
    "subtalar_angle_r": (-_PI / 4, _PI / 4),
    "mtp_angle_r": (-_PI / 4, _PI / 4),
    "ankle_angle_l": (-_PI / 4, _PI / 4),
    "subtalar_angle_l": (-_PI / 4, _PI / 4),
    "mtp_angle_l": (-_PI / 4, _PI / 4),
    "knee_angle_r": (0.0, 0.75 * _PI),
    "knee_angle_l": (0.0, 0.75 * _PI),
}

_TREES: dict[str, KinematicTree] = {}


def _register(tree: KinematicTree) -> None:
    _TREES[tree.name] = tree


_register(
    KinematicTree(
        name="stick",
        joint_names=tuple(row[0] for row in _STICK),
        parents=tuple(row[1] for row in _STICK),
        rest_joints=tuple(row[2] for row in _STICK),
        joint_axes=tuple(row[3] for row in _STICK),
        dof_names=_stick_dof_names(),
        dof_limits=None,
        keypoints=(("coco17", STICK_COCO17),),
    )
)
_register(KinematicTree(name="smpl", joint_names=SMPL_JOINT_NAMES, parents=SMPL_PARENTS))
_register(
    KinematicTree(
        name="skel",
        joint_names=SKEL_JOINT_NAMES,
        parents=SKEL_PARENTS,
        joint_axes=_SKEL_AXES,
        dof_names=SKEL_DOF_NAMES,
        dof_limits=tuple(_SKEL_LIMITS.get(name, (math.nan, math.nan)) for name in SKEL_DOF_NAMES),
    )
)


def get_kinematic_tree(name: str) -> KinematicTree:
    """A registered kinematic tree by name (``"stick"``, ``"smpl"``, ``"skel"``)."""
    try:
        return _TREES[name]
    except KeyError:
        raise KeyError(f"unknown kinematic tree {name!r}; registered: {sorted(_TREES)}") from None


def list_kinematic_trees() -> list[str]:
    """Names of the registered kinematic trees."""
    return sorted(_TREES)
