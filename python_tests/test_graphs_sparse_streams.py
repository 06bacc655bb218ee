"""Sparse adjacency forms and input streams of skelops.graphs.

Stream references: 2s-AGCN / CTR-GCN feeders (bone = x[v] - x[parent], motion = frame difference
with a zero last frame), SkateFormer feeders/feeder_ntu.py (joint2bone, then new_idx) and MP-GCN
src/dataset/utils.py ``multi_input`` (JVBM). The expected tensors below are recomputed from
those definitions by explicit loops.
"""

from __future__ import annotations

import math

import pytest
import torch

from skelops import graphs


def test_csr_round_trip_and_orientation():
    a = graphs.build_adjacency("ntu_stgcn", "spatial", legacy_stgcn=True)
    s = graphs.to_sparse(a)
    assert s.num_subsets == 3 and s.num_nodes == 25 and s.nnz == 25 + 40 + 8
    assert s.crow_indices.shape == (3, 26) and s.crow_indices.dtype == torch.int64
    assert s.crow_indices[:, 0].tolist() == [0, 25, 65] and s.crow_indices[-1, -1] == 73
    assert torch.equal(s.to_dense(), a)
    # rows are targets: row w of subset 1 lists the sources v with A[1, v, w] != 0
    row = slice(int(s.crow_indices[1, 1]), int(s.crow_indices[1, 2]))
    assert s.col_indices[row].tolist() == torch.nonzero(a[1, :, 1]).flatten().tolist()
    features = torch.randn(25, 4)
    torch.testing.assert_close(s.subset(2) @ features, a[2].T @ features)
    with pytest.raises(IndexError):
        s.subset(3)


def test_csr_of_large_and_int32():
    a = graphs.mpgcn_adjacency("coco_ball_net-12")
    s = graphs.to_sparse(a, index_dtype=torch.int32)
    assert s.col_indices.dtype == torch.int32 and s.nnz == int((a != 0).sum())
    assert torch.equal(s.to_dense(), a)


def test_block_diagonal_plus_links():
    a = graphs.mpgcn_adjacency("coco_ball-12")
    b = graphs.to_block_diagonal(a, 12)
    assert b.blocks.shape == (21, 12, 18, 18) and b.num_nodes == 216
    assert torch.equal(b.to_dense(), a)
    # intra-inter labelling: intra subsets live in the blocks, inter subsets in the links only
    assert set(b.link_subsets.unique().tolist()) <= {2, 4, 6, 8, 10, 12, 14, 16, 18, 20}
    assert int((b.link_subsets == 2).sum()) == 12
    assert b.blocks[:, :, :, :].sum() + b.link_values.sum() == pytest.approx(216.0, rel=1e-5)
    with pytest.raises(ValueError, match=r"must divide the node count V \(216\)"):
        graphs.to_block_diagonal(a, 5)
    with pytest.raises(ValueError, match=r"\[K, V, V\]"):
        graphs.to_sparse(a[0])


def reference_bones(x, pairs):
    bones = torch.zeros_like(x)
    for v, parent in pairs:
        bones[:, :, :, v] = x[:, :, :, v] - x[:, :, :, parent]
    return bones


@pytest.mark.parametrize("shape", [(2, 3, 6, 25), (2, 3, 6, 25, 2)])
def test_bone_and_motion_streams(shape):
    x = torch.randn(shape)
    bones = graphs.bone_stream(x, "ntu_stgcn")
    assert bones.shape == x.shape
    torch.testing.assert_close(bones, reference_bones(x, graphs.get_layout("ntu_stgcn").bone_pairs))
    assert (bones[:, :, :, 20] == 0).all()  # spine_shoulder is the root (21, 21)
    torch.testing.assert_close(bones[:, :, :, 21], x[:, :, :, 21] - x[:, :, :, 22])  # (22, 23)
    motion = graphs.motion_stream(x)
    torch.testing.assert_close(motion[:, :, 2], x[:, :, 3] - x[:, :, 2])
    assert (motion[:, :, -1] == 0).all()
    bone_motion = graphs.motion_stream(bones)
    torch.testing.assert_close(bone_motion[:, :, 0], bones[:, :, 1] - bones[:, :, 0])


def test_skateformer_streams():
    x = torch.randn(2, 3, 5, 25, 2)
    # SkateFormer joint2bone pairs (0-based), then new_idx
    pairs = [(0, 1), (1, 1), (2, 20), (3, 2), (4, 20), (5, 4), (6, 5), (7, 6), (8, 20), (9, 8),
             (10, 9), (11, 10), (12, 0), (13, 12), (14, 13), (15, 14), (16, 0), (17, 16), (18, 17),
             (19, 18), (20, 1), (21, 7), (22, 7), (23, 11), (24, 11)]  # fmt: skip
    new_idx = [i - 1 for i in [7, 8, 22, 23, 11, 12, 24, 25, 13, 14, 15, 16, 17, 18, 19, 20, 5, 9,
                               6, 10, 2, 3, 1, 4]]  # fmt: skip
    bones = graphs.bone_stream(x, "ntu_skateformer")
    assert bones.shape == (2, 3, 5, 24, 2)
    torch.testing.assert_close(bones, reference_bones(x, pairs)[:, :, :, new_idx])
    assert torch.equal(graphs.select_joints(x, "ntu_skateformer"), x[:, :, :, new_idx])
    with pytest.raises(ValueError, match="must have V = 25"):
        graphs.bone_stream(x[:, :, :, :24], "ntu_skateformer")
    with pytest.raises(ValueError, match="not a subset"):
        graphs.select_joints(x, "ntu_stgcn")


def reference_jvbm(x, parents, centers):
    # MP-GCN multi_input, for one sample [C, T, V, M]
    c, t = x.shape[0], x.shape[1]
    joint = torch.zeros((2 * c,) + x.shape[1:], dtype=x.dtype)
    velocity, bone, bone_motion = joint.clone(), joint.clone(), joint.clone()
    joint[:c] = x
    for v, center in enumerate(centers):
        joint[c:, :, v] = x[:, :, v] - x[:, :, center]
    for i in range(t - 2):
        velocity[:c, i] = x[:, i + 1] - x[:, i]
        velocity[c:, i] = x[:, i + 2] - x[:, i]
    for v, parent in enumerate(parents):
        bone[:c, :, v] = x[:, :, v] - x[:, :, parent]
    for i in range(t - 2):
        bone_motion[:c, i] = bone[:c, i + 1] - bone[:c, i]
        bone_motion[c:, i] = bone[:c, i + 2] - bone[:c, i]
    length = torch.sqrt((bone[:c] ** 2).sum(0)) + 0.0001
    for i in range(c):
        bone[c + i] = torch.arccos(bone[i] / length)
    return torch.stack((joint, velocity, bone, bone_motion))


def test_jvbm_on_a_panoramic_graph():
    graph = graphs.panoramic_graph("coco_ball-12")
    x = torch.randn(2, 2, 7, 18, 12, dtype=torch.float64)
    panoramic = graphs.to_panoramic(x)
    features = graphs.jvbm_features(panoramic, graph)
    assert features.shape == (2, 4, 4, 7, 216, 1)
    for n in range(2):
        expected = reference_jvbm(panoramic[n], graph.parents, graph.node_centers)
        torch.testing.assert_close(features[n], expected)
    assert (features[:, 1, :, -2:] == 0).all() and (features[:, 3, :, -2:] == 0).all()
    # the nose is its own parent: zero bone, angle arccos(0) = pi / 2
    torch.testing.assert_close(
        features[:, 2, 2:, :, 0], torch.full((2, 2, 7, 1), math.pi / 2, dtype=torch.float64)
    )


def test_jvbm_on_a_layout_4d():
    x = torch.randn(3, 3, 5, 17)
    features = graphs.jvbm_features(x, "coco")
    assert features.shape == (3, 4, 6, 5, 17)
    layout = graphs.get_layout("coco")
    expected = reference_jvbm(x[0][..., None], layout.parents, [0] * 17)[..., 0]
    torch.testing.assert_close(features[0], expected)
    with pytest.raises(ValueError, match="needs a layout with a centre"):
        graphs.jvbm_features(torch.randn(1, 3, 5, 24), "ntu_skateformer")


def test_stream_errors():
    with pytest.raises(ValueError, match=r"\[N, C, T, V\] or \[N, C, T, V, M\]"):
        graphs.motion_stream(torch.zeros(3, 4, 5))
    with pytest.raises(ValueError, match="must have V = 17"):
        graphs.bone_stream(torch.zeros(1, 3, 4, 18), "coco")
    with pytest.raises(TypeError, match="torch.Tensor"):
        graphs.bone_stream([[0.0]], "coco")
    graphs.register_layout("test_boneless", [(1, 0)], center=0, overwrite=True)
    with pytest.raises(ValueError, match="defines no bones"):
        graphs.bone_stream(torch.zeros(1, 3, 4, 2), "test_boneless")
