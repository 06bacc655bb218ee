"""Built-in skeleton layouts, as plain data.

Every entry cites the official definition it was read from. Edges are listed ``(child, parent)``,
i.e. pointing toward the layout's centre joint, which is the orientation the official sources use
and the one the ``inward_outward`` strategy relies on. Edge lists written 1-based here are the
ones the official sources write 1-based; they are converted once, in ``_one_based``.
"""

from __future__ import annotations

from typing import Any


def _one_based(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(a - 1, b - 1) for a, b in pairs]


def _one_based_indices(indices: list[int]) -> list[int]:
    return [i - 1 for i in indices]


# NTU RGB+D (Kinect v2), joint order of the dataset (github.com/shahroudy/NTURGB-D).
_NTU_JOINTS = (
    "spine_base", "spine_mid", "neck", "head",
    "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot",
    "right_hip", "right_knee", "right_ankle", "right_foot",
    "spine_shoulder", "left_hand_tip", "left_thumb", "right_hand_tip", "right_thumb",
)  # fmt: skip

# The 20 body edges shared by both NTU variants (yysijie/st-gcn net/utils/graph.py, 1-based).
_NTU_BODY_EDGES = [
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
    (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
    (20, 19),
]  # fmt: skip

# Bone pairs (joint, parent) of the 2s-AGCN / CTR-GCN feeders (feeders/bone_pairs.py) and of
# pyskl's JointToBone: both use the ST-GCN hand chain (22 -> 23 -> 8), even pyskl, whose graph
# links 22 and 23 to 8 directly.
_NTU_BONE_PAIRS = [
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
    (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
    (20, 19), (22, 23), (21, 21), (23, 8), (24, 25), (25, 12),
]  # fmt: skip

# Body parts of ResGCN / MP-GCN style (arms with their hand joints, legs, torso), 1-based.
_NTU_PARTS = {
    "left_arm": [5, 6, 7, 8, 22, 23],
    "right_arm": [9, 10, 11, 12, 24, 25],
    "left_leg": [13, 14, 15, 16],
    "right_leg": [17, 18, 19, 20],
    "torso": [1, 2, 3, 4, 21],
}


def _parents_from_pairs(num_joints: int, pairs: list[tuple[int, int]]) -> list[int]:
    parents = list(range(num_joints))
    for joint, parent in pairs:
        parents[joint] = parent
    return parents


def _ntu(name: str, hand_edges: list[tuple[int, int]]) -> dict[str, Any]:
    return {
        "name": name,
        "joint_names": _NTU_JOINTS,
        "edges": _one_based(_NTU_BODY_EDGES + hand_edges),
        "center": 20,
        "parents": _parents_from_pairs(25, _one_based(_NTU_BONE_PAIRS)),
        "parts": {k: _one_based_indices(v) for k, v in _NTU_PARTS.items()},
    }


# SkateFormer (KAIST-VICLab/SkateFormer feeders/feeder_ntu.py, ``partition=True``): 24 NTU joints
# in six 4-joint groups, joint 21 (spine_shoulder) dropped. The feeder calls groups 0-3
# right_arm, left_arm, right_leg, left_leg; by NTU's own joint names they are the left hand,
# right hand, left leg and right leg.
_SKATEFORMER_GROUPS = {
    "left_hand": [7, 8, 22, 23],
    "right_hand": [11, 12, 24, 25],
    "left_leg": [13, 14, 15, 16],
    "right_leg": [17, 18, 19, 20],
    "shoulders_elbows": [5, 9, 6, 10],
    "spine_head": [2, 3, 1, 4],
}
# SkateFormer's j2b (feeders/tools.py), 0-based on the 25 NTU joints: rooted at spine_mid, with
# the pyskl hand edges. Bones are taken before the joints are selected.
_SKATEFORMER_BONE_PAIRS = [
    (0, 1), (1, 1), (2, 20), (3, 2), (4, 20), (5, 4), (6, 5), (7, 6), (8, 20), (9, 8),
    (10, 9), (11, 10), (12, 0), (13, 12), (14, 13), (15, 14), (16, 0), (17, 16), (18, 17),
    (19, 18), (20, 1), (21, 7), (22, 7), (23, 11), (24, 11),
]  # fmt: skip

# COCO 17 keypoints; edges and bone pairs of kennymckormick/pyskl (utils/graph.py 'coco',
# JointToBone 'coco'), which MP-GCN's 'coco' graph and connect_joint repeat.
_COCO_JOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
_COCO_EDGES = [
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8), (8, 6),
    (5, 0), (6, 0), (1, 0), (3, 1), (2, 0), (4, 2),
]  # fmt: skip
_COCO_PARENTS = [0, 0, 0, 1, 2, 0, 0, 5, 6, 7, 8, 0, 0, 11, 12, 13, 14]
# Body parts of MP-GCN (src/dataset/graphs.py, part='body').
_COCO_PARTS = {
    "left_arm": [5, 7, 9],
    "right_arm": [6, 8, 10],
    "left_leg": [11, 13, 15],
    "right_leg": [12, 14, 16],
    "head": [0, 1, 2, 3, 4],
}

# OpenPose COCO-18 as in Kinetics-skeleton: yysijie/st-gcn 'openpose' edges and centre,
# pyskl JointToBone 'openpose' bone pairs.
_OPENPOSE18_JOINTS = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip
_OPENPOSE18_EDGES = [
    (4, 3), (3, 2), (7, 6), (6, 5), (13, 12), (12, 11), (10, 9), (9, 8), (11, 5), (8, 2),
    (5, 1), (2, 1), (0, 1), (15, 0), (14, 0), (17, 15), (16, 14),
]  # fmt: skip
_OPENPOSE18_PARENTS = [0, 0, 1, 2, 3, 1, 5, 6, 2, 8, 9, 5, 11, 12, 0, 0, 14, 15]

# OpenPose BODY_25: keypoint order of POSE_BODY_25_BODY_PARTS and the tree of
# POSE_BODY_25_PAIRS_RENDER_GPU (CMU-Perceptual-Computing-Lab/openpose), oriented toward the neck.
# Bone parents are MP-GCN's connect_joint for its 'openpose' graph.
_BODY25_JOINTS = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist", "mid_hip", "right_hip", "right_knee",
    "right_ankle", "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear",
    "left_ear", "left_big_toe", "left_small_toe", "left_heel", "right_big_toe",
    "right_small_toe", "right_heel",
)  # fmt: skip
_BODY25_EDGES = [
    (8, 1), (2, 1), (5, 1), (3, 2), (4, 3), (6, 5), (7, 6), (9, 8), (10, 9), (11, 10), (12, 8),
    (13, 12), (14, 13), (0, 1), (15, 0), (17, 15), (16, 0), (18, 16), (19, 14), (20, 19),
    (21, 14), (22, 11), (23, 22), (24, 11),
]  # fmt: skip
_BODY25_PARENTS = [1, 1, 1, 2, 3, 1, 5, 6, 1, 8, 9, 10, 8, 12, 13, 0, 0, 15, 16, 14, 19, 14, 11,
                   22, 11]  # fmt: skip

# OpenPose BODY_25B: keypoint order of POSE_BODY_25B_BODY_PARTS (COCO-17 first) and the minimum
# spanning tree heading POSE_BODY_PART_PAIRS for BODY_25B (OpenPose poseParameters.cpp), oriented
# toward the nose. That tree hangs upper_neck and head_top off the left shoulder.
_BODY25B_JOINTS = _COCO_JOINTS + (
    "upper_neck", "head_top", "left_big_toe", "left_small_toe", "left_heel",
    "right_big_toe", "right_small_toe", "right_heel",
)  # fmt: skip
_BODY25B_EDGES = [
    (1, 0), (2, 0), (3, 1), (4, 2), (5, 0), (6, 0), (7, 5), (8, 6), (9, 7), (10, 8), (11, 5),
    (12, 6), (13, 11), (14, 12), (15, 13), (16, 14), (19, 15), (20, 19), (21, 15), (22, 16),
    (23, 22), (24, 16), (17, 5), (18, 5),
]  # fmt: skip

# Kinect v1 SDK 20-joint order, recorded by NW-UCLA, UT-Kinect and SYSU-3D alike. Edges and bone
# pairs are CTR-GCN's graph/ucla.py and feeders/feeder_ucla.py (1-based), centred on the root of
# that tree, shoulder_center.
_KINECT_V1_JOINTS = (
    "hip_center", "spine", "shoulder_center", "head",
    "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot",
    "right_hip", "right_knee", "right_ankle", "right_foot",
)  # fmt: skip
_KINECT_V1_EDGES = [
    (1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10),
    (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
]  # fmt: skip
_KINECT_V1_PARTS = {
    "left_arm": [5, 6, 7, 8],
    "right_arm": [9, 10, 11, 12],
    "left_leg": [13, 14, 15, 16],
    "right_leg": [17, 18, 19, 20],
    "torso": [1, 2, 3, 4],
}


def _kinect_v1(name: str) -> dict[str, Any]:
    edges = _one_based(_KINECT_V1_EDGES)
    return {
        "name": name,
        "joint_names": _KINECT_V1_JOINTS,
        "edges": edges,
        "center": 2,
        "parents": _parents_from_pairs(20, edges),
        "parts": {k: _one_based_indices(v) for k, v in _KINECT_V1_PARTS.items()},
    }


# MP-GCN (mgiant/MP-GCN src/dataset/graphs.py) person graphs with the ball, and with the ball and
# the net, copied into every person: the ball hangs off both wrists, the net off the ball.
def _coco_with_objects(name: str, with_net: bool) -> dict[str, Any]:
    objects = ("ball", "net") if with_net else ("ball",)
    parts = {**_COCO_PARTS, **{obj: [17 + i] for i, obj in enumerate(objects)}}
    return {
        "name": name,
        "joint_names": _COCO_JOINTS + objects,
        "edges": _COCO_EDGES + [(17, 9), (17, 10)] + ([(18, 17)] if with_net else []),
        "center": 0,
        "parents": _COCO_PARENTS + [10] + ([17] if with_net else []),
        "parts": parts,
    }


def builtin_layouts() -> list[dict[str, Any]]:
    """Keyword arguments of ``Layout`` for every built-in layout, in registration order."""
    ntu_pyskl = _ntu("ntu_pyskl", [(22, 8), (23, 8), (24, 12), (25, 12)])
    skateformer_indices = [
        i for group in _SKATEFORMER_GROUPS.values() for i in _one_based_indices(group)
    ]
    return [
        _ntu("ntu_stgcn", [(22, 23), (23, 8), (24, 25), (25, 12)]),
        ntu_pyskl,
        {
            "name": "ntu_skateformer",
            "joint_names": tuple(_NTU_JOINTS[i] for i in skateformer_indices),
            "edges": [
                (skateformer_indices.index(a), skateformer_indices.index(b))
                for a, b in ntu_pyskl["edges"]
                if a in skateformer_indices and b in skateformer_indices
            ],
            "center": None,
            "parents": _parents_from_pairs(25, _SKATEFORMER_BONE_PAIRS),
            "parts": {
                name: list(range(4 * g, 4 * g + 4)) for g, name in enumerate(_SKATEFORMER_GROUPS)
            },
            "base_layout": "ntu_pyskl",
            "base_indices": skateformer_indices,
        },
        {
            "name": "coco",
            "joint_names": _COCO_JOINTS,
            "edges": _COCO_EDGES,
            "center": 0,
            "parents": _COCO_PARENTS,
            "parts": _COCO_PARTS,
        },
        _coco_with_objects("coco_ball", with_net=False),
        _coco_with_objects("coco_ball_net", with_net=True),
        {
            "name": "openpose18",
            "joint_names": _OPENPOSE18_JOINTS,
            "edges": _OPENPOSE18_EDGES,
            "center": 1,
            "parents": _OPENPOSE18_PARENTS,
            "parts": {
                "left_arm": [5, 6, 7],
                "right_arm": [2, 3, 4],
                "left_leg": [11, 12, 13],
                "right_leg": [8, 9, 10],
                "head_neck": [0, 1, 14, 15, 16, 17],
            },
        },
        {
            "name": "openpose_body25",
            "joint_names": _BODY25_JOINTS,
            "edges": _BODY25_EDGES,
            "center": 1,
            "parents": _BODY25_PARENTS,
            "parts": {
                "left_arm": [5, 6, 7],
                "right_arm": [2, 3, 4],
                "left_leg": [12, 13, 14, 19, 20, 21],
                "right_leg": [9, 10, 11, 22, 23, 24],
                "torso": [0, 1, 8, 15, 16, 17, 18],
            },
        },
        {
            "name": "openpose_body25b",
            "joint_names": _BODY25B_JOINTS,
            "edges": _BODY25B_EDGES,
            "center": 0,
            "parents": _parents_from_pairs(25, _BODY25B_EDGES),
            "parts": {
                "left_arm": [5, 7, 9],
                "right_arm": [6, 8, 10],
                "left_leg": [11, 13, 15, 19, 20, 21],
                "right_leg": [12, 14, 16, 22, 23, 24],
                "head": [0, 1, 2, 3, 4, 17, 18],
            },
        },
        _kinect_v1("nw_ucla"),
        _kinect_v1("ut_kinect"),
        _kinect_v1("sysu_3d"),
    ]
