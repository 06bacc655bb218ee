"""HD-GCN and MP-GCN graphs of skelops.graphs against their official definitions.

- Jho-Yonsei/HD-GCN graph/tools.py: ``get_groups('NTU', CoM)`` and
  ``get_hierarchical_graph(25, get_edgeset('NTU', CoM))``, written ``A[target, source]`` (HD-GCN
  applies it with ``einsum('n c t u, v u -> n c t v')``), so read transposed here.
- mgiant/MP-GCN src/dataset/graphs.py: ``Graph(dataset, 'coco_ball-12' / 'coco_ball_net-12',
  'intra-inter', inter_link='pairwise', hop=1, dilation=2)`` as in config/volleyball/mpgcn.yaml
  and config/nba/mpgcn.yaml (already ``A[source, target]``: ``einsum('nkctv,kvw->nctw')``).
"""

from __future__ import annotations

import pytest
import torch

from skelops import graphs

# HD-GCN get_groups('NTU', CoM), 1-based
HDGCN_GROUPS = {
    21: [[21], [2, 3, 5, 9], [4, 6, 10, 1], [7, 11, 13, 17], [8, 12, 14, 18],
         [22, 23, 24, 25, 15, 19], [16, 20]],
    1: [[1], [2, 13, 17], [14, 18, 21], [3, 5, 9, 15, 19], [4, 6, 10, 16, 20], [7, 11],
        [8, 12, 22, 23, 24, 25]],
    2: [[2], [1, 21], [13, 17, 3, 5, 9], [14, 18, 4, 6, 10], [15, 19, 7, 11], [16, 20, 8, 12],
        [22, 23, 24, 25]],
}  # fmt: skip


@pytest.mark.parametrize("com", [21, 1, 2])
def test_hdgcn_groups_match_the_official_hierarchy(com):
    groups = graphs.hdgcn_groups("ntu_pyskl", center=com - 1)
    assert [set(g) for g in groups] == [{j - 1 for j in g} for g in HDGCN_GROUPS[com]]


@pytest.mark.parametrize(
    ("com", "identity_nnz", "directed_nnz"),
    [(21, 47, 88), (1, 43, 74), (2, 45, 89)],  # HD-GCN Graph(CoM).A non-zeros per subset
)
def test_hdgcn_adjacency(com, identity_nnz, directed_nnz):
    a = graphs.hdgcn_adjacency("ntu_pyskl", center=com - 1)
    assert a.shape == (6, 3, 25, 25)
    assert [int((a[:, k] != 0).sum()) for k in range(3)] == [
        identity_nnz,
        directed_nnz,
        directed_nnz,
    ]
    groups = [[j - 1 for j in g] for g in HDGCN_GROUPS[com]]
    for i in range(6):
        lower, upper = groups[i], groups[i + 1]
        # forward G_i -> G_{i+1}, reverse G_{i+1} -> G_i, each normalised by the source's
        # out-degree: every source row sums to 1
        assert a[i, 1, lower[0], upper[-1]].item() == pytest.approx(1 / len(upper))
        assert a[i, 2, upper[0], lower[-1]].item() == pytest.approx(1 / len(lower))
        torch.testing.assert_close(a[i, 1].sum(1)[lower], torch.ones(len(lower)))
        torch.testing.assert_close(a[i, 2].sum(1)[upper], torch.ones(len(upper)))
        assert int(a[i, 0].sum()) == len(lower) + len(upper)
    # HD-GCN CoM 21, layer 0: A[0, 1][target 1, source 20] = 0.25, A[0, 2][20, 1] = 1
    if com == 21:
        assert a[0, 1, 20, 1].item() == 0.25 and a[0, 2, 1, 20].item() == 1.0


def test_hdgcn_custom_groups_and_errors():
    a = graphs.hdgcn_adjacency("coco", groups=[[0], [5, 6], [7, 8]])
    assert a.shape == (2, 3, 17, 17) and a[1, 1, 5, 8].item() == 0.5
    with pytest.raises(ValueError, match="disjoint"):
        graphs.hdgcn_adjacency("coco", groups=[[0, 5], [5, 6]])
    with pytest.raises(ValueError, match=r"groups joint must be in \[0, 17\), got 30"):
        graphs.hdgcn_adjacency("coco", groups=[[0], [30]])
    with pytest.raises(ValueError, match="at least two non-empty"):
        graphs.hdgcn_adjacency("coco", groups=[[0]])
    with pytest.raises(ValueError, match="num_groups must be at most 5"):
        graphs.hdgcn_groups("coco", center=0, num_groups=9)
    with pytest.raises(ValueError, match=r"center must be in \[0, 17\), got 40"):
        graphs.hdgcn_groups("coco", center=40)
    with pytest.raises(ValueError, match="cannot be reached"):
        graphs.hdgcn_groups("ntu_skateformer", center=0)


def test_panoramic_graphs():
    volleyball = graphs.panoramic_graph("coco_ball-12")
    nba = graphs.panoramic_graph("coco_ball_net-12")
    assert (volleyball.num_nodes, nba.num_nodes) == (216, 228)
    # MP-GCN 'pairwise' with hop=1, dilation=2, base=0: persons (1,0), (3,2), ... at the nose
    assert volleyball.inter_edges == tuple((18 * i, 18 * (i - 1)) for i in range(1, 12, 2))
    assert len(volleyball.edges) == 12 * 18 + 6
    # MP-GCN per-node center and connect_joint (offset per person)
    assert volleyball.node_centers[:18] == (0,) * 18 and volleyball.node_centers[18 * 5 + 3] == 90
    assert volleyball.parents[18 + 17] == 18 + 10
    assert torch.equal(volleyball.person_index[[0, 17, 18, 215]], torch.tensor([0, 0, 1, 11]))
    linear = graphs.panoramic_graph("coco", num_persons=3, inter_link="linear", link_joints=[5, 6])
    assert linear.inter_edges == ((22, 5), (39, 22), (23, 6), (40, 23))
    assert len(graphs.panoramic_graph("coco", 4, "full").inter_edges) == 6
    assert graphs.panoramic_graph("coco", 4, "star").inter_edges == ((0, 17), (0, 34), (0, 51))
    assert graphs.panoramic_graph("coco", 4, None).inter_edges == ()


def test_mpgcn_volleyball():
    a = graphs.mpgcn_adjacency("coco_ball-12")
    assert a.shape == (21, 216, 216)
    # MP-GCN Graph('coco_ball-12', 'intra-inter'): intra hop 0 / intra hop 1 / inter hop 1 / ...
    assert [int((k != 0).sum()) for k in a[:5]] == [216, 432, 12, 552, 96]
    # every node reaches all 36 nodes of its pair within 10 hops: all weights are 1/36
    weights = a[a != 0]
    torch.testing.assert_close(weights, torch.full_like(weights, 1 / 36))
    assert a[2, 18, 0].item() == pytest.approx(1 / 36) and a[2, 18, 36] == 0
    assert a[1, 17, 9].item() == pytest.approx(1 / 36)
    torch.testing.assert_close(a.sum(dim=(0, 1)), torch.ones(216))


def test_mpgcn_nba():
    a = graphs.mpgcn_adjacency("coco_ball_net-12")
    assert a.shape == (21, 228, 228)
    assert [int((k != 0).sum()) for k in a[:5]] == [228, 456, 12, 600, 96]
    # the two nets of a pair are 11 > max_hop hops apart: net columns hold 37 nodes, others 38
    assert a[0, 18, 18].item() == pytest.approx(1 / 37) and a[0, 0, 0].item() == pytest.approx(
        1 / 38
    )
    assert (a[:, 18, 19 + 18] == 0).all()
    assert [int((k != 0).sum()) for k in a[-4:]] == [0, 204, 0, 72]


def test_mpgcn_other_labelings():
    spatial = graphs.mpgcn_adjacency("coco_ball-12", "spatial")
    distance = graphs.mpgcn_adjacency("coco_ball-12", "distance", max_hop=3)
    assert spatial.shape == (21, 216, 216) and distance.shape == (4, 216, 216)
    torch.testing.assert_close(spatial.sum(0), graphs.mpgcn_adjacency("coco_ball-12").sum(0))
    # MP-GCN Graph('coco_ball-12', 'spatial', max_hop=2): centre distances truncated at 2 hops
    truncated = graphs.mpgcn_adjacency("coco_ball-12", "spatial", max_hop=2)
    assert [int((k != 0).sum()) for k in truncated] == [216, 276, 168, 432, 216]
    assert truncated[1, 13, 11].item() == pytest.approx(1 / 6)
    assert truncated[2, 11, 13].item() == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="needs num_persons >= 2"):
        graphs.mpgcn_adjacency(graphs.panoramic_graph("coco", 1))
    with pytest.raises(ValueError, match="labeling must be one of"):
        graphs.mpgcn_adjacency("coco_ball-12", "radial")
    with pytest.raises(ValueError, match="'<layout>-<persons>'"):
        graphs.panoramic_graph("coco_ball-twelve")
    with pytest.raises(KeyError, match="unknown layout 'hockey'"):
        graphs.panoramic_graph("hockey-12")
    with pytest.raises(ValueError, match="inter_link must be one of"):
        graphs.panoramic_graph("coco", 2, "ring")
    with pytest.raises(ValueError, match=r"link_joints entry must be in \[0, 17\), got 20"):
        graphs.panoramic_graph("coco", 2, link_joints=[20])
    with pytest.raises(ValueError, match=r"inter_edges must link two distinct nodes in \[0, 34\)"):
        graphs.PanoramicGraph(graphs.get_layout("coco"), 2, ((0, 40),))
    with pytest.raises(ValueError, match="must have a centre joint"):
        graphs.PanoramicGraph(graphs.get_layout("ntu_skateformer"), 2, ())


def test_to_panoramic():
    x = torch.arange(2 * 3 * 4 * 5 * 6, dtype=torch.float32).reshape(2, 3, 4, 5, 6)
    y = graphs.to_panoramic(x)
    assert y.shape == (2, 3, 4, 30, 1)
    assert torch.equal(y[:, :, :, 5 * 4 + 2, 0], x[:, :, :, 2, 4])
    with pytest.raises(ValueError, match=r"\[N, C, T, V, M\]"):
        graphs.to_panoramic(x[..., 0])
