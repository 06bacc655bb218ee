"""Kinematic-tree benchmark cases: forward kinematics, DoF rotations, skinning, projection and
whole body-model passes, against the loops of smplx and SKEL and the vectorised references.

Shapes of the issue: SMPL's tree (24 joints, depth 8) and SKEL's DoF table (46 DoFs over 24
bones), batch 1, 64 and 4096, float32, forward and forward+backward. Skinning uses SMPL's
mesh size (6,890 vertices, 24 joints) with synthetic weights of SMPL's sparsity: 1 to 4
joints per vertex, stored as the dense ``[P, J]`` matrix SMPL ships (the skelops kernel skips
its zeros) and in skelops' sparse per-vertex form. Per-sample rest joints and vertices
(smplx computes both from the shape coefficients of each sample), all requiring gradients.

Candidates: every skelops backend of the device (``subject``); the vectorised reference
(``reference``); the loops users run (``alternative``, :mod:`skelops.reference.body_model_loops`:
smplx's ``batch_rodrigues`` + ``batch_rigid_transform`` + ``lbs``, SKEL's per-joint, per-DoF
rotation loop). ``body_model`` cases chain rotations -> forward kinematics -> skinning as a body
model's forward does (smplx without blend shapes; SKEL's rotation loop feeding the same chain).

Floors (:func:`_floors`): bytes only (every op here does a few dozen FLOPs per element moved,
far below the compute peak). Forward kinematics reads ``12 J`` and writes ``15 J`` numbers per
sample; skinning reads and writes ``3 P`` per sample (weights once); forward+backward roughly
doubles the traffic.
"""

from __future__ import annotations

import torch

from .. import reference, rotations
from ..graphs.kinematic_trees import SKEL_PARENTS, SMPL_PARENTS, get_kinematic_tree
from ..ops import forward_kinematics, linear_blend_skinning, project_points
from ..ops._common import available_backends
from ..ops.linear_blend_skinning import skinning_weights_to_sparse
from ..reference import body_model_loops as loops
from .harness import Candidate, Case, register

BATCHES = (1, 64, 4096)
VERTICES = 6890
JOINTS = 24
_F32 = 4


def _skel_table() -> tuple[torch.Tensor, tuple[int, ...], tuple]:
    tree = get_kinematic_tree("skel")
    axes = torch.tensor([a for joint in tree.joint_axes for a in joint], dtype=torch.float32)
    dof_joints = tuple(j for j, joint in enumerate(tree.joint_axes) for _ in joint)
    return axes, dof_joints, tree.joint_axes


def _random_rotations(batch: int, generator: torch.Generator, device: str) -> torch.Tensor:
    axis_angle = 0.6 * torch.randn(batch * JOINTS, 3, generator=generator)
    return loops.smplx_style_rodrigues(axis_angle).view(batch, JOINTS, 3, 3).to(device)


def _skinning_weights(generator: torch.Generator) -> torch.Tensor:
    """``[P, J]`` rows of 1-4 random joints with random positive weights summing to one."""
    weights = torch.zeros(VERTICES, JOINTS)
    count = torch.randint(1, 5, (VERTICES,), generator=generator)
    for row in range(VERTICES):
        joints = torch.randperm(JOINTS, generator=generator)[: int(count[row])]
        values = torch.rand(len(joints), generator=generator) + 0.1
        weights[row, joints] = values / values.sum()
    return weights


def _floors(nbytes: float) -> dict:
    """Byte floors (see the module docstring): forward+backward moves about twice the bytes."""
    return {"flops_fwd": 0.0, "flops_fwdbwd": 0.0, "bytes_fwd": nbytes, "bytes_fwdbwd": 2 * nbytes}


def _fk_bytes(batch: int) -> int:
    return batch * JOINTS * (12 + 15) * _F32


def _skin_bytes(batch: int) -> int:
    return batch * VERTICES * 6 * _F32 + VERTICES * JOINTS * _F32


def _subjects(op: str, device: str, make) -> list[Candidate]:
    return [
        Candidate(f"skelops[{b}]", make(b), "subject")
        for b in available_backends(op, torch.device(device))
        if b != "reference"
    ]


def _stack_fk(rotations_, posed, translations):
    batch = rotations_.shape[0]
    return torch.cat(
        [rotations_.reshape(batch, JOINTS, 9), translations, posed], dim=-1
    )  # [N, J, 15]: what the three outputs hold


@register("forward_kinematics")
def fk_cases(device: str) -> list[Case]:
    out = []
    for batch in BATCHES:
        generator = torch.Generator().manual_seed(batch)

        def make_inputs(batch=batch, generator=generator):
            local = _random_rotations(batch, generator, device)
            rest = (0.3 * torch.randn(batch, JOINTS, 3, generator=generator)).to(device)
            return [local.requires_grad_(), rest.requires_grad_()]

        def skelops_fk(backend):
            def run(local, rest):
                result = forward_kinematics(local, rest, SMPL_PARENTS, backend=backend)
                return _stack_fk(
                    result.global_rotations, result.posed_joints, result.global_translations
                )

            return run

        def reference_fk(local, rest):
            result = reference.forward_kinematics(local, rest, SMPL_PARENTS)
            return _stack_fk(result[0], result[1], result[2])

        def smplx_fk(local, rest):
            posed, transforms = loops.smplx_style_forward_kinematics(local, rest, SMPL_PARENTS)
            return _stack_fk(transforms[..., :3, :3], posed, transforms[..., :3, 3])

        out.append(
            Case(
                op="forward_kinematics",
                shape=f"N{batch} SMPL tree J{JOINTS} depth 8",
                dtype=torch.float32,
                device=device,
                make_inputs=make_inputs,
                candidates=[
                    *_subjects("forward_kinematics", device, skelops_fk),
                    Candidate("reference (vectorised PyTorch)", reference_fk, "reference"),
                    Candidate("smplx batch_rigid_transform loop", smplx_fk, "alternative"),
                ],
                note="outputs stacked as [N, J, 15] (global rotations, translations, joints)",
                **_floors(_fk_bytes(batch)),
            )
        )
    return out


@register("dof_rotations")
def dof_cases(device: str) -> list[Case]:
    axes, dof_joints, joint_axes = _skel_table()
    axes = axes.to(device)
    out = []
    for batch in BATCHES:
        generator = torch.Generator().manual_seed(batch + 1)

        def make_inputs(batch=batch, generator=generator):
            pose = 0.5 * torch.randn(batch, axes.shape[0], generator=generator)
            return [pose.to(device).requires_grad_()]

        def skelops_dof(backend):
            return lambda pose: rotations.dof_rotations(
                pose, axes, dof_joints, JOINTS, backend=backend
            )

        out.append(
            Case(
                op="dof_rotations",
                shape=f"N{batch} SKEL table D46 J24",
                dtype=torch.float32,
                device=device,
                make_inputs=make_inputs,
                candidates=[
                    *_subjects("dof_rotations", device, skelops_dof),
                    Candidate(
                        "reference (vectorised PyTorch)",
                        lambda pose: reference.dof_rotations(pose, axes, dof_joints, JOINTS),
                        "reference",
                    ),
                    Candidate(
                        "SKEL per-joint, per-DoF loop",
                        lambda pose: loops.skel_style_dof_rotations(pose, joint_axes),
                        "alternative",
                    ),
                ],
                note="46 single-axis DoFs -> 24 local rotations",
                **_floors(batch * (46 + JOINTS * 9) * _F32),
            )
        )
    return out


def _skin_inputs(batch: int, generator: torch.Generator, device: str):
    local = _random_rotations(batch, generator, device)
    rest = 0.3 * torch.randn(batch, JOINTS, 3, generator=generator).to(device)
    result = reference.forward_kinematics(local, rest, SMPL_PARENTS)
    vertices = 0.5 * torch.randn(batch, VERTICES, 3, generator=generator).to(device)
    return [
        vertices.requires_grad_(),
        result[0].detach().requires_grad_(),
        result[2].detach().requires_grad_(),
    ]


def _to_transforms(rotations_, translations):
    """``[N, J, 4, 4]`` homogeneous transforms, smplx's ``A``, from ``R`` and ``t``."""
    flat = loops.transform_matrices(rotations_.reshape(-1, 3, 3), translations.reshape(-1, 3, 1))
    return flat.view(*rotations_.shape[:-2], 4, 4)


@register("linear_blend_skinning")
def skinning_cases(device: str) -> list[Case]:
    weights = _skinning_weights(torch.Generator().manual_seed(7)).to(device)
    sparse = skinning_weights_to_sparse(weights)
    out = []
    for batch in BATCHES:
        generator = torch.Generator().manual_seed(batch + 2)

        def make_inputs(batch=batch, generator=generator):
            return _skin_inputs(batch, generator, device)

        subjects = []
        for backend in available_backends("linear_blend_skinning", torch.device(device)):
            if backend == "reference":
                continue
            for form, w in (("dense W", weights), ("sparse W", sparse)):

                def run(v, r, t, backend=backend, w=w):
                    return linear_blend_skinning(v, w, r, t, backend=backend)

                subjects.append(Candidate(f"skelops[{backend}] {form}", run, "subject"))
        big = batch >= 1024 and not device.startswith("cuda")
        out.append(
            Case(
                op="linear_blend_skinning",
                shape=f"N{batch} P{VERTICES} J{JOINTS} (1-4 joints per vertex)",
                dtype=torch.float32,
                device=device,
                make_inputs=make_inputs,
                candidates=[
                    *subjects,
                    Candidate(
                        "reference (vectorised PyTorch)",
                        lambda v, r, t: reference.linear_blend_skinning(v, weights, None, r, t),
                        "reference",
                        rounds=1 if big else None,
                    ),
                    Candidate(
                        "smplx lbs (T = W @ A, [N, P, 4, 4])",
                        lambda v, r, t: loops.smplx_style_skinning(
                            v, weights, _to_transforms(r, t)
                        ),
                        "alternative",
                        rounds=1 if big else None,
                    ),
                ],
                note="per-sample vertices; weights fixed",
                rounds=3,
                warmup_calls=1 if big else 5,
                **_floors(_skin_bytes(batch)),
            )
        )
    return out


@register("project_points")
def projection_cases(device: str) -> list[Case]:
    out = []
    for batch in BATCHES:
        generator = torch.Generator().manual_seed(batch + 3)

        def make_inputs(batch=batch, generator=generator):
            points = torch.randn(batch, VERTICES, 3, generator=generator)
            points[..., 2] += 5
            camera = torch.tensor([500.0, 500.0, 256.0, 256.0]).repeat(batch, 1)
            return [points.to(device).requires_grad_(), camera.to(device).requires_grad_()]

        def skelops_project(backend):
            return lambda points, camera: project_points(points, camera, backend=backend)

        def torch_project(points, camera):
            xy = points[..., :2] / points[..., 2:].clamp_min(1e-6)
            return xy * camera[:, None, :2] + camera[:, None, 2:]

        out.append(
            Case(
                op="project_points",
                shape=f"N{batch} P{VERTICES} pinhole",
                dtype=torch.float32,
                device=device,
                make_inputs=make_inputs,
                candidates=[
                    *_subjects("project_points", device, skelops_project),
                    Candidate(
                        "reference (vectorised PyTorch)",
                        lambda points, camera: reference.project_points(
                            points, camera, None, None, False, 1e-6
                        ),
                        "reference",
                    ),
                    Candidate("plain torch (x / z * f + c)", torch_project, "alternative"),
                ],
                note="every vertex of a SMPL-sized mesh",
                **_floors(batch * VERTICES * 5 * _F32),
            )
        )
    return out


@register("body_model")
def body_model_cases(device: str) -> list[Case]:
    weights = _skinning_weights(torch.Generator().manual_seed(7)).to(device)
    sparse = skinning_weights_to_sparse(weights)
    skel_axes, skel_dof_joints, skel_joint_axes = _skel_table()
    skel_axes = skel_axes.to(device)
    out = []
    for model in ("smpl", "skel"):
        parents = SMPL_PARENTS if model == "smpl" else SKEL_PARENTS
        for batch in BATCHES:
            generator = torch.Generator().manual_seed(batch + 4)

            def make_inputs(batch=batch, generator=generator, model=model):
                if model == "smpl":
                    pose = 0.4 * torch.randn(batch, JOINTS, 3, generator=generator)
                else:
                    pose = 0.4 * torch.randn(batch, skel_axes.shape[0], generator=generator)
                rest = 0.3 * torch.randn(batch, JOINTS, 3, generator=generator)
                vertices = 0.5 * torch.randn(batch, VERTICES, 3, generator=generator)
                return [t.to(device).requires_grad_() for t in (pose, rest, vertices)]

            def skelops_model(backend, model=model, parents=parents):
                def run(pose, rest, vertices):
                    if model == "smpl":
                        local = rotations.axis_angle_to_matrix(pose, backend=backend)
                    else:
                        local = rotations.dof_rotations(
                            pose, skel_axes, skel_dof_joints, JOINTS, backend=backend
                        )
                    result = forward_kinematics(local, rest, parents, backend=backend)
                    return linear_blend_skinning(
                        vertices,
                        sparse,
                        result.global_rotations,
                        result.global_translations,
                        backend=backend,
                    )

                return run

            def reference_model(pose, rest, vertices, model=model, parents=parents):
                if model == "smpl":
                    local = reference.axis_angle_to_matrix(pose)
                else:
                    local = reference.dof_rotations(pose, skel_axes, skel_dof_joints, JOINTS)
                result = reference.forward_kinematics(local, rest, parents)
                return reference.linear_blend_skinning(
                    vertices, weights, None, result[0], result[2]
                )

            def loop_model(pose, rest, vertices, model=model, parents=parents):
                if model == "smpl":
                    local = loops.smplx_style_rodrigues(pose.reshape(-1, 3)).view(-1, JOINTS, 3, 3)
                else:
                    local = loops.skel_style_dof_rotations(pose, skel_joint_axes)
                _, transforms = loops.smplx_style_forward_kinematics(local, rest, parents)
                return loops.smplx_style_skinning(vertices, weights, transforms)

            big = batch >= 1024 and not device.startswith("cuda")
            loop_name = (
                "smplx loop (batch_rodrigues, batch_rigid_transform, lbs)"
                if model == "smpl"
                else "SKEL loop (per-DoF rotations, chain loop, lbs)"
            )
            out.append(
                Case(
                    op="body_model",
                    shape=f"{model.upper()} N{batch} P{VERTICES}",
                    dtype=torch.float32,
                    device=device,
                    make_inputs=make_inputs,
                    candidates=[
                        *_subjects("linear_blend_skinning", device, skelops_model),
                        Candidate(
                            "reference (vectorised PyTorch)",
                            reference_model,
                            "reference",
                            rounds=1 if big else None,
                        ),
                        Candidate(loop_name, loop_model, "alternative", rounds=1 if big else None),
                    ],
                    note="pose -> local rotations -> forward kinematics -> skinned vertices",
                    rounds=3,
                    warmup_calls=1 if big else 5,
                    **_floors(_fk_bytes(batch) + _skin_bytes(batch)),
                )
            )
    return out
