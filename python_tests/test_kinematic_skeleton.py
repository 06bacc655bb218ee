"""skelops.graphs.kinematic_trees, skelops.nn.KinematicSkeleton, the body-model loops the
benchmarks compare with, and the self-supervised re-projection example."""

from __future__ import annotations

import importlib.util
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import skelops
from skelops import reference, rotations
from skelops.graphs.kinematic_trees import (
    SKEL_PARENTS,
    SMPL_PARENTS,
    STICK_COCO17,
    KinematicTree,
    get_kinematic_tree,
    list_kinematic_trees,
    tree_depth,
)
from skelops.nn import KinematicSkeleton
from skelops.reference import body_model_loops as loops

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def random_rotations(*shape: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotations as exponentials of random skew-symmetric matrices (float64)."""
    a = torch.randn(*shape, 3, generator=generator, dtype=torch.float64)
    zero = torch.zeros_like(a[..., 0])
    skew = torch.stack(
        [zero, -a[..., 2], a[..., 1], a[..., 2], zero, -a[..., 0], -a[..., 1], a[..., 0], zero],
        dim=-1,
    ).view(*shape, 3, 3)
    return torch.linalg.matrix_exp(skew)


# --- trees -----------------------------------------------------------------------------------


def test_registry_and_published_sizes():
    assert list_kinematic_trees() == ["skel", "smpl", "stick"]
    smpl, skel, stick = (get_kinematic_tree(n) for n in ("smpl", "skel", "stick"))
    assert (smpl.num_joints, tree_depth(smpl.parents), smpl.num_dofs) == (24, 8, 72)
    assert (skel.num_joints, skel.num_dofs, len(skel.dof_names)) == (24, 46, 46)
    assert (stick.num_joints, stick.num_dofs) == (20, 25)
    assert smpl.parents == SMPL_PARENTS and skel.parents == SKEL_PARENTS
    assert stick.keypoint_indices("coco17") == STICK_COCO17
    names = [stick.joint_names[i] for i in STICK_COCO17]
    assert names[:3] == ["nose", "left_eye", "right_eye"] and names[-1] == "right_ankle"
    with pytest.raises(KeyError, match="unknown kinematic tree 'smplx'"):
        get_kinematic_tree("smplx")
    with pytest.raises(KeyError, match="no keypoint set 'h36m'"):
        stick.keypoint_indices("h36m")


def test_skel_table_axes():
    skel = get_kinematic_tree("skel")
    for joint in skel.joint_axes:
        for axis in joint:
            assert math.isclose(math.fsum(a * a for a in axis), 1.0, abs_tol=1e-12)
    # SKEL's hinge knees, 2-DoF wrists and 3-DoF ball joints, in its DoF order.
    counts = [len(axes) for axes in skel.joint_axes]
    assert counts == [3, 3, 1, 1, 1, 1, 3, 1, 1, 1, 1, 3, 3, 3, 3, 3, 1, 1, 2, 3, 3, 1, 1, 2]
    # A pin joint's axis is the z axis of its parent frame, XYZ Euler angles (SKEL's PinJoint).
    euler = torch.tensor([0.175895, -0.105208, 0.0186622], dtype=torch.float64)
    frame = rotations.euler_angles_to_matrix(euler, "XYZ")
    torch.testing.assert_close(
        torch.tensor(skel.joint_axes[3][0], dtype=torch.float64), frame[:, 2]
    )
    limits = dict(zip(skel.dof_names, skel.dof_limits, strict=True))
    assert limits["knee_angle_r"] == (0.0, 0.75 * math.pi)
    assert all(math.isnan(v) for v in limits["pelvis_tilt"])


def test_tree_validation():
    with pytest.raises(ValueError, match=r"parents\[2\] = 3"):
        KinematicTree("bad", ("a", "b", "c", "d"), (-1, 0, 3, 0))
    with pytest.raises(ValueError, match="parents has 2 entries for 3 joints"):
        KinematicTree("bad", ("a", "b", "c"), (-1, 0))
    with pytest.raises(ValueError, match="dof_names has 1 entries, 2 DoFs"):
        KinematicTree("bad", ("a", "b"), (-1, 0), joint_axes=(((1.0, 0, 0),), ((0, 1.0, 0),)),
                      dof_names=("x",))  # fmt: skip


# --- the loops the benchmarks compare with are the same functions --------------------------


def test_smplx_loops_match_the_ops():
    g = torch.Generator().manual_seed(0)
    local = random_rotations(3, 24, generator=g)
    rest = torch.randn(3, 24, 3, generator=g, dtype=torch.float64)
    posed, transforms = loops.smplx_style_forward_kinematics(local, rest, SMPL_PARENTS)
    result = skelops.forward_kinematics(local, rest, SMPL_PARENTS)
    torch.testing.assert_close(result.posed_joints, posed)
    torch.testing.assert_close(result.global_rotations, transforms[..., :3, :3])
    torch.testing.assert_close(result.global_translations, transforms[..., :3, 3])
    torch.testing.assert_close(
        transforms[..., 3, :], torch.tensor([0, 0, 0, 1.0], dtype=torch.float64).expand(3, 24, 4)
    )

    weights = torch.rand(50, 24, generator=g, dtype=torch.float64)
    weights = weights * (weights > 0.7)
    weights[:, 0] += 0.01
    weights = weights / weights.sum(1, keepdim=True)
    vertices = torch.randn(3, 50, 3, generator=g, dtype=torch.float64)
    expected = loops.smplx_style_skinning(vertices, weights, transforms)
    skinned = skelops.linear_blend_skinning(
        vertices, weights, transforms[..., :3, :3], transforms[..., :3, 3]
    )
    torch.testing.assert_close(skinned, expected)

    axis_angle = torch.randn(7, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        loops.smplx_style_rodrigues(axis_angle), rotations.axis_angle_to_matrix(axis_angle)
    )


def test_skel_loop_matches_dof_rotations():
    skel = get_kinematic_tree("skel")
    table = rotations.DofTable.from_joints(skel.joint_axes)
    pose = torch.randn(5, 46, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(
        loops.skel_style_dof_rotations(pose, skel.joint_axes), table.rotations(pose)
    )


# --- KinematicSkeleton ---------------------------------------------------------------------


def stick(**kwargs) -> KinematicSkeleton:
    return KinematicSkeleton.from_tree("stick", **kwargs).double()


def test_rest_pose_and_shapes():
    skeleton = stick()
    assert skeleton.pose_shape == (25,)
    out = skeleton(skeleton.zero_pose(2, 3))
    rest = torch.tensor(get_kinematic_tree("stick").rest_joints, dtype=torch.float64)
    torch.testing.assert_close(out.joints, rest.expand(2, 3, 20, 3))
    torch.testing.assert_close(
        out.global_rotations, torch.eye(3, dtype=torch.float64).expand(2, 3, 20, 3, 3)
    )
    torch.testing.assert_close(
        out.global_translations, torch.zeros(2, 3, 20, 3, dtype=torch.float64)
    )
    assert out.vertices is None
    assert skeleton.keypoints(out.joints, "coco17").shape == (2, 3, 17, 3)
    assert "joints=20, dofs=25" in repr(skeleton)


def test_knee_hinge_moves_only_the_shank():
    skeleton = stick()
    tree = get_kinematic_tree("stick")
    pose = skeleton.zero_pose(1)
    knee_dof = tree.dof_names.index("left_knee_flexion")
    pose[0, knee_dof] = math.pi / 2
    joints = skeleton(pose).joints[0]
    rest = torch.tensor(tree.rest_joints, dtype=torch.float64)
    moved = (joints - rest).norm(dim=-1) > 1e-6  # rest joints are stored in float32
    assert moved.nonzero().flatten().tolist() == [tree.joint_names.index("left_ankle")]
    knee, ankle = (tree.joint_names.index(n) for n in ("left_knee", "left_ankle"))
    # A right angle about the x axis keeps the shank's length and turns it into the z-y plane.
    torch.testing.assert_close(
        (joints[ankle] - joints[knee]).norm(), (rest[ankle] - rest[knee]).norm()
    )
    drop = joints[ankle, 1] - joints[knee, 1]
    torch.testing.assert_close(drop, rest[knee, 2] - rest[ankle, 2], atol=1e-6, rtol=0)


def test_parametrisations_agree():
    tree = get_kinematic_tree("stick")
    dof = stick()
    pose = torch.randn(4, 25, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = dof(pose)
    matrices = expected.local_rotations
    by_matrix = stick(parametrisation="matrix")(matrices)
    torch.testing.assert_close(by_matrix.joints, expected.joints)
    axis_angle = KinematicSkeleton(tree.parents, torch.tensor(tree.rest_joints)).double()
    torch.testing.assert_close(
        axis_angle(rotations.matrix_to_axis_angle(matrices)).joints, expected.joints
    )
    six = KinematicSkeleton(
        tree.parents, torch.tensor(tree.rest_joints), parametrisation="rotation_6d"
    ).double()
    torch.testing.assert_close(
        six(rotations.matrix_to_rotation_6d(matrices)).joints, expected.joints
    )
    translation = torch.randn(4, 3, dtype=torch.float64)
    moved = dof(pose, translation)
    torch.testing.assert_close(moved.joints, expected.joints + translation[:, None])


def make_skin(joints: int, points: int = 40, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    vertices = torch.randn(points, 3, generator=g)
    weights = torch.rand(points, joints, generator=g) * (
        torch.rand(points, joints, generator=g) > 0.8
    )
    weights[:, 0] += 0.05
    return vertices, weights / weights.sum(1, keepdim=True)


def test_skinning_matches_the_reference_and_gradients_flow():
    vertices, weights = make_skin(20)
    skeleton = stick(skin_vertices=vertices, skin_weights=weights)
    pose = (0.3 * torch.randn(3, 25, dtype=torch.float64)).requires_grad_()
    out = skeleton(pose)
    expected = reference.linear_blend_skinning(
        vertices.double(), weights.double(), None, out.global_rotations, out.global_translations
    )
    torch.testing.assert_close(out.vertices, expected)
    out.vertices.square().sum().backward()
    assert pose.grad is not None and pose.grad.abs().sum() > 0
    assert skeleton(pose, skin=False).vertices is None
    # The sparse weights are buffers: they follow .to() and the state dict.
    assert {"skin_vertices", "skin_weight_values", "skin_weight_indices", "rest_joints"} <= set(
        skeleton.state_dict()
    )


def test_compiles_fullgraph():
    vertices, weights = make_skin(20)
    skeleton = KinematicSkeleton.from_tree("stick", skin_vertices=vertices, skin_weights=weights)
    pose = (0.3 * torch.randn(4, 25)).requires_grad_()
    translation = torch.randn(4, 3)
    eager = skeleton(pose, translation)
    compiled = torch.compile(skeleton, fullgraph=True)(pose, translation)
    for name, a, b in zip(eager._fields, eager, compiled, strict=True):
        torch.testing.assert_close(b, a, msg=name, atol=1e-5, rtol=1e-5)
    (grad,) = torch.autograd.grad(compiled.vertices.sum(), pose)
    (expected,) = torch.autograd.grad(eager.vertices.sum(), pose)
    torch.testing.assert_close(grad, expected, atol=1e-4, rtol=1e-4)


def test_learnable_rest_joints():
    skeleton = stick(learn_rest_joints=True)
    assert [name for name, _ in skeleton.named_parameters()] == ["rest_joints"]
    skeleton(torch.zeros(2, 25, dtype=torch.float64)).joints.sum().backward()
    torch.testing.assert_close(
        skeleton.rest_joints.grad, torch.full((20, 3), 2.0, dtype=torch.float64)
    )


def test_clamp_pose_uses_the_limits():
    skel = get_kinematic_tree("skel")
    skeleton = KinematicSkeleton.from_tree("skel", rest_joints=torch.zeros(24, 3))
    pose = torch.full((1, 46), 5.0)
    clamped = skeleton.clamp_pose(pose)
    knee = skel.dof_names.index("knee_angle_r")
    assert float(clamped[0, knee]) == pytest.approx(0.75 * math.pi)
    assert float(clamped[0, skel.dof_names.index("pelvis_tilt")]) == 5.0


def test_bad_input():
    tree = get_kinematic_tree("stick")
    rest = torch.tensor(tree.rest_joints)
    vertices, weights = make_skin(20)
    with pytest.raises(ValueError, match="skin_weights rows must sum to one; row"):
        KinematicSkeleton(tree.parents, rest, skin_vertices=vertices, skin_weights=weights * 0.9)
    negative = weights.clone()
    negative[0, 1] -= 0.5
    negative[0, 0] += 0.5
    with pytest.raises(ValueError, match="non-negative"):
        KinematicSkeleton(tree.parents, rest, skin_vertices=vertices, skin_weights=negative)
    with pytest.raises(ValueError, match=r"skin_weights must be \[P=40, J=20\]"):
        KinematicSkeleton(tree.parents, rest, skin_vertices=vertices, skin_weights=weights[:, :5])
    with pytest.raises(ValueError, match="go together"):
        KinematicSkeleton(tree.parents, rest, skin_vertices=vertices)
    with pytest.raises(ValueError, match="cycle"):
        KinematicSkeleton([1, 2, 0], torch.zeros(3, 3))
    with pytest.raises(ValueError, match="out of range"):
        KinematicSkeleton([-1, 5], torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"rest_joints must be a floating \[J, 3\]"):
        KinematicSkeleton(tree.parents, rest[:, :2])
    with pytest.raises(ValueError, match="parametrisation must be one of"):
        KinematicSkeleton(tree.parents, rest, parametrisation="quaternion")
    with pytest.raises(ValueError, match="needs joint_axes"):
        KinematicSkeleton(tree.parents, rest, parametrisation="dof")
    with pytest.raises(ValueError, match="joint_axes must list the axes of each of the 20"):
        KinematicSkeleton(tree.parents, rest, joint_axes=tree.joint_axes[:-1])
    with pytest.raises(ValueError, match="ships no rest pose"):
        KinematicSkeleton.from_tree("smpl")
    skeleton = KinematicSkeleton.from_tree("stick")
    with pytest.raises(ValueError, match=r"pose must be \[\*, 25\]"):
        skeleton(torch.zeros(2, 24))
    with pytest.raises(TypeError, match="pose must be a floating tensor"):
        skeleton(torch.zeros(2, 25, dtype=torch.long))
    with pytest.raises(ValueError, match=r"translation must be \[2, 3\]"):
        skeleton(torch.zeros(2, 25), torch.zeros(3))
    with pytest.raises(ValueError, match="betas needs a skeleton built with shape_dirs"):
        skeleton(torch.zeros(2, 25), betas=torch.zeros(2, 10))


# --- model files -----------------------------------------------------------------------------


def fake_smpl(points: int = 30, betas: int = 4, seed: int = 4) -> dict:
    """Arrays under the keys and shapes of SMPL's model files (random values)."""
    g = np.random.default_rng(seed)
    weights = g.random((points, 24)) * (g.random((points, 24)) > 0.7)
    weights[:, 0] += 0.1
    regressor = g.random((24, points))
    kintree = np.array([[2**32 - 1, *SMPL_PARENTS[1:]], list(range(24))], dtype=np.int64)
    return {
        "v_template": g.standard_normal((points, 3)),
        "weights": weights / weights.sum(1, keepdims=True),
        "kintree_table": kintree,
        "J_regressor": regressor / regressor.sum(1, keepdims=True),
        "shapedirs": 0.1 * g.standard_normal((points, 3, betas)),
        "f": np.zeros((10, 3), dtype=np.int64),
    }


@pytest.mark.parametrize("suffix", [".npz", ".pkl"])
def test_from_smpl_file(tmp_path, suffix):
    data = fake_smpl()
    path = tmp_path / f"SMPL_NEUTRAL{suffix}"
    if suffix == ".npz":
        np.savez(path, **data)
    else:
        data_pkl = dict(data, bs_style="lbs")  # a non-array entry, as SMPL files have
        path.write_bytes(pickle.dumps(data_pkl))
    skeleton = KinematicSkeleton.from_smpl_file(path).double()
    assert skeleton.parents == SMPL_PARENTS and skeleton.pose_shape == (24, 3)
    rest = torch.from_numpy(data["J_regressor"] @ data["v_template"])
    torch.testing.assert_close(skeleton.rest_joints, rest, atol=1e-6, rtol=1e-6)
    pose = 0.3 * torch.randn(2, 24, 3, dtype=torch.float64)
    betas = torch.randn(2, 4, dtype=torch.float64)
    out = skeleton(pose, betas=betas)
    # smplx's lbs without pose blend shapes, computed from the raw arrays.
    template = torch.from_numpy(data["v_template"]) + torch.einsum(
        "pcb,nb->npc", torch.from_numpy(data["shapedirs"]), betas
    )
    joints = torch.einsum("jp,npc->njc", torch.from_numpy(data["J_regressor"]), template)
    local = loops.smplx_style_rodrigues(pose.reshape(-1, 3)).view(2, 24, 3, 3)
    posed, transforms = loops.smplx_style_forward_kinematics(local, joints, SMPL_PARENTS)
    expected = loops.smplx_style_skinning(template, torch.from_numpy(data["weights"]), transforms)
    torch.testing.assert_close(out.joints, posed, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.vertices, expected, atol=1e-5, rtol=1e-5)


def test_model_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="body model file not found"):
        KinematicSkeleton.from_smpl_file(tmp_path / "missing.npz")
    data = fake_smpl()
    del data["weights"]
    np.savez(tmp_path / "partial.npz", **data)
    with pytest.raises(ValueError, match=r"missing keys \['weights'\]"):
        KinematicSkeleton.from_smpl_file(tmp_path / "partial.npz")
    bad = tmp_path / "chumpy.pkl"
    # A pickle that needs a module that is not installed, as chumpy-based SMPL files do.
    bad.write_bytes(b"\x80\x02cchumpy_missing_module\nCh\nq\x00)\x81q\x01.")
    with pytest.raises(ValueError, match="chumpy"):
        KinematicSkeleton.from_smpl_file(bad)


def test_from_skel_file(tmp_path):
    g = np.random.default_rng(5)
    points = 30
    weights = g.random((points, 24)) + 0.01
    frames = np.stack([np.eye(4)] * 24)
    frames[:, :3, :3] = random_rotations(24).numpy()
    kintree = np.array([[2**32 - 1, *SKEL_PARENTS[1:]], list(range(24))], dtype=np.int64)
    data = {
        "skin_template_v": g.standard_normal((points, 3)),
        "skin_weights": weights / weights.sum(1, keepdims=True),
        "J_regressor_osim": g.random((24, points)) / points,
        "osim_kintree_table": kintree,
        "apose_rel_transfo": frames,
    }
    np.savez(tmp_path / "skel_male.npz", **data)
    skeleton = KinematicSkeleton.from_skel_file(tmp_path / "skel_male.npz").double()
    assert skeleton.pose_shape == (46,)
    pose = torch.randn(2, 46, dtype=torch.float64)
    # SKEL composes Ra^T Rp Ra per joint; the table's axes are pre-rotated to match.
    plain = rotations.DofTable.from_joints(get_kinematic_tree("skel").joint_axes).rotations(pose)
    ra = torch.from_numpy(frames[:, :3, :3])
    torch.testing.assert_close(skeleton.local_rotations(pose), ra.transpose(-1, -2) @ plain @ ra)
    data["osim_kintree_table"] = np.array([[2**32 - 1, *SMPL_PARENTS[1:]], list(range(24))])
    np.savez(tmp_path / "wrong.npz", **data)
    with pytest.raises(ValueError, match="not SKEL's"):
        KinematicSkeleton.from_skel_file(tmp_path / "wrong.npz")


# --- the re-projection example -----------------------------------------------------------------


def test_reprojection_example_converges():
    spec = importlib.util.spec_from_file_location("reprojection", EXAMPLES / "reprojection.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.fit(steps=200, batch=4, seed=0)
    start, end = result["keypoint_error_px_start"], result["keypoint_error_px_end"]
    assert start > 3.0  # the start is wrong by several pixels
    assert end < start / 10, result
    assert result["heatmap_mse_end"] < result["heatmap_mse_start"] / 10, result
