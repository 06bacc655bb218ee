"""``KinematicSkeleton``: an articulated body (tree, rest pose, DoF table, optional skin) posed
by skelops' fused kinematic operators."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from .. import rotations
from ..graphs.kinematic_trees import KinematicTree, get_kinematic_tree
from ..ops.forward_kinematics import check_parents, forward_kinematics
from ..ops.linear_blend_skinning import linear_blend_skinning, skinning_weights_to_sparse

__all__ = ["KinematicSkeleton", "SkeletonPose"]

_PARAMETRISATIONS = ("dof", "axis_angle", "rotation_6d", "matrix")


class SkeletonPose(NamedTuple):
    """What :class:`KinematicSkeleton` returns (``*`` = the pose's batch dimensions).

    Attributes:
        joints: ``[*, J, 3]`` posed joint positions (plus the root translation).
        global_rotations: ``[*, J, 3, 3]`` joint orientations in the world.
        global_translations: ``[*, J, 3]`` with ``global_rotations`` the rigid transform
            ``x -> R_j x + t_j`` carrying a rest-pose point attached to joint ``j`` to its posed
            place (what skinning blends).
        local_rotations: ``[*, J, 3, 3]`` the rotations the pose parameters gave.
        vertices: ``[*, P, 3]`` the skinned mesh, or ``None`` without a skin.
    """

    joints: Tensor
    global_rotations: Tensor
    global_translations: Tensor
    local_rotations: Tensor
    vertices: Tensor | None


class KinematicSkeleton(nn.Module):
    """A kinematic tree posed by joint parameters: rotations -> forward kinematics -> skinning.

    Each step is one fused skelops operator (:func:`skelops.rotations.dof_rotations` or
    :func:`skelops.rotations.axis_angle_to_matrix`, :func:`skelops.forward_kinematics`,
    :func:`skelops.linear_blend_skinning`) where body-model code (smplx, SKEL) loops over joints
    in Python and materialises a 4x4 matrix per vertex.

    Args:
        parents: ``parents[j] < j`` or ``-1`` (a root); see
            :func:`skelops.ops.forward_kinematics.check_parents`.
        rest_joints: ``[J, 3]`` rest-pose joint positions.
        joint_axes: the DoF table, per joint the ordered fixed axes of its single-axis
            rotations (SKEL's biomechanical joints), or a :class:`skelops.rotations.DofTable`.
            Required for ``parametrisation="dof"``.
        parametrisation: how :meth:`forward` reads ``pose``: ``"dof"`` (``[*, D]`` angles,
            the default with a DoF table), ``"axis_angle"`` (``[*, J, 3]``, the default
            without), ``"rotation_6d"`` (``[*, J, 6]``) or ``"matrix"`` (``[*, J, 3, 3]``).
        joint_names, dof_names: optional names.
        dof_limits: ``[D, 2]`` (lower, upper) radians, ``nan`` = unlimited (:meth:`clamp_pose`).
        keypoints: named joint subsets, e.g. ``{"coco17": (...)}`` (:meth:`keypoints`).
        skin_vertices: ``[P, 3]`` rest-pose mesh, skinned by :meth:`forward`.
        skin_weights: ``[P, J]`` skinning weights (dense or a torch sparse tensor); stored in
            the sparse per-vertex form :func:`skelops.linear_blend_skinning` reads fastest.
        shape_dirs: ``[P, 3, B]`` shape blend shapes and ``joint_regressor`` ``[J, P]``: with
            both, ``forward(..., betas=[*, B])`` reshapes the mesh and regresses the rest joints
            from it (SMPL, Loper et al. 2015: ``J = R (T + S beta)``).
        joint_regressor: see ``shape_dirs``.
        learn_rest_joints: make ``rest_joints`` a parameter (e.g. fit bone lengths).
        validate: check the skin weights sum to one and are non-negative, once, here.
        backend: passed to every operator.
    """

    def __init__(
        self,
        parents: Sequence[int] | Tensor,
        rest_joints: Tensor,
        *,
        joint_axes: Sequence[Sequence[Sequence[float]]] | rotations.DofTable | None = None,
        parametrisation: str | None = None,
        joint_names: Sequence[str] | None = None,
        dof_names: Sequence[str] | None = None,
        dof_limits: Tensor | Sequence[Sequence[float]] | None = None,
        keypoints: Mapping[str, Sequence[int]] | None = None,
        skin_vertices: Tensor | None = None,
        skin_weights: Tensor | None = None,
        shape_dirs: Tensor | None = None,
        joint_regressor: Tensor | None = None,
        learn_rest_joints: bool = False,
        validate: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        rest = torch.as_tensor(rest_joints)
        if rest.dim() != 2 or rest.shape[1] != 3 or not rest.is_floating_point():
            raise ValueError(
                f"rest_joints must be a floating [J, 3] tensor, got {tuple(rest.shape)} "
                f"{rest.dtype}"
            )
        self.parents = check_parents(parents, rest.shape[0])
        joints = len(self.parents)
        if parametrisation is None:
            parametrisation = "dof" if joint_axes is not None else "axis_angle"
        if parametrisation not in _PARAMETRISATIONS:
            raise ValueError(
                f"parametrisation must be one of {_PARAMETRISATIONS}, got {parametrisation!r}"
            )
        if parametrisation == "dof" and joint_axes is None:
            raise ValueError('parametrisation="dof" needs joint_axes (a DoF table)')
        self.parametrisation = parametrisation
        self.backend = backend
        self.dof_table: rotations.DofTable | None = None
        if joint_axes is not None:
            if isinstance(joint_axes, rotations.DofTable):
                table = joint_axes
            else:
                if len(joint_axes) != joints:
                    raise ValueError(
                        f"joint_axes must list the axes of each of the {joints} joints, got "
                        f"{len(joint_axes)} entries"
                    )
                table = rotations.DofTable.from_joints(
                    joint_axes, names=dof_names, limits=dof_limits
                )
            if table.num_joints != joints:
                raise ValueError(
                    f"joint_axes describes {table.num_joints} joints, the tree has {joints}"
                )
            self.dof_table = table
        self.joint_names = tuple(joint_names) if joint_names is not None else None
        if self.joint_names is not None and len(self.joint_names) != joints:
            raise ValueError(f"joint_names has {len(self.joint_names)} names for {joints} joints")
        self.keypoint_sets = {name: tuple(idx) for name, idx in (keypoints or {}).items()}
        for name, idx in self.keypoint_sets.items():
            if any(not 0 <= i < joints for i in idx):
                raise ValueError(f"keypoints[{name!r}] indexes past the {joints} joints")
        # An index buffer per set (moves with .to(), not saved): no host tensor per call.
        for position, idx in enumerate(self.keypoint_sets.values()):
            self.register_buffer(
                f"keypoint_index_{position}", torch.tensor(idx, dtype=torch.long), persistent=False
            )
        if learn_rest_joints:
            self.rest_joints = nn.Parameter(rest.detach().clone())
        else:
            self.register_buffer("rest_joints", rest.detach().clone())
        self._set_skin(skin_vertices, skin_weights, joints, validate)
        if (shape_dirs is None) != (joint_regressor is None):
            raise ValueError("shape_dirs and joint_regressor go together: give both or neither")
        if shape_dirs is not None:
            if self.skin_vertices is None:
                raise ValueError("shape_dirs needs skin_vertices (the template it deforms)")
            points = self.skin_vertices.shape[0]
            if shape_dirs.dim() != 3 or tuple(shape_dirs.shape[:2]) != (points, 3):
                raise ValueError(
                    f"shape_dirs must be [P={points}, 3, B], got {tuple(shape_dirs.shape)}"
                )
            if tuple(joint_regressor.shape) != (joints, points):
                raise ValueError(
                    f"joint_regressor must be [J={joints}, P={points}], got "
                    f"{tuple(joint_regressor.shape)}"
                )
            self.register_buffer("shape_dirs", shape_dirs.detach().to(rest.dtype).clone())
            self.register_buffer("joint_regressor", joint_regressor.detach().to(rest.dtype).clone())
        else:
            self.shape_dirs = None
            self.joint_regressor = None

    def _set_skin(self, vertices, weights, joints: int, validate: bool) -> None:
        if (vertices is None) != (weights is None):
            raise ValueError("skin_vertices and skin_weights go together: give both or neither")
        if vertices is None:
            self.skin_vertices = None
            self.skin_weight_values = None
            self.skin_weight_indices = None
            return
        if vertices.dim() != 2 or vertices.shape[1] != 3:
            raise ValueError(f"skin_vertices must be [P, 3], got {tuple(vertices.shape)}")
        shape = tuple(weights.shape)
        if len(shape) != 2 or shape != (vertices.shape[0], joints):
            raise ValueError(
                f"skin_weights must be [P={vertices.shape[0]}, J={joints}], got {shape}"
            )
        dense = (
            weights.to_dense() if weights.is_sparse or weights.layout != torch.strided else weights
        )
        dense = dense.detach().to(self.rest_joints.dtype)
        if validate:
            sums = dense.sum(1)
            worst = int((sums - 1).abs().argmax()) if dense.shape[0] else 0
            if dense.shape[0] and abs(float(sums[worst]) - 1) > 1e-4:
                raise ValueError(
                    f"skin_weights rows must sum to one; row {worst} sums to "
                    f"{float(sums[worst]):.6g}"
                )
            if bool((dense < 0).any()):
                raise ValueError("skin_weights must be non-negative")
        values, indices = skinning_weights_to_sparse(dense)
        self.register_buffer("skin_vertices", vertices.detach().to(dense.dtype).clone())
        self.register_buffer("skin_weight_values", values)
        self.register_buffer("skin_weight_indices", indices)

    # -- construction from shipped trees and model files ----------------------------------------

    @classmethod
    def from_tree(
        cls,
        tree: str | KinematicTree,
        rest_joints: Tensor | None = None,
        **kwargs,
    ) -> KinematicSkeleton:
        """A skeleton from a registered tree (``"stick"``, ``"smpl"``, ``"skel"``; see
        :mod:`skelops.graphs.kinematic_trees`). ``rest_joints`` is required for trees that do
        not ship one (SMPL, SKEL: their rest joints come from the licensed model files, see
        :meth:`from_smpl_file` / :meth:`from_skel_file`)."""
        if isinstance(tree, str):
            tree = get_kinematic_tree(tree)
        if rest_joints is None:
            if tree.rest_joints is None:
                raise ValueError(
                    f"tree {tree.name!r} ships no rest pose: pass rest_joints [J, 3] or load "
                    "the body model's file"
                )
            rest_joints = torch.tensor(tree.rest_joints, dtype=torch.float32)
        if tree.joint_axes is not None:
            kwargs.setdefault("joint_axes", tree.joint_axes)
            kwargs.setdefault("dof_names", tree.dof_names)
            kwargs.setdefault("dof_limits", tree.dof_limits)
        kwargs.setdefault("joint_names", tree.joint_names)
        kwargs.setdefault("keypoints", dict(tree.keypoints))
        return cls(tree.parents, rest_joints, **kwargs)

    @classmethod
    def from_smpl_file(cls, path: str | os.PathLike, **kwargs) -> KinematicSkeleton:
        """SMPL from its model file (``.npz``, or a ``.pkl`` without chumpy objects: the
        licensed files are not shipped). Reads ``v_template``, ``weights``, ``kintree_table``,
        ``J_regressor`` and ``shapedirs``; the rest joints are ``J_regressor @ v_template``;
        the pose is axis-angle ``[*, 24, 3]`` (smplx's ``global_orient`` followed by
        ``body_pose``). Pose-corrective blend shapes are not applied. Only load files you
        trust: ``.pkl`` files are unpickled."""
        data = _load_model_file(path, ("v_template", "weights", "kintree_table", "J_regressor"))
        template = torch.from_numpy(data["v_template"]).float()
        regressor = torch.from_numpy(data["J_regressor"]).float()
        parents = _kintree_parents(data["kintree_table"])
        kwargs.setdefault("joint_names", get_kinematic_tree("smpl").joint_names[: len(parents)])
        if "shapedirs" in data:
            kwargs.setdefault("shape_dirs", torch.from_numpy(data["shapedirs"]).float())
            kwargs.setdefault("joint_regressor", regressor)
        return cls(
            parents,
            regressor @ template,
            skin_vertices=template,
            skin_weights=torch.from_numpy(data["weights"]).float(),
            **kwargs,
        )

    @classmethod
    def from_skel_file(cls, path: str | os.PathLike, **kwargs) -> KinematicSkeleton:
        """SKEL's skin layer from its model file (``skel_male.pkl`` / ``skel_female.pkl``, not
        shipped): the tree (``osim_kintree_table``), rest joints
        (``J_regressor_osim @ skin_template_v``), skin (``skin_template_v``, ``skin_weights``)
        and the 46-DoF table of :mod:`skelops.graphs.kinematic_trees` with each joint's axes
        expressed in the file's A-pose frames (``apose_rel_transfo``: SKEL's
        ``Ra^T Rp Ra`` equals rotations about ``Ra^T a``). Not reproduced: SKEL's
        shape-dependent bone frames and the translations its scapula and spine joints add, so
        joint angles match SKEL's only up to those. Only load files you trust."""
        data = _load_model_file(
            path,
            ("skin_template_v", "skin_weights", "J_regressor_osim", "osim_kintree_table"),
        )
        tree = get_kinematic_tree("skel")
        parents = _kintree_parents(data["osim_kintree_table"])
        if tuple(parents) != tree.parents:
            raise ValueError(
                f"{path}: osim_kintree_table gives parents {parents}, not SKEL's {tree.parents}"
            )
        template = torch.from_numpy(data["skin_template_v"]).float()
        regressor = torch.from_numpy(data["J_regressor_osim"]).float()
        axes = tree.joint_axes
        if "apose_rel_transfo" in data:
            frames = np.asarray(data["apose_rel_transfo"], dtype=np.float64)[:, :3, :3]
            axes = tuple(
                tuple(tuple(float(c) for c in frames[j].T @ np.asarray(a)) for a in joint)
                for j, joint in enumerate(axes)
            )
        kwargs.setdefault("joint_axes", axes)
        kwargs.setdefault("dof_names", tree.dof_names)
        kwargs.setdefault("dof_limits", tree.dof_limits)
        kwargs.setdefault("joint_names", tree.joint_names)
        return cls(
            parents,
            regressor @ template,
            skin_vertices=template,
            skin_weights=torch.from_numpy(data["skin_weights"]).float(),
            **kwargs,
        )

    # -- sizes ------------------------------------------------------------------------------

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    @property
    def pose_shape(self) -> tuple[int, ...]:
        """The trailing shape :meth:`forward` expects of ``pose``."""
        joints = self.num_joints
        return {
            "dof": (self.dof_table.num_dofs if self.dof_table is not None else 0,),
            "axis_angle": (joints, 3),
            "rotation_6d": (joints, 6),
            "matrix": (joints, 3, 3),
        }[self.parametrisation]

    def zero_pose(self, *batch: int, dtype: torch.dtype | None = None) -> Tensor:
        """The rest pose's parameters, ``[*batch, *pose_shape]``."""
        dtype = dtype or self.rest_joints.dtype
        device = self.rest_joints.device
        if self.parametrisation == "matrix":
            eye = torch.eye(3, dtype=dtype, device=device)
            return eye.expand(*batch, self.num_joints, 3, 3).clone()
        if self.parametrisation == "rotation_6d":
            eye = torch.eye(3, dtype=dtype, device=device)
            six = rotations.matrix_to_rotation_6d(eye)
            return six.expand(*batch, self.num_joints, 6).clone()
        return torch.zeros(*batch, *self.pose_shape, dtype=dtype, device=device)

    # -- posing -----------------------------------------------------------------------------

    def local_rotations(self, pose: Tensor) -> Tensor:
        """``[*, J, 3, 3]`` joint rotations from ``pose`` (per :attr:`parametrisation`)."""
        expected = self.pose_shape
        if not isinstance(pose, Tensor) or not pose.is_floating_point():
            raise TypeError(f"pose must be a floating tensor, got {type(pose).__name__}")
        if tuple(pose.shape[pose.dim() - len(expected) :]) != expected or pose.dim() < len(
            expected
        ):
            raise ValueError(
                f"pose must be [*, {', '.join(map(str, expected))}] for parametrisation "
                f"{self.parametrisation!r}, got {tuple(pose.shape)}"
            )
        if self.parametrisation == "dof":
            return self.dof_table.rotations(pose, backend=self.backend)
        if self.parametrisation == "axis_angle":
            return rotations.axis_angle_to_matrix(pose, backend=self.backend)
        if self.parametrisation == "rotation_6d":
            return rotations.rotation_6d_to_matrix(pose)
        return pose

    def clamp_pose(self, pose: Tensor) -> Tensor:
        """``pose`` clamped to the DoF table's limits (unlimited DoFs unchanged)."""
        if self.dof_table is None:
            raise ValueError("clamp_pose needs a DoF table")
        return self.dof_table.clamp(pose)

    def forward(
        self,
        pose: Tensor,
        translation: Tensor | None = None,
        *,
        betas: Tensor | None = None,
        skin: bool = True,
    ) -> SkeletonPose:
        """Pose the skeleton.

        Args:
            pose: ``[*, *pose_shape]`` joint parameters (see :attr:`parametrisation`).
            translation: ``[*, 3]`` added to every joint and vertex (the root's global
                translation), or ``None``.
            betas: ``[*, B]`` shape coefficients (needs ``shape_dirs``).
            skin: skin the mesh when the skeleton has one.

        Returns:
            :class:`SkeletonPose`.
        """
        local = self.local_rotations(pose)
        batch = local.shape[:-3]
        rest = self.rest_joints
        template = self.skin_vertices
        if betas is not None:
            if self.shape_dirs is None:
                raise ValueError("betas needs a skeleton built with shape_dirs")
            dirs = self.shape_dirs[..., : betas.shape[-1]]
            if betas.shape[:-1] != batch or betas.shape[-1] > self.shape_dirs.shape[-1]:
                raise ValueError(
                    f"betas must be [{', '.join(map(str, batch))}, B <= "
                    f"{self.shape_dirs.shape[-1]}], got {tuple(betas.shape)}"
                )
            template = self.skin_vertices + torch.einsum("pcb,...b->...pc", dirs, betas)
            rest = torch.einsum("jp,...pc->...jc", self.joint_regressor, template)
        result = forward_kinematics(local, rest.to(local.dtype), self.parents, backend=self.backend)
        joints, global_translations = result.posed_joints, result.global_translations
        if translation is not None:
            if tuple(translation.shape) != (*batch, 3):
                raise ValueError(
                    f"translation must be [{', '.join(map(str, (*batch, 3)))}], got "
                    f"{tuple(translation.shape)}"
                )
            joints = joints + translation.unsqueeze(-2)
            global_translations = global_translations + translation.unsqueeze(-2)
        vertices = None
        if skin and template is not None:
            flat_rot = result.global_rotations.reshape(-1, self.num_joints, 3, 3)
            flat_t = global_translations.reshape(-1, self.num_joints, 3)
            mesh = template.to(local.dtype)
            mesh = mesh.reshape(-1, *mesh.shape[-2:]) if mesh.dim() > 2 else mesh
            vertices = linear_blend_skinning(
                mesh,
                (self.skin_weight_values.to(local.dtype), self.skin_weight_indices),
                flat_rot,
                flat_t,
                backend=self.backend,
            ).reshape(*batch, -1, 3)
        return SkeletonPose(joints, result.global_rotations, global_translations, local, vertices)

    def keypoints(self, joints: Tensor, name: str) -> Tensor:
        """The named keypoint subset (e.g. ``"coco17"``) of ``joints`` ``[*, J, C]``."""
        if name not in self.keypoint_sets:
            raise KeyError(
                f"no keypoint set {name!r}; this skeleton has {list(self.keypoint_sets)}"
            )
        index = getattr(self, f"keypoint_index_{list(self.keypoint_sets).index(name)}")
        return joints.index_select(-2, index.to(joints.device))

    def extra_repr(self) -> str:
        dofs = f", dofs={self.dof_table.num_dofs}" if self.dof_table is not None else ""
        skin = f", vertices={self.skin_vertices.shape[0]}" if self.skin_vertices is not None else ""
        return f"joints={self.num_joints}{dofs}, parametrisation={self.parametrisation!r}{skin}"


def _kintree_parents(table) -> list[int]:
    """Parents from a ``kintree_table`` ``[2, J]`` (row 0 parent ids, row 1 joint ids; a root's
    parent id is -1 or an id outside the table, e.g. 2**32 - 1)."""
    table = np.asarray(table).astype(np.int64)
    if table.ndim != 2 or table.shape[0] != 2:
        raise ValueError(f"kintree_table must be [2, J], got {table.shape}")
    column = {int(joint): col for col, joint in enumerate(table[1])}
    return [column.get(int(parent), -1) for parent in table[0]]


def _load_model_file(path, required: Sequence[str]) -> dict:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"body model file not found: {path}")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as archive:
            raw = {key: archive[key] for key in archive.files}
    else:
        try:
            with open(path, "rb") as handle:
                raw = pickle.load(handle, encoding="latin1")
        except ModuleNotFoundError as error:
            raise ValueError(
                f"{path} holds objects of a module that is not installed ({error.name}); the "
                "original SMPL pickles store chumpy arrays: convert the file to .npz (numpy "
                "arrays under the same keys) first"
            ) from None
    missing = [key for key in required if key not in raw]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}; found {sorted(raw)}")
    data = {}
    for key, value in raw.items():
        if hasattr(value, "toarray"):  # scipy sparse matrices
            value = value.toarray()
        if "kintree" in key:  # integer ids (a root's may be 2**32 - 1)
            value = np.asarray(value).astype(np.int64)
        elif isinstance(value, (np.ndarray, list, tuple)):
            try:
                value = np.asarray(value, dtype=np.float32)
            except (TypeError, ValueError):
                continue
        data[key] = value
    for key in required:
        if not isinstance(data.get(key), np.ndarray):
            raise ValueError(f"{path}: {key} is not an array")
    return data
