"""Layouts of skelops.graphs against the official definitions.

Sources (values transcribed here as literals, 1-based where the source is 1-based):
- yysijie/st-gcn net/utils/graph.py ('ntu-rgb+d', 'openpose' layouts);
- kennymckormick/pyskl pyskl/utils/graph.py ('nturgb+d', 'coco', 'openpose') and
  pyskl/datasets/pipelines/pose_related.py (JointToBone pairs), configs (Flip left_kp/right_kp);
- Uason-Chen/CTR-GCN graph/ucla.py, feeders/bone_pairs.py, feeders/feeder_ucla.py;
- mgiant/MP-GCN src/dataset/graphs.py (connect_joint of 'coco', 'coco_ball', 'openpose');
- KAIST-VICLab/SkateFormer feeders/feeder_ntu.py (partition new_idx), feeders/tools.py (j2b);
- CMU OpenPose poseParameters.cpp / poseParametersRender.hpp (BODY_25, BODY_25B).
"""

from __future__ import annotations

import pytest
import torch

from skelops import graphs

BUILTIN_SIZES = {
    "ntu_stgcn": (25, 24),
    "ntu_pyskl": (25, 24),
    "ntu_skateformer": (24, 20),
    "coco": (17, 16),
    "coco_ball": (18, 18),
    "coco_ball_net": (19, 19),
    "openpose18": (18, 17),
    "openpose_body25": (25, 24),
    "openpose_body25b": (25, 24),
    "nw_ucla": (20, 19),
    "ut_kinect": (20, 19),
    "sysu_3d": (20, 19),
}


def zero_based(pairs):
    return {(a - 1, b - 1) for a, b in pairs}


def test_builtin_layouts_are_registered_with_their_sizes():
    assert set(BUILTIN_SIZES) <= set(graphs.list_layouts())
    for name, (joints, edges) in BUILTIN_SIZES.items():
        layout = graphs.get_layout(name)
        assert (layout.num_joints, len(layout.edges)) == (joints, edges), name


def test_ntu_hand_edge_variants():
    body = zero_based(
        [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
         (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
         (20, 19)]
    )  # fmt: skip
    stgcn = graphs.get_layout("ntu_stgcn")
    pyskl = graphs.get_layout("ntu_pyskl")
    # st-gcn graph.py 'ntu-rgb+d': (22,23),(23,8),(24,25),(25,12); pyskl 'nturgb+d': (22,8),(23,8),
    # (24,12),(25,12).
    assert set(stgcn.edges) == body | zero_based([(22, 23), (23, 8), (24, 25), (25, 12)])
    assert set(pyskl.edges) == body | zero_based([(22, 8), (23, 8), (24, 12), (25, 12)])
    assert stgcn.center == pyskl.center == 20
    assert stgcn.joint_names[20] == "spine_shoulder"


def test_other_official_edge_lists():
    # pyskl 'coco'
    assert set(graphs.get_layout("coco").edges) == {
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8), (8, 6),
        (5, 0), (6, 0), (1, 0), (3, 1), (2, 0), (4, 2),
    }  # fmt: skip
    # st-gcn / pyskl 'openpose'
    assert set(graphs.get_layout("openpose18").edges) == {
        (4, 3), (3, 2), (7, 6), (6, 5), (13, 12), (12, 11), (10, 9), (9, 8), (11, 5), (8, 2),
        (5, 1), (2, 1), (0, 1), (15, 0), (14, 0), (17, 15), (16, 14),
    }  # fmt: skip
    # CTR-GCN graph/ucla.py inward_ori_index (1-based)
    assert set(graphs.get_layout("nw_ucla").edges) == zero_based(
        [(1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10),
         (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19)]
    )  # fmt: skip
    # OpenPose POSE_BODY_25_PAIRS_RENDER_GPU, undirected
    body25 = [
        1,
        8,
        1,
        2,
        1,
        5,
        2,
        3,
        3,
        4,
        5,
        6,
        6,
        7,
        8,
        9,
        9,
        10,
        10,
        11,
        8,
        12,
        12,
        13,
        13,
        14,
        1,
        0,
        0,
        15,
        15,
        17,
        0,
        16,
        16,
        18,
        14,
        19,
        19,
        20,
        14,
        21,
        11,
        22,
        22,
        23,
        11,
        24,
    ]
    assert {frozenset(e) for e in graphs.get_layout("openpose_body25").edges} == {
        frozenset(body25[i : i + 2]) for i in range(0, len(body25), 2)
    }  # fmt: skip
    # OpenPose POSE_BODY_PART_PAIRS, BODY_25B minimum spanning tree, undirected
    body25b = [
        0,
        1,
        0,
        2,
        1,
        3,
        2,
        4,
        0,
        5,
        0,
        6,
        5,
        7,
        6,
        8,
        7,
        9,
        8,
        10,
        5,
        11,
        6,
        12,
        11,
        13,
        12,
        14,
        13,
        15,
        14,
        16,
        15,
        19,
        19,
        20,
        15,
        21,
        16,
        22,
        22,
        23,
        16,
        24,
        5,
        17,
        5,
        18,
    ]
    assert {frozenset(e) for e in graphs.get_layout("openpose_body25b").edges} == {
        frozenset(body25b[i : i + 2]) for i in range(0, len(body25b), 2)
    }  # fmt: skip
    # MP-GCN coco_ball: the ball (17) hangs off both wrists; coco_ball_net adds net (18) - ball.
    ball = set(graphs.get_layout("coco_ball").edges) - set(graphs.get_layout("coco").edges)
    net = set(graphs.get_layout("coco_ball_net").edges) - set(graphs.get_layout("coco").edges)
    assert {frozenset(e) for e in ball} == {frozenset((9, 17)), frozenset((10, 17))}
    assert {frozenset(e) for e in net} == {frozenset(e) for e in ball} | {frozenset((17, 18))}


def test_kinect_v1_datasets_share_one_skeleton():
    ucla, ut, sysu = (graphs.get_layout(n) for n in ("nw_ucla", "ut_kinect", "sysu_3d"))
    assert ucla.edges == ut.edges == sysu.edges
    assert ucla.joint_names == ut.joint_names == sysu.joint_names
    assert ucla.center == 2 and ucla.joint_names[2] == "shoulder_center"


def test_openpose_keypoint_orders():
    body25 = graphs.get_layout("openpose_body25").joint_names
    assert (body25[1], body25[8], body25[19], body25[24]) == (
        "neck", "mid_hip", "left_big_toe", "right_heel",
    )  # fmt: skip
    body25b = graphs.get_layout("openpose_body25b").joint_names
    assert body25b[:17] == graphs.get_layout("coco").joint_names
    assert (body25b[17], body25b[18], body25b[21]) == ("upper_neck", "head_top", "left_heel")


@pytest.mark.parametrize("name", [n for n in BUILTIN_SIZES if n != "ntu_skateformer"])
def test_edges_point_toward_the_centre(name):
    layout = graphs.get_layout(name)
    to_center = graphs.hop_distance(layout)[:, layout.center]
    for child, parent in layout.edges:
        assert to_center[child] == to_center[parent] + 1, (name, child, parent)


def test_bone_parents_match_the_official_pairs():
    # 2s-AGCN / CTR-GCN feeders/bone_pairs.py ntu_pairs, 1-based (joint, parent)
    ntu_pairs = [
        (1, 2),
        (2, 21),
        (3, 21),
        (4, 3),
        (5, 21),
        (6, 5),
        (7, 6),
        (8, 7),
        (9, 21),
        (10, 9),
        (11, 10),
        (12, 11),
        (13, 1),
        (14, 13),
        (15, 14),
        (16, 15),
        (17, 1),
        (18, 17),
        (19, 18),
        (20, 19),
        (22, 23),
        (21, 21),
        (23, 8),
        (24, 25),
        (25, 12),
    ]
    for name in ("ntu_stgcn", "ntu_pyskl"):
        assert set(graphs.get_layout(name).bone_pairs) == zero_based(ntu_pairs)
    # pyskl JointToBone 'coco' and 'openpose' (0-based)
    assert graphs.get_layout("coco").parents == (
        0,
        0,
        0,
        1,
        2,
        0,
        0,
        5,
        6,
        7,
        8,
        0,
        0,
        11,
        12,
        13,
        14,
    )
    assert graphs.get_layout("openpose18").parents == (
        0, 0, 1, 2, 3, 1, 5, 6, 2, 8, 9, 5, 11, 12, 0, 0, 14, 15,
    )  # fmt: skip
    # MP-GCN connect_joint 'openpose' (BODY_25) and 'coco_ball' / 'coco_ball_net'
    assert graphs.get_layout("openpose_body25").parents == (
        1, 1, 1, 2, 3, 1, 5, 6, 1, 8, 9, 10, 8, 12, 13, 0, 0, 15, 16, 14, 19, 14, 11, 22, 11,
    )  # fmt: skip
    assert graphs.get_layout("coco_ball_net").parents[17:] == (10, 17)
    # CTR-GCN feeders/feeder_ucla.py self.bone, 1-based
    ucla_bone = [
        (1, 2),
        (2, 3),
        (3, 3),
        (4, 3),
        (5, 3),
        (6, 5),
        (7, 6),
        (8, 7),
        (9, 3),
        (10, 9),
        (11, 10),
        (12, 11),
        (13, 1),
        (14, 13),
        (15, 14),
        (16, 15),
        (17, 1),
        (18, 17),
        (19, 18),
        (20, 19),
    ]
    assert set(graphs.get_layout("nw_ucla").bone_pairs) == zero_based(ucla_bone)


def test_skateformer_ordering():
    layout = graphs.get_layout("ntu_skateformer")
    # SkateFormer feeder_ntu.py new_idx (1-based), joint 21 dropped
    new_idx = [
        7,
        8,
        22,
        23,
        11,
        12,
        24,
        25,
        13,
        14,
        15,
        16,
        17,
        18,
        19,
        20,
        5,
        9,
        6,
        10,
        2,
        3,
        1,
        4,
    ]
    assert layout.base_layout == "ntu_pyskl"
    assert layout.base_indices == tuple(i - 1 for i in new_idx)
    assert 20 not in layout.base_indices
    assert [joints for _, joints in layout.parts] == [
        tuple(range(g, g + 4)) for g in range(0, 24, 4)
    ]
    assert layout.center is None
    # its j2b (feeders/tools.py joint2bone) roots the bones at spine_mid (0-based 1)
    assert layout.parents[1] == 1 and layout.parents[20] == 1 and layout.parents[21] == 7


def test_flip_pairs():
    # pyskl configs: left_kp = [1, 3, ..., 15], right_kp = [2, 4, ..., 16] for COCO
    assert graphs.get_layout("coco").flip_pairs == tuple((i, i + 1) for i in range(1, 17, 2))
    # NTU: left arm/hand/leg 5-8, 22-23, 13-16 against 9-12, 24-25, 17-20 (1-based)
    assert set(graphs.get_layout("ntu_stgcn").flip_pairs) == zero_based(
        [(5, 9), (6, 10), (7, 11), (8, 12), (13, 17), (14, 18), (15, 19), (16, 20), (22, 24),
         (23, 25)]
    )  # fmt: skip
    for name in BUILTIN_SIZES:
        layout = graphs.get_layout(name)
        perm = layout.flip_permutation
        assert tuple(perm[i] for i in perm) == tuple(range(layout.num_joints)), name
    assert len(graphs.get_layout("openpose_body25").flip_pairs) == 11


def test_parts():
    ntu = graphs.get_layout("ntu_stgcn")
    assert ntu.part_names == ("left_arm", "right_arm", "left_leg", "right_leg", "torso")
    assert sorted(j for _, joints in ntu.parts for j in joints) == list(range(25))
    assert graphs.get_layout("coco_ball").part("ball") == (17,)
    with pytest.raises(KeyError, match="no part 'tail'"):
        ntu.part("tail")


def test_register_layout_and_lookup():
    layout = graphs.register_layout(
        "test_chain_1based", [(2, 1), (3, 2), (4, 3)], center=0, edges_one_based=True,
        parents=[0, 0, 1, 2], overwrite=True,
    )  # fmt: skip
    assert graphs.get_layout("test_chain_1based") is layout
    assert layout.edges == ((1, 0), (2, 1), (3, 2)) and layout.num_joints == 4
    assert layout.joint_names[3] == "joint_3"
    assert graphs.build_adjacency("test_chain_1based").shape == (3, 4, 4)
    hash(layout)
    with pytest.raises(ValueError, match="already registered"):
        graphs.register_layout("test_chain_1based", [(1, 0)], center=0)


def test_layout_errors():
    with pytest.raises(KeyError, match="unknown layout 'nope'"):
        graphs.get_layout("nope")
    with pytest.raises(TypeError, match="layout must be a name or a Layout"):
        graphs.get_layout(3)
    with pytest.raises(ValueError, match=r"edges\[1\]\[0\] must be in \[0, 3\), got 5"):
        graphs.register_layout("bad", [(1, 0), (5, 1)], center=0, num_joints=3)
    with pytest.raises(ValueError, match=r"edges\[0\]\[1\] must be in \[0, 3\), got -1"):
        graphs.register_layout("bad", [(1, -1)], center=0, num_joints=3)
    with pytest.raises(ValueError, match=r"cannot be reached from it"):
        graphs.register_layout("bad", [(1, 0), (3, 2)], center=0)
    with pytest.raises(ValueError, match="self-loop"):
        graphs.register_layout("bad", [(1, 1)], center=None, num_joints=2)
    with pytest.raises(ValueError, match="listed twice"):
        graphs.register_layout("bad", [(1, 0), (0, 1)], center=0)
    with pytest.raises(ValueError, match="cycle"):
        graphs.register_layout("bad", [(1, 0), (2, 1)], center=0, parents=[1, 2, 0])
    with pytest.raises(ValueError, match=r"center must be in \[0, 2\), got 7"):
        graphs.register_layout("bad", [(1, 0)], center=7)
    with pytest.raises(ValueError, match="not 1-based"):
        graphs.register_layout("bad", [(1, 0)], center=0, edges_one_based=True)
    with pytest.raises(ValueError, match="does not match len"):
        graphs.register_layout("bad", [(1, 0)], num_joints=3, joint_names=["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        graphs.register_layout("bad", [(1, 0)], joint_names=["a", "a"])
    with pytest.raises(TypeError, match="center must be an int"):
        graphs.register_layout("bad", [(1, 0)], center=0.5)
    assert "bad" not in graphs.list_layouts()


def test_disconnected_layout_without_centre_is_allowed_but_not_for_spatial():
    graphs.register_layout("test_two_sticks", [(1, 0), (3, 2)], overwrite=True)
    assert graphs.build_adjacency("test_two_sticks", "uniform").shape == (1, 4, 4)
    with pytest.raises(ValueError, match="needs a centre joint"):
        graphs.build_adjacency("test_two_sticks", "spatial")
    assert torch.isinf(graphs.hop_distance("test_two_sticks")[0, 2])
